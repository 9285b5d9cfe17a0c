//! Wires the stages of a `detect` run:
//!
//! discover → (rayon) decode + preprocess → [bounded channel] → inference thread (owns the models
//! and the device; on a CPU, up to 4 lanes side by side) → [bounded channel] → (rayon) annotate +
//! encode + atomic write → [bounded channel] → recorder (fsync, journal, progress) → report.
//!
//! Channels hold at most two batches each, so memory stays bounded however many images there
//! are. A failed image becomes an error entry and the run goes on; results are sorted by path, so
//! the report does not depend on thread timing.

use crate::annotate::{self, BoxLabel};
use crate::boxes::RawDetection;
use crate::config::Config;
use crate::cuda_wait;
use crate::decode;
use crate::discover::{self, ImageJob};
use crate::error::{ImageError, WeightsError};
use crate::export;
use crate::journal::{self, Journal};
use crate::models::{BoxDecoder, ClassInfo, ClassProb, Classifier, Detector, DetectorOutput, ModelCard, Placement};
use crate::output;
use crate::preprocess;
use crate::report::{self, Class, Counts, Detection, ErrorEntry, ImageEntry, ModelInfo, Report, SkippedEntry, Timing};
use crate::sheet;
use crate::threads::{self, IntraOpThreads};
use image::{ImageFormat, RgbImage};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// Why a run could not go on at all.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error("{0}")]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Discover(#[from] discover::DiscoverError),
    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
    #[error("{0}")]
    Setup(String),
    /// A flag that turned out wrong once the models were known (exit code 1).
    #[error("{0}")]
    Usage(String),
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Summary {
    pub report: Report,
    pub report_path: PathBuf,
}

/// The loaded models of a run.
pub struct Models {
    pub detector: Option<Detector>,
    pub classifier: Option<Classifier>,
    /// Detector labels kept by `--classes`; `None` keeps all.
    pub keep_labels: Option<Vec<usize>>,
}

/// Per-stage busy time in nanoseconds, summed over threads.
#[derive(Default)]
struct StageTimes {
    decode: AtomicU64,
    preprocess: AtomicU64,
    inference: AtomicU64,
    boxes: AtomicU64,
    annotate: AtomicU64,
    write: AtomicU64,
    sync: AtomicU64,
    /// The inference thread waiting for the next prepared batch.
    wait_for_input: AtomicU64,
    /// The inference thread waiting to hand its results to the writer.
    wait_for_output: AtomicU64,
    /// From the run's start until the models had finished the first batch.
    first_batch: AtomicU64,
}

fn timed<T>(slot: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    add(slot, t.elapsed());
    r
}

