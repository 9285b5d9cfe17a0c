//! A `detect` run, as threads joined by bounded channels:
//!
//! plan ([`plan`]) → workers: decode + prepare ([`prepare`]) → inference lanes ([`lanes`]) →
//! workers: boxes + draw + encode + write ([`write`]) → recorder: sync + journal ([`record`]) →
//! report and the files derived from it.
//!
//! Channels hold at most two batches each, so memory stays bounded however many images there
//! are. A failed image becomes an error entry and the run goes on; results are sorted by path, so
//! the report does not depend on thread timing. `detect --bench-forward` is [`floor`], and
//! `detect --dry-run` is [`dry`].

pub mod dry;
pub mod floor;
mod lanes;
mod plan;
mod prepare;
mod record;
mod times;
mod write;

use crate::config::{Config, MissingWeights};
use crate::discover;
use crate::engine::infer::BoxContext;
use crate::engine::{LoadError, Models};
use crate::error::{is_environment_fault, ImageError};
use crate::models::Placement;
use crate::models::WeightsError;
use crate::outputs::files::{self, FolderId};
use crate::outputs::journal::Journal;
use crate::outputs::lock;
use crate::outputs::report::{self, ImageEntry, Report, SkippedEntry, Timing};
use crate::outputs::{export, sheet};
use crate::sys::{self, memory, threads};
use lanes::{infer_lane, InferredBatch, LaneContext, Lanes};
use prepare::{prepare_chunk, Prepared, Wanted};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;
use times::{secs, StageTimes};

/// Why a run could not go on at all.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error("{0}")]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    MissingWeights(#[from] MissingWeights),
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error(transparent)]
    File(#[from] crate::error::FileError),
    #[error("{0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
    #[error("the recorder thread panicked")]
    Recorder,
    /// A flag that turned out wrong once the models were known (exit code 1).
    #[error(transparent)]
    Usage(#[from] crate::engine::UnknownClass),
    /// A fault of the machine, not of an image: OUT's file system is full, over quota, read-only
    /// or failing, or OUT was removed. What was journaled before it stays valid.
    #[error(
        "{out}: {cause}; the run stopped, and what it recorded before is kept: rerun to continue once this is fixed"
    )]
    Environment { out: PathBuf, cause: String },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("--prune refused: {reason}. Nothing was removed or processed")]
    PruneRefused { reason: String },
}

impl FatalError {
    /// The fault of the machine behind a failed write under `out`, if it is one: the file system's
    /// ([`is_environment_fault`]), or `out` (or a folder in it) gone.
    pub fn of_write(out: &Path, e: &ImageError) -> Option<FatalError> {
        match e {
            ImageError::Write { path, source } => FatalError::of_io(out, source, path),
            _ => None,
        }
    }

    /// [`FatalError::of_write`] for an I/O error on `path`.
    pub fn of_io(out: &Path, e: &std::io::Error, path: &Path) -> Option<FatalError> {
        if is_environment_fault(e) {
            let cause = format!("cannot write {}: {e}", path.strip_prefix(out).unwrap_or(path).display());
            Some(FatalError::Environment { out: out.to_path_buf(), cause })
        } else if e.kind() == std::io::ErrorKind::NotFound {
            // boxwalk makes every folder it writes to: one gone was removed under the run.
            Some(out_gone(out))
        } else {
            None
        }
    }
}

fn out_gone(out: &Path) -> FatalError {
    let cause = "the output folder, or its journal, was removed or replaced during the run".into();
    FatalError::Environment { out: out.to_path_buf(), cause }
}

/// Fails when `out` no longer names the folder the run began in (`id`), or its journal is no
/// longer the file at its path: once OUT is removed, the journal is an unlinked file that still
/// takes appends.
fn check_out(out: &Path, id: &FolderId, journal: Option<&Journal>) -> Result<(), FatalError> {
    if id.is_at(out) && journal.is_none_or(Journal::in_place) {
        Ok(())
    } else {
        Err(out_gone(out))
    }
}

impl From<LoadError> for FatalError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Weights(w) => FatalError::Weights(w),
            LoadError::UnknownClass(u) => FatalError::Usage(u),
        }
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Summary {
    pub report: Report,
    pub report_path: PathBuf,
}

/// What a run tells the outside world as it goes, and how it is asked to stop early.
pub trait Observer: Sync {
    /// `todo` images will go through the models; `carried` were carried over unchanged.
    fn started(&self, _todo: usize, _carried: usize) {}
    /// One image finished (with a result or an error).
    fn finished(&self, _entry: &ImageEntry) {}
    /// Polled between batches: stop feeding new images, finish what is in flight, write the report.
    fn should_stop(&self) -> bool {
        false
    }
}

