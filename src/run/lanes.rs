//! The inference stage: lanes, each a thread that takes prepared batches, runs the models on them
//! through the engine and hands the results on. On a CPU run the lanes share `--threads` with
//! the models' thread count ([`IntraOpThreads`]); on a GPU two lanes keep the device fed.

use super::prepare::{Prepared, Ready};
use super::times::{add, timed, StageTimes};
use crate::config::Config;
use crate::discover::ImageJob;
use crate::engine::{self, Models, PerImage, Settings};
use crate::error::ImageError;
use crate::sys::memory::Trim;
use crate::sys::threads::{self, IntraOpThreads};
use crate::sys::{hooks, process_cpu_s};
use image::{ImageFormat, RgbImage};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tch::Device;

/// An image after inference, ready to draw and write.
pub struct Inferred {
    pub rgb: RgbImage,
    pub format: ImageFormat,
    pub warning: Option<String>,
    pub results: PerImage,
}

/// A batch as the lanes hand it to the writer.
pub type InferredBatch = Vec<(ImageJob, Result<Inferred, ImageError>)>;

/// At most this many inference lanes on a CPU run. Each holds a batch in flight (its inputs and
/// activations), so memory grows with them; the workers, not the lanes, bound a run long before.
const MAX_LANES: usize = 4;

/// Inference lanes on an accelerator. A lane's thread waits for each batch's outputs to reach the
/// CPU, then copies them out and launches the next forward pass; with a second lane, the other
/// batch's kernels are already queued behind, so the device does not sit idle meanwhile. Both
/// lanes queue into the same stream, so a batch's outputs do not depend on which lane ran it.
pub const DEVICE_LANES: usize = 2;

/// What a run's inference lanes share.
pub struct Lanes {
    /// On a CPU run, the models' thread count per lane and the counts found to give `--threads`'
    /// outputs ([`IntraOpThreads`]); `None` elsewhere.
    threads: Option<Mutex<IntraOpThreads>>,
    /// How many lanes there are; lane `i` runs batches while `i + 1` lanes of the current count
    /// fit in `--threads`.
    pub count: usize,
    /// Lanes that ran at least one batch (a bit each).
    used: AtomicU64,
    /// Set when the first lane has finished its first batch.
    first_done: AtomicBool,
    /// Set when lane 0 has returned: the run is over or the writing side stopped.
    finished: AtomicBool,
    /// When the run started (for `first_batch_s`).
    started: Instant,
}

impl Lanes {
    /// Lanes for a run: on a CPU one per `--threads` (up to [`MAX_LANES`]), each at the
    /// count [`IntraOpThreads`] sets; on an accelerator [`DEVICE_LANES`].
    pub fn for_run(cfg: &Config, started: Instant) -> Lanes {
        let cpu = cfg.device == Device::Cpu;
        // Crop classification runs the classifier on batches of every size: left at --threads,
        // in one lane (several would each take --threads).
        let threads = (cpu && !cfg.classify_crops)
            .then(|| IntraOpThreads::starting_at(cfg.threads, hooks::model_threads().unwrap_or(cfg.threads)));
        let count = hooks::lanes().unwrap_or(match (&threads, cpu) {
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
            threads: threads.map(Mutex::new),
            used: AtomicU64::new(0),
            first_done: Default::default(),
            finished: Default::default(),
            started,
        }
    }

    fn threads(&self) -> Option<MutexGuard<'_, IntraOpThreads>> {
        self.threads.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether lane `lane` may take a batch now: lane 0 always; another if there is no thread
    /// count to share out, or while the lanes up to it, at the current count, fit in `--threads`.
    fn open(&self, lane: usize) -> bool {
        lane == 0 || (lane < self.count && self.threads().is_none_or(|t| t.now() * (lane + 1) <= t.max()))
    }

    /// How many lanes ran a batch.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed).count_ones() as usize
    }
}

