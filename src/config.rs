//! The validated configuration of a `detect` run, built once from the command line, with its
//! weight files resolved ([`crate::weights::resolve`]).

use crate::cli::DetectArgs;
use crate::decode::Limits;
use crate::engine::Settings;
use crate::models::boxes::DecodeParams;
use crate::weights::{demo_dir, resolve, Role};
use image::ImageFormat;
use std::path::PathBuf;
use tch::Device;

/// A bad flag value; exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Debug, Clone)]
pub struct Config {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub threshold: f32,
    pub decode: DecodeParams,
    /// Detector class names to keep (`--classes`); `None` keeps all.
    pub class_names: Option<Vec<String>>,
    pub top_k: usize,
    pub classify_crops: bool,
    pub detector_weights: Option<PathBuf>,
    pub classifier_weights: Option<PathBuf>,
    /// Roles that fell back to the demo models because no official weights are installed.
    pub demo_roles: Vec<Role>,
    pub device: Device,
    pub batch_size: usize,
    pub half: bool,
    /// `--cudnn-benchmark` (CUDA only).
    pub cudnn_benchmark: bool,
    pub format: Option<ImageFormat>,
    pub jpeg_quality: u8,
    pub threads: usize,
    pub limits: Limits,
    pub quiet: bool,
    pub json_progress: bool,
    pub strict: bool,
    pub force: bool,
    pub rehash: bool,
    pub wait: bool,
    /// `--dry-run`: plan only; write nothing.
    pub dry_run: bool,
    pub prune: bool,
    pub max_prune: crate::cli::MaxPrune,
    pub allow_empty_input: bool,
    pub shard: Option<crate::shard::Shard>,
    /// Write OUT/index.html and thumbnails.
    pub html: bool,
    pub csv: Option<PathBuf>,
    pub coco: Option<crate::outputs::export::CocoExport>,
    /// Keep every decoded detection in the report (`all_detections`), for `--coco-json`.
    pub keep_all_detections: bool,
}

/// Parses `auto|cpu|cuda|cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, UsageError> {
    match s {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| UsageError(format!("--device {s}: expected auto, cpu, cuda or cuda:N"))),
    }
}

/// Parses an output format name.
pub fn parse_format(s: &str) -> Result<ImageFormat, UsageError> {
    let f = ImageFormat::from_extension(s).ok_or_else(|| UsageError(format!("--format {s}: unknown image format")))?;
    match f {
        ImageFormat::Jpeg
        | ImageFormat::Png
        | ImageFormat::WebP
        | ImageFormat::Bmp
        | ImageFormat::Tiff
        | ImageFormat::Gif => Ok(f),
        _ => Err(UsageError(format!("--format {s}: cannot write this format; use jpeg, png, webp, bmp, tiff or gif"))),
    }
}

/// A weight file that `detect` needs but that does not exist, with how to get one.
#[derive(Debug, thiserror::Error)]
#[error(
    "no {role} weights: {} does not exist.\n  Pass {} FILE (a .safetensors file with the official key names), put \
     the file at that path, or run with {}. The offline demo models live in {} (models/demo of the source tree).",
    path.display(),
    role.flags().0,
    role.flags().1,
    demo_dir().display()
)]
pub struct MissingWeights {
    pub role: Role,
    pub path: PathBuf,
}

