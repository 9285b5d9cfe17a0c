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
    #[error(transparent)]
    Card(#[from] crate::models::card::CardError),
}

/// Why a file boxwalk reads or writes (a report, an annotations file, an export) failed.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}: {source}")]
    Parse { path: PathBuf, what: &'static str, source: serde_json::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl FileError {
    /// For `map_err`: an I/O error on `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io { path: path.to_path_buf(), source }
    }

    /// Reads and parses a JSON file; `what` says what it should have been.
    pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &'static str) -> Result<T, FileError> {
        let bytes = std::fs::read(path).map_err(FileError::io(path))?;
        serde_json::from_slice(&bytes).map_err(|source| FileError::Parse { path: path.to_path_buf(), what, source })
    }
}
