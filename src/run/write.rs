//! The writing stage: each image's pending boxes decoded, its results drawn, the copy encoded and
//! written under OUT (synced later, by the recorder), and its report entry made.

use super::lanes::Inferred;
use super::times::{timed, StageTimes};
use super::FatalError;
use crate::config::Config;
use crate::discover::ImageJob;
use crate::engine::draw::{self, Destination, Look};
use crate::engine::infer::BoxContext;
use crate::engine::{PerImage, Settings};
use crate::error::ImageError;
use crate::outputs::files::Durability;
use crate::outputs::report::ImageEntry;
use crate::sys::hooks;
use image::ImageFormat;
use std::path::Path;

/// Output path of a job under OUT (extension changed when `--format` is given) and its format.
fn output_target(job: &ImageJob, cfg: &Config, decoded_format: ImageFormat) -> (String, ImageFormat) {
    match cfg.format {
        Some(f) => {
            let ext = f.extensions_str().first().copied().unwrap_or("img");
            let rel = Path::new(&job.out_rel).with_extension(ext);
            (rel.to_string_lossy().replace('\\', "/"), f)
        }
        None => (job.out_rel.clone(), draw::format_for(&job.out_rel, decoded_format)),
    }
}

/// An image's report entry before any result is in.
fn entry_for(job: &ImageJob) -> ImageEntry {
    ImageEntry {
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
        not_seen: false,
        warning: None,
    }
}

/// Decodes the boxes, draws and writes one image; returns its report entry, or the fault of the
/// machine that stops the run ([`FatalError::Environment`]).
pub fn write_one(
    job: ImageJob,
    result: Result<Inferred, ImageError>,
    boxes: Option<&BoxContext>,
    settings: &Settings,
    cfg: &Config,
    times: &StageTimes,
) -> Result<ImageEntry, FatalError> {
    let mut entry = entry_for(&job);
    let Inferred { mut rgb, format, warning, mut results } = match result {
        Ok(i) => i,
        Err(e) => {
            draw::fail(&mut entry, &e);
            return Ok(entry);
        }
    };
    if let Some(ctx) = boxes {
        timed(&times.boxes, || ctx.finish(&mut results, rgb.width(), rgb.height(), settings));
    }
    let PerImage { detections, all_detections, classification, .. } = results;
    entry.warning = warning;
    entry.width = Some(rgb.width());
    entry.height = Some(rgb.height());
    timed(&times.annotate, || draw::draw(&mut rgb, detections.as_deref(), classification.as_deref(), Look::default()));
    entry.detections = detections;
    entry.all_detections = all_detections;
    entry.classification = classification;
    let (rel, format) = output_target(&job, cfg, format);
    let dest = Destination {
        out: &cfg.out,
        rel: &rel,
        format,
        jpeg_quality: cfg.jpeg_quality,
        // Synced by the recorder, per batch, before the journal records it.
        durability: Durability::Deferred,
        thumbnail: cfg.html,
    };
    let written = match hooks::write_fault() {
        Some(source) => Err(ImageError::Write { path: cfg.out.join(&rel), source }),
        None => timed(&times.write, || draw::write(&rgb, dest)),
    };
    if let Err(e) = &written {
        if let Some(fault) = FatalError::of_write(&cfg.out, e) {
            return Err(fault);
        }
    }
    draw::record(&mut entry, &rel, written);
    Ok(entry)
}