impl Config {
    pub fn from_args(a: DetectArgs) -> Result<Config, UsageError> {
        if !(0.0..=1.0).contains(&a.threshold) {
            return Err(UsageError(format!("--threshold {}: must be within 0..1", a.threshold)));
        }
        if a.batch_size == 0 {
            return Err(UsageError("--batch-size must be at least 1".into()));
        }
        if a.max_detections == 0 {
            return Err(UsageError("--max-detections must be at least 1".into()));
        }
        if a.no_detect && a.no_classify {
            return Err(UsageError("--no-detect and --no-classify together leave nothing to do".into()));
        }
        if a.classify_crops && (a.no_detect || a.no_classify) {
            return Err(UsageError("--classify-crops needs both the detector and the classifier".into()));
        }
        let device = parse_device(&a.device.device)?;
        if a.half && device == Device::Cpu {
            return Err(UsageError("--half needs a CUDA device (fp16 convolutions are not supported on CPU)".into()));
        }
        if a.cudnn_benchmark && device == Device::Cpu {
            return Err(UsageError("--cudnn-benchmark needs a CUDA device".into()));
        }
        let format = a.format.as_deref().map(parse_format).transpose()?;
        let shard = a
            .shard
            .as_deref()
            .map(|s| crate::shard::Shard::parse(s, a.shard_count, &|k| std::env::var(k).ok()))
            .transpose()
            .map_err(|e| UsageError(e.0))?;
        let mut demo_roles = Vec::new();
        let mut pick = |skip: bool, role: Role, flag: Option<PathBuf>| {
            (!skip).then(|| {
                let r = resolve(role, flag);
                if r.demo {
                    demo_roles.push(role);
                }
                r.file
            })
        };
        let detector_weights = pick(a.no_detect, Role::Detector, a.weights.detector_weights);
        let classifier_weights = pick(a.no_classify, Role::Classifier, a.weights.classifier_weights);
        let threads = a.threads.unwrap_or_else(crate::sys::available_threads).max(1);
        Ok(Config {
            inputs: a.inputs,
            out: a.out,
            threshold: a.threshold,
            decode: DecodeParams { max_output: a.max_detections, ..DecodeParams::default() },
            class_names: a.classes.map(|v| v.into_iter().map(|n| n.trim().to_string()).collect()),
            top_k: a.top_k,
            classify_crops: a.classify_crops,
            detector_weights,
            classifier_weights,
            demo_roles,
            device,
            batch_size: a.batch_size,
            half: a.half,
            cudnn_benchmark: a.cudnn_benchmark,
            format,
            jpeg_quality: a.jpeg_quality,
            threads,
            limits: Limits {
                max_file_size: a.max_file_size,
                max_pixels: a.max_pixels,
                allow_truncated: a.allow_truncated,
            },
            quiet: a.quiet,
            json_progress: a.json_progress,
            strict: a.strict,
            force: a.force,
            rehash: a.rehash,
            wait: a.wait,
            dry_run: a.dry_run,
            prune: a.prune,
            max_prune: a.max_prune,
            allow_empty_input: a.allow_empty_input,
            html: !a.no_html,
            keep_all_detections: a.coco_json.is_some(),
            coco: a.coco_json.map(|results| crate::outputs::export::CocoExport { results, images_from: a.coco_images }),
            csv: a.csv,
            shard,
        })
    }

    /// Checks that every weight file to be used exists, with a message saying how to get it.
    pub fn check_weights(&self) -> Result<(), MissingWeights> {
        for (role, file) in [(Role::Detector, &self.detector_weights), (Role::Classifier, &self.classifier_weights)] {
            if let Some(p) = file.as_ref().filter(|p| !p.is_file()) {
                return Err(MissingWeights { role, path: p.clone() });
            }
        }
        Ok(())
    }

    /// What the engine is asked for in this run.
    pub fn settings(&self) -> Settings {
        Settings {
            decode: self.decode,
            threshold: self.threshold,
            keep_all_detections: self.keep_all_detections,
            top_k: self.top_k,
            classify_crops: self.classify_crops,
            crop_batch: self.batch_size,
            device: self.device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("cpu").ok(), Some(Device::Cpu));
        assert_eq!(parse_device("cuda:1").ok(), Some(Device::Cuda(1)));
        assert!(parse_device("gpu").is_err());
        assert!(parse_device("cuda:x").is_err());
    }

    #[test]
    fn formats_parse() {
        assert_eq!(parse_format("jpg").ok(), Some(ImageFormat::Jpeg));
        assert_eq!(parse_format("webp").ok(), Some(ImageFormat::WebP));
        assert!(parse_format("exr").is_err());
        assert!(parse_format("nonsense").is_err());
    }
}
