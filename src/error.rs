//! Error types shared across modules: why an image failed ([`ImageError`], recorded in the
//! report) and why a file boxwalk reads or writes failed ([`FileError`]). Each names its file.

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
    pub fn read_json<T: serde::de::DeserializeOwned>(
        path: &std::path::Path,
        what: &'static str,
    ) -> Result<T, FileError> {
        let bytes = std::fs::read(path).map_err(FileError::io(path))?;
        serde_json::from_slice(&bytes).map_err(|source| FileError::Parse { path: path.to_path_buf(), what, source })
    }
}
