//! boxwalk: walks folders of photos, runs NVIDIA's SSD300-ResNet50 detector and torchvision's
//! ResNet-18 classifier with libtorch, writes annotated copies and one JSON report.
//!
//! The modules in the order an image meets them: [`discover`] finds the inputs, [`decode`]
//! decodes them, [`preprocess`] makes the network inputs, [`models`] holds the networks and box
//! decoding, [`engine`] runs them and draws the results, `run` wires a `detect` run's stages
//! together, and [`outputs`] writes what a run leaves behind. Around them: the command line
//! (`cli`, `config`, `commands`), getting weights (`weights`), the other front ends (`render`,
//! `serve`, `merge`), training and evaluation ([`train`], [`eval`], [`synth`], [`explain`]) and
//! process-level helpers ([`sys`]).

// The command line.
pub mod cli;
pub mod commands;
mod config;
pub mod error;
pub mod exit;

// The data path.
pub mod decode;
pub mod discover;
pub mod engine;
pub mod models;
pub mod outputs;
pub mod preprocess;
mod run;

// Around it.
pub mod coco;
pub mod eval;
pub mod explain;
mod merge;
mod progress;
mod render;
mod serve;
mod shard;
pub mod synth;
pub mod sys;
#[doc(hidden)]
pub mod testutil;
pub mod train;
mod weights;
