//! The model store (`$BOXWALK_HOME/models`): importing official checkpoints and listing what is
//! installed.
//!
//! `import` converts a checkpoint with the project's pinned torch (`convert_checkpoint.py`, read
//! with `weights_only=True`), checks the result strictly against the model, and installs it under
//! the official name with a model card (source, SHA-256 of the original, date, class names).

use super::{demo_dir, model_store, resolve, Error, Role};
use crate::error::FileError;
use crate::models::card::ModelCard;
use crate::models::{Classifier, Detector, Placement};
use crate::sys::{self, sha256_file};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

const CONVERTER: &str = include_str!("convert_checkpoint.py");

/// The Python that converts checkpoints: `$BOXWALK_PYTHON`, else the venv boxwalk was built with.
pub fn python() -> Option<PathBuf> {
    std::env::var_os("BOXWALK_PYTHON")
        .map(PathBuf::from)
        .or_else(|| option_env!("BOXWALK_BUILD_PYTHON").map(PathBuf::from))
}

/// torchvision names its files `<model>-<first 8 hex of sha256>.pth` and checks that prefix.
fn torchvision_hash_prefix(file: &Path) -> Option<String> {
    let stem = file.file_stem()?.to_str()?;
    let (_, h) = stem.rsplit_once('-')?;
    (h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// Imports `file` into the store (or into `dest` when given); returns the installed path.
pub fn import(file: &Path, role: Option<Role>, dest: Option<&Path>) -> Result<(PathBuf, ModelCard), Error> {
    let sha256 = sha256_file(file).map_err(FileError::io(file))?;
    if let Some(prefix) = torchvision_hash_prefix(file) {
        if !sha256.starts_with(&prefix) {
            let reason =
                format!("SHA-256 {sha256} does not start with {prefix} as its name says; the download is corrupt");
            return Err(Error::Invalid { path: file.to_path_buf(), reason });
        }
    }
    let store = dest.map(Path::to_path_buf).unwrap_or_else(model_store);
    std::fs::create_dir_all(&store).map_err(FileError::io(&store))?;
    let tmp = tempfile::Builder::new()
        .prefix(".import-")
        .suffix(".safetensors")
        .tempfile_in(&store)
        .map_err(FileError::io(&store))?;
    let guessed = convert(file, tmp.path())?;
    let role = role.or(guessed).ok_or_else(|| Error::Invalid {
        path: file.to_path_buf(),
        reason: "cannot tell whether this is a detector or a classifier; pass --as".into(),
    })?;
    let place = Placement { device: Device::Cpu, half: false };
    let classes = match role {
        Role::Detector => Detector::open(tmp.path(), place)?.classes,
        Role::Classifier => Classifier::open(tmp.path(), place)?.classes,
    };
    let card = ModelCard {
        role: role.name().into(),
        arch: match role {
            Role::Detector => "ssd300_resnet50".into(),
            Role::Classifier => "resnet18".into(),
        },
        width_divisor: 1,
        classes,
        source: file.canonicalize().unwrap_or(file.to_path_buf()).display().to_string(),
        source_sha256: Some(sha256),
        created: sys::now(),
        demo: false,
        command: None,
        seed: None,
        quality: None,
    };
    let target = store.join(role.store_file());
    card.write_for(&target).map_err(FileError::io(&target))?;
    tmp.persist(&target).map_err(|e| FileError::Io { path: target.clone(), source: e.error })?;
    Ok((target, card))
}

/// Runs the converter; returns the role it recognised.
fn convert(src: &Path, dst: &Path) -> Result<Option<Role>, Error> {
    let py = python().ok_or_else(|| {
        Error::Converter("no Python with torch known: set BOXWALK_PYTHON to the venv's python (scripts/venv.sh)".into())
    })?;
    let script = tempfile::Builder::new().suffix(".py").tempfile().map_err(|e| Error::Converter(e.to_string()))?;
    std::fs::write(script.path(), CONVERTER).map_err(FileError::io(script.path()))?;
    let out = std::process::Command::new(&py)
        .arg(script.path())
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| Error::Converter(format!("cannot run {}: {e}", py.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr.trim().lines().last().unwrap_or("conversion failed");
        return Err(Error::Invalid { path: src.to_path_buf(), reason: reason.to_string() });
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(summary["role"].as_str().and_then(Role::parse))
}

/// One installed model, for `models list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Installed {
    pub role: String,
    pub file: String,
    pub source: String,
    pub sha256: String,
    pub bytes: u64,
    pub demo: bool,
    pub in_use: bool,
}

/// Everything in the store and the demo folder, with which file `detect` would use per role.
pub fn list() -> Vec<Installed> {
    let mut out = Vec::new();
    for (dir, demo) in [(model_store(), false), (demo_dir(), true)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        for f in files {
            let card = ModelCard::for_weights(&f).ok().flatten();
            let role = card.as_ref().map(|c| c.role.clone()).unwrap_or_else(|| "unknown (no card)".into());
            out.push(Installed {
                role,
                source: card.as_ref().map(|c| c.source.clone()).unwrap_or_default(),
                sha256: sha256_file(&f).unwrap_or_default(),
                bytes: f.metadata().map(|m| m.len()).unwrap_or(0),
                demo: demo || card.as_ref().is_some_and(|c| c.demo),
                in_use: false,
                file: f.display().to_string(),
            });
        }
    }
    for role in [Role::Detector, Role::Classifier] {
        let pick = resolve(role, None).file;
        if let Some(i) = out.iter_mut().find(|i| Path::new(&i.file) == pick) {
            i.in_use = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_names_carry_a_hash_prefix() {
        assert_eq!(torchvision_hash_prefix(Path::new("/x/resnet18-f37072fd.pth")).as_deref(), Some("f37072fd"));
        assert_eq!(torchvision_hash_prefix(Path::new("nvidia_ssdpyt_amp_200703.pt")), None);
        assert_eq!(torchvision_hash_prefix(Path::new("my-model.pth")), None);
    }
}
