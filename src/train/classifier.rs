//! `boxwalk train classifier`: fine-tunes a ResNet-18 on an ImageFolder set (`train/<class>/…`,
//! `val/<class>/…`, as the hymenoptera ants/bees tutorial). It starts from the given weights
//! (official or demo) or from scratch, replaces `fc` for the new classes, optionally freezes the
//! backbone, and prints per-epoch loss and validation accuracy.

use super::augment::colour_jitter;
use super::{Optim, TrainError, TrainLog};
use crate::decode::{decode_file, Limits};
use crate::error::{FileError, ImageError};
use crate::eval::{eval_classifier, image_folder};
use crate::models::{resnet, ClassInfo, Classifier, ModelCard, Placement};
use crate::preprocess;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct ClassifierTrainOptions {
    /// ImageFolder root with `train/` and `val/`.
    pub data: PathBuf,
    pub out: PathBuf,
    /// Weights to start from (torchvision keys; `fc` is replaced). `None`: from scratch.
    pub init: Option<PathBuf>,
    /// Width divisor when training from scratch (1 = torchvision's ResNet-18).
    pub width_divisor: i64,
    pub freeze_backbone: bool,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optim: Optim,
    pub weight_decay: f64,
    pub augment: bool,
    pub seed: u64,
    pub command: String,
}

fn batch_input(items: &[(PathBuf, usize)], augment: bool, seed: u64) -> Result<(Tensor, Tensor), TrainError> {
    let xs: Vec<Result<Tensor, ImageError>> = items
        .par_iter()
        .enumerate()
        .map(|(k, (p, _))| {
            let mut img = decode_file(p, &Limits::default())?.rgb;
            if augment {
                let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
                if rng.gen_bool(0.5) {
                    image::imageops::flip_horizontal_in_place(&mut img);
                }
                colour_jitter(&mut img, &mut rng);
            }
            Ok(preprocess::classifier_input(&preprocess::upload(&img, Device::Cpu)))
        })
        .collect();
    // Channels-first: see `detector::make_batch`.
    let x = Tensor::cat(&xs.into_iter().collect::<Result<Vec<_>, _>>()?, 0).contiguous();
    let y = Tensor::from_slice(&items.iter().map(|(_, c)| *c as i64).collect::<Vec<_>>());
    Ok((x, y))
}

/// Copies every tensor of `file` except `fc.*` into `vs` (shapes must match).
fn load_backbone(vs: &mut nn::VarStore, file: &Path) -> Result<(), TrainError> {
    let invalid = |reason: String| TrainError::Invalid { path: file.to_path_buf(), reason };
    let tensors = Tensor::read_safetensors(file).map_err(TrainError::torch(file))?;
    let vars = vs.variables();
    let _guard = tch::no_grad_guard();
    let mut copied = 0;
    for (name, t) in tensors {
        if name.starts_with("fc.") || name.ends_with("num_batches_tracked") {
            continue;
        }
        let Some(v) = vars.get(&name) else {
            return Err(invalid(format!("key `{name}` is not part of a ResNet-18")));
        };
        if v.size() != t.size() {
            return Err(invalid(format!("key `{name}` has shape {:?}, expected {:?}", t.size(), v.size())));
        }
        v.shallow_clone().copy_(&t.to_kind(Kind::Float));
        copied += 1;
    }
    let expected = vars.keys().filter(|k| !k.starts_with("fc.")).count();
    if copied != expected {
        return Err(invalid(format!("{copied} of {expected} backbone tensors found")));
    }
    Ok(())
}

/// Trains; writes `OUT/classifier.safetensors` and its model card, returns the path and the
/// final validation accuracy.
pub fn train(o: &ClassifierTrainOptions, log: &mut dyn TrainLog) -> Result<(PathBuf, f64), TrainError> {
    let train_set = image_folder(&o.data.join("train"), None)?;
    let (train_items, classes) = (train_set.items, train_set.classes);
    let val_items = image_folder(&o.data.join("val"), Some(&classes))?.items;
    let divisor = match &o.init {
        Some(f) => ModelCard::for_weights(f)?.map_or(1, |c| c.width_divisor.max(1)),
        None => o.width_divisor.max(1),
    };
    tch::manual_seed(o.seed as i64);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = resnet::resnet18(&vs.root(), classes.len() as i64, 64 / divisor);
    if let Some(init) = &o.init {
        load_backbone(&mut vs, init)?;
        log.line(&format!("starting from {}", init.display()));
    }
    std::fs::create_dir_all(&o.out).map_err(FileError::io(&o.out))?;
    if o.freeze_backbone {
        for (name, t) in vs.variables() {
            if !name.starts_with("fc.") {
                let _ = t.set_requires_grad(false);
            }
        }
    }
    let mut opt = o.optim.build(&vs, o.lr, o.weight_decay)?;
    let out = o.out.join("classifier.safetensors");
    let card_classes: Vec<ClassInfo> = classes.iter().map(|n| ClassInfo { name: n.clone(), coco_id: None }).collect();
    let mut acc = 0.0;
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    for epoch in 0..o.epochs {
        let mut order = train_items.clone();
        order.shuffle(&mut rng);
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in order.chunks(o.batch_size) {
            let (x, y) = batch_input(batch, o.augment, rng.gen())?;
            // Frozen backbone: keep its BatchNorm statistics too (eval mode), train only fc.
            let logits = net.forward_t(&x, !o.freeze_backbone);
            let loss = logits.cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            sum += loss.double_value(&[]);
            n += 1;
        }
        vs.save(&out).map_err(TrainError::torch(&out))?;
        let card = ModelCard {
            role: "classifier".into(),
            arch: "resnet18".into(),
            width_divisor: divisor,
            classes: card_classes.clone(),
            source: format!("boxwalk train classifier on {}", o.data.display()),
            source_sha256: None,
            created: crate::sys::now(),
            demo: false,
            command: Some(o.command.clone()),
            seed: Some(o.seed),
            quality: None,
        };
        card.write_for(&out).map_err(FileError::io(&out))?;
        let cls = Classifier::open(&out, Placement { device: Device::Cpu, half: false })?;
        acc = eval_classifier(&cls, &val_items, o.batch_size)?.top1;
        log.line(&format!("epoch {}/{}: loss {:.4}, val top-1 {:.3}", epoch + 1, o.epochs, sum / n.max(1) as f64, acc));
    }
    Ok((out, acc))
}
