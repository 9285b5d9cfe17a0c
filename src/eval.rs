//! `boxwalk eval`: COCO-style detection mAP (@0.5 and @[.5:.95], 101-point interpolated
//! precision, at most 100 detections per image, scores down to the decoder's 0.05) on a
//! COCO-format set, and top-1/top-5 accuracy of a classifier on an ImageFolder set.

use crate::coco::Dataset;
use crate::decode::{decode_file, Limits};
use crate::error::{FileError, ImageError};
use crate::models::boxes::{iou, DecodeParams};
use crate::models::{Classifier, Detector};
use crate::preprocess;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// One scored detection of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub image: usize,
    pub label: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// One ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Truth {
    pub image: usize,
    pub label: usize,
    pub bbox: [f32; 4],
}

/// COCO's 101-point interpolated average precision of one class at one IoU threshold.
pub fn average_precision(dets: &[Scored], truths: &[Truth], iou_threshold: f32) -> Option<f64> {
    if truths.is_empty() {
        return None;
    }
    let mut by_image: HashMap<usize, Vec<(usize, [f32; 4])>> = HashMap::new();
    for (k, t) in truths.iter().enumerate() {
        by_image.entry(t.image).or_default().push((k, t.bbox));
    }
    let mut order: Vec<&Scored> = dets.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; truths.len()];
    let mut tp = Vec::with_capacity(order.len());
    for d in order {
        let mut best: Option<(f32, usize)> = None;
        for &(k, tb) in by_image.get(&d.image).map(Vec::as_slice).unwrap_or(&[]) {
            let v = iou(&d.bbox, &tb);
            if !taken[k] && v >= iou_threshold && best.is_none_or(|(bv, _)| v > bv) {
                best = Some((v, k));
            }
        }
        if let Some((_, k)) = best {
            taken[k] = true;
        }
        tp.push(best.is_some());
    }
    let n = truths.len() as f64;
    let (mut ctp, mut cfp) = (0f64, 0f64);
    let mut recall = Vec::with_capacity(tp.len());
    let mut precision = Vec::with_capacity(tp.len());
    for t in tp {
        if t {
            ctp += 1.0;
        } else {
            cfp += 1.0;
        }
        recall.push(ctp / n);
        precision.push(ctp / (ctp + cfp));
    }
    // Precision envelope (monotone non-increasing from the right), sampled at 101 recalls.
    for i in (0..precision.len().saturating_sub(1)).rev() {
        precision[i] = precision[i].max(precision[i + 1]);
    }
    let mut sum = 0.0;
    for r in (0..=100).map(|i| i as f64 / 100.0) {
        let idx = recall.partition_point(|&x| x < r);
        sum += precision.get(idx).copied().unwrap_or(0.0);
    }
    Some(sum / 101.0)
}

/// Detection quality on a set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MapResult {
    pub map50: f64,
    pub map50_95: f64,
    /// AP@0.5 per class name.
    pub per_class_ap50: Vec<(String, f64)>,
    pub images: usize,
    pub truths: usize,
}

/// mAP over classes present in the ground truth.
pub fn mean_ap(dets: &[Scored], truths: &[Truth], class_names: &[String]) -> MapResult {
    let mut per_class = Vec::new();
    let mut map50 = 0.0;
    let mut map = 0.0;
    let mut counted = 0usize;
    for (i, name) in class_names.iter().enumerate() {
        let label = i + 1;
        let d: Vec<Scored> = dets.iter().filter(|d| d.label == label).copied().collect();
        let t: Vec<Truth> = truths.iter().filter(|t| t.label == label).copied().collect();
        let Some(ap50) = average_precision(&d, &t, 0.5) else { continue };
        let aps: f64 = (0..10).filter_map(|k| average_precision(&d, &t, 0.5 + 0.05 * k as f32)).sum::<f64>() / 10.0;
        per_class.push((name.clone(), ap50));
        map50 += ap50;
        map += aps;
        counted += 1;
    }
    let c = counted.max(1) as f64;
    let images = truths.iter().map(|t| t.image).collect::<std::collections::HashSet<_>>().len();
    MapResult { map50: map50 / c, map50_95: map / c, per_class_ap50: per_class, images, truths: truths.len() }
}

