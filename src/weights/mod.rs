//! Getting weights, kept apart from the networks that use them: where a role's file comes from
//! ([`resolve`]: a flag, else the model store, else the shipped demo models), the model store
//! and importing official checkpoints into it ([`store`]), and downloading them ([`fetch`]).

pub mod fetch;
pub mod store;

use std::path::{Path, PathBuf};

/// Which model a weight file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Detector,
    Classifier,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Detector => "detector",
            Role::Classifier => "classifier",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "detector" => Some(Role::Detector),
            "classifier" => Some(Role::Classifier),
            _ => None,
        }
    }

    /// The official model's file name in the store.
    pub fn store_file(self) -> &'static str {
        match self {
            Role::Detector => "ssd300_resnet50.safetensors",
            Role::Classifier => "resnet18.safetensors",
        }
    }

    /// The demo model's file name in the demo folder.
    pub fn demo_file(self) -> &'static str {
        match self {
            Role::Detector => "detector.safetensors",
            Role::Classifier => "classifier.safetensors",
        }
    }

    /// The flag that names this role's file, and the one that skips the role in `detect`.
    pub fn flags(self) -> (&'static str, &'static str) {
        match self {
            Role::Detector => ("--detector-weights", "--no-detect"),
            Role::Classifier => ("--classifier-weights", "--no-classify"),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A role's weight file, and whether it is the shipped demo model.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub file: PathBuf,
    pub demo: bool,
}

/// Which weight file `role` uses: the flag, else the official file in the store, else the demo.
/// A missing store file is still returned when no demo model stands in for it, so that the error
/// names where the official file belongs.
pub fn resolve(role: Role, flag: Option<PathBuf>) -> Resolved {
    if let Some(file) = flag {
        return Resolved { file, demo: false };
    }
    let store = model_store().join(role.store_file());
    let demo = demo_dir().join(role.demo_file());
    if !store.is_file() && demo.is_file() {
        Resolved { file: demo, demo: true }
    } else {
        Resolved { file: store, demo: false }
    }
}

/// `$BOXWALK_HOME`, else `$XDG_CACHE_HOME/boxwalk`, else `~/.cache/boxwalk`.
pub fn boxwalk_home() -> PathBuf {
    if let Some(h) = std::env::var_os("BOXWALK_HOME") {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("boxwalk")
}

/// The model store folder.
pub fn model_store() -> PathBuf {
    boxwalk_home().join("models")
}

/// The shipped demo models: `$BOXWALK_DEMO_MODELS`, else `models/demo` of the source tree the
/// binary was built from, else `models/demo` beside a `target/<profile>/boxwalk` binary.
pub fn demo_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BOXWALK_DEMO_MODELS") {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if built.is_dir() {
        return built;
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(|r| r.join("models/demo")))
        .unwrap_or(built)
}

/// Why weights could not be installed, downloaded or described.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] crate::error::FileError),
    /// The file is not what it should be (corrupt, unconvertible, of an unknown role).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Card(#[from] crate::models::card::CardError),
    #[error(transparent)]
    Weights(#[from] crate::models::WeightsError),
    /// The converter could not run.
    #[error("{0}")]
    Converter(String),
    /// A download failed; the message names the URL and what to do offline.
    #[error("{reason}")]
    Download { url: String, reason: String },
}