/// Loads the models the config asks for.
fn load_models(cfg: &Config) -> Result<Models, FatalError> {
    cfg.check_weights()?;
    let place = Placement { device: cfg.device, half: cfg.half };
    Ok(Models::open(
        cfg.detector_weights.as_deref(),
        cfg.classifier_weights.as_deref(),
        place,
        cfg.class_names.as_deref(),
    )?)
}

/// Runs `detect` end to end, telling `observer` about progress.
pub fn run(cfg: &Config, observer: &dyn Observer) -> Result<Summary, FatalError> {
    sys::set_up_device(cfg.device, cfg.cudnn_benchmark);
    let started = sys::now();
    let t0 = Instant::now();
    let out_err = |reason: String| FatalError::Output { path: cfg.out.clone(), reason };
    std::fs::create_dir_all(&cfg.out).map_err(|e| out_err(format!("cannot create output folder: {e}")))?;
    // Before anything in OUT is touched: another run's temporary files are not stale.
    let _lock = lock::lock(&cfg.out, cfg.wait, |holder| {
        eprintln!("boxwalk: {}: waiting for the other run writing it ({holder})", cfg.out.display())
    })?;
    let out_id = FolderId::of(&cfg.out).map_err(|e| out_err(format!("cannot read output folder: {e}")))?;
    let discover::Discovered { mut jobs, skipped, empty_roots, .. } =
        discover::discover(&cfg.inputs, &cfg.out, cfg.strict)?;
    if let Some(shard) = cfg.shard {
        jobs.retain(|j| shard.owns(&j.out_rel));
    }
    files::remove_stale_temps(&cfg.out);
    let on_cpu = cfg.device == Device::Cpu;
    memory::keep_freed_memory();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .start_handler(move |_| {
            if on_cpu {
                threads::lower_priority();
            }
            threads::torch_single_threaded();
        })
        .build()?;

    let plan::Plan { models: model_info, options, run_key, carried, todo, mut counts } =
        plan::plan(cfg, jobs, plan::Unseen { empty_roots: &empty_roots, unreadable: &skipped }, &pool)?;
    if prepare::batched(cfg) && on_cpu {
        eprintln!("boxwalk: warning: test hook BOXWALK_TEST_BATCHED_PREPROCESSING: inputs prepared a batch at a time");
    }
    let times = StageTimes::default();
    let settings = cfg.settings();
    // From the options, so that the workers can start before the models are loaded.
    let wanted = Wanted { detector: cfg.detector_weights.is_some(), classifier: cfg.classifier_weights.is_some() };
    let (mut entries, journal, load_models_s, model_lanes) = std::thread::scope(|s| {
        let (prep_tx, prep_rx) = crossbeam_channel::bounded::<Prepared>(2);
        let (pool, times, todo) = (&pool, &times, &todo);
        // The workers decode and prepare the first batches while the models load (on a GPU, while
        // CUDA starts too). Should loading fail, the channel closes and this thread stops after
        // the batch in hand.
        s.spawn(move || {
            for chunk in todo.chunks(cfg.batch_size) {
                if observer.should_stop() {
                    break;
                }
                if prep_tx.send(prepare_chunk(chunk, pool, cfg, wanted, times)).is_err() {
                    break;
                }
            }
        });
        tch::set_num_threads(cfg.threads as i32);
        let t_load = Instant::now();
        let models = if todo.is_empty() { Models::none() } else { load_models(cfg)? };
        let load_models_s = t_load.elapsed().as_secs_f64();
        let mut journal = if todo.is_empty() {
            None
        } else {
            Some(Journal::open(&cfg.out, &run_key).map_err(|e| out_err(format!("cannot write the journal: {e}")))?)
        };
        observer.started(todo.len(), carried.len());
        let lanes = Lanes::for_run(cfg, t0);
        let ctx = LaneContext { cfg, settings: &settings, models: &models, times, lanes: &lanes, observer };
        let entries = infer_and_write(prep_rx, ctx, &mut journal, &out_id, observer, pool)?;
        Ok::<_, FatalError>((entries, journal, load_models_s, lanes.used()))
    })?;
    let interrupted = observer.should_stop() && entries.len() < todo.len();
    entries.extend(carried);
    entries.sort_by(|a, b| (&a.root, &a.path).cmp(&(&b.root, &b.path)));

    let seen = || entries.iter().filter(|e| !e.not_seen);
    counts.images = seen().count();
    counts.failed = seen().filter(|e| e.error.is_some()).count();
    counts.ok = counts.images - counts.failed;
    let report = Report {
        schema: report::SCHEMA.into(),
        tool: report::Tool { name: "boxwalk".into(), version: env!("CARGO_PKG_VERSION").into() },
        started,
        finished: sys::now(),
        device: sys::device_name(cfg.device),
        options,
        run_key,
        shard: cfg.shard,
        interrupted,
        peak_rss_mib: memory::peak_rss_mib(),
        models: model_info,
        counts,
        timing: Timing {
            total_s: t0.elapsed().as_secs_f64(),
            cpu_s: sys::process_cpu_s().unwrap_or_default(),
            load_models_s,
            decode_s: secs(&times.decode),
            preprocess_s: secs(&times.preprocess),
            inference_s: secs(&times.inference),
            box_decode_s: secs(&times.boxes),
            annotate_s: secs(&times.annotate),
            write_s: secs(&times.write),
            sync_s: secs(&times.sync),
            read_bytes: sys::process_read_bytes().unwrap_or_default(),
            wait_for_input_s: secs(&times.wait_for_input),
            wait_for_output_s: secs(&times.wait_for_output),
            first_batch_s: secs(&times.first_batch),
            model_lanes,
        },
        images: entries,
        skipped: skipped
            .into_iter()
            .map(|s| SkippedEntry { path: s.path.to_string_lossy().into_owned(), reason: s.reason })
            .collect(),
    };
    let report_path = cfg.out.join("report.json");
    // Not into an OUT made anew by someone else: the journal that holds this run's work is gone.
    check_out(&cfg.out, &out_id, journal.as_ref())?;
    report.write(&report_path).map_err(|e| match &e {
        crate::error::FileError::Io { source, .. } => {
            FatalError::of_io(&cfg.out, source, &report_path).unwrap_or(e.into())
        }
        _ => e.into(),
    })?;
    // The report now holds everything the journal recorded.
    if let Some(j) = journal {
        j.finish().map_err(|e| out_err(format!("cannot remove the journal: {e}")))?;
    }
    write_extras(cfg, &report, &pool)?;
    Ok(Summary { report, report_path })
}

