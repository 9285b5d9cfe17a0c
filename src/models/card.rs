//! Model cards: a small JSON file beside each weight file (`X.safetensors` → `X.json`) saying
//! which architecture the weights are for, the class names, where they came from and how good
//! they are. A weight file without a card is taken to be an official model: SSD300-ResNet50 on
//! COCO, or ResNet-18 on ImageNet when it has 1000 outputs.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a model card could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: bad model card: {source}")]
    Bad { path: PathBuf, source: serde_json::Error },
}

/// One output class of a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassInfo {
    pub name: String,
    /// COCO category id, for COCO detectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coco_id: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    /// `detector` or `classifier`.
    pub role: String,
    /// `ssd300_resnet50`, `ssd300_resnet18` or `resnet18`.
    pub arch: String,
    /// Every channel width divided by this (1 = the official architecture).
    #[serde(default = "one")]
    pub width_divisor: i64,
    /// Class names: detector label L is `classes[L-1]` (0 is background); classifier output i
    /// is `classes[i]`.
    pub classes: Vec<ClassInfo>,
    /// Where the weights came from (a URL, a file, or `boxwalk train …`).
    pub source: String,
    /// SHA-256 of the original file the weights were converted from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// A demo model trained on synthetic data, not an official one.
    #[serde(default)]
    pub demo: bool,
    /// The exact command that reproduces the weights, for trained models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Measured quality, e.g. `{"map50": 0.93, "eval_set": "synth seed 999"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<serde_json::Value>,
}

fn one() -> i64 {
    1
}

/// The card path of a weight file.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

impl ModelCard {
    /// Reads the card beside `weights`; `Ok(None)` when there is none.
    pub fn for_weights(weights: &Path) -> Result<Option<ModelCard>, CardError> {
        let path = card_path(weights);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| CardError::Bad { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CardError::Io { path, source }),
        }
    }

    /// Writes the card beside `weights`, atomically.
    pub fn write_for(&self, weights: &Path) -> std::io::Result<()> {
        crate::outputs::files::write_atomic(&card_path(weights), |w| {
            serde_json::to_writer_pretty(&mut *w, self).map_err(std::io::Error::other)
        })
    }

    /// The 80 COCO classes with their category ids.
    pub fn coco_classes() -> Vec<ClassInfo> {
        crate::models::labels::coco()
            .iter()
            .map(|c| ClassInfo { name: c.name.to_string(), coco_id: Some(c.coco_id) })
            .collect()
    }

    /// The 1000 ImageNet classes.
    pub fn imagenet_classes() -> Vec<ClassInfo> {
        crate::models::labels::imagenet().iter().map(|n| ClassInfo { name: n.to_string(), coco_id: None }).collect()
    }
}