fn add(slot: &AtomicU64, d: Duration) {
    slot.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

fn secs(slot: &AtomicU64) -> f64 {
    slot.load(Ordering::Relaxed) as f64 / 1e9
}

/// A decoded image with its network inputs.
struct Ready {
    rgb: RgbImage,
    format: ImageFormat,
    det_input: Option<Tensor>,
    cls_input: Option<Tensor>,
    /// Where the inputs are prepared a batch at a time ([`batched_preprocessing`]): the staged
    /// pixels, until [`prepare_batch`] has made the inputs from them.
    staged: Option<Tensor>,
}

/// An image after inference, ready to draw and write.
struct Inferred {
    rgb: RgbImage,
    format: ImageFormat,
    results: PerImage,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Loads the models the config asks for.
pub fn load_models(cfg: &Config) -> Result<Models, FatalError> {
    cfg.check_weights().map_err(FatalError::Setup)?;
    let place = Placement { device: cfg.device, half: cfg.half };
    let detector = cfg.detector_weights.as_deref().map(|f| Detector::open(f, place)).transpose()?;
    let classifier = cfg.classifier_weights.as_deref().map(|f| Classifier::open(f, place)).transpose()?;
    let keep_labels = match (&cfg.class_names, &detector) {
        (Some(names), Some(det)) => Some(
            names
                .iter()
                .map(|n| {
                    det.classes.iter().position(|c| &c.name == n).map(|i| i + 1).ok_or_else(|| {
                        let known: Vec<&str> = det.classes.iter().take(8).map(|c| c.name.as_str()).collect();
                        FatalError::Usage(format!(
                            "--classes: the detector has no class `{n}` (its classes: {}{})",
                            known.join(", "),
                            if det.classes.len() > 8 { ", …" } else { "" }
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => None,
    };
    Ok(Models { detector, classifier, keep_labels })
}

/// A classifier's top-k as report classes (names from the model card or ImageNet).
pub fn to_classes(c: &Classifier, probs: Vec<ClassProb>) -> Vec<Class> {
    probs
        .into_iter()
        .map(|p| Class {
            label: c.classes.get(p.index).map_or_else(|| format!("class {}", p.index), |k| k.name.clone()),
            index: p.index,
            prob: p.prob,
        })
        .collect()
}

/// Maps decoder output (normalised to the 300×300 input) to report detections in original pixels,
/// keeping scores above the threshold and the selected classes.
pub fn to_detections(
    classes: &[ClassInfo],
    raw: &[RawDetection],
    w: u32,
    h: u32,
    threshold: f32,
    keep_labels: Option<&[usize]>,
) -> Vec<Detection> {
    let (wf, hf) = (w as f32, h as f32);
    raw.iter()
        .filter(|d| d.score > threshold && keep_labels.is_none_or(|c| c.contains(&d.label)))
        .filter_map(|d| {
            // Label L (1-based; 0 is background) is classes[L - 1].
            let class = d.label.checked_sub(1).and_then(|i| classes.get(i))?;
            Some(Detection {
                label: class.name.clone(),
                class_index: d.label,
                coco_id: class.coco_id,
                score: d.score,
                bbox: [d.bbox[0] * wf, d.bbox[1] * hf, d.bbox[2] * wf, d.bbox[3] * hf],
                classification: None,
            })
        })
        .collect()
}

/// Which network inputs to prepare (the models themselves stay on the inference thread).
#[derive(Clone, Copy)]
struct Wanted {
    detector: bool,
    classifier: bool,
}

/// A worker's part: decodes the image, then prepares its network inputs, or only stages its
/// pixels where [`prepare_batch`] prepares the batch's inputs together.
fn prepare(job: &ImageJob, cfg: &Config, wanted: Wanted, times: &StageTimes) -> Result<Ready, ImageError> {
    let decoded = timed(&times.decode, || decode::decode_file(&job.source, &cfg.limits))?;
    timed(&times.preprocess, || {
        let (rgb, format) = (decoded.rgb, decoded.format);
        if batched_preprocessing(cfg) {
            let staged = Some(preprocess::stage(&rgb, cfg.device));
            return Ok(Ready { rgb, format, det_input: None, cls_input: None, staged });
        }
        let (det_input, cls_input) = preprocess::image_inputs(&rgb, cfg.device, wanted.detector, wanted.classifier);
        Ok(Ready { rgb, format, det_input, cls_input, staged: None })
    })
}

/// Decodes and prepares a batch's images on the workers, then, where that is done a batch at a
/// time, their network inputs.
fn prepare_chunk(
    chunk: &[ImageJob],
    pool: &rayon::ThreadPool,
    cfg: &Config,
    wanted: Wanted,
    times: &StageTimes,
) -> Prepared {
    let mut batch: Prepared =
        pool.install(|| chunk.par_iter().map(|j| (j.clone(), prepare(j, cfg, wanted, times))).collect());
    if batched_preprocessing(cfg) {
        prepare_batch(&mut batch, cfg, wanted, times);
    }
    batch
}

/// Whether a batch's network inputs are prepared together ([`prepare_batch`]) rather than by each
/// worker: on an accelerator, where each worker's resize of its image was a few dozen kernel
/// launches and uploads, from every worker into the stream the models run in (on the H200 at
/// batch 64, 10–20 ms of the workers' time per image, more than decoding). On the CPU each
/// worker prepares its image, in parallel.
fn batched_preprocessing(cfg: &Config) -> bool {
    cfg.device != Device::Cpu || injected_batched_preprocessing()
}

/// Test hook: `BOXWALK_TEST_BATCHED_PREPROCESSING=1` prepares a CPU run's inputs a batch at a
/// time, as on an accelerator, so that the tests run that path without one.
fn injected_batched_preprocessing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("BOXWALK_TEST_BATCHED_PREPROCESSING").is_ok_and(|v| v == "1"))
}

/// Makes the network inputs of the staged images in `batch` together
/// ([`preprocess::batch_inputs`]). If libtorch fails on the batch (out of device memory, say),
/// each image is prepared alone, and an image that still fails is recorded as failed.
fn prepare_batch(
    batch: &mut [(ImageJob, Result<Ready, ImageError>)],
    cfg: &Config,
    wanted: Wanted,
    times: &StageTimes,
) {
    timed(&times.preprocess, || {
        let (at, staged): (Vec<usize>, Vec<Tensor>) = batch
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (_, r))| r.as_mut().ok().and_then(|r| r.staged.take()).map(|s| (i, s)))
            .unzip();
        let inputs = |staged: &[Tensor]| {
            catch_libtorch(|| {
                injected_oom(staged.len());
                preprocess::batch_inputs(staged, cfg.device, wanted.detector, wanted.classifier)
            })
        };
        if let Ok((det, cls)) = inputs(&staged) {
            for (k, &i) in at.iter().enumerate() {
                if let (_, Ok(r)) = &mut batch[i] {
                    r.det_input = det.as_ref().map(|t| t.narrow(0, k as i64, 1));
                    r.cls_input = cls.as_ref().map(|t| t.narrow(0, k as i64, 1));
                }
            }
            return;
        }
        for (i, s) in at.into_iter().zip(&staged) {
            let (job, r) = &mut batch[i];
            match inputs(std::slice::from_ref(s)) {
                Ok((det, cls)) => {
                    if let Ok(r) = r {
                        (r.det_input, r.cls_input) = (det, cls);
                    }
                }
                Err(reason) => {
                    let path = job.source.clone();
                    *r = Err(ImageError::Inference { path, reason: format!("preparing the network inputs: {reason}") });
                }
            }
        }
    })
}

/// Runs `f`, turning a libtorch error (which tch raises as a panic) into its message.
fn catch_libtorch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "libtorch error".into())
    })
}

/// Runs the models on one batch with `run` (normally [`run_models_adaptive`]). A libtorch
/// failure (e.g. out of memory) fails the batch's images, not the run.
fn infer_batch(
    batch: Prepared,
    times: &StageTimes,
    run: impl FnOnce(&[(ImageJob, Ready)]) -> Vec<Result<PerImage, String>>,
) -> InferredBatch {
    let mut out = Vec::with_capacity(batch.len());
    let mut ready = Vec::with_capacity(batch.len());
    for (job, r) in batch {
        match r {
            Ok(r) => ready.push((job, r)),
            Err(e) => out.push((job, Err(e))),
        }
    }
    if ready.is_empty() {
        return out;
    }
    let results = timed(&times.inference, || run(&ready));
    for ((job, r), result) in ready.into_iter().zip(results) {
        match result {
            Ok(results) => out.push((job, Ok(Inferred { rgb: r.rgb, format: r.format, results }))),
            Err(reason) => {
                let path = job.source.clone();
                out.push((job, Err(ImageError::Inference { path, reason })));
            }
        }
    }
    out
}

type Prepared = Vec<(ImageJob, Result<Ready, ImageError>)>;
type InferredBatch = Vec<(ImageJob, Result<Inferred, ImageError>)>;

/// At most this many inference lanes on a CPU run. Each holds a batch in flight (its inputs and
/// activations), so memory grows with them; the workers, not the lanes, bound a run long before.
const MAX_LANES: usize = 4;

/// Inference lanes on an accelerator. A lane's thread waits for each batch's outputs to reach the
/// CPU, then copies them out and launches the next forward pass; with a second lane, the other
/// batch's kernels are already queued behind, so the device does not sit idle meanwhile. Both
/// lanes queue into the same stream, so a batch's outputs do not depend on which lane ran it.
const DEVICE_LANES: usize = 2;

/// What a run's inference lanes share.
struct Lanes {
    /// On a CPU run, the models' thread count per lane and the counts found to give `--threads`'
    /// outputs ([`IntraOpThreads`]); `None` elsewhere.
    threads: Option<std::sync::Mutex<IntraOpThreads>>,
    /// How many lanes there are; lane `i` runs batches while `i + 1` lanes of the current count
    /// fit in `--threads`.
    count: usize,
    /// Lanes that ran at least one batch (a bit each).
    used: AtomicU64,
    /// Set when the first lane has finished its first batch.
    first_done: std::sync::atomic::AtomicBool,
    /// Set when lane 0 has returned: the run is over or the writing side stopped.
    finished: std::sync::atomic::AtomicBool,
    /// When the run started (for `first_batch_s`).
    started: Instant,
}

impl Lanes {
    /// Lanes for a run: on a CPU one per `--threads` (up to [`MAX_LANES`]), each at the
    /// count [`IntraOpThreads`] sets; on an accelerator [`DEVICE_LANES`].
    fn for_run(cfg: &Config, started: Instant) -> Lanes {
        let cpu = cfg.device == Device::Cpu;
        // Crop classification runs the classifier on batches of every size: left at --threads,
        // in one lane (several would each take --threads).
        let threads = (cpu && !cfg.classify_crops)
            .then(|| IntraOpThreads::starting_at(cfg.threads, injected_model_threads().unwrap_or(cfg.threads)));
        let count = injected_lanes().unwrap_or(match (&threads, cpu) {
            (Some(_), _) => cfg.threads,
            (None, true) => 1,
            (None, false) => DEVICE_LANES,
        });
        Lanes::new(threads, count, started)
    }

    /// `count` lanes (at most [`MAX_LANES`]).
    fn new(threads: Option<IntraOpThreads>, count: usize, started: Instant) -> Lanes {
        Lanes {
            count: count.clamp(1, MAX_LANES),
            threads: threads.map(std::sync::Mutex::new),
            used: AtomicU64::new(0),
            first_done: Default::default(),
            finished: Default::default(),
            started,
        }
    }

    fn threads(&self) -> Option<std::sync::MutexGuard<'_, IntraOpThreads>> {
        self.threads.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether lane `lane` may take a batch now: lane 0 always; another if there is no thread
    /// count to share out, or while the lanes up to it, at the current count, fit in `--threads`.
    fn open(&self, lane: usize) -> bool {
        lane == 0 || (lane < self.count && self.threads().is_none_or(|t| t.now() * (lane + 1) <= t.max()))
    }

    /// How many lanes ran a batch.
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed).count_ones() as usize
    }
}

