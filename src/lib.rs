//! boxwalk: walks folders of photos, runs NVIDIA's SSD300-ResNet50 detector and torchvision's
//! ResNet-18 classifier with libtorch, writes annotated copies and one JSON report.
//!
//! Modules follow the data: [`discover`] → [`decode`] → [`preprocess`] → [`models`] →
//! [`boxes`] → [`annotate`] → [`output`] → [`report`], wired by [`pipeline`].

pub mod annotate;
pub mod boxes;
pub mod cli;
pub mod coco;
pub mod commands;
pub mod config;
pub mod cuda_wait;
pub mod decode;
pub mod discover;
pub mod error;
pub mod eval;
pub mod exit;
pub mod explain;
pub mod export;
pub mod journal;
pub mod labels;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod preprocess;
pub mod progress;
pub mod render;
pub mod report;
pub mod serve;
pub mod shard;
pub mod sheet;
pub mod synth;
#[doc(hidden)]
pub mod testutil;
pub mod tf32;
pub mod threads;
pub mod train;
