//! Command-line options (clap). `detect`'s are converted once into a validated `Config`;
//! nothing past that point sees clap types. Flags that several subcommands share are declared
//! once and flattened in.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "Exit codes:
  0  all images processed
  1  usage error (bad flag or value)
  2  fatal error (no weights, model failure, an output folder that cannot be written: a full
     disk, a lost mount; a refused --prune). What was journaled is kept: rerun to continue
  3  finished, but some images failed (see `error` entries in report.json)
  4  no input images found
  129, 130, 143  stopped by SIGHUP, Ctrl-C (SIGINT) or SIGTERM after the batch in flight (the
     report holds what was done; rerun to continue); a second signal exits at once
--fail-on fatal makes 3 and 4 exit 0, --fail-on none also 2";

/// `--max-prune`: how much `--prune` may remove.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxPrune {
    Count(usize),
    /// A percentage of the results in OUT.
    Share(f64),
}

impl MaxPrune {
    /// How many of `total` results may go.
    pub fn of(self, total: usize) -> usize {
        match self {
            MaxPrune::Count(n) => n,
            MaxPrune::Share(p) => (total as f64 * p / 100.0).floor() as usize,
        }
    }
}

impl std::fmt::Display for MaxPrune {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            MaxPrune::Count(n) => write!(f, "{n}"),
            MaxPrune::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxPrune {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}`: expected a count (500) or a percentage (10%)");
        match s.strip_suffix('%') {
            Some(p) => {
                p.trim().parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).map(MaxPrune::Share).ok_or_else(bad)
            }
            None => s.trim().parse().map(MaxPrune::Count).map_err(|_| bad()),
        }
    }
}

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
    /// Generate a synthetic scene set (shapes on textured backgrounds) with COCO annotations.
    Synth(SynthArgs),
    /// Train a classifier (ImageFolder) or an SSD detector (COCO format).
    #[command(subcommand)]
    Train(TrainCommand),
    /// Combine the outputs of `detect --shard` runs into one folder and report.
    Merge(MergeArgs),
    /// Redraw the annotated copies from a report and the original files, without running any
    /// model: a new threshold, fewer classes, other line and text sizes. Writes DIR/report.json
    /// and the contact sheet too.
    #[command(after_help = EXIT_CODES)]
    Render(RenderArgs),
    /// Serve a local page: drop an image, see its boxes, the detection list and the classifier's
    /// top-5, with a threshold slider. Loopback only unless --host says otherwise.
    Serve(ServeArgs),
    /// Explain the models: their layers, a convolution's kernels, a BatchNorm layer's two modes.
    #[command(subcommand)]
    Explain(ExplainCommand),
    /// Install official checkpoints into the model store, or list installed models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Measure a detector's mAP on a COCO-format set, or a classifier's accuracy on an ImageFolder.
    Eval(EvalArgs),
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download the official checkpoints (NVIDIA SSD300, torchvision ResNet-18), verify and install
    /// them. Resumes interrupted downloads. BOXWALK_MIRROR=URL fetches the same file names from a
    /// mirror.
    Fetch {
        /// Only the detector.
        #[arg(long)]
        detector: bool,
        /// Only the classifier.
        #[arg(long)]
        classifier: bool,
    },
    /// Convert an official checkpoint (NVIDIA's nvidia_ssdpyt_amp_200703.pt training dict, or
    /// torchvision's resnet18-f37072fd.pth state dict) and install it in the model store.
    Import {
        /// The checkpoint file.
        file: PathBuf,
        /// detector or classifier (default: recognised from the keys).
        #[arg(long = "as")]
        role: Option<String>,
    },
    /// List installed models (the store, then the demo models) and which ones `detect` uses.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Fine-tune ResNet-18 on DATA/train/<class>/… and report accuracy on DATA/val/<class>/….
    Classifier(TrainClassifierArgs),
    /// Train SSD300 on DATA/annotations.json (COCO) and the images it names.
    Detector(TrainDetectorArgs),
}

/// Options shared by both trainers.
#[derive(Debug, Args)]
pub struct TrainCommon {
    /// Dataset folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder for the weights, model card and checkpoints.
    #[arg(short, long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Learning rate (peak, after warm-up).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// adam or sgd.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Turn off training augmentations.
    #[arg(long)]
    pub no_augment: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch and worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    #[command(flatten)]
    pub common: TrainCommon,
    /// Start from these ResNet-18 weights (default: the official ones when installed, else the
    /// demo classifier, else from scratch).
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Train from scratch even when weights are installed.
    #[arg(long)]
    pub scratch: bool,
    /// Width divisor when training from scratch (1 = torchvision's ResNet-18).
    #[arg(long, default_value_t = 1)]
    pub width_divisor: i64,
    /// Train only the new final layer.
    #[arg(long)]
    pub freeze_backbone: bool,
}

#[derive(Debug, Args)]
pub struct TrainDetectorArgs {
    #[command(flatten)]
    pub common: TrainCommon,
    /// resnet18 or resnet50.
    #[arg(long, default_value = "resnet50")]
    pub backbone: String,
    /// Divide every channel width by this (resnet18 only; the demo detector uses 4).
    #[arg(long, default_value_t = 1)]
    pub width_divisor: i64,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long, default_value_t = 300)]
    pub warmup: usize,
    /// A held-out COCO-format folder evaluated after every epoch.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Continue from OUT/checkpoint.safetensors.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many optimiser steps (for smoke tests).
    #[arg(long)]
    pub max_steps: Option<usize>,
}

/// Evaluates exactly one model: the one whose weights are given.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("model").required(true).args(["detector_weights", "classifier_weights"])))]
pub struct EvalArgs {
    /// COCO-format folder (annotations.json) for a detector; ImageFolder split for a classifier.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub weights: WeightFlags,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The weight files of the two models (`detect`, `serve`, `eval`).
#[derive(Debug, Args)]
pub struct WeightFlags {
    /// SSD300 weights: .safetensors with NVIDIA's hub keys (default: the installed official
    /// model, else the demo model).
    #[arg(long, value_name = "FILE")]
    pub detector_weights: Option<PathBuf>,
    /// ResNet-18 weights: .safetensors with torchvision's keys (default: the installed official
    /// model, else the demo model).
    #[arg(long, value_name = "FILE")]
    pub classifier_weights: Option<PathBuf>,
}

/// The classifier's weight file alone (`explain`).
#[derive(Debug, Args)]
pub struct ClassifierFlag {
    /// ResNet-18 weights (default: the installed official model, else the demo classifier).
    #[arg(long = "weights", visible_alias = "classifier-weights", value_name = "FILE")]
    pub weights: Option<PathBuf>,
}

/// Where the models run (`detect`, `serve`).
#[derive(Debug, Args)]
pub struct DeviceFlag {
    /// auto (first CUDA device if present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (images/, annotations.json, crops/, scenes/).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Number of scenes.
    #[arg(short, long, default_value_t = 100)]
    pub n: usize,
    /// Random seed; the same seed gives the same scenes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Scene width in pixels.
    #[arg(long, default_value_t = 320)]
    pub width: u32,
    /// Scene height in pixels.
    #[arg(long, default_value_t = 240)]
    pub height: u32,
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

    #[command(flatten)]
    pub weights: WeightFlags,

    #[command(flatten)]
    pub device: DeviceFlag,

    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,

    /// fp16 inference (CUDA only; weights are folded with their BatchNorm in fp32, then cast).
    #[arg(long)]
    pub half: bool,

    /// Let cuDNN time its convolution algorithms on the first batch of each input shape and keep
    /// the fastest (PyTorch's `cudnn.benchmark`; CUDA only). Later batches may run faster; the
    /// outputs may then differ between runs in the last bits, as the choice depends on timing.
    #[arg(long)]
    pub cudnn_benchmark: bool,

    /// Benchmark the floor: decode and prepare every input first, then time only the models
    /// (forward passes, softmax, copy to the CPU) batch by batch, on a GPU in two lanes as a run
    /// does. Box decoding is left out: a run does it on the workers. Writes nothing; prints one
    /// JSON line.
    #[arg(long)]
    pub bench_forward: bool,

    /// Show what a run would do, per folder: images to process, carried over, or rejected (too
    /// large, not an image), after shards and the incremental plan. Loads no model and writes
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

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

    /// Progress as JSON lines on stdout (one per image, plus start and summary events).
    #[arg(long)]
    pub json_progress: bool,

    /// Which outcomes exit non-zero: `images` (failed images 3, no images 4, fatal 2), `fatal`
    /// (only fatal errors: an array task with a few bad files succeeds), `none`.
    #[arg(long, value_enum, default_value_t = crate::exit::FailOn::Images)]
    pub fail_on: crate::exit::FailOn,

    /// Report every file under the inputs, not only image-named ones (non-images become errors).
    #[arg(long)]
    pub strict: bool,

    /// Process every image again, even those unchanged since the last run in OUT.
    #[arg(long)]
    pub force: bool,

    /// Process truncated images (a copy in progress, a broken upload) as far as they decode, the
    /// rest grey, with a warning in the report, the CSV and the contact sheet, instead of failing
    /// them as `truncated` (JPEG; other formats still fail).
    #[arg(long)]
    pub allow_truncated: bool,

    /// When another run is writing OUT, wait for it to end instead of exiting (code 2).
    #[arg(long)]
    pub wait: bool,

    /// Read and hash every input, even those whose size, mtime, inode and ctime are unchanged
    /// since the last run (for file systems whose timestamps cannot be trusted).
    #[arg(long)]
    pub rehash: bool,

    /// Delete the annotated copies of inputs that no longer exist. Refused (exit 2, nothing
    /// removed or processed) when an input folder is empty or could not be read in full, as an
    /// unmounted share looks, or when it would remove more than --max-prune.
    #[arg(long)]
    pub prune: bool,

    /// The most --prune may remove: a share of the results in OUT (`10%`) or a count (`500`).
    #[arg(long, value_name = "N|N%", default_value = "10%")]
    pub max_prune: MaxPrune,

    /// An input folder that holds no images is empty on purpose: its earlier results are
    /// dropped from the report (and pruned with --prune). Without it they are kept, marked
    /// `not_seen`, since a folder that is suddenly empty is more often a failed mount.
    #[arg(long)]
    pub allow_empty_input: bool,

    /// Process only shard K of N (0 <= K < N), chosen by a hash of each image's path; `auto`
    /// reads Slurm (SLURM_ARRAY_TASK_ID/_COUNT/_MIN) or Kubernetes (JOB_COMPLETION_INDEX).
    /// Combine the shard outputs with `boxwalk merge`.
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,

    /// Number of shards when `--shard auto` takes the index from JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N")]
    pub shard_count: Option<u64>,

    /// Do not write the contact sheet (OUT/index.html and its thumbnails in OUT/.thumbs).
    #[arg(long)]
    pub no_html: bool,

    /// Also write every detection (and every failed image) as a CSV row to FILE.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Also write the detections in the COCO results format to FILE, with scores down to the
    /// decoder's 0.05 (kept in the report as `all_detections`) so that COCO mAP is meaningful.
    /// Image ids come from `--coco-images`, else from FILE.images.json written beside it.
    #[arg(long, value_name = "FILE")]
    pub coco_json: Option<PathBuf>,

    /// A COCO annotations file whose `images` give the ids for `--coco-json` (matched by
    /// `file_name` against each image's relative path, then its file name).
    #[arg(long, value_name = "FILE", requires = "coco_json")]
    pub coco_images: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard output folders.
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Merged output folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Which outcomes exit non-zero: `images` (shards with failed images give 3), `fatal`, `none`.
    #[arg(long, value_enum, default_value_t = crate::exit::FailOn::Images)]
    pub fail_on: crate::exit::FailOn,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A report.json, or the output folder holding it.
    pub report: PathBuf,
    /// Folder for the redrawn copies (not the run's own output folder).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Draw detections scoring above this (default: the report's threshold). Going below it needs
    /// a report written with `--coco-json`, which keeps every score down to 0.05.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Only draw these classes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Box outline width in pixels (default: scaled to the image).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub line_width: Option<u32>,
    /// Label text height in pixels (default: scaled to the image).
    #[arg(long)]
    pub font_size: Option<f32>,
    /// Labels show the class name only.
    #[arg(long)]
    pub no_scores: bool,
    /// Do not write index.html and thumbnails.
    #[arg(long)]
    pub no_html: bool,
    /// JPEG quality of the redrawn copies (1-100).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Another name this server may be reached by (repeatable). Requests whose `Host` is neither
    /// the bound address, `localhost`, nor one of these are refused (DNS rebinding), as are
    /// requests from pages of another origin.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Largest accepted upload, bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_upload: u64,
    /// Refuse images larger than this many pixels (width × height).
    #[arg(long, default_value_t = 100_000_000)]
    pub max_pixels: u64,
    #[command(flatten)]
    pub weights: WeightFlags,
    #[command(flatten)]
    pub device: DeviceFlag,
    /// HTTP worker threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// The module tree with each weighted layer's shape, and which layers the name counts
    /// (the 17 convolutions + 1 fully-connected layer of ResNet-18, and why not the rest).
    Layers {
        /// resnet18, resnet50 or ssd300.
        #[arg(default_value = "resnet18")]
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The kernels of ResNet-18's k-th convolution (numbered as `explain layers` numbers them) as
    /// an image grid, each kernel min-max normalised, and optionally as a tensor file.
    Kernels {
        /// Convolution number (1 = conv1).
        #[arg(long, default_value_t = 1)]
        layer: usize,
        #[command(flatten)]
        weights: ClassifierFlag,
        /// The image grid (PNG).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write the kernels as a .safetensors file (key: the layer's state-dict key).
        #[arg(long, value_name = "FILE")]
        tensor: Option<PathBuf>,
        /// Pixels per kernel element in the grid.
        #[arg(long, default_value_t = 8)]
        zoom: u32,
    },
    /// A BatchNorm layer of ResNet-18 on one image: per channel, the slope and intercept of output
    /// against input in train mode (this image's batch statistics) and in eval mode (running
    /// statistics), checked against the layer's real output, and the top-5 in each mode.
    Batchnorm {
        /// The image.
        image: PathBuf,
        /// BatchNorm layer (state-dict name, e.g. bn1, layer2.0.bn2, layer3.0.downsample.1).
        #[arg(long, default_value = "bn1")]
        layer: String,
        #[command(flatten)]
        weights: ClassifierFlag,
        /// Plot of output against input for a few channels in both modes (PNG).
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// Channels listed and plotted.
        #[arg(long, default_value_t = 8)]
        channels: usize,
        /// Print JSON (every channel).
        #[arg(long)]
        json: bool,
    },
}
