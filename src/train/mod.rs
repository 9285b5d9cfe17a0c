//! Training (fine-tuning the classifier, and how users get models for their own classes):
//! `boxwalk train classifier` and `boxwalk train detector`. This is the one place that runs the
//! networks in training mode.

pub mod augment;
pub mod classifier;
pub mod detector;

use crate::error::{FileError, ImageError};
use crate::models::card::CardError;
use crate::models::WeightsError;
use std::path::{Path, PathBuf};

/// Why training could not go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Card(#[from] CardError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// Reading or writing a weight file.
    #[error("{path}: {source}")]
    Torch { path: PathBuf, source: tch::TchError },
    /// A data set, checkpoint or initial weight file that does not fit.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// An option value that this training cannot use.
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Optimizer(tch::TchError),
    #[error("loss became {loss} at step {step}; lower --lr")]
    Diverged { loss: f64, step: usize },
}

impl TrainError {
    fn torch(path: &Path) -> impl FnOnce(tch::TchError) -> TrainError + '_ {
        move |source| TrainError::Torch { path: path.to_path_buf(), source }
    }
}

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optim {
    Adam,
    Sgd { momentum: f64 },
}

impl Optim {
    /// The optimiser over every trainable variable of `vs`.
    pub fn build(self, vs: &tch::nn::VarStore, lr: f64, weight_decay: f64) -> Result<tch::nn::Optimizer, TrainError> {
        use tch::nn::OptimizerConfig;
        match self {
            Optim::Adam => tch::nn::Adam { wd: weight_decay, ..Default::default() }.build(vs, lr),
            Optim::Sgd { momentum } => tch::nn::Sgd { momentum, wd: weight_decay, ..Default::default() }.build(vs, lr),
        }
        .map_err(TrainError::Optimizer)
    }
}

/// Where training progress goes (stdout in the CLI, a Vec in tests).
pub trait TrainLog {
    fn line(&mut self, s: &str);
}

impl TrainLog for Vec<String> {
    fn line(&mut self, s: &str) {
        self.push(s.to_string());
    }
}

/// Prints each line to stdout.
pub struct Stdout;

impl TrainLog for Stdout {
    fn line(&mut self, s: &str) {
        println!("{s}");
    }
}
