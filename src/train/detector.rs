//! `boxwalk train detector`: SSD300 training on a COCO-format set, after NVIDIA's recipe —
//! default-box matching (`Encoder.encode`), smooth-L1 on positives plus cross-entropy with 3:1
//! hard-negative mining (`Loss`), SSD augmentations (IoU-constrained random crop, horizontal
//! flip, colour jitter), SGD with momentum or Adam with linear warm-up, a checkpoint every epoch,
//! and `--resume` from the last one.

use super::augment::{self, Sample};
use super::{Optim, TrainError, TrainLog};
use crate::coco::Dataset;
use crate::decode::{decode_file, Limits};
use crate::error::{FileError, ImageError};
use crate::models::boxes::{self, SsdConfig};
use crate::models::ssd::{Ssd, SsdArch};
use crate::models::{load_strict, ClassInfo, Detector, ModelCard, Placement, WeightsError};
use crate::preprocess;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

/// Options of a detector training run.
#[derive(Debug, Clone)]
pub struct DetectorTrainOptions {
    /// Folder with `annotations.json` (COCO) and the images it names.
    pub data: PathBuf,
    /// Optional held-out COCO set evaluated (mAP@0.5) after every epoch.
    pub val: Option<PathBuf>,
    pub out: PathBuf,
    /// `resnet18` or `resnet50`.
    pub backbone: String,
    pub width_divisor: i64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optim: Optim,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub augment: bool,
    pub seed: u64,
    pub resume: bool,
    /// Stop after this many optimiser steps in total (smoke tests).
    pub max_steps: Option<usize>,
    /// The command line, recorded in the model card.
    pub command: String,
}

/// What survives between epochs (written beside the checkpoint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    pub epoch: usize,
    pub step: usize,
    pub seed: u64,
    pub backbone: String,
    pub width_divisor: i64,
    pub classes: Vec<String>,
    pub losses: Vec<f64>,
}

/// A decoded training image with normalised ltrb boxes and labels 1..=C.
struct Item {
    sample: Sample,
}

fn load_items(ds: &Dataset, root: &Path) -> Result<Vec<Item>, ImageError> {
    let cats = ds.sorted_categories();
    let label_of: HashMap<u32, i64> = cats.iter().enumerate().map(|(i, c)| (c.id, i as i64 + 1)).collect();
    let mut anns: HashMap<u64, Vec<&crate::coco::Annotation>> = HashMap::new();
    for a in &ds.annotations {
        anns.entry(a.image_id).or_default().push(a);
    }
    ds.images
        .par_iter()
        .map(|im| {
            let path = root.join(&im.file_name);
            let d = decode_file(&path, &Limits::default())?;
            let (w, h) = (d.rgb.width() as f32, d.rgb.height() as f32);
            let mut boxes = Vec::new();
            let mut labels = Vec::new();
            for a in anns.get(&im.id).map(Vec::as_slice).unwrap_or(&[]) {
                let Some(&l) = label_of.get(&a.category_id) else { continue };
                let b = a.bbox;
                boxes.push([b[0] / w, b[1] / h, (b[0] + b[2]) / w, (b[1] + b[3]) / h]);
                labels.push(l);
            }
            Ok(Item { sample: Sample { image: d.rgb, boxes, labels } })
        })
        .collect()
}

/// NVIDIA's SSD loss. `ploc`/`gloc` N×4×B, `plabel` N×C×B logits, `glabel` N×B (0 = background).
pub fn ssd_loss(ploc: &Tensor, plabel: &Tensor, gloc: &Tensor, glabel: &Tensor) -> Tensor {
    let mask = glabel.gt(0);
    let pos_num = mask.sum_dim_intlist(1, false, Kind::Int64);
    let sl1 = ploc.smooth_l1_loss(gloc, Reduction::None, 1.0).sum_dim_intlist(1, false, Kind::Float);
    let sl1 = (&mask * sl1).sum_dim_intlist(1, false, Kind::Float);
    let con = -plabel.log_softmax(1, Kind::Float).gather(1, &glabel.unsqueeze(1), false).squeeze_dim(1);
    // Hard negatives: the background boxes with the highest loss, 3 per positive.
    let con_neg = con.detach().masked_fill(&mask, 0.0);
    let con_idx = con_neg.argsort(1, true);
    let con_rank = con_idx.argsort(1, false);
    let nb = glabel.size()[1];
    let neg_num = (&pos_num * 3).clamp_max(nb).unsqueeze(-1);
    let neg_mask = con_rank.lt_tensor(&neg_num);
    let closs =
        (&con * (mask.to_kind(Kind::Float) + neg_mask.to_kind(Kind::Float))).sum_dim_intlist(1, false, Kind::Float);
    let total = sl1 + closs;
    let num_mask = pos_num.gt(0).to_kind(Kind::Float);
    let pos = pos_num.to_kind(Kind::Float).clamp_min(1e-6);
    (total * num_mask / pos).mean(Kind::Float)
}

