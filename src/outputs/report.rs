//! The run report (`OUT/report.json`): serde types only, versioned by `schema`. Field names are
//! part of the contract; add fields, never rename them without bumping the schema.

use crate::error::FileError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Schema tag of this report version.
pub const SCHEMA: &str = "boxwalk.report/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    pub tool: Tool,
    /// RFC 3339 UTC times.
    pub started: String,
    pub finished: String,
    /// Device the models ran on, e.g. `cpu` or `cuda:0`.
    pub device: String,
    pub options: Options,
    /// Hash of the model files and result-relevant options; a later run in the same OUT carries
    /// over unchanged images only when its key is the same.
    pub run_key: String,
    /// The share of the inputs this run processed (`--shard`); absent for a whole or merged run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::Shard>,
    /// The run was stopped early (Ctrl-C): images not reached are missing from `images`; the next
    /// run in the same OUT processes them.
    #[serde(default)]
    pub interrupted: bool,
    /// Peak resident memory of the process (Linux VmHWM), MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    pub models: Vec<ModelInfo>,
    pub counts: Counts,
    pub timing: Timing,
    /// Sorted by (`root`, `path`).
    pub images: Vec<ImageEntry>,
    /// Paths under the inputs that could not be walked.
    pub skipped: Vec<SkippedEntry>,
}

impl Report {
    /// Reads a report file, naming the file in every error; refuses other schema versions.
    pub fn read(file: &Path) -> Result<Report, FileError> {
        let report: Report = FileError::read_json(file, "not a boxwalk report")?;
        if report.schema != SCHEMA {
            let reason = format!("schema `{}`, expected `{SCHEMA}`", report.schema);
            return Err(FileError::Invalid { path: file.to_path_buf(), reason });
        }
        Ok(report)
    }

