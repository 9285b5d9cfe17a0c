//! `boxwalk explain layers|kernels|batchnorm`.

use super::{json_pretty, Error};
use crate::cli::{ClassifierFlag, ExplainCommand};
use crate::decode::{decode_file, Limits};
use crate::error::FileError;
use crate::exit::Exit;
use crate::explain::{self, BnReport};
use crate::models::{Classifier, Placement};
use crate::outputs::files;
use crate::weights::{resolve, Role};
use image::ImageFormat;
use std::path::Path;
use tch::{Device, Tensor};

pub fn explain(e: ExplainCommand) -> Result<Exit, Error> {
    let weights = |w: ClassifierFlag| resolve(Role::Classifier, w.weights).file;
    match e {
        ExplainCommand::Layers { model, json } => {
            let l = explain::layers(explain::Arch::parse(&model)?);
            if json {
                println!("{}", json_pretty(&l)?);
            } else {
                print!("{}", explain::layers_text(&l));
            }
        }
        ExplainCommand::Kernels { layer, weights: w, out, tensor, zoom } => {
            let file = weights(w);
            let key = explain::conv_key(layer)?;
            let vs = explain::load_resnet18(&file)?;
            let w = vs.variables()[&format!("{key}.weight")].shallow_clone();
            let grid = explain::kernel_grid(&w, zoom.clamp(1, 64));
            write_png(&out, &grid)?;
            if let Some(t) = &tensor {
                Tensor::write_safetensors(&[(format!("{key}.weight"), w.shallow_clone())], t)
                    .map_err(|source| Error::Torch { path: t.clone(), source })?;
            }
            println!(
                "boxwalk: conv #{layer} = {key}, weight {:?} from {}; grid: {}{}",
                w.size(),
                file.display(),
                out.display(),
                tensor.map(|t| format!(", tensor: {}", t.display())).unwrap_or_default()
            );
        }
        ExplainCommand::Batchnorm { image, layer, weights: w, plot, channels, json } => {
            let file = weights(w);
            let vs = explain::load_resnet18(&file)?;
            let img = decode_file(&image, &Limits::default())?.rgb;
            let r = explain::batchnorm(&vs, &img, &layer)?;
            if let Some(p) = &plot {
                write_png(p, &explain::batchnorm_plot(&r, channels.min(6)))?;
            }
            if json {
                println!("{}", json_pretty(&r)?);
            } else {
                print_batchnorm(&r, &file, &image, &layer, channels, plot.as_deref());
            }
        }
    }
    Ok(Exit::Ok)
}

fn write_png(path: &Path, img: &image::RgbImage) -> Result<(), Error> {
    Ok(files::write_image(path, img, ImageFormat::Png, 90).map_err(FileError::io(path))?)
}

fn print_batchnorm(r: &BnReport, file: &Path, image: &Path, layer: &str, channels: usize, plot: Option<&Path>) {
    println!("BatchNorm {layer} of {} on {} (eps {}):", file.display(), image.display(), r.eps);
    println!(
        "  train mode: y = slope·x + intercept with slope = γ/√(batch var + eps), intercept = β − batch mean·slope"
    );
    println!("  eval mode:  the same with the running mean and variance");
    println!("  channel   train slope  train icpt    eval slope   eval icpt");
    for c in r.channels.iter().take(channels) {
        println!(
            "  {:>7} {:>13.5} {:>11.5} {:>13.5} {:>11.5}",
            c.channel, c.train_slope, c.train_intercept, c.eval_slope, c.eval_intercept
        );
    }
    println!("  max |prediction − layer output|: train {:.2e}, eval {:.2e}", r.max_error_train, r.max_error_eval);
    let names =
        Classifier::open(file, Placement { device: Device::Cpu, half: false }).map(|c| c.classes).unwrap_or_default();
    let show = |top: &[(i64, f64)]| {
        let name = |i: i64| names.get(i as usize).map_or_else(|| format!("class {i}"), |c| c.name.clone());
        top.iter().map(|&(i, p)| format!("{} {p:.3}", name(i))).collect::<Vec<_>>().join(", ")
    };
    println!("  top-5, eval mode:  {}", show(&r.top5_eval));
    println!("  top-5, train mode: {}", show(&r.top5_train));
    println!("  largest probability change between the modes: {:.4}", r.max_prob_change);
    if let Some(p) = plot {
        println!("  plot: {}", p.display());
    }
}