fn make_arch(backbone: &str, num_classes: i64, divisor: i64) -> Result<SsdArch, TrainError> {
    match backbone {
        "resnet18" => Ok(SsdArch::ssd300_resnet18(num_classes, divisor)),
        "resnet50" if divisor == 1 => Ok(SsdArch { num_classes, ..SsdArch::ssd300_resnet50() }),
        other => Err(TrainError::Options(format!(
            "--backbone {other} (width divisor {divisor}): use resnet18 (any divisor) or resnet50"
        ))),
    }
}

/// Builds one training batch on the CPU: inputs N×3×300×300, loc targets N×4×B, labels N×B.
fn make_batch(
    items: &[&Item],
    augment: bool,
    seed: u64,
    cfg: &SsdConfig,
    dboxes: &[[f32; 4]],
) -> (Tensor, Tensor, Tensor) {
    let parts: Vec<(Tensor, Vec<f32>, Vec<i64>)> = items
        .par_iter()
        .enumerate()
        .map(|(k, it)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
            let s = if augment { augment::ssd_augment(&it.sample, &mut rng) } else { it.sample.clone() };
            let x = preprocess::detector_input(&preprocess::upload(&s.image, Device::Cpu));
            let (loc, lab) = boxes::encode_targets(&s.boxes, &s.labels, dboxes, cfg, 0.5);
            (x, loc.into_iter().flatten().collect(), lab)
        })
        .collect();
    let nb = dboxes.len() as i64;
    let n = parts.len() as i64;
    // Channels-first, as the preprocessing gave before it kept images channels-last: libtorch
    // 2.11's oneDNN weight gradient corrupted the heap on channels-last batches (classifier
    // training, `double free or corruption` in mkldnn_convolution_backward_weights).
    let x = Tensor::cat(&parts.iter().map(|p| p.0.shallow_clone()).collect::<Vec<_>>(), 0).contiguous();
    let loc: Vec<f32> = parts.iter().flat_map(|p| p.1.iter().copied()).collect();
    let lab: Vec<i64> = parts.iter().flat_map(|p| p.2.iter().copied()).collect();
    let gloc = Tensor::from_slice(&loc).view([n, nb, 4]).permute([0, 2, 1]).contiguous();
    let glabel = Tensor::from_slice(&lab).view([n, nb]);
    (x, gloc, glabel)
}

