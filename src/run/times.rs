//! Per-stage busy time of a run, summed over threads, for the report's `timing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds per stage, summed over threads.
#[derive(Default)]
pub struct StageTimes {
    pub decode: AtomicU64,
    pub preprocess: AtomicU64,
    pub inference: AtomicU64,
    pub boxes: AtomicU64,
    pub annotate: AtomicU64,
    pub write: AtomicU64,
    pub sync: AtomicU64,
    /// The inference lanes waiting for the next prepared batch.
    pub wait_for_input: AtomicU64,
    /// The inference lanes waiting to hand their results to the writer.
    pub wait_for_output: AtomicU64,
    /// From the run's start until the models had finished the first batch.
    pub first_batch: AtomicU64,
}

/// Runs `f`, adding its wall time to `slot`.
pub fn timed<T>(slot: &AtomicU64, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    add(slot, t.elapsed());
    r
}

pub fn add(slot: &AtomicU64, d: Duration) {
    slot.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
}

pub fn secs(slot: &AtomicU64) -> f64 {
    slot.load(Ordering::Relaxed) as f64 / 1e9
}