/// Test hook: `BOXWALK_TEST_LANES=N` gives a run N inference lanes instead of one per `--threads`
/// (CPU) or [`DEVICE_LANES`], so that a test can compare a run with one lane against one with
/// several.
fn injected_lanes() -> Option<usize> {
    std::env::var("BOXWALK_TEST_LANES").ok().and_then(|v| v.parse().ok())
}

/// Runs the models on a batch at the lanes' current thread count. A count below `--threads` is
/// first checked on a batch of the same size: run at both counts, and kept only if the outputs
/// are the same ([`IntraOpThreads::needs_check`]); the outputs used are always those of a checked
/// count, so they do not depend on which lane ran the batch, or when.
fn run_at_lane_count(
    ready: &[(ImageJob, Ready)],
    cfg: &Config,
    models: &Models,
    lanes: &Lanes,
) -> Vec<Result<PerImage, String>> {
    let Some((now, max, check)) = lanes.threads().map(|t| (t.now(), t.max(), t.needs_check(ready.len()))) else {
        return run_models_adaptive(ready, cfg, models);
    };
    // Per thread: OpenMP's and MKL's counts are the calling thread's own.
    tch::set_num_threads(now as i32);
    if !check {
        return run_models_adaptive(ready, cfg, models);
    }
    let at_now = run_models_adaptive(ready, cfg, models);
    tch::set_num_threads(max as i32);
    let at_max = run_models_adaptive(ready, cfg, models);
    if let Some(mut t) = lanes.threads() {
        t.checked(now, ready.len(), at_now == at_max);
    }
    at_max
}

