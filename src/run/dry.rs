//! `detect --dry-run`: what a run would do, per folder: the walk, the shard and the incremental
//! plan, with no model loaded and nothing written.

use super::{plan, FatalError};
use crate::config::Config;
use crate::discover::{self, Discovered};
use crate::outputs::report::Counts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a run would do with the images of one folder.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Folder {
    /// To go through the models.
    pub process: usize,
    /// Carried over from the last run in OUT.
    pub carry: usize,
    /// Over `--max-file-size`: would fail without being read.
    pub too_large: usize,
    /// Left out for their extension (without `--strict`).
    pub not_images: usize,
}

/// The plan of a run.
#[derive(Debug)]
pub struct DryRun {
    pub folders: BTreeMap<PathBuf, Folder>,
    pub counts: Counts,
    /// Paths that could not be walked.
    pub skipped: Vec<discover::Skipped>,
}

/// Plans a run as [`super::run`] would, without running it.
pub fn dry_run(cfg: &Config) -> Result<DryRun, FatalError> {
    let Discovered { mut jobs, skipped, empty_roots, mut not_images } =
        discover::discover(&cfg.inputs, &cfg.out, cfg.strict)?;
    if let Some(shard) = cfg.shard {
        jobs.retain(|j| shard.owns(&j.out_rel));
        // Files that are no image belong to no shard: shown with the first.
        not_images.retain(|_| shard.index == 0);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build()?;
    let unseen = plan::Unseen { empty_roots: &empty_roots, unreadable: &skipped };
    let plan = plan::plan(cfg, jobs, unseen, &pool)?;
    let mut folders: BTreeMap<PathBuf, Folder> = BTreeMap::new();
    fn at<'a>(folders: &'a mut BTreeMap<PathBuf, Folder>, file: &Path) -> &'a mut Folder {
        folders.entry(file.parent().unwrap_or(Path::new("")).to_path_buf()).or_default()
    }
    for job in &plan.todo {
        let f = at(&mut folders, &job.source);
        match job.stat {
            Some(s) if s.size > cfg.limits.max_file_size => f.too_large += 1,
            _ => f.process += 1,
        }
    }
    for e in plan.carried.iter().filter(|e| !e.not_seen) {
        at(&mut folders, &Path::new(&e.root).join(&e.path)).carry += 1;
    }
    for p in &not_images {
        at(&mut folders, p).not_images += 1;
    }
    Ok(DryRun { folders, counts: plan.counts, skipped })
}
