//! Command-line options (clap). Converted once into a validated [`crate::config::Config`];
//! nothing past that point sees clap types.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "Exit codes:
  0  all images processed
  1  usage error (bad flag or value)
  2  fatal error (no weights, unwritable output, model failure)
  3  finished, but some images failed (see `error` entries in report.json)
  4  no input images found";

/// Walks folders of photos, runs an SSD300-ResNet50 object detector and a ResNet-18 ImageNet
/// classifier, and writes annotated copies plus one JSON report.
#[derive(Debug, Parser)]
#[command(name = "boxwalk", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Detect and classify every image under the inputs; write annotated copies and report.json.
    #[command(after_help = EXIT_CODES)]
    Detect(DetectArgs),
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Image files or folders (walked recursively, in sorted order).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,

    /// Output folder: annotated copies mirror the input tree; report.json goes at its top.
    #[arg(short, long)]
    pub out: PathBuf,

    /// Draw and report detections scoring above this (strictly, as NVIDIA's pick_best).
    #[arg(long, default_value_t = 0.40)]
    pub threshold: f32,

    /// Keep at most this many detections per image (highest scores).
    #[arg(long, default_value_t = 200)]
    pub max_detections: usize,

    /// Only report these COCO classes, comma-separated (e.g. `person,dog`).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,

    /// How many classifier classes to report per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,

    /// Also classify the crop of every kept detection (reported per box).
    #[arg(long)]
    pub classify_crops: bool,

    /// Skip the detector.
    #[arg(long)]
    pub no_detect: bool,

    /// Skip the whole-image classifier.
    #[arg(long)]
    pub no_classify: bool,

    /// SSD300 weights (.safetensors with NVIDIA hub keys).
    #[arg(long, value_name = "FILE")]
    pub detector_weights: Option<PathBuf>,

    /// ResNet-18 weights (.safetensors with torchvision keys).
    #[arg(long, value_name = "FILE")]
    pub classifier_weights: Option<PathBuf>,

    /// auto (first CUDA device if present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,

    /// fp16 inference (CUDA only; BatchNorm stays fp32).
    #[arg(long)]
    pub half: bool,

    /// Output format for every annotated copy (jpeg, png, webp, bmp, tiff, gif); default: the
    /// input's own format.
    #[arg(long)]
    pub format: Option<String>,

    /// JPEG quality of annotated copies (1-100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,

    /// Worker threads for decoding/drawing and for libtorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Refuse images larger than this many pixels (width × height).
    #[arg(long, default_value_t = 100_000_000)]
    pub max_pixels: u64,

    /// Refuse files larger than this many bytes.
    #[arg(long, default_value_t = 512 << 20)]
    pub max_file_size: u64,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}
