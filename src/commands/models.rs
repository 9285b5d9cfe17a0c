//! `boxwalk models import|fetch|list`.

use super::{json_pretty, Error};
use crate::config::UsageError;
use crate::exit::Exit;
use crate::weights::{fetch, model_store, store, Role};
use std::path::Path;

pub fn import(file: &Path, role: Option<&str>) -> Result<Exit, Error> {
    let role = role
        .map(|r| Role::parse(r).ok_or_else(|| UsageError(format!("--as {r}: use detector or classifier"))))
        .transpose()?;
    let (path, card) = store::import(file, role, None)?;
    println!(
        "boxwalk: installed {} as the {} ({} classes; sha256 of the original {})",
        path.display(),
        card.role,
        card.classes.len(),
        card.source_sha256.as_deref().unwrap_or("?")
    );
    Ok(Exit::Ok)
}

/// Fetches each model asked for (both by default); one failing does not stop the other.
pub fn fetch(detector: bool, classifier: bool) -> Result<Exit, Error> {
    let both = !detector && !classifier;
    let mirror = std::env::var("BOXWALK_MIRROR").ok().filter(|m| !m.is_empty());
    let mut failed = Vec::new();
    for src in fetch::SOURCES {
        let wanted = both || (detector && src.role == Role::Detector) || (classifier && src.role == Role::Classifier);
        if !wanted {
            continue;
        }
        match fetch::fetch(&src, mirror.as_deref()) {
            Ok((path, card)) => println!(
                "boxwalk: installed {} from {} (sha256 {})",
                path.display(),
                card.source,
                card.source_sha256.as_deref().unwrap_or("?")
            ),
            Err(e) => failed.push(Error::from(e)),
        }
    }
    match failed.len() {
        0 => Ok(Exit::Ok),
        1 => Err(failed.remove(0)),
        _ => Err(Error::Several(failed)),
    }
}

pub fn list(json: bool) -> Result<Exit, Error> {
    let all = store::list();
    if json {
        println!("{}", json_pretty(&all)?);
        return Ok(Exit::Ok);
    }
    println!("model store: {}", model_store().display());
    if all.is_empty() {
        println!("no models installed");
    }
    for m in &all {
        println!(
            "{} {:<10} {:>9.1} MB  sha256 {}  {}{}\n      source: {}",
            if m.in_use { "*" } else { " " },
            m.role,
            m.bytes as f64 / 1e6,
            &m.sha256[..m.sha256.len().min(16)],
            m.file,
            if m.demo { "  (demo)" } else { "" },
            m.source
        );
    }
    println!("* = used by `boxwalk detect` by default");
    Ok(Exit::Ok)
}
