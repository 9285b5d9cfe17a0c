//! `boxwalk train classifier|detector`.

use super::Error;
use crate::cli::{TrainClassifierArgs, TrainCommon, TrainDetectorArgs};
use crate::config::UsageError;
use crate::exit::Exit;
use crate::train::{self, Optim};
use crate::weights::{resolve, Role};

fn optim(c: &TrainCommon) -> Result<Optim, UsageError> {
    match c.optimizer.as_str() {
        "adam" => Ok(Optim::Adam),
        "sgd" => Ok(Optim::Sgd { momentum: c.momentum }),
        other => Err(UsageError(format!("--optimizer {other}: use adam or sgd"))),
    }
}

fn set_threads(c: &TrainCommon) {
    let n = c.threads.unwrap_or_else(crate::sys::available_threads);
    tch::set_num_threads(n.max(1) as i32);
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

pub fn classifier(a: TrainClassifierArgs) -> Result<Exit, Error> {
    let optim = optim(&a.common)?;
    set_threads(&a.common);
    // The official weights when installed, else the demo classifier, else from scratch.
    let installed = || Some(resolve(Role::Classifier, None).file).filter(|p| p.is_file());
    let init = if a.scratch { None } else { a.init.or_else(installed) };
    let o = train::classifier::ClassifierTrainOptions {
        data: a.common.data,
        out: a.common.out,
        init,
        width_divisor: a.width_divisor,
        freeze_backbone: a.freeze_backbone,
        epochs: a.common.epochs,
        batch_size: a.common.batch_size.max(1),
        lr: a.common.lr,
        optim,
        weight_decay: a.common.weight_decay,
        augment: !a.common.no_augment,
        seed: a.common.seed,
        command: command_line(),
    };
    let (path, acc) = train::classifier::train(&o, &mut train::Stdout)?;
    println!("boxwalk: wrote {} (val top-1 {acc:.3}); use it with --classifier-weights", path.display());
    Ok(Exit::Ok)
}

pub fn detector(a: TrainDetectorArgs) -> Result<Exit, Error> {
    let optim = optim(&a.common)?;
    set_threads(&a.common);
    let o = train::detector::DetectorTrainOptions {
        data: a.common.data,
        val: a.val,
        out: a.common.out,
        backbone: a.backbone,
        width_divisor: a.width_divisor,
        epochs: a.common.epochs,
        batch_size: a.common.batch_size.max(1),
        lr: a.common.lr,
        optim,
        weight_decay: a.common.weight_decay,
        warmup_steps: a.warmup,
        augment: !a.common.no_augment,
        seed: a.common.seed,
        resume: a.resume,
        max_steps: a.max_steps,
        command: command_line(),
    };
    let path = train::detector::train(&o, &mut train::Stdout)?;
    println!("boxwalk: wrote {}; use it with --detector-weights", path.display());
    Ok(Exit::Ok)
}
