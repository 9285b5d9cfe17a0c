//! Training (fine-tuning the classifier, and how users get models for their own classes): `boxwalk train classifier` and `boxwalk train detector`. This is the one place that
//! runs the networks in training mode.

pub mod augment;
pub mod classifier;
pub mod detector;

/// Optimiser choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optim {
    Adam,
    Sgd { momentum: f64 },
}

impl Optim {
    /// The optimiser over every trainable variable of `vs`.
    pub fn build(self, vs: &tch::nn::VarStore, lr: f64, weight_decay: f64) -> Result<tch::nn::Optimizer, String> {
        use tch::nn::OptimizerConfig;
        match self {
            Optim::Adam => tch::nn::Adam { wd: weight_decay, ..Default::default() }.build(vs, lr),
            Optim::Sgd { momentum } => tch::nn::Sgd { momentum, wd: weight_decay, ..Default::default() }.build(vs, lr),
        }
        .map_err(|e| e.to_string())
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
