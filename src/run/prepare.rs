//! The workers' stage: decode each image of a batch, then prepare its network inputs; on a GPU
//! only stage its pixels, and prepare the batch's inputs together on the device.

use super::times::{timed, StageTimes};
use crate::config::Config;
use crate::decode;
use crate::discover::ImageJob;
use crate::engine::infer::catch_libtorch;
use crate::error::ImageError;
use crate::preprocess;
use crate::sys::{hooks, FileStat};
use image::{ImageFormat, RgbImage};
use rayon::prelude::*;
use tch::{Device, Tensor};

/// A decoded image with its network inputs.
pub struct Ready {
    pub rgb: RgbImage,
    pub format: ImageFormat,
    /// Why the pixels are not all the file's (`--allow-truncated`).
    pub warning: Option<String>,
    pub det_input: Option<Tensor>,
    pub cls_input: Option<Tensor>,
    /// Where the inputs are prepared a batch at a time ([`batched`]): the staged pixels, until
    /// [`prepare_batch`] has made the inputs from them.
    staged: Option<Tensor>,
}

/// A batch as the workers hand it to the inference lanes.
pub type Prepared = Vec<(ImageJob, Result<Ready, ImageError>)>;

/// Which network inputs to prepare (the models themselves stay with the inference lanes).
#[derive(Clone, Copy)]
pub struct Wanted {
    pub detector: bool,
    pub classifier: bool,
}

/// A worker's part: decodes the image, then prepares its network inputs, or only stages its
/// pixels where [`prepare_batch`] prepares the batch's inputs together.
fn prepare(job: &ImageJob, cfg: &Config, wanted: Wanted, times: &StageTimes) -> Result<Ready, ImageError> {
    let decoded = timed(&times.decode, || {
        read_unchanged(job, cfg).and_then(|b| decode::decode_bytes(&b, &job.source, &cfg.limits))
    })?;
    timed(&times.preprocess, || {
        let (rgb, format, warning) = (decoded.rgb, decoded.format, decoded.warning);
        if batched(cfg) {
            let staged = Some(preprocess::stage(&rgb, cfg.device));
            return Ok(Ready { rgb, format, warning, det_input: None, cls_input: None, staged });
        }
        let (det_input, cls_input) = preprocess::image_inputs(&rgb, cfg.device, wanted.detector, wanted.classifier);
        Ok(Ready { rgb, format, warning, det_input, cls_input, staged: None })
    })
}

/// Reads a job's file, failing it when its size or modification time changed since the walk (a
/// copy still in progress): it is left for the next run rather than recorded as done.
fn read_unchanged(job: &ImageJob, cfg: &Config) -> Result<Vec<u8>, ImageError> {
    let (bytes, after) = decode::read_file(&job.source, &cfg.limits)?;
    match job.stat.and_then(|seen| seen.change_to(&FileStat::of(&after))) {
        Some(reason) => Err(ImageError::ChangedDuringRead { path: job.source.clone(), reason }),
        None => Ok(bytes),
    }
}

/// Decodes and prepares a batch's images on the workers, then, where that is done a batch at a
/// time, their network inputs.
pub fn prepare_chunk(
    chunk: &[ImageJob],
    pool: &rayon::ThreadPool,
    cfg: &Config,
    wanted: Wanted,
    times: &StageTimes,
) -> Prepared {
    let mut batch: Prepared =
        pool.install(|| chunk.par_iter().map(|j| (j.clone(), prepare(j, cfg, wanted, times))).collect());
    if batched(cfg) {
        prepare_batch(&mut batch, cfg, wanted, times);
    }
    batch
}

/// Whether a batch's network inputs are prepared together ([`prepare_batch`]) rather than by each
/// worker: on an accelerator, where each worker's resize of its image would be a few dozen kernel
/// launches and uploads from every worker into the stream the models run in. On the CPU each
/// worker prepares its image, in parallel.
pub fn batched(cfg: &Config) -> bool {
    cfg.device != Device::Cpu || hooks::batched_preprocessing()
}

/// Makes the network inputs of the staged images in `batch` together
/// ([`preprocess::batch_inputs`]). If libtorch fails on the batch (out of device memory, say),
/// each image is prepared alone, and an image that still fails is recorded as failed.
fn prepare_batch(batch: &mut Prepared, cfg: &Config, wanted: Wanted, times: &StageTimes) {
    timed(&times.preprocess, || {
        let (at, staged): (Vec<usize>, Vec<Tensor>) = batch
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (_, r))| r.as_mut().ok().and_then(|r| r.staged.take()).map(|s| (i, s)))
            .unzip();
        let inputs = |staged: &[Tensor]| {
            catch_libtorch(|| {
                hooks::out_of_memory(staged.len());
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

impl Ready {
    /// The inputs as the engine takes them.
    pub fn input(&self) -> crate::engine::Input<'_> {
        crate::engine::Input { detector: self.det_input.as_ref(), classifier: self.cls_input.as_ref(), rgb: &self.rgb }
    }
}
