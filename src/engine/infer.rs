//! One batch through the models: a batch of prepared inputs in, per-image results out. libtorch
//! errors (which tch raises as panics) fail the batch's images, not the caller; when the device
//! runs out of memory the batch is split in halves, down to single images, before anything fails.

use super::Models;
use crate::models::boxes::{DecodeParams, RawDetection};
use crate::models::{BoxDecoder, ClassInfo, ClassProb, Classifier, DetectorOutput};
use crate::outputs::annotate;
use crate::outputs::report::{Class, Detection};
use crate::preprocess;
use crate::sys::hooks;
use image::RgbImage;
use std::sync::Arc;
use tch::{Device, Tensor};

/// What the models are asked for, beyond the inputs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub decode: DecodeParams,
    /// Detections are reported scoring strictly above this.
    pub threshold: f32,
    /// Also keep every decoded detection (`all_detections`).
    pub keep_all_detections: bool,
    pub top_k: usize,
    /// Classify each reported detection's crop too, in batches of `crop_batch`.
    pub classify_crops: bool,
    pub crop_batch: usize,
    /// Where crops are uploaded for the classifier.
    pub device: Device,
}

/// One image's prepared inputs, as the models take them.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// 1×3×300×300, when the detector runs.
    pub detector: Option<&'a Tensor>,
    /// 1×3×224×224, when the classifier runs.
    pub classifier: Option<&'a Tensor>,
    /// The decoded image (for its size, and for crops).
    pub rgb: &'a RgbImage,
}

/// The models' results for one image.
#[derive(Clone, Default, PartialEq)]
pub struct PerImage {
    /// Above the threshold.
    pub detections: Option<Vec<Detection>>,
    /// Everything the decoder kept, when asked for.
    pub all_detections: Option<Vec<Detection>>,
    pub classification: Option<Vec<Class>>,
    /// The detector's outputs, until [`BoxContext::finish`] decodes them into `detections`.
    pending: Option<PendingBoxes>,
}

/// One image's share of a batch's detector outputs.
#[derive(Clone, PartialEq)]
struct PendingBoxes {
    output: Arc<DetectorOutput>,
    index: usize,
}

/// Runs the models on `batch`. Box decoding (NMS over up to 80 classes) is left pending, for
/// [`BoxContext::finish`] on another thread, unless crops need the boxes now.
pub fn infer(batch: &[Input], settings: &Settings, models: &Models) -> Vec<Result<PerImage, String>> {
    match catch_libtorch(|| run_models(batch, settings, models)) {
        Ok(per_image) => per_image.into_iter().map(Ok).collect(),
        Err(reason) => {
            if reason.contains("out of memory") && batch.len() > 1 {
                let (a, b) = batch.split_at(batch.len() / 2);
                let mut r = infer(a, settings, models);
                r.extend(infer(b, settings, models));
                r
            } else {
                vec![Err(reason); batch.len()]
            }
        }
    }
}

/// Runs `f`, turning a libtorch error (which tch raises as a panic) into its message.
pub fn catch_libtorch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch error".into())
    })
}

fn stack<'a>(inputs: impl Iterator<Item = Option<&'a Tensor>>) -> Option<Tensor> {
    let v: Option<Vec<Tensor>> = inputs.map(|t| t.map(Tensor::shallow_clone)).collect();
    v.map(|v| Tensor::cat(&v, 0))
}

/// The models on a whole batch, without any guard: [`infer`] catches what fails here.
pub fn run_models(batch: &[Input], settings: &Settings, models: &Models) -> Vec<PerImage> {
    hooks::out_of_memory(batch.len());
    let mut per: Vec<PerImage> = vec![PerImage::default(); batch.len()];
    if let Some(det) = &models.detector {
        if let Some(x) = stack(batch.iter().map(|i| i.detector)) {
            let output = Arc::new(det.outputs(&x, &settings.decode));
            for (index, p) in per.iter_mut().enumerate() {
                p.pending = Some(PendingBoxes { output: output.clone(), index });
            }
        }
    }
    if let Some(cls) = &models.classifier {
        if let Some(x) = stack(batch.iter().map(|i| i.classifier)) {
            for (i, top) in cls.top_k(&x, settings.top_k).into_iter().enumerate() {
                per[i].classification = Some(to_classes(cls, top));
            }
        }
        if let (true, Some(ctx)) = (settings.classify_crops, BoxContext::new(models)) {
            for (p, input) in per.iter_mut().zip(batch) {
                // The crops need the boxes now.
                let (w, h) = input.rgb.dimensions();
                ctx.finish(p, w, h, settings);
                if let Some(dets) = p.detections.as_mut() {
                    classify_crops(cls, input.rgb, dets, settings);
                }
            }
        }
    }
    per
}

