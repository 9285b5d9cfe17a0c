//! Error types at the library's boundaries. Each carries the file it is about, so a message
//! always names the image or weight file and the reason.

use std::path::PathBuf;
use thiserror::Error;

/// Why one image could not be processed. The run records it and goes on.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a recognised image format")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: cannot decode: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Limit { path: PathBuf, reason: String },
    #[error("{path}: inference failed: {reason}")]
    Inference { path: PathBuf, reason: String },
    #[error("{path}: cannot write output: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl ImageError {
    /// Stable machine-readable kind for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageError::Io { .. } => "io",
            ImageError::UnknownFormat { .. } => "unknown_format",
            ImageError::Decode { .. } => "decode",
            ImageError::Limit { .. } => "limit",
            ImageError::Inference { .. } => "inference",
            ImageError::Write { .. } => "write",
        }
    }
}

/// Why a weight file could not be loaded into a model.
#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("{file}: cannot read weights: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file}: key `{key}` is required by the {model} but missing from the file{more}")]
    Missing { file: PathBuf, key: String, model: String, more: String },
    #[error("{file}: key `{key}` is not used by the {model}{more}")]
    Unused { file: PathBuf, key: String, model: String, more: String },
    #[error("{file}: key `{key}` has shape {found:?}, the {model} needs {expected:?}")]
    Shape { file: PathBuf, key: String, model: String, found: Vec<i64>, expected: Vec<i64> },
    #[error("{file}: {reason}")]
    Other { file: PathBuf, reason: String },
}