/// One inference lane: runs the models on each prepared batch it takes and hands the results
/// on, until the preparing side is done or the writing side has stopped (the channels close when
/// every lane has returned). Lane 0 also tunes the models' thread count as it goes
/// ([`IntraOpThreads`]): fewer threads per lane while it waits for the workers, which opens more
/// lanes (one batch's forward pass on one thread costs less CPU than on several: 14 against 23 ms
/// per image for the demo models on 2 cores), more when the models hold up a run that leaves
/// cores idle.
fn infer_lane(
    lane: usize,
    prepared: crossbeam_channel::Receiver<Prepared>,
    done: crossbeam_channel::Sender<InferredBatch>,
    cfg: &Config,
    models: &Models,
    times: &StageTimes,
    lanes: &Lanes,
) {
    let mut trim = Trim::default();
    // Lane 0 tunes the thread count; only it reads the CPU time (a system call per batch).
    let tunes = lane == 0 && lanes.threads.is_some();
    if cfg.device != Device::Cpu {
        // The models run on the device; this thread's CPU ops (copying the outputs back) are too
        // small to share, and on a 16-core GPU machine the OpenMP teams they opened kept about 10
        // cores busy at any batch size (batch 1: 167 ms of CPU per image; 40 ms without).
        threads::torch_single_threaded();
    }
    loop {
        if !lanes.open(lane) {
            if lanes.finished.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let (t_wait, cpu_before) = (Instant::now(), tunes.then(process_cpu_s).flatten());
        let batch = if lane == 0 {
            prepared.recv().ok()
        } else {
            // Back to the gate now and then: the count may have closed this lane meanwhile.
            match prepared.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => Some(b),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    add(&times.wait_for_input, t_wait.elapsed());
                    continue;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
            }
        };
        let Some(batch) = batch else { break };
        let mut waited = t_wait.elapsed();
        add(&times.wait_for_input, waited);
        lanes.used.fetch_or(1 << lane, Ordering::Relaxed);
        let t_models = Instant::now();
        let inferred = infer_batch(batch, times, |ready| run_at_lane_count(ready, cfg, models, lanes));
        let models_s = t_models.elapsed();
        if !lanes.first_done.swap(true, Ordering::Relaxed) {
            add(&times.first_batch, lanes.started.elapsed());
        }
        let t_send = Instant::now();
        if done.send(inferred).is_err() {
            break;
        }
        let handing_on = t_send.elapsed();
        add(&times.wait_for_output, handing_on);
        waited += handing_on;
        if tunes {
            let core_s = t_wait.elapsed().as_secs_f64() * cfg.threads as f64;
            let cpu_share = match (cpu_before, process_cpu_s()) {
                (Some(a), Some(b)) if core_s > 0.0 => (b - a) / core_s,
                _ => 1.0,
            };
            if let Some(mut t) = lanes.threads() {
                t.after_batch(waited, models_s, cpu_share);
            }
        }
        if lane == 0 {
            trim.after_batch();
        }
    }
    if lane == 0 {
        lanes.finished.store(true, Ordering::Relaxed);
    }
}

/// Test hook: `BOXWALK_TEST_MODEL_THREADS=N` starts a CPU run's models at N threads instead of
/// `--threads`, so that the check of lower counts can be tested without waiting for a run to
/// need one.
fn injected_model_threads() -> Option<usize> {
    std::env::var("BOXWALK_TEST_MODEL_THREADS").ok().and_then(|v| v.parse().ok())
}

/// Runs the models on `ready`; when libtorch runs out of memory, retries the two halves
/// separately (down to single images) instead of failing the batch.
fn run_models_adaptive(ready: &[(ImageJob, Ready)], cfg: &Config, models: &Models) -> Vec<Result<PerImage, String>> {
    match catch_libtorch(|| run_models(ready, cfg, models)) {
        Ok(per_image) => per_image.into_iter().map(Ok).collect(),
        Err(reason) => {
            if reason.contains("out of memory") && ready.len() > 1 {
                let (a, b) = ready.split_at(ready.len() / 2);
                let mut r = run_models_adaptive(a, cfg, models);
                r.extend(run_models_adaptive(b, cfg, models));
                r
            } else {
                vec![Err(reason); ready.len()]
            }
        }
    }
}

/// Test hook: `BOXWALK_FAULT_OOM_ABOVE=N` makes every batch of more than N `images` fail (panic,
/// as tch does on a libtorch error) as if the device ran out of memory, in the models and in
/// preparing a batch's inputs, so that the retry paths can be tested without a GPU.
fn injected_oom(images: usize) {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = *LIMIT.get_or_init(|| std::env::var("BOXWALK_FAULT_OOM_ABOVE").ok().and_then(|v| v.parse().ok()));
    if limit.is_some_and(|limit| images > limit) {
        panic!("CUDA out of memory (injected by BOXWALK_FAULT_OOM_ABOVE)");
    }
}

/// The models' results for one image.
#[derive(Clone, Default, PartialEq)]
struct PerImage {
    /// Above `--threshold`.
    detections: Option<Vec<Detection>>,
    /// Everything the decoder kept, when `--coco-json` wants it.
    all_detections: Option<Vec<Detection>>,
    classification: Option<Vec<Class>>,
    /// The detector's outputs, until the write stage decodes them into `detections`.
    pending: Option<PendingBoxes>,
}

/// One image's share of a batch's detector outputs.
#[derive(Clone, PartialEq)]
struct PendingBoxes {
    output: Arc<DetectorOutput>,
    index: usize,
}

/// What decoding detections needs, shared by the workers: box decoding (NMS over up to 80
/// classes) runs on them, not on the inference thread, which goes on to the next batch.
struct BoxContext {
    decoder: BoxDecoder,
    classes: Vec<ClassInfo>,
    keep_labels: Option<Vec<usize>>,
}

impl BoxContext {
    fn new(models: &Models) -> Option<BoxContext> {
        models.detector.as_ref().map(|d| BoxContext {
            decoder: d.decoder(),
            classes: d.classes.clone(),
            keep_labels: models.keep_labels.clone(),
        })
    }

    /// Decodes `per`'s pending outputs for an image of `w`×`h` pixels.
    fn finish(&self, per: &mut PerImage, w: u32, h: u32, cfg: &Config) {
        let Some(p) = per.pending.take() else { return };
        let raw = self.decoder.decode(&p.output, p.index, &cfg.decode);
        let keep = self.keep_labels.as_deref();
        per.detections = Some(to_detections(&self.classes, &raw, w, h, cfg.threshold, keep));
        if cfg.keep_all_detections {
            per.all_detections = Some(to_detections(&self.classes, &raw, w, h, f32::NEG_INFINITY, keep));
        }
    }
}

fn stack(inputs: impl Iterator<Item = Option<Tensor>>) -> Option<Tensor> {
    let v: Option<Vec<Tensor>> = inputs.collect();
    v.map(|v| Tensor::cat(&v, 0))
}