/// The engine on a prepared batch: images that failed earlier pass through as they are, and a
/// libtorch failure fails the batch's images, not the run.
fn infer_batch(
    batch: Prepared,
    times: &StageTimes,
    run: impl FnOnce(&[engine::Input]) -> Vec<Result<PerImage, String>>,
) -> InferredBatch {
    let mut out = Vec::with_capacity(batch.len());
    let mut ready: Vec<(ImageJob, Ready)> = Vec::with_capacity(batch.len());
    for (job, r) in batch {
        match r {
            Ok(r) => ready.push((job, r)),
            Err(e) => out.push((job, Err(e))),
        }
    }
    if ready.is_empty() {
        return out;
    }
    let inputs: Vec<engine::Input> = ready.iter().map(|(_, r)| r.input()).collect();
    let results = timed(&times.inference, || run(&inputs));
    drop(inputs);
    for ((job, r), result) in ready.into_iter().zip(results) {
        match result {
            Ok(results) => out.push((job, Ok(Inferred { rgb: r.rgb, format: r.format, warning: r.warning, results }))),
            Err(reason) => {
                let path = job.source.clone();
                out.push((job, Err(ImageError::Inference { path, reason })));
            }
        }
    }
    out
}

/// Runs the models on a batch at the lanes' current thread count. A count below `--threads` is
/// first checked on a batch of the same size: run at both counts, and kept only if the outputs
/// are the same ([`IntraOpThreads::needs_check`]); the outputs used are always those of a checked
/// count, so they do not depend on which lane ran the batch, or when.
fn run_at_lane_count(
    inputs: &[engine::Input],
    settings: &Settings,
    models: &Models,
    lanes: &Lanes,
) -> Vec<Result<PerImage, String>> {
    let Some((now, max, check)) = lanes.threads().map(|t| (t.now(), t.max(), t.needs_check(inputs.len()))) else {
        return engine::infer(inputs, settings, models);
    };
    // Per thread: OpenMP's and MKL's counts are the calling thread's own.
    tch::set_num_threads(now as i32);
    if !check {
        return engine::infer(inputs, settings, models);
    }
    let at_now = engine::infer(inputs, settings, models);
    tch::set_num_threads(max as i32);
    let at_max = engine::infer(inputs, settings, models);
    if let Some(mut t) = lanes.threads() {
        t.checked(now, inputs.len(), at_now == at_max);
    }
    at_max
}

/// What every lane reads.
#[derive(Clone, Copy)]
pub struct LaneContext<'a> {
    pub cfg: &'a Config,
    pub settings: &'a Settings,
    pub models: &'a Models,
    pub times: &'a StageTimes,
    pub lanes: &'a Lanes,
    /// Asked before each batch whether the run is stopping: batches queued behind the one in
    /// flight are then dropped, left for the next run, so that a stop takes a batch, not a queue.
    pub observer: &'a dyn super::Observer,
}

/// One inference lane: runs the models on each prepared batch it takes and hands the results
/// on, until the preparing side is done or the writing side has stopped (the channels close when
/// every lane has returned). Lane 0 also tunes the models' thread count as it goes
/// ([`IntraOpThreads`]): fewer threads per lane while it waits for the workers, which opens more
/// lanes (a forward pass on fewer threads costs less CPU), more when the models hold up a run
/// that leaves cores idle.
pub fn infer_lane(
    lane: usize,
    prepared: crossbeam_channel::Receiver<Prepared>,
    done: crossbeam_channel::Sender<InferredBatch>,
    ctx: LaneContext,
) {
    let LaneContext { cfg, settings, models, times, lanes, observer } = ctx;
    let mut trim = Trim::default();
    // Lane 0 tunes the thread count; only it reads the CPU time (a system call per batch).
    let tunes = lane == 0 && lanes.threads.is_some();
    if cfg.device != Device::Cpu {
        // The models run on the device; this thread's CPU ops (copying the outputs back) are too
        // small to share, and OpenMP teams opened for them would keep other cores busy.
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
        if observer.should_stop() {
            continue;
        }
        let mut waited = t_wait.elapsed();
        add(&times.wait_for_input, waited);
        lanes.used.fetch_or(1 << lane, Ordering::Relaxed);
        let t_models = Instant::now();
        let inferred = infer_batch(batch, times, |inputs| run_at_lane_count(inputs, settings, models, lanes));
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