/// Ground truth of a COCO set as labels 1..=C in sorted category-id order, boxes in pixels.
pub fn truths_of(ds: &Dataset) -> (Vec<Truth>, Vec<String>) {
    let cats = ds.sorted_categories();
    let label_of: HashMap<u32, usize> = cats.iter().enumerate().map(|(i, c)| (c.id, i + 1)).collect();
    let index_of: HashMap<u64, usize> = ds.images.iter().enumerate().map(|(i, im)| (im.id, i)).collect();
    let truths = ds
        .annotations
        .iter()
        .filter(|a| a.iscrowd == 0)
        .filter_map(|a| {
            Some(Truth {
                image: *index_of.get(&a.image_id)?,
                label: *label_of.get(&a.category_id)?,
                bbox: [a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3]],
            })
        })
        .collect();
    (truths, cats.into_iter().map(|c| c.name).collect())
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}: no class folders (expected <class>/<image> inside)")]
    NoClassFolders(PathBuf),
    #[error("{dir}: class folder `{folder}` is not one of the model's classes")]
    UnknownClass { dir: PathBuf, folder: String },
}

/// Runs `det` over every image of a COCO set under `root` and scores it.
pub fn eval_detector(det: &Detector, ds: &Dataset, root: &Path, batch_size: usize) -> Result<MapResult, EvalError> {
    let params = DecodeParams { max_output: 100, ..DecodeParams::default() };
    let mut dets = Vec::new();
    let indexed: Vec<(usize, PathBuf)> =
        ds.images.iter().enumerate().map(|(i, im)| (i, root.join(&im.file_name))).collect();
    for chunk in indexed.chunks(batch_size.max(1)) {
        let prepared: Vec<Result<(usize, u32, u32, Tensor), ImageError>> = chunk
            .par_iter()
            .map(|(i, p)| {
                let d = decode_file(p, &Limits::default())?;
                let (w, h) = d.rgb.dimensions();
                Ok((*i, w, h, preprocess::detector_input(&preprocess::upload(&d.rgb, Device::Cpu))))
            })
            .collect();
        let prepared = prepared.into_iter().collect::<Result<Vec<_>, _>>()?;
        let x = Tensor::cat(&prepared.iter().map(|p| p.3.shallow_clone()).collect::<Vec<_>>(), 0);
        for ((i, w, h, _), raw) in prepared.iter().zip(det.detect(&x, &params)) {
            let (wf, hf) = (*w as f32, *h as f32);
            dets.extend(raw.into_iter().map(|r| Scored {
                image: *i,
                label: r.label,
                score: r.score,
                bbox: [r.bbox[0] * wf, r.bbox[1] * hf, r.bbox[2] * wf, r.bbox[3] * hf],
            }));
        }
    }
    let (truths, names) = truths_of(ds);
    Ok(mean_ap(&dets, &truths, &names))
}

/// An ImageFolder split.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// `(image, class index)`.
    pub items: Vec<(PathBuf, usize)>,
    pub classes: Vec<String>,
}