fn run_models(ready: &[(ImageJob, Ready)], cfg: &Config, models: &Models) -> Vec<PerImage> {
    injected_oom(ready.len());
    let mut per: Vec<PerImage> = vec![PerImage::default(); ready.len()];
    if let Some(det) = &models.detector {
        if let Some(x) = stack(ready.iter().map(|(_, r)| r.det_input.as_ref().map(Tensor::shallow_clone))) {
            let output = Arc::new(det.outputs(&x, &cfg.decode));
            for (index, p) in per.iter_mut().enumerate() {
                p.pending = Some(PendingBoxes { output: output.clone(), index });
            }
        }
    }
    if let Some(cls) = &models.classifier {
        if let Some(x) = stack(ready.iter().map(|(_, r)| r.cls_input.as_ref().map(Tensor::shallow_clone))) {
            for (i, top) in cls.top_k(&x, cfg.top_k).into_iter().enumerate() {
                per[i].classification = Some(to_classes(cls, top));
            }
        }
        if let (true, Some(ctx)) = (cfg.classify_crops, BoxContext::new(models)) {
            for (i, (_, r)) in ready.iter().enumerate() {
                // The crops need the boxes now.
                let (w, h) = r.rgb.dimensions();
                ctx.finish(&mut per[i], w, h, cfg);
                if let Some(dets) = per[i].detections.as_mut() {
                    classify_crops(cls, &r.rgb, dets, cfg);
                }
            }
        }
    }
    per
}

/// Classifies each detection's crop (clamped to the image) with the whole-image preset.
fn classify_crops(cls: &Classifier, rgb: &RgbImage, dets: &mut [Detection], cfg: &Config) {
    let (w, h) = rgb.dimensions();
    let crops: Vec<(usize, Tensor)> = dets
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let r = annotate::clamp_box(d.bbox, w, h)?;
            let crop =
                image::imageops::crop_imm(rgb, r.left() as u32, r.top() as u32, r.width(), r.height()).to_image();
            Some((i, preprocess::classifier_input(&preprocess::upload(&crop, cfg.device))))
        })
        .collect();
    for chunk in crops.chunks(cfg.batch_size) {
        let x = Tensor::cat(&chunk.iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>(), 0);
        for ((i, _), top) in chunk.iter().zip(cls.top_k(&x, cfg.top_k)) {
            dets[*i].classification = Some(to_classes(cls, top));
        }
    }
}

/// Output path of a job under OUT (extension changed when `--format` is given) and its format.
fn output_target(job: &ImageJob, cfg: &Config, decoded_format: ImageFormat) -> (String, ImageFormat) {
    match cfg.format {
        Some(f) => {
            let ext = f.extensions_str().first().copied().unwrap_or("img");
            let rel = Path::new(&job.out_rel).with_extension(ext);
            (rel.to_string_lossy().replace('\\', "/"), f)
        }
        None => {
            let f = ImageFormat::from_path(&job.out_rel).ok().filter(|f| f.writing_enabled()).unwrap_or(decoded_format);
            (job.out_rel.clone(), f)
        }
    }
}

fn banner(classification: &Option<Vec<Class>>) -> Option<String> {
    classification.as_ref().and_then(|c| c.first()).map(|c| format!("{} {:.2}", c.label, c.prob))
}

fn write_one(
    job: ImageJob,
    result: Result<Inferred, ImageError>,
    boxes: Option<&BoxContext>,
    cfg: &Config,
    times: &StageTimes,
) -> ImageEntry {
    let mut entry = ImageEntry {
        path: job.rel.clone(),
        root: job.root.to_string_lossy().into_owned(),
        input_sha256: job.sha256.clone(),
        width: None,
        height: None,
        detections: None,
        all_detections: None,
        classification: None,
        output: None,
        error: None,
    };
    let inferred = match result {
        Ok(i) => i,
        Err(e) => {
            entry.error = Some(ErrorEntry { kind: e.kind().into(), message: e.to_string() });
            return entry;
        }
    };
    let Inferred { mut rgb, format, mut results } = inferred;
    if let Some(ctx) = boxes {
        timed(&times.boxes, || ctx.finish(&mut results, rgb.width(), rgb.height(), cfg));
    }
    let PerImage { detections, all_detections, classification, pending: _ } = results;
    entry.width = Some(rgb.width());
    entry.height = Some(rgb.height());
    timed(&times.annotate, || {
        let boxes: Vec<BoxLabel> = detections
            .iter()
            .flatten()
            .map(|d| BoxLabel { class_index: d.class_index, text: format!("{} {:.2}", d.label, d.score), bbox: d.bbox })
            .collect();
        annotate::annotate(&mut rgb, &boxes, banner(&classification).as_deref());
    });
    entry.detections = detections;
    entry.all_detections = all_detections;
    entry.classification = classification;
    let (rel, fmt) = output_target(&job, cfg, format);
    let written = timed(&times.write, || {
        // Synced by the writer thread, per batch, before the journal records it.
        output::write_image_as(&cfg.out.join(&rel), &rgb, fmt, cfg.jpeg_quality, output::Durability::Deferred)?;
        if cfg.html {
            // Only the page needs it, and the page recreates a missing one: not an image error.
            let _ = sheet::write_thumbnail(&cfg.out, &rel, &rgb);
        }
        Ok(())
    });
    match written {
        Ok(()) => entry.output = Some(rel),
        Err(reason) => {
            let e = ImageError::Write { path: cfg.out.join(&rel), reason };
            entry.error = Some(ErrorEntry { kind: e.kind().into(), message: e.to_string() });
        }
    }
    entry
}

/// Syncs a batch's outputs. fsync mostly waits on the disk, so a few short-lived threads overlap
/// the waits (at GPU rates, thousands of serial fsyncs a second would stall the writer) without
/// taking CPU from the workers.
fn sync_outputs(entries: &mut [ImageEntry], cfg: &Config) {
    const SYNC_THREADS: usize = 8;
    let per_thread = entries.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|s| {
        for chunk in entries.chunks_mut(per_thread) {
            s.spawn(move || chunk.iter_mut().for_each(|e| sync_output(e, cfg)));
        }
    });
}