    /// Writes the report to `file`, atomically.
    pub fn write(&self, file: &Path) -> Result<(), FileError> {
        super::files::write_atomic(file, |w| serde_json::to_writer_pretty(&mut *w, self).map_err(std::io::Error::other))
            .map_err(FileError::io(file))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SkippedEntry {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// The options that change results.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Options {
    pub threshold: f32,
    pub max_detections: usize,
    pub classes: Option<Vec<String>>,
    pub top_k: usize,
    pub classify_crops: bool,
    pub detect: bool,
    pub classify: bool,
    pub half: bool,
    /// `--cudnn-benchmark` (absent from reports written before it existed).
    #[serde(default)]
    pub cudnn_benchmark: bool,
    pub batch_size: usize,
    pub format: Option<String>,
    pub jpeg_quality: u8,
    /// `--allow-truncated` (absent from reports written before it existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_truncated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    /// `detector` or `classifier`.
    pub role: String,
    pub file: String,
    pub sha256: String,
    /// True for the offline demo models (synthetic shapes, not COCO/ImageNet).
    pub demo: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub images: usize,
    pub ok: usize,
    pub failed: usize,
    /// Paths under the inputs that could not be walked.
    pub skipped: usize,
    /// Compared with the previous run in the same OUT: images seen for the first time, with new
    /// content, with the same content, and gone since.
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Images that went through the models in this run (the rest were carried over).
    pub processed: usize,
    /// Earlier results kept, marked `not_seen`, because their input folder held no images or
    /// could not be read this run.
    #[serde(default)]
    pub not_seen: usize,
}

/// Wall time of the run and time spent per stage (summed over worker threads).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    pub total_s: f64,
    /// CPU time of the whole process (user + system, every thread) for the run: against
    /// `total_s`, how many cores the run kept busy.
    #[serde(default)]
    pub cpu_s: f64,
    pub load_models_s: f64,
    pub decode_s: f64,
    pub preprocess_s: f64,
    pub inference_s: f64,
    /// Detections decoded from the detector's outputs (NMS), on the workers.
    #[serde(default)]
    pub box_decode_s: f64,
    pub annotate_s: f64,
    pub write_s: f64,
    /// Bytes the process read (`rchar` of `/proc/self/io`: inputs, weights, the previous report
    /// and journal): what a rerun costs the disk.
    #[serde(default)]
    pub read_bytes: u64,
    /// Syncing the written outputs and the journal to disk, batch by batch, on a thread of its
    /// own (the time the data took to reach the disk, not CPU).
    #[serde(default)]
    pub sync_s: f64,
    /// The inference lanes' time waiting for the workers to prepare the next batch (the first
    /// batch's included), summed over lanes: with `wait_for_output_s` and `inference_s`, where a
    /// run is bound.
    #[serde(default)]
    pub wait_for_input_s: f64,
    /// The inference lanes' time waiting for the writers to take their results.
    #[serde(default)]
    pub wait_for_output_s: f64,
    /// From the run's start until the models had finished the first batch: loading, the first
    /// batch's preparation and the device's warm-up (on a GPU, cuDNN choosing its algorithms and
    /// kernels loading on first use). What a longer run amortises; 0 when nothing ran.
    #[serde(default)]
    pub first_batch_s: f64,
    /// How many inference lanes ran batches: on a CPU, while the models run on fewer threads
    /// than `--threads`, several batches run at once (README, "Speed"); 1 elsewhere, 0 when nothing
    /// ran. `inference_s` and the waits are summed over the lanes.
    #[serde(default)]
    pub model_lanes: usize,
}

impl Timing {
    /// The timing of shards run side by side: wall-clock spans (the whole run, loading, the first
    /// batch) the longest shard's, work and waits (`cpu_s`, the stages) summed.
    pub fn of_shards<'a>(shards: impl IntoIterator<Item = &'a Timing>) -> Timing {
        shards.into_iter().fold(Timing::default(), |a, t| Timing {
            total_s: a.total_s.max(t.total_s),
            load_models_s: a.load_models_s.max(t.load_models_s),
            first_batch_s: a.first_batch_s.max(t.first_batch_s),
            model_lanes: a.model_lanes.max(t.model_lanes),
            cpu_s: a.cpu_s + t.cpu_s,
            decode_s: a.decode_s + t.decode_s,
            preprocess_s: a.preprocess_s + t.preprocess_s,
            inference_s: a.inference_s + t.inference_s,
            box_decode_s: a.box_decode_s + t.box_decode_s,
            annotate_s: a.annotate_s + t.annotate_s,
            write_s: a.write_s + t.write_s,
            sync_s: a.sync_s + t.sync_s,
            read_bytes: a.read_bytes + t.read_bytes,
            wait_for_input_s: a.wait_for_input_s + t.wait_for_input_s,
            wait_for_output_s: a.wait_for_output_s + t.wait_for_output_s,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageEntry {
    /// Path relative to `root`, `/`-separated.
    pub path: String,
    /// The input (file's folder or the folder given) this path is relative to.
    pub root: String,
    /// SHA-256 of the input file's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Present when the detector ran; empty means "processed, nothing found".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detections: Option<Vec<Detection>>,
    /// Every decoded detection (score above the decoder's 0.05, up to `--max-detections`), kept
    /// only when `--coco-json` asks for them (COCO mAP needs low scores too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_detections: Option<Vec<Detection>>,
    /// Whole-image top-k, when the classifier ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Vec<Class>>,
    /// Annotated copy, relative to the output folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEntry>,
    /// Why the result may not be the whole image's: a truncated file decoded as far as it goes
    /// (`--allow-truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// An earlier result kept although its input was not seen this run: its input folder held no
    /// images or could not be read (an unmounted share, say). Not counted in `counts.images`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_seen: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Detection {
    pub label: String,
    /// SSD class index, 1..=80 for COCO.
    pub class_index: usize,
    /// COCO category id (COCO detectors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coco_id: Option<u32>,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in original pixels (after EXIF orientation), not clipped.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Top-k of the classifier on this box's crop (`--classify-crops`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Vec<Class>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Class {
    pub label: String,
    pub index: usize,
    pub prob: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    pub kind: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_timing_takes_the_longest_spans_and_sums_the_work() {
        let a = Timing {
            total_s: 10.0,
            load_models_s: 1.0,
            first_batch_s: 2.0,
            cpu_s: 30.0,
            decode_s: 4.0,
            ..Default::default()
        };
        let b = Timing {
            total_s: 8.0,
            load_models_s: 1.5,
            first_batch_s: 1.0,
            cpu_s: 20.0,
            decode_s: 3.0,
            sync_s: 0.5,
            ..Default::default()
        };
        let m = Timing::of_shards([&a, &b]);
        assert_eq!((m.total_s, m.load_models_s, m.first_batch_s), (10.0, 1.5, 2.0));
        assert_eq!((m.cpu_s, m.decode_s, m.sync_s), (50.0, 7.0, 0.5));
        assert_eq!(Timing::of_shards([&a]), a);
    }
}
