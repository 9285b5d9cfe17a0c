//! The validated configuration of a `detect` run, built once from the command line. Weight files
//! are resolved here: an explicit flag, else the model store (`$BOXWALK_HOME/models`, default
//! `~/.cache/boxwalk/models`).

use crate::boxes::DecodeParams;
use crate::cli::DetectArgs;
use crate::decode::Limits;
use image::ImageFormat;
use std::path::{Path, PathBuf};
use tch::Device;

/// File names of the official models in the store.
pub const DETECTOR_FILE: &str = "ssd300_resnet50.safetensors";
pub const CLASSIFIER_FILE: &str = "resnet18.safetensors";
/// File names of the demo models in `models/demo/`.
pub const DEMO_DETECTOR_FILE: &str = "detector.safetensors";
pub const DEMO_CLASSIFIER_FILE: &str = "classifier.safetensors";

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
    pub demo_roles: Vec<&'static str>,
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
    pub prune: bool,
    pub shard: Option<crate::shard::Shard>,
    /// Write OUT/index.html and thumbnails.
    pub html: bool,
    pub csv: Option<PathBuf>,
    pub coco: Option<crate::export::CocoExport>,
    /// Keep every decoded detection in the report (`all_detections`), for `--coco-json`.
    pub keep_all_detections: bool,
}

/// `$BOXWALK_HOME`, else `$XDG_CACHE_HOME/boxwalk`, else `~/.cache/boxwalk`.
pub fn boxwalk_home() -> PathBuf {
    if let Some(h) = std::env::var_os("BOXWALK_HOME") {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("boxwalk")
}

/// The model store folder.
pub fn model_store() -> PathBuf {
    boxwalk_home().join("models")
}

/// The shipped demo models: `$BOXWALK_DEMO_MODELS`, else `models/demo` of the source tree the
/// binary was built from, else `models/demo` beside a `target/<profile>/boxwalk` binary.
pub fn demo_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BOXWALK_DEMO_MODELS") {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo");
    if built.is_dir() {
        return built;
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(|r| r.join("models/demo")))
        .unwrap_or(built)
}

/// Which weight file a role uses: the flag, else the official file in the store, else the demo.
pub fn resolve_weights(flag: Option<PathBuf>, official: &str, demo: &str) -> (PathBuf, bool) {
    if let Some(f) = flag {
        return (f, false);
    }
    let store = model_store().join(official);
    let demo = demo_dir().join(demo);
    if !store.is_file() && demo.is_file() {
        (demo, true)
    } else {
        (store, false)
    }
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

/// What a missing weight file means for the user, with how to get one.
fn missing_weights(role: &str, flag: &str, skip: &str, path: &std::path::Path) -> String {
    format!(
        "no {role} weights: {} does not exist.\n  Pass {flag} FILE (a .safetensors file with the official key names), \
         put the file at that path, or run with {skip}. The offline demo models live in {} (models/demo of the \
         source tree).",
        path.display(),
        demo_dir().display()
    )
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
        let device = parse_device(&a.device)?;
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
            .map_err(UsageError)?;
        let mut demo_roles = Vec::new();
        let mut pick = |skip: bool, flag: Option<PathBuf>, role: &'static str, official: &str, demo: &str| {
            (!skip).then(|| {
                let (path, is_demo) = resolve_weights(flag, official, demo);
                if is_demo {
                    demo_roles.push(role);
                }
                path
            })
        };
        let detector_weights = pick(a.no_detect, a.detector_weights, "detector", DETECTOR_FILE, DEMO_DETECTOR_FILE);
        let classifier_weights =
            pick(a.no_classify, a.classifier_weights, "classifier", CLASSIFIER_FILE, DEMO_CLASSIFIER_FILE);
        let threads =
            a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
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
            limits: Limits { max_file_size: a.max_file_size, max_pixels: a.max_pixels },
            quiet: a.quiet,
            json_progress: a.json_progress,
            strict: a.strict,
            force: a.force,
            prune: a.prune,
            html: !a.no_html,
            keep_all_detections: a.coco_json.is_some(),
            coco: a.coco_json.map(|results| crate::export::CocoExport { results, images_from: a.coco_images }),
            csv: a.csv,
            shard,
        })
    }

    /// Checks that every weight file to be used exists, with a message saying how to get it.
    pub fn check_weights(&self) -> Result<(), String> {
        if let Some(p) = self.detector_weights.as_ref().filter(|p| !p.is_file()) {
            return Err(missing_weights("detector", "--detector-weights", "--no-detect", p));
        }
        if let Some(p) = self.classifier_weights.as_ref().filter(|p| !p.is_file()) {
            return Err(missing_weights("classifier", "--classifier-weights", "--no-classify", p));
        }
        Ok(())
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
