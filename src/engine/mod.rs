//! The per-image core that every front end shares: [`infer`] runs the models on a batch of
//! prepared inputs and gives each image its results; [`draw`] turns an image and its results
//! into a drawn, encoded and written copy with its thumbnail. `detect`'s pipeline, `render` and
//! `serve` call these and nothing else to get from pixels to results and from results to files.

pub mod draw;
pub mod infer;

pub use infer::{infer, Input, PerImage, Settings};

use crate::models::WeightsError;
use crate::models::{Classifier, Detector, Placement};
use std::path::Path;

/// The loaded models of a run or a server.
pub struct Models {
    pub detector: Option<Detector>,
    pub classifier: Option<Classifier>,
    /// Detector labels kept by `--classes`; `None` keeps all.
    pub keep_labels: Option<Vec<usize>>,
}

/// Why `--classes` names a class the detector lacks.
#[derive(Debug, thiserror::Error)]
#[error("--classes: the detector has no class `{name}` (its classes: {known})")]
pub struct UnknownClass {
    pub name: String,
    pub known: String,
}

/// Why the models could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    UnknownClass(#[from] UnknownClass),
}

impl Models {
    /// No models: a run with nothing to process.
    pub fn none() -> Models {
        Models { detector: None, classifier: None, keep_labels: None }
    }

    /// Opens the models whose files are given, keeping only the detector classes `class_names`
    /// names (all when `None`).
    pub fn open(
        detector: Option<&Path>,
        classifier: Option<&Path>,
        place: Placement,
        class_names: Option<&[String]>,
    ) -> Result<Models, LoadError> {
        let detector = detector.map(|f| Detector::open(f, place)).transpose()?;
        let classifier = classifier.map(|f| Classifier::open(f, place)).transpose()?;
        let keep_labels = match (class_names, &detector) {
            (Some(names), Some(det)) => Some(names.iter().map(|n| label_of(det, n)).collect::<Result<Vec<_>, _>>()?),
            _ => None,
        };
        Ok(Models { detector, classifier, keep_labels })
    }
}

/// The detector's label (1-based) for class `name`.
fn label_of(det: &Detector, name: &str) -> Result<usize, UnknownClass> {
    det.classes.iter().position(|c| c.name == name).map(|i| i + 1).ok_or_else(|| {
        let known: Vec<&str> = det.classes.iter().take(8).map(|c| c.name.as_str()).collect();
        UnknownClass {
            name: name.into(),
            known: format!("{}{}", known.join(", "), if det.classes.len() > 8 { ", …" } else { "" }),
        }
    })
}