/// Syncs an entry's written output; a failure turns the entry into a write error.
fn sync_output(entry: &mut ImageEntry, cfg: &Config) {
    let Some(rel) = entry.output.as_deref() else { return };
    let path = cfg.out.join(rel);
    if let Err(e) = output::sync_file(&path) {
        let e = ImageError::Write { path, reason: e.to_string() };
        entry.error = Some(ErrorEntry { kind: e.kind().into(), message: e.to_string() });
        entry.output = None;
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
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

/// An observer that only reports failed images to `f`.
pub struct OnError<F: Fn(&ImageEntry) + Sync>(pub F);

impl<F: Fn(&ImageEntry) + Sync> Observer for OnError<F> {
    fn finished(&self, entry: &ImageEntry) {
        if entry.error.is_some() {
            (self.0)(entry);
        }
    }
}

/// What `detect --bench-forward` measures: the models alone on prepared batches.
#[derive(Debug, serde::Serialize)]
pub struct Floor {
    pub images: usize,
    pub batch_size: usize,
    pub threads: usize,
    /// Threads running batches side by side, as a run's inference lanes do on the device.
    pub lanes: usize,
    pub device: String,
    /// Wall time in the models (forward passes, softmax, copy to the CPU, top-k).
    pub seconds: f64,
    pub images_per_s: f64,
    pub peak_rss_mib: Option<f64>,
}

/// Process-wide settings of the run's device, before any work on it: a run's workers stage
/// images in page-locked memory from the start, which creates the CUDA context.
fn set_up_device(cfg: &Config) {
    if let Device::Cuda(index) = cfg.device {
        if let Err(e) = cuda_wait::sleep_while_waiting(index) {
            eprintln!("boxwalk: warning: threads that wait for the GPU will spin on their cores ({e})");
        }
        // Read by every later convolution on the device.
        tch::Cuda::cudnn_set_benchmark(cfg.cudnn_benchmark);
    }
}

/// Decodes and prepares every input (untimed), then times [`run_models`] batch by batch: the
/// inference lanes' share of a run, which no amount of overlap can hide.
pub fn forward_floor(cfg: &Config) -> Result<Floor, FatalError> {
    set_up_device(cfg);
    let jobs = discover::discover(&cfg.inputs, &cfg.out, cfg.strict)?.jobs;
    keep_freed_memory();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| FatalError::Setup(e.to_string()))?;
    tch::set_num_threads(cfg.threads as i32);
    let models = load_models(cfg)?;
    if cfg.device != Device::Cpu {
        // As on a run's inference thread (`infer_lane`).
        threads::torch_single_threaded();
    }
    let wanted = Wanted { detector: models.detector.is_some(), classifier: models.classifier.is_some() };
    let times = StageTimes::default();
    // Batch by batch, as a run prepares them (page-locked staging memory is then reused).
    let ready: Vec<(ImageJob, Ready)> = jobs
        .chunks(cfg.batch_size)
        .flat_map(|chunk| prepare_chunk(chunk, &pool, cfg, wanted, &times))
        .filter_map(|(j, r)| r.ok().map(|r| (j, r)))
        .collect();
    // One warm-up batch of each size (the full one and a shorter last one), as a long run
    // amortises libtorch's first-call costs per input shape (with `--cudnn-benchmark`, cuDNN's
    // timing of its algorithms too).
    let mut warmed = std::collections::HashSet::new();
    for chunk in ready.chunks(cfg.batch_size) {
        if warmed.insert(chunk.len()) {
            run_models(chunk, cfg, &models);
        }
    }
    // In as many lanes as a run has on an accelerator, where the second lane hides the other's
    // copying back (one lane would not bound a run); on the CPU in one, at --threads.
    let lanes = if cfg.device == Device::Cpu { 1 } else { DEVICE_LANES };
    let images = ready.len();
    let (batches, queue) = crossbeam_channel::unbounded::<Vec<(ImageJob, Ready)>>();
    let mut ready = ready.into_iter().peekable();
    while ready.peek().is_some() {
        let _ = batches.send(ready.by_ref().take(cfg.batch_size).collect());
    }
    drop(batches);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 1..lanes {
            let (queue, models) = (queue.clone(), &models);
            s.spawn(move || {
                threads::torch_single_threaded();
                for batch in queue {
                    run_models(&batch, cfg, models);
                }
            });
        }
        // The first lane is this thread, warmed up above.
        for batch in queue {
            run_models(&batch, cfg, &models);
        }
    });
    let seconds = t.elapsed().as_secs_f64();
    Ok(Floor {
        images,
        batch_size: cfg.batch_size,
        threads: cfg.threads,
        lanes,
        device: device_name(cfg.device),
        seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        peak_rss_mib: peak_rss_mib(),
    })
}

