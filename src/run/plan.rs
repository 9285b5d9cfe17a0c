//! What a run must do: the model files and options that make its results (the run key), then,
//! against the journal and report of the last run in OUT, which images carry over unchanged and
//! which go through the models; `--prune` deletes the copies of inputs that are gone.

use super::FatalError;
use crate::config::Config;
use crate::discover::{ImageJob, Skipped};
use crate::error::FileError;
use crate::models::card::ModelCard;
use crate::outputs::report::{self, Counts, ImageEntry, ModelInfo};
use crate::outputs::sheet;
use crate::outputs::{hashes, journal};
use crate::sys::sha256_file;
use crate::weights::Role;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long before the walk a file must have last changed for its stat to be recorded
/// ([`FileStat::settled`](crate::sys::FileStat::settled)): above the coarsest timestamps in use
/// (FAT's 2 s).
const STAT_SETTLE: Duration = Duration::from_secs(3);

/// A run's plan.
pub struct Plan {
    pub models: Vec<ModelInfo>,
    pub options: report::Options,
    pub run_key: String,
    /// Entries carried over from the last run.
    pub carried: Vec<ImageEntry>,
    /// Images for the models.
    pub todo: Vec<ImageJob>,
    pub counts: Counts,
}

/// What the walk could not see: folder inputs without images, and paths that could not be read.
pub struct Unseen<'a> {
    pub empty_roots: &'a [PathBuf],
    pub unreadable: &'a [Skipped],
}

impl Unseen<'_> {
    /// Why an earlier result whose input the walk did not find may still stand for an input that
    /// is there: its folder held no images (unless `--allow-empty-input`), or could not be read.
    fn covers(&self, entry: &ImageEntry, cfg: &Config) -> bool {
        let root = Path::new(&entry.root);
        (!cfg.allow_empty_input && self.empty_roots.iter().any(|r| r == root))
            || self.unreadable.iter().any(|s| root.join(&entry.path).starts_with(&s.path))
    }
}

/// Plans a run over `jobs`, reading each input's content hash on `pool`.
pub fn plan(cfg: &Config, jobs: Vec<ImageJob>, unseen: Unseen, pool: &rayon::ThreadPool) -> Result<Plan, FatalError> {
    // What produces results: model files (by hash) and options. Checked before any work. With
    // nothing to process, missing weights are no error, but those there still make the key that
    // the results kept (of an input not seen) stand under.
    let mut models = Vec::new();
    if !jobs.is_empty() {
        cfg.check_weights()?;
    }
    for (role, file) in [(Role::Detector, &cfg.detector_weights), (Role::Classifier, &cfg.classifier_weights)] {
        if let Some(f) = file.as_ref().filter(|f| f.is_file()) {
            let sha256 = sha256_file(f).map_err(FileError::io(f))?;
            models.push(ModelInfo {
                role: role.name().into(),
                file: f.to_string_lossy().into_owned(),
                sha256,
                // A demo model given by path is still a demo model: its card says so.
                demo: cfg.demo_roles.contains(&role)
                    || ModelCard::for_weights(f).ok().flatten().is_some_and(|c| c.demo),
            });
        }
    }
    let options = report_options(cfg);
    let run_key = journal::run_key(&models, &options);

    // Incremental: carry over what is unchanged since the last run in this OUT.
    let mut previous = journal::previous(&cfg.out, &run_key);
    let key = |j: &ImageJob| (j.root.to_string_lossy().into_owned(), j.rel.clone());
    {
        let found: HashSet<_> = jobs.iter().map(key).collect();
        let gone = previous.iter().filter(|(k, p)| !found.contains(*k) && !unseen.covers(&p.entry, cfg)).count();
        if cfg.prune {
            check_prune(cfg, &unseen, gone, previous.len())?;
        }
    }
    // An input whose stat is the one recorded with its hash is not read: the recorded hash stands
    // for it. Only the others are read and hashed.
    let known = if cfg.rehash { HashMap::new() } else { hashes::read(&cfg.out) };
    let walked = SystemTime::now();
    let hashed: Vec<ImageJob> = pool.install(|| {
        jobs.into_par_iter()
            .map(|j| {
                let sha256 = match known.get(&key(&j)) {
                    Some(k) if j.stat == Some(k.stat) => Some(k.sha256.clone()),
                    _ => sha256_file(&j.source).ok(),
                };
                let stat_settled = j.stat.is_some_and(|s| s.settled(walked, STAT_SETTLE));
                ImageJob { sha256, stat_settled, ..j }
            })
            .collect()
    });
    let now_known: Vec<hashes::Known> = hashed
        .iter()
        .filter(|j| j.stat_settled)
        .filter_map(|j| {
            let (root, path) = key(j);
            Some(hashes::Known { root, path, stat: j.stat?, sha256: j.sha256.clone()? })
        })
        .collect();
    // A cache: should it not be written, the next run reads the inputs again, nothing worse.
    if !cfg.dry_run {
        let _ = hashes::write(&cfg.out, now_known.iter());
    }
    let mut counts = Counts { skipped: unseen.unreadable.len(), ..Counts::default() };
    let (mut carried, mut todo) = (Vec::new(), Vec::new());
    for job in hashed {
        let prev = previous.remove(&key(&job));
        let same_content =
            prev.as_ref().is_some_and(|p| p.entry.input_sha256.is_some() && p.entry.input_sha256 == job.sha256);
        match &prev {
            None => counts.new += 1,
            Some(_) if same_content => counts.unchanged += 1,
            Some(_) => counts.changed += 1,
        }
        match prev.filter(|p| !cfg.force && same_content && p.same_key && reusable(&p.entry, cfg)) {
            Some(p) => carried.push(ImageEntry { not_seen: false, ..p.entry }),
            None => todo.push(job),
        }
    }
    // Earlier results of inputs the walk could not see stay, marked; the others are gone.
    let (kept, gone): (Vec<_>, Vec<_>) = previous.into_values().map(|p| p.entry).partition(|e| unseen.covers(e, cfg));
    for root in unseen.empty_roots.iter().filter(|_| !cfg.allow_empty_input) {
        let n = kept.iter().filter(|e| Path::new(&e.root) == root).count();
        eprintln!(
            "boxwalk: warning: {} holds no images (an unmounted or emptied folder?); its {n} earlier results are \
             kept in the report, marked not_seen (--allow-empty-input drops them)",
            root.display()
        );
    }
    counts.not_seen = kept.len();
    carried.extend(kept.into_iter().map(|e| ImageEntry { not_seen: true, ..e }));
    counts.removed = gone.len();
    if cfg.prune && !cfg.dry_run {
        prune(cfg, gone.iter().filter_map(|e| e.output.as_deref()));
    }
    counts.processed = todo.len();
    Ok(Plan { models, options, run_key, carried, todo, counts })
}