/// Reads an ImageFolder split: `(path, class index)`. With `classes`, folder names are looked up in
/// it (a folder not in it is an error; a class may have no folder); without, the classes are the
/// sorted folder names.
pub fn image_folder(dir: &Path, classes: Option<&[String]>) -> Result<ImageFolder, EvalError> {
    let mut folders: Vec<String> = std::fs::read_dir(dir)
        .map_err(FileError::io(dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    if folders.is_empty() {
        return Err(EvalError::NoClassFolders(dir.to_path_buf()));
    }
    let classes: Vec<String> = classes.map_or_else(|| folders.clone(), <[String]>::to_vec);
    let mut items = Vec::new();
    for f in &folders {
        let Some(k) = classes.iter().position(|c| c == f) else {
            return Err(EvalError::UnknownClass { dir: dir.to_path_buf(), folder: f.clone() });
        };
        for e in walkdir::WalkDir::new(dir.join(f)).sort_by_file_name().into_iter().filter_map(Result::ok) {
            if e.file_type().is_file() && crate::discover::is_image_name(e.path()) {
                items.push((e.path().to_path_buf(), k));
            }
        }
    }
    Ok(ImageFolder { items, classes })
}

/// Classifier accuracy on an ImageFolder split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub images: usize,
}

/// Top-1/top-5 of `cls` on `items`; folder class k must be the classifier's output k.
pub fn eval_classifier(cls: &Classifier, items: &[(PathBuf, usize)], batch_size: usize) -> Result<Accuracy, EvalError> {
    let (mut top1, mut top5) = (0usize, 0usize);
    for chunk in items.chunks(batch_size.max(1)) {
        let inputs: Vec<Result<Tensor, ImageError>> = chunk
            .par_iter()
            .map(|(p, _)| {
                let d = decode_file(p, &Limits::default())?;
                Ok(preprocess::classifier_input(&preprocess::upload(&d.rgb, Device::Cpu)))
            })
            .collect();
        let x = Tensor::cat(&inputs.into_iter().collect::<Result<Vec<_>, _>>()?, 0);
        for ((_, want), top) in chunk.iter().zip(cls.top_k(&x, 5)) {
            top1 += usize::from(top.first().is_some_and(|c| c.index == *want));
            top5 += usize::from(top.iter().any(|c| c.index == *want));
        }
    }
    let n = items.len().max(1) as f64;
    Ok(Accuracy { top1: top1 as f64 / n, top5: top5 as f64 / n, images: items.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(image: usize, bbox: [f32; 4]) -> Truth {
        Truth { image, label: 1, bbox }
    }
    fn d(image: usize, score: f32, bbox: [f32; 4]) -> Scored {
        Scored { image, label: 1, score, bbox }
    }

    #[test]
    fn perfect_detections_score_one_and_misses_lower_it() {
        let truths = vec![t(0, [0.0, 0.0, 10.0, 10.0]), t(1, [5.0, 5.0, 20.0, 20.0])];
        let perfect = vec![d(0, 0.9, [0.0, 0.0, 10.0, 10.0]), d(1, 0.8, [5.0, 5.0, 20.0, 20.0])];
        assert_eq!(average_precision(&perfect, &truths, 0.5), Some(1.0));
        // Only one of two found: recall never passes 0.5 -> AP = 51/101.
        let half = vec![d(0, 0.9, [0.0, 0.0, 10.0, 10.0])];
        let ap = average_precision(&half, &truths, 0.5).expect("ap");
        assert!((ap - 51.0 / 101.0).abs() < 1e-9, "{ap}");
        // A higher-scored false positive first: precision 1/2 then 2/3 over all recalls.
        let fp_first = vec![
            d(0, 0.95, [50.0, 50.0, 60.0, 60.0]),
            d(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            d(1, 0.8, [5.0, 5.0, 20.0, 20.0]),
        ];
        let ap = average_precision(&fp_first, &truths, 0.5).expect("ap");
        assert!((ap - 2.0 / 3.0).abs() < 1e-9, "{ap}");
        // Duplicates count as false positives; no ground truth gives no AP.
        let dup = vec![d(0, 0.9, [0.0, 0.0, 10.0, 10.0]), d(0, 0.85, [0.0, 0.0, 10.0, 10.0])];
        assert!(average_precision(&dup, &truths[..1], 0.5).expect("ap") == 1.0);
        assert_eq!(average_precision(&perfect, &[], 0.5), None);
    }

    #[test]
    fn strict_iou_thresholds_lower_map50_95() {
        let truths = vec![t(0, [0.0, 0.0, 10.0, 10.0])];
        let shifted = vec![d(0, 0.9, [1.0, 0.0, 11.0, 10.0])]; // IoU 9/11 = 0.818
        let r = mean_ap(&shifted, &truths, &["a".into()]);
        assert_eq!(r.map50, 1.0);
        assert!((r.map50_95 - 0.7).abs() < 1e-9, "passes 0.5..0.80 (7 of 10): {}", r.map50_95);
    }
}