/// Trains (or resumes) a detector; writes `OUT/detector.safetensors` and its model card.
pub fn train(o: &DetectorTrainOptions, log: &mut dyn TrainLog) -> Result<PathBuf, TrainError> {
    let ds = Dataset::read(&o.data.join("annotations.json"))?;
    let classes: Vec<String> = ds.sorted_categories().into_iter().map(|c| c.name).collect();
    let arch = make_arch(&o.backbone, classes.len() as i64 + 1, o.width_divisor)?;
    std::fs::create_dir_all(&o.out).map_err(FileError::io(&o.out))?;
    let ckpt = o.out.join("checkpoint.safetensors");
    let state_path = o.out.join("train_state.json");

    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Ssd::new(&vs.root(), &arch);
    let mut state = TrainState {
        epoch: 0,
        step: 0,
        seed: o.seed,
        backbone: o.backbone.clone(),
        width_divisor: o.width_divisor,
        classes: classes.clone(),
        losses: vec![],
    };
    if o.resume && ckpt.is_file() {
        let saved: TrainState = FileError::read_json(&state_path, "not a training state")?;
        if saved.classes != classes || saved.backbone != o.backbone || saved.width_divisor != o.width_divisor {
            let reason = "the checkpoint is for another model or class list; not resuming".into();
            return Err(TrainError::Invalid { path: state_path, reason });
        }
        load_strict(&mut vs, &ckpt, "SSD300 detector")?;
        state = saved;
        log.line(&format!("resuming after epoch {} (step {})", state.epoch, state.step));
    } else {
        tch::manual_seed(o.seed as i64);
        // Re-initialise with the seed so that runs are reproducible: Kaiming-normal backbone
        // convolutions, Xavier-uniform extra blocks and heads (NVIDIA's `_init_weights`).
        let _guard = tch::no_grad_guard();
        for (name, mut t) in vs.variables() {
            if !(name.ends_with(".weight") && t.dim() == 4) {
                continue;
            }
            let s = t.size();
            let (fan_in, fan_out) = ((s[1] * s[2] * s[3]) as f64, (s[0] * s[2] * s[3]) as f64);
            if name.starts_with("feature_extractor.") {
                let _ = t.normal_(0.0, (2.0 / fan_in).sqrt());
            } else {
                let a = (6.0 / (fan_in + fan_out)).sqrt();
                let _ = t.uniform_(-a, a);
            }
        }
    }

    let items = load_items(&ds, &o.data)?;
    if items.is_empty() {
        return Err(TrainError::Invalid { path: o.data.clone(), reason: "no images".into() });
    }
    let val = o.val.as_ref().map(|v| Dataset::read(&v.join("annotations.json")).map(|d| (v.clone(), d))).transpose()?;
    let cfg = SsdConfig::ssd300();
    let dboxes = cfg.default_boxes_xywh();
    let mut opt = o.optim.build(&vs, o.lr, o.weight_decay)?;

    let steps_per_epoch = items.len().div_ceil(o.batch_size);
    for epoch in state.epoch..o.epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(o.seed.wrapping_mul(7919).wrapping_add(epoch as u64));
        let mut order: Vec<&Item> = items.iter().collect();
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        let t0 = std::time::Instant::now();
        for batch in order.chunks(o.batch_size) {
            if o.max_steps.is_some_and(|m| state.step >= m) {
                break;
            }
            let warm =
                if o.warmup_steps > 0 { ((state.step + 1) as f64 / o.warmup_steps as f64).min(1.0) } else { 1.0 };
            opt.set_lr(o.lr * warm);
            let (x, gloc, glabel) = make_batch(batch, o.augment, rng.gen(), &cfg, &dboxes);
            let (ploc, plabel) = net.forward_t(&x, true);
            let loss = ssd_loss(&ploc, &plabel, &gloc, &glabel);
            opt.backward_step(&loss);
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(TrainError::Diverged { loss: l, step: state.step });
            }
            sum += l;
            count += 1;
            state.step += 1;
            if count % 20 == 0 {
                log.line(&format!(
                    "epoch {} step {}/{steps_per_epoch}: loss {:.4}",
                    epoch + 1,
                    count,
                    sum / count as f64
                ));
            }
        }
        if count == 0 {
            break;
        }
        let mean = sum / count as f64;
        state.epoch = epoch + 1;
        state.losses.push(mean);
        vs.save(&ckpt).map_err(TrainError::torch(&ckpt))?;
        crate::outputs::files::write_atomic(&state_path, |w| {
            serde_json::to_writer_pretty(&mut *w, &state).map_err(std::io::Error::other)
        })
        .map_err(FileError::io(&state_path))?;
        let mut msg = format!("epoch {}/{}: loss {mean:.4} ({:.0} s)", epoch + 1, o.epochs, t0.elapsed().as_secs_f64());
        if let Some((root, vds)) = &val {
            let det = detector_from(&ckpt, &arch, &classes)?;
            let r = crate::eval::eval_detector(&det, vds, root, o.batch_size)?;
            msg += &format!(", val mAP@0.5 {:.3}, mAP@[.5:.95] {:.3}", r.map50, r.map50_95);
        }
        log.line(&msg);
    }

    let final_path = o.out.join("detector.safetensors");
    vs.save(&final_path).map_err(TrainError::torch(&final_path))?;
    let card = ModelCard {
        role: "detector".into(),
        arch: format!("ssd300_{}", o.backbone),
        width_divisor: o.width_divisor,
        classes: classes.iter().map(|n| ClassInfo { name: n.clone(), coco_id: None }).collect(),
        source: format!("boxwalk train detector on {}", o.data.display()),
        source_sha256: None,
        created: crate::sys::now(),
        demo: false,
        command: Some(o.command.clone()),
        seed: Some(o.seed),
        quality: Some(serde_json::json!({ "train_loss_per_epoch": state.losses })),
    };
    card.write_for(&final_path).map_err(FileError::io(&final_path))?;
    Ok(final_path)
}

fn detector_from(file: &Path, arch: &SsdArch, classes: &[String]) -> Result<Detector, WeightsError> {
    let classes = classes.iter().map(|n| ClassInfo { name: n.clone(), coco_id: None }).collect();
    Detector::load(file, arch.clone(), classes, None, Placement { device: Device::Cpu, half: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_zero_for_perfect_predictions_and_mines_three_negatives_per_positive() {
        let (n, c, b) = (1, 3, 10);
        let gloc = Tensor::zeros([n, 4, b], (Kind::Float, Device::Cpu));
        let mut lab = vec![0i64; b as usize];
        lab[2] = 1;
        let glabel = Tensor::from_slice(&lab).view([n, b]);
        // Confident, correct logits: loss ~ 0.
        let mut logits = vec![0f32; (c * b) as usize];
        for k in 0..b as usize {
            let cls = lab[k] as usize;
            logits[cls * b as usize + k] = 30.0;
        }
        let plabel = Tensor::from_slice(&logits).view([n, c, b]);
        let l = ssd_loss(&gloc, &plabel, &gloc, &glabel).double_value(&[]);
        assert!(l < 1e-6, "{l}");
        // Uniform logits: positive CE ln 3 plus exactly 3 mined negatives of ln 3 each, / 1 positive.
        let flat = Tensor::zeros([n, c, b], (Kind::Float, Device::Cpu));
        let l = ssd_loss(&gloc, &flat, &gloc, &glabel).double_value(&[]);
        assert!((l - 4.0 * 3f64.ln()).abs() < 1e-5, "{l}");
        // A localisation error of 1 on one coordinate of the positive adds smooth-L1 0.5.
        let mut off = vec![0f32; (4 * b) as usize];
        off[2] = 1.0;
        let ploc = Tensor::from_slice(&off).view([n, 4, b]);
        let l2 = ssd_loss(&ploc, &flat, &gloc, &glabel).double_value(&[]);
        assert!((l2 - l - 0.5).abs() < 1e-5, "{l2} vs {l}");
    }
}