/// The rest of a run once its models are loaded: the inference lanes take the prepared batches
/// from `prepared`, the writer draws and encodes their images, and the recorder syncs them and
/// journals each batch. Returns the written entries.
fn infer_and_write(
    prepared: crossbeam_channel::Receiver<Prepared>,
    ctx: LaneContext,
    journal: &mut Option<Journal>,
    out_id: &FolderId,
    observer: &dyn Observer,
    pool: &rayon::ThreadPool,
) -> Result<Vec<ImageEntry>, FatalError> {
    let LaneContext { cfg, settings, times, .. } = ctx;
    let box_context = BoxContext::new(ctx.models);
    let boxes = box_context.as_ref();
    std::thread::scope(|s| {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<InferredBatch>(2);
        // The writer draws and encodes a batch while the recorder waits for the previous one to
        // reach the disk: fsync latency (a network share, a VM's disk) does not hold up the
        // workers.
        // A fault of the machine in a batch ends the run there: the recorder returns, and each
        // stage before it stops as its next hand-over fails, after the batch it holds.
        let (written_tx, written_rx) = crossbeam_channel::bounded::<Result<Vec<ImageEntry>, FatalError>>(2);
        s.spawn(move || {
            for batch in done_rx {
                let written: Result<Vec<ImageEntry>, FatalError> = pool.install(|| {
                    batch.into_par_iter().map(|(j, r)| write::write_one(j, r, boxes, settings, cfg, times)).collect()
                });
                let fault = written.is_err();
                if written_tx.send(written).is_err() || fault {
                    break;
                }
            }
        });
        let recorder = s.spawn(move || -> Result<Vec<ImageEntry>, FatalError> {
            let mut entries = Vec::new();
            for written in written_rx {
                let mut written = written?;
                record::record_batch(&mut written, journal.as_mut(), cfg, out_id, observer, times)?;
                entries.extend(written);
            }
            Ok(entries)
        });
        for lane in 1..ctx.lanes.count {
            let (prepared, done_tx) = (prepared.clone(), done_tx.clone());
            s.spawn(move || infer_lane(lane, prepared, done_tx, ctx));
        }
        infer_lane(0, prepared, done_tx, ctx);
        recorder.join().map_err(|_| FatalError::Recorder)?
    })
}

/// What is derived from the report: the contact sheet, `--csv` and `--coco-json`.
fn write_extras(cfg: &Config, report: &Report, pool: &rayon::ThreadPool) -> Result<(), FatalError> {
    if cfg.html {
        let page = cfg.out.join("index.html");
        pool.install(|| sheet::write_index(&cfg.out, report))
            .map_err(|e| FatalError::Output { path: page, reason: e.to_string() })?;
    }
    if let Some(f) = &cfg.csv {
        export::write_csv(f, report).map_err(|e| FatalError::Output { path: f.clone(), reason: e.to_string() })?;
    }
    if let Some(c) = &cfg.coco {
        let warning = export::write_coco(c, report)?;
        if let Some(w) = warning {
            eprintln!("boxwalk: warning: --coco-images: {w}");
        }
    }
    Ok(())
}