/// Refuses `--prune` where the inputs may not be what they seem, as rsync skips deletion after an
/// I/O error: a folder input without images, or a path that could not be read; and where it would
/// remove more than `--max-prune` of the `results` in OUT (`gone` of them).
fn check_prune(cfg: &Config, unseen: &Unseen, gone: usize, results: usize) -> Result<(), FatalError> {
    let refuse = |reason: String| Err(FatalError::PruneRefused { reason });
    if let Some(root) = unseen.empty_roots.iter().find(|_| !cfg.allow_empty_input) {
        return refuse(format!(
            "input {} holds no images (an unmounted or emptied folder?); pass --allow-empty-input if it is empty on purpose",
            root.display()
        ));
    }
    if let Some(s) = unseen.unreadable.first() {
        return refuse(format!("{} could not be read: {}", s.path.display(), s.reason));
    }
    let allowed = cfg.max_prune.of(results);
    if gone > allowed {
        return refuse(format!(
            "it would remove the results of {gone} of the {results} images in {}, over --max-prune {} ({allowed}); \
             check the inputs, or raise --max-prune",
            cfg.out.display(),
            cfg.max_prune
        ));
    }
    Ok(())
}

/// Whether a journaled entry of unchanged content, under the same run key, can stand for this
/// run: a permanent error, or a result whose copy is still there (and which has every score when
/// `--coco-json` needs them).
fn reusable(entry: &ImageEntry, cfg: &Config) -> bool {
    match (&entry.error, &entry.output) {
        (Some(e), _) => journal::is_permanent(&e.kind),
        (None, Some(o)) => {
            cfg.out.join(o).is_file()
                && (!cfg.keep_all_detections || entry.detections.is_none() || entry.all_detections.is_some())
        }
        (None, None) => false,
    }
}

/// The options recorded in the report.
fn report_options(cfg: &Config) -> report::Options {
    report::Options {
        threshold: cfg.threshold,
        max_detections: cfg.decode.max_output,
        classes: cfg.class_names.clone(),
        top_k: cfg.top_k,
        classify_crops: cfg.classify_crops,
        detect: cfg.detector_weights.is_some(),
        classify: cfg.classifier_weights.is_some(),
        half: cfg.half,
        cudnn_benchmark: cfg.cudnn_benchmark,
        batch_size: cfg.batch_size,
        format: cfg.format.and_then(|f| f.extensions_str().first().map(|s| s.to_string())),
        jpeg_quality: cfg.jpeg_quality,
        allow_truncated: cfg.limits.allow_truncated,
    }
}

/// `--prune`: deletes the annotated copies of removed inputs (only plain relative paths inside OUT).
fn prune<'a>(cfg: &Config, outputs: impl Iterator<Item = &'a str>) {
    for rel in outputs {
        let p = Path::new(rel);
        if p.components().all(|c| matches!(c, Component::Normal(_))) {
            let _ = std::fs::remove_file(cfg.out.join(p));
            let _ = std::fs::remove_file(cfg.out.join(sheet::thumb_rel(rel)));
        }
    }
}