/// Classifies each detection's crop (clamped to the image) with the whole-image preset.
fn classify_crops(cls: &Classifier, rgb: &RgbImage, dets: &mut [Detection], settings: &Settings) {
    let (w, h) = rgb.dimensions();
    let crops: Vec<(usize, Tensor)> = dets
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let r = annotate::clamp_box(d.bbox, w, h)?;
            let crop =
                image::imageops::crop_imm(rgb, r.left() as u32, r.top() as u32, r.width(), r.height()).to_image();
            Some((i, preprocess::classifier_input(&preprocess::upload(&crop, settings.device))))
        })
        .collect();
    for chunk in crops.chunks(settings.crop_batch.max(1)) {
        let x = Tensor::cat(&chunk.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>(), 0);
        for ((i, _), top) in chunk.iter().zip(cls.top_k(&x, settings.top_k)) {
            dets[*i].classification = Some(to_classes(cls, top));
        }
    }
}

/// What decoding detections needs, shared by the threads that do it: box decoding runs on the
/// workers, not on the inference thread, which goes on to the next batch.
pub struct BoxContext {
    decoder: BoxDecoder,
    classes: Vec<ClassInfo>,
    keep_labels: Option<Vec<usize>>,
}

impl BoxContext {
    /// `None` without a detector.
    pub fn new(models: &Models) -> Option<BoxContext> {
        models.detector.as_ref().map(|d| BoxContext {
            decoder: d.decoder(),
            classes: d.classes.clone(),
            keep_labels: models.keep_labels.clone(),
        })
    }

    /// Decodes `per`'s pending outputs for an image of `w`×`h` pixels.
    pub fn finish(&self, per: &mut PerImage, w: u32, h: u32, settings: &Settings) {
        let Some(p) = per.pending.take() else { return };
        let raw = self.decoder.decode(&p.output, p.index, &settings.decode);
        let keep = self.keep_labels.as_deref();
        per.detections = Some(to_detections(&self.classes, &raw, w, h, settings.threshold, keep));
        if settings.keep_all_detections {
            per.all_detections = Some(to_detections(&self.classes, &raw, w, h, f32::NEG_INFINITY, keep));
        }
    }
}

/// A classifier's top-k as report classes (names from the model card or ImageNet).
pub fn to_classes(c: &Classifier, probs: Vec<ClassProb>) -> Vec<Class> {
    probs
        .into_iter()
        .map(|p| Class {
            label: c.classes.get(p.index).map_or_else(|| format!("class {}", p.index), |k| k.name.clone()),
            index: p.index,
            prob: p.prob,
        })
        .collect()
}

/// Maps decoder output (normalised to the 300×300 input) to report detections in original pixels,
/// keeping scores above the threshold and the selected classes.
pub fn to_detections(
    classes: &[ClassInfo],
    raw: &[RawDetection],
    w: u32,
    h: u32,
    threshold: f32,
    keep_labels: Option<&[usize]>,
) -> Vec<Detection> {
    let (wf, hf) = (w as f32, h as f32);
    raw.iter()
        .filter(|d| d.score > threshold && keep_labels.is_none_or(|c| c.contains(&d.label)))
        .filter_map(|d| {
            // Label L (1-based; 0 is background) is classes[L - 1].
            let class = d.label.checked_sub(1).and_then(|i| classes.get(i))?;
            Some(Detection {
                label: class.name.clone(),
                class_index: d.label,
                coco_id: class.coco_id,
                score: d.score,
                bbox: [d.bbox[0] * wf, d.bbox[1] * hf, d.bbox[2] * wf, d.bbox[3] * hf],
                classification: None,
            })
        })
        .collect()
}