/// Runs `detect` end to end, telling `observer` about progress.
pub fn run(cfg: &Config, observer: &dyn Observer) -> Result<Summary, FatalError> {
    set_up_device(cfg);
    let started = now_rfc3339();
    let t0 = Instant::now();
    let out_err = |reason: String| FatalError::Output { path: cfg.out.clone(), reason };
    std::fs::create_dir_all(&cfg.out).map_err(|e| out_err(format!("cannot create output folder: {e}")))?;
    let discover::Discovered { mut jobs, skipped } = discover::discover(&cfg.inputs, &cfg.out, cfg.strict)?;
    if let Some(shard) = cfg.shard {
        jobs.retain(|j| shard.owns(&j.out_rel));
    }
    output::remove_stale_temps(&cfg.out);
    let on_cpu = cfg.device == Device::Cpu;
    keep_freed_memory();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .start_handler(move |_| {
            if on_cpu {
                lower_worker_priority();
            }
            threads::torch_single_threaded();
        })
        .build()
        .map_err(|e| FatalError::Setup(e.to_string()))?;

    // What produces results: model files (by hash) and options. Checked before any work.
    if !jobs.is_empty() {
        cfg.check_weights().map_err(FatalError::Setup)?;
    }
    let mut model_info = Vec::new();
    for (role, file) in [("detector", &cfg.detector_weights), ("classifier", &cfg.classifier_weights)] {
        if let Some(f) = file.as_ref().filter(|_| !jobs.is_empty()) {
            let sha256 = sha256_file(f).map_err(|e| FatalError::Setup(format!("{}: {e}", f.display())))?;
            model_info.push(ModelInfo {
                role: role.into(),
                file: f.to_string_lossy().into_owned(),
                sha256,
                // A demo model given by path is still a demo model: its card says so.
                demo: cfg.demo_roles.contains(&role)
                    || ModelCard::for_weights(f).ok().flatten().is_some_and(|c| c.demo),
            });
        }
    }
    let options = report_options(cfg);
    let run_key = journal::run_key(&model_info, &options);

    // Incremental: carry over what is unchanged since the last run in this OUT.
    let hashed: Vec<ImageJob> =
        pool.install(|| jobs.into_par_iter().map(|j| ImageJob { sha256: sha256_file(&j.source).ok(), ..j }).collect());
    let mut previous = journal::previous(&cfg.out, &run_key);
    let mut counts = Counts { skipped: skipped.len(), ..Counts::default() };
    let mut carried = Vec::new();
    let mut todo = Vec::new();
    for job in hashed {
        let prev = previous.remove(&(job.root.to_string_lossy().into_owned(), job.rel.clone()));
        let same_content =
            prev.as_ref().is_some_and(|p| p.entry.input_sha256.is_some() && p.entry.input_sha256 == job.sha256);
        match &prev {
            None => counts.new += 1,
            Some(_) if same_content => counts.unchanged += 1,
            Some(_) => counts.changed += 1,
        }
        let reusable = prev.filter(|p| {
            !cfg.force
                && same_content
                && p.same_key
                && match (&p.entry.error, &p.entry.output) {
                    (Some(e), _) => journal::is_permanent(&e.kind),
                    (None, Some(o)) => {
                        cfg.out.join(o).is_file()
                            && (!cfg.keep_all_detections
                                || p.entry.detections.is_none()
                                || p.entry.all_detections.is_some())
                    }
                    (None, None) => false,
                }
        });
        match reusable {
            Some(p) => carried.push(p.entry),
            None => todo.push(job),
        }
    }
    counts.removed = previous.len();
    if cfg.prune {
        prune(cfg, previous.values().filter_map(|p| p.entry.output.as_deref()));
    }
    counts.processed = todo.len();

    let times = StageTimes::default();
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
        let models = if todo.is_empty() {
            Models { detector: None, classifier: None, keep_labels: None }
        } else {
            load_models(cfg)?
        };
        let load_models_s = t_load.elapsed().as_secs_f64();
        let mut journal = if todo.is_empty() {
            None
        } else {
            Some(Journal::open(&cfg.out, &run_key).map_err(|e| out_err(format!("cannot write the journal: {e}")))?)
        };
        observer.started(todo.len(), carried.len());
        let lanes = Lanes::for_run(cfg, t0);
        let shared = Shared { cfg, observer, times, pool };
        let entries = infer_and_write(prep_rx, &models, &lanes, &mut journal, shared)?;
        Ok::<_, FatalError>((entries, journal, load_models_s, lanes.used()))
    })?;
    let interrupted = observer.should_stop() && entries.len() < todo.len();
    entries.extend(carried);
    entries.sort_by(|a, b| (&a.root, &a.path).cmp(&(&b.root, &b.path)));

    counts.images = entries.len();
    counts.failed = entries.iter().filter(|e| e.error.is_some()).count();
    counts.ok = counts.images - counts.failed;
    let report = Report {
        schema: report::SCHEMA.into(),
        tool: report::Tool { name: "boxwalk".into(), version: env!("CARGO_PKG_VERSION").into() },
        started,
        finished: now_rfc3339(),
        device: device_name(cfg.device),
        options,
        run_key,
        shard: cfg.shard,
        interrupted,
        peak_rss_mib: peak_rss_mib(),
        models: model_info,
        counts,
        timing: Timing {
            total_s: t0.elapsed().as_secs_f64(),
            cpu_s: process_cpu_s().unwrap_or_default(),
            load_models_s,
            decode_s: secs(&times.decode),
            preprocess_s: secs(&times.preprocess),
            inference_s: secs(&times.inference),
            box_decode_s: secs(&times.boxes),
            annotate_s: secs(&times.annotate),
            write_s: secs(&times.write),
            sync_s: secs(&times.sync),
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
    output::write_atomic(&report_path, |w| {
        serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other)
    })
    .map_err(|e| FatalError::Output { path: report_path.clone(), reason: e.to_string() })?;
    // The report now holds everything the journal recorded.
    if let Some(j) = journal {
        j.finish().map_err(|e| out_err(format!("cannot remove the journal: {e}")))?;
    }
    write_extras(cfg, &report, &pool)?;
    Ok(Summary { report, report_path })
}

/// What every thread of a run reads.
#[derive(Clone, Copy)]
struct Shared<'a> {
    cfg: &'a Config,
    observer: &'a dyn Observer,
    times: &'a StageTimes,
    pool: &'a rayon::ThreadPool,
}

