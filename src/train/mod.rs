//! Training (the seed's transfer-learning exercise, and how users get models for their own
//! classes): `boxwalk train classifier` and `boxwalk train detector`. This is the one place that
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

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
