//! What a run must do: the model files and options that make its results (the run key), then,
//! against the journal and report of the last run in OUT, which images carry over unchanged and
//! which go through the models; `--prune` deletes the copies of inputs that are gone.

use super::FatalError;
use crate::config::Config;
use crate::discover::ImageJob;
use crate::error::FileError;
use crate::models::card::ModelCard;
use crate::outputs::journal;
use crate::outputs::report::{self, Counts, ImageEntry, ModelInfo};
use crate::outputs::sheet;
use crate::sys::sha256_file;
use crate::weights::Role;
use rayon::prelude::*;
use std::path::{Component, Path};

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

/// Plans a run over `jobs`, reading each input's content hash on `pool`.
pub fn plan(cfg: &Config, jobs: Vec<ImageJob>, skipped: usize, pool: &rayon::ThreadPool) -> Result<Plan, FatalError> {
    // What produces results: model files (by hash) and options. Checked before any work.
    let mut models = Vec::new();
    if !jobs.is_empty() {
        cfg.check_weights()?;
        for (role, file) in [(Role::Detector, &cfg.detector_weights), (Role::Classifier, &cfg.classifier_weights)] {
            if let Some(f) = file {
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
    }
    let options = report_options(cfg);
    let run_key = journal::run_key(&models, &options);

    // Incremental: carry over what is unchanged since the last run in this OUT.
    let hashed: Vec<ImageJob> =
        pool.install(|| jobs.into_par_iter().map(|j| ImageJob { sha256: sha256_file(&j.source).ok(), ..j }).collect());
    let mut previous = journal::previous(&cfg.out, &run_key);
    let mut counts = Counts { skipped, ..Counts::default() };
    let (mut carried, mut todo) = (Vec::new(), Vec::new());
    for job in hashed {
        let prev = previous.remove(&(job.root.to_string_lossy().into_owned(), job.rel.clone()));
        let same_content =
            prev.as_ref().is_some_and(|p| p.entry.input_sha256.is_some() && p.entry.input_sha256 == job.sha256);
        match &prev {
            None => counts.new += 1,
            Some(_) if same_content => counts.unchanged += 1,
            Some(_) => counts.changed += 1,
        }
        match prev.filter(|p| !cfg.force && same_content && p.same_key && reusable(&p.entry, cfg)) {
            Some(p) => carried.push(p.entry),
            None => todo.push(job),
        }
    }
    counts.removed = previous.len();
    if cfg.prune {
        prune(cfg, previous.values().filter_map(|p| p.entry.output.as_deref()));
    }
    counts.processed = todo.len();
    Ok(Plan { models, options, run_key, carried, todo, counts })
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
