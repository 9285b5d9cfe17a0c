//! `boxwalk merge`: combines the output folders of `detect --shard` runs into one folder and one
//! report, as if one run had processed every shard's images.

use crate::error::FileError;
use crate::outputs::report::{Counts, Report, Timing};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why shards could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("nothing to merge")]
    Nothing,
    #[error(
        "{dir}: ran other models or options than {first} (run keys differ); shards must be run with the same flags"
    )]
    OtherRun { dir: PathBuf, first: PathBuf },
    #[error("{dir}: {path} is also in another shard (overlapping shards)")]
    Overlap { dir: PathBuf, path: String },
}

/// Merges shard outputs into `out`: validates that they ran the same models and options (same
/// run key) and that no image appears twice, copies (hard-links where possible) the annotated
/// copies, and writes one report sorted by path.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Report, MergeError> {
    let mut reports = Vec::new();
    for dir in inputs {
        reports.push((dir, Report::read(&dir.join("report.json"))?));
    }
    let Some((first_dir, first)) = reports.first() else { return Err(MergeError::Nothing) };
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    std::fs::create_dir_all(out).map_err(FileError::io(out))?;
    for (dir, r) in &reports {
        if r.run_key != first.run_key {
            return Err(MergeError::OtherRun { dir: dir.to_path_buf(), first: first_dir.to_path_buf() });
        }
        for e in &r.images {
            if !seen.insert((e.root.clone(), e.path.clone())) {
                return Err(MergeError::Overlap { dir: dir.to_path_buf(), path: e.path.clone() });
            }
            if let Some(o) = &e.output {
                let (src, dst) = (dir.join(o), out.join(o));
                if src != dst {
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent).map_err(FileError::io(parent))?;
                    }
                    let _ = std::fs::remove_file(&dst);
                    if std::fs::hard_link(&src, &dst).is_err() {
                        std::fs::copy(&src, &dst).map_err(FileError::io(&src))?;
                    }
                }
            }
            images.push(e.clone());
        }
        skipped.extend(r.skipped.iter().cloned());
    }
    images.sort_by(|a, b| (&a.root, &a.path).cmp(&(&b.root, &b.path)));
    let seen = images.iter().filter(|e| !e.not_seen).count();
    let failed = images.iter().filter(|e| !e.not_seen && e.error.is_some()).count();
    let sum = |f: fn(&Counts) -> usize| reports.iter().map(|(_, r)| f(&r.counts)).sum::<usize>();
    let counts = Counts {
        images: seen,
        ok: seen - failed,
        failed,
        not_seen: images.len() - seen,
        skipped: skipped.len(),
        new: sum(|c| c.new),
        changed: sum(|c| c.changed),
        unchanged: sum(|c| c.unchanged),
        removed: sum(|c| c.removed),
        processed: sum(|c| c.processed),
    };
    let timing = Timing::of_shards(reports.iter().map(|(_, r)| &r.timing));
    let merged = Report {
        started: reports.iter().map(|(_, r)| r.started.clone()).min().unwrap_or_default(),
        finished: reports.iter().map(|(_, r)| r.finished.clone()).max().unwrap_or_default(),
        counts,
        timing,
        images,
        skipped,
        shard: None,
        interrupted: reports.iter().any(|(_, r)| r.interrupted),
        peak_rss_mib: reports.iter().filter_map(|(_, r)| r.peak_rss_mib).reduce(f64::max),
        ..first.clone()
    };
    merged.write(&out.join("report.json"))?;
    Ok(merged)
}
