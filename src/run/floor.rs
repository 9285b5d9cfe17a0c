//! `detect --bench-forward`: the models alone on prepared batches, in as many lanes as a run has
//! on the device. The inference lanes' share of a run, which no amount of overlap can hide.

use super::lanes::DEVICE_LANES;
use super::prepare::{prepare_chunk, Ready, Wanted};
use super::times::StageTimes;
use super::FatalError;
use crate::config::Config;
use crate::discover::{self, ImageJob};
use crate::engine::{self, infer::run_models, Settings};
use crate::sys::{self, memory, threads};
use std::time::Instant;
use tch::Device;

/// What `detect --bench-forward` measures.
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

fn run_batch(batch: &[(ImageJob, Ready)], settings: &Settings, models: &engine::Models) {
    let inputs: Vec<engine::Input> = batch.iter().map(|(_, r)| r.input()).collect();
    run_models(&inputs, settings, models);
}

/// Decodes and prepares every input (untimed), then times the models batch by batch.
pub fn forward_floor(cfg: &Config) -> Result<Floor, FatalError> {
    sys::set_up_device(cfg.device, cfg.cudnn_benchmark);
    let jobs = discover::discover(&cfg.inputs, &cfg.out, cfg.strict)?.jobs;
    memory::keep_freed_memory();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build()?;
    tch::set_num_threads(cfg.threads as i32);
    let models = super::load_models(cfg)?;
    if cfg.device != Device::Cpu {
        // As on a run's inference lanes.
        threads::torch_single_threaded();
    }
    let settings = cfg.settings();
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
            run_batch(chunk, &settings, &models);
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
            let (queue, models, settings) = (queue.clone(), &models, &settings);
            s.spawn(move || {
                threads::torch_single_threaded();
                for batch in queue {
                    run_batch(&batch, settings, models);
                }
            });
        }
        // The first lane is this thread, warmed up above.
        for batch in queue {
            run_batch(&batch, &settings, &models);
        }
    });
    let seconds = t.elapsed().as_secs_f64();
    Ok(Floor {
        images,
        batch_size: cfg.batch_size,
        threads: cfg.threads,
        lanes,
        device: sys::device_name(cfg.device),
        seconds,
        images_per_s: images as f64 / seconds.max(1e-9),
        peak_rss_mib: memory::peak_rss_mib(),
    })
}
