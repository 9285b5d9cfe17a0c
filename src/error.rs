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
    /// The data ends before the image does (`--allow-truncated` decodes what there is).
    #[error("{path}: truncated: {reason}")]
    Truncated { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Limit { path: PathBuf, reason: String },
    #[error("{path}: inference failed: {reason}")]
    Inference { path: PathBuf, reason: String },
    #[error("{path}: cannot write output: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's size or modification time changed between the walk and the end of its read
    /// (a copy still in progress): not recorded as done, so the next run takes it again.
    #[error("{path}: changed while it was read ({reason}); left for the next run")]
    ChangedDuringRead { path: PathBuf, reason: String },
}

impl ImageError {
    /// Stable machine-readable kind for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageError::Io { .. } => "io",
            ImageError::UnknownFormat { .. } => "unknown_format",
            ImageError::Decode { .. } => "decode",
            ImageError::Truncated { .. } => "truncated",
            ImageError::Limit { .. } => "limit",
            ImageError::Inference { .. } => "inference",
            ImageError::Write { .. } => "write",
            ImageError::ChangedDuringRead { .. } => "changed_during_read",
        }
    }
}

/// Whether a failed write is a fault of the machine rather than of what was written: the file
/// system is full (ENOSPC), over quota (EDQUOT), read-only (EROFS) or failing (EIO), or the
/// folder may not be written (EACCES, EPERM). Every later write would fail the same way, so a run
/// stops on it instead of failing image after image.
pub fn is_environment_fault(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    if let Some(errno) = e.raw_os_error() {
        return matches!(errno, libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EIO | libc::EACCES | libc::EPERM);
    }
    if matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
    ) {
        return true;
    }
    // An OS error wrapped on its way out (by an encoder, or with the temporary file's path).
    let mut inner: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(i) = inner {
        if let Some(io) = i.downcast_ref::<std::io::Error>() {
            return is_environment_fault(io);
        }
        inner = i.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_of_the_machine_are_told_from_those_of_an_image_also_when_wrapped() {
        let os = std::io::Error::from_raw_os_error;
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EROFS, libc::EIO, libc::EACCES] {
            assert!(is_environment_fault(&os(errno)), "errno {errno}");
            // As an encoder, or tempfile with the temporary file's path, passes it on.
            let wrapped = std::io::Error::other(os(errno));
            assert!(is_environment_fault(&wrapped), "wrapped errno {errno}");
        }
        assert!(!is_environment_fault(&os(libc::EINVAL)));
        assert!(!is_environment_fault(&std::io::Error::other("65501×1 is beyond libjpeg's 65500 px limit")));
    }
}