/// The rest of a run once its models are loaded: the inference lanes take the prepared batches
/// from `prepared`, the writer draws and encodes their images, and the recorder syncs them and
/// journals each batch. Returns the written entries.
fn infer_and_write(
    prepared: crossbeam_channel::Receiver<Prepared>,
    models: &Models,
    lanes: &Lanes,
    journal: &mut Option<Journal>,
    run: Shared,
) -> Result<Vec<ImageEntry>, FatalError> {
    let Shared { cfg, observer, times, pool } = run;
    let box_context = BoxContext::new(models);
    let boxes = box_context.as_ref();
    std::thread::scope(|s| {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<InferredBatch>(2);
        // The writer draws and encodes a batch while the recorder waits for the previous one to
        // reach the disk: fsync latency (a network share, a VM's disk) does not hold up the
        // workers.
        let (written_tx, written_rx) = crossbeam_channel::bounded::<Vec<ImageEntry>>(2);
        s.spawn(move || {
            for batch in done_rx {
                let written: Vec<ImageEntry> =
                    pool.install(|| batch.into_par_iter().map(|(j, r)| write_one(j, r, boxes, cfg, times)).collect());
                if written_tx.send(written).is_err() {
                    break;
                }
            }
        });
        let recorder = s.spawn(move || -> Result<Vec<ImageEntry>, FatalError> {
            let mut entries = Vec::new();
            for mut written in written_rx {
                // The journal line is the record that an output is done: its data first.
                timed(&times.sync, || sync_outputs(&mut written, cfg));
                for e in &written {
                    observer.finished(e);
                }
                if let Some(j) = journal.as_mut() {
                    timed(&times.sync, || j.append(&written)).map_err(|e| FatalError::Output {
                        path: cfg.out.join(journal::JOURNAL),
                        reason: e.to_string(),
                    })?;
                }
                entries.extend(written);
            }
            Ok(entries)
        });
        for lane in 1..lanes.count {
            let (prepared, done_tx) = (prepared.clone(), done_tx.clone());
            s.spawn(move || infer_lane(lane, prepared, done_tx, cfg, models, times, lanes));
        }
        infer_lane(0, prepared, done_tx, cfg, models, times, lanes);
        recorder.join().map_err(|_| FatalError::Setup("the recorder thread panicked".into()))?
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
        let warning =
            export::write_coco(c, report).map_err(|reason| FatalError::Output { path: c.results.clone(), reason })?;
        if let Some(w) = warning {
            eprintln!("boxwalk: warning: --coco-images: {w}");
        }
    }
    Ok(())
}

/// On a CPU run the models' threads and the workers share the cores. libtorch's parallel
/// regions wait for their slowest thread, so a worker that preempts one stalls the whole forward
/// pass (measured with SSD300-R50 on 2 cores: inference up to 16% slower than alone). Workers
/// therefore run at nice +10: they fill the gaps the models leave (waits, batch edges) and take
/// the cores whenever the models wait for input. Not SCHED_IDLE: on a machine
/// busy with other work that would all but stop them, and the run with them.
fn lower_worker_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with who = 0 changes the calling thread's nice value only (Linux);
    // failure only leaves the default priority.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Hands freed heap pages back to the OS when the resident size creeps up. Long runs interleave
/// large transient buffers (images, activations) with small long-lived ones (report entries);
/// without trimming, glibc's heap fragments and the resident size grows with the number of
/// images (measured, 80×60 demo run: 624, 678, 725 MiB peak at 400, 2000, 6000 images). Trimming
/// after every batch kept it flat but cost 10–25% of a CPU run, because the next forward pass
/// page-faults its activations back in. So the resident size after a batch (activations
/// included) is the baseline, and a trim happens only when a later batch ends more than 2% +
/// 8 MiB above it; the batch after a trim sets the new baseline.
#[derive(Default)]
struct Trim {
    baseline: Option<f64>,
}

impl Trim {
    fn after_batch(&mut self) {
        let Some(now) = current_rss_mib() else { return };
        match self.baseline {
            None => self.baseline = Some(now),
            Some(base) if now > base * 1.02 + 8.0 => {
                release_free_memory();
                self.baseline = None;
            }
            Some(_) => {}
        }
    }
}

/// Keeps freed blocks in the heap instead of handing them straight back to the kernel. glibc
/// unmaps every block above its mmap threshold when it is freed (the threshold adapts, but only
/// up to 32 MiB: a 12 MP image is 36 MiB) and shrinks the heap whenever its free top exceeds the
/// trim threshold, so each batch page-faulted its activations and image buffers in again: 8% of a
/// demo run's CPU time in the kernel's fault handler (perf), 362k minor faults for 200 images.
/// With both thresholds raised, 154k (the working set, faulted in once) and the run ~10% faster;
/// memory still goes back through [`Trim`], which watches the resident size after every batch.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters; a rejected value changes nothing.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 0 {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that the allocator holds as free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size now (`/proc/self/statm`), in MiB; `None` off Linux.
fn current_rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as f64 / (1024.0 * 1024.0))
}

/// User + system CPU seconds of this process so far (all threads).
pub fn process_cpu_s() -> Option<f64> {
    // SAFETY: getrusage fills the struct we pass and touches nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0).then_some(u)?
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Peak resident set size of this process so far (`VmHWM`), in MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
        if p.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            let _ = std::fs::remove_file(cfg.out.join(p));
            let _ = std::fs::remove_file(cfg.out.join(sheet::thumb_rel(rel)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_open_while_they_fit_in_the_threads_at_the_current_count() {
        let lanes = Lanes::new(Some(IntraOpThreads::starting_at(4, 2)), 8, Instant::now());
        assert_eq!(lanes.count, MAX_LANES, "at most MAX_LANES");
        let open = |l: &Lanes| (0..l.count).map(|i| l.open(i)).collect::<Vec<_>>();
        assert_eq!(open(&lanes), [true, true, false, false], "2 lanes of 2 threads fill 4");
        lanes.threads().expect("threads").checked(2, 8, false);
        assert_eq!(open(&lanes), [true, false, false, false], "3 threads: one lane");
        let lanes = Lanes::new(Some(IntraOpThreads::starting_at(3, 1)), 3, Instant::now());
        assert_eq!(open(&lanes), [true, true, true]);
        let device = Lanes::new(None, DEVICE_LANES, Instant::now());
        assert_eq!(open(&device), [true, true], "without a thread count to share out, every lane is open");
        assert!(!device.open(DEVICE_LANES), "and no other");
    }
}
