//! The subcommands: each takes its parsed arguments, runs, prints, and returns the exit code.

use crate::cli::{
    Command, DetectArgs, EvalArgs, ExplainCommand, ModelsCommand, RenderArgs, ServeArgs, SynthArgs,
    TrainClassifierArgs, TrainCommand, TrainCommon, TrainDetectorArgs,
};
use crate::config::{self, Config};
use crate::exit::Exit;
use crate::models::{store, Classifier, Detector, Placement};
use crate::pipeline;
use crate::progress::{self, Progress};
use crate::train::{self, Optim};
use tch::{Device, Tensor};

/// Runs one parsed command line.
pub fn run(cmd: Command) -> Exit {
    match cmd {
        Command::Detect(a) => detect(a),
        Command::Synth(a) => synth(a),
        Command::Train(TrainCommand::Classifier(a)) => train_classifier(a),
        Command::Train(TrainCommand::Detector(a)) => train_detector(a),
        Command::Eval(a) => eval(a),
        Command::Merge { shards, out } => match crate::shard::merge(&shards, &out) {
            Ok(r) => {
                // The merged folder gets its own contact sheet (thumbnails made from the copies).
                if let Err(e) = crate::sheet::write_index(&out, &r) {
                    eprintln!("boxwalk: {}: {e}", out.join("index.html").display());
                    return Exit::Fatal;
                }
                println!(
                    "boxwalk: merged {} shards: {} images ({} ok, {} failed) into {}",
                    shards.len(),
                    r.counts.images,
                    r.counts.ok,
                    r.counts.failed,
                    out.join("report.json").display()
                );
                Exit::finished(r.counts.failed)
            }
            Err(e) => {
                eprintln!("boxwalk: {e}");
                Exit::Fatal
            }
        },
        Command::Render(a) => render(a),
        Command::Serve(a) => serve(a),
        Command::Explain(e) => explain(e),
        Command::Models(ModelsCommand::Import { file, role }) => models_import(&file, role.as_deref()),
        Command::Models(ModelsCommand::List { json }) => models_list(json),
        Command::Models(ModelsCommand::Fetch { detector, classifier }) => models_fetch(detector, classifier),
    }
}

/// `boxwalk explain`.
fn explain(e: ExplainCommand) -> Exit {
    use crate::explain;
    let weights = |w: Option<std::path::PathBuf>| {
        config::resolve_weights(w, config::CLASSIFIER_FILE, config::DEMO_CLASSIFIER_FILE).0
    };
    let result: Result<(), String> = match e {
        ExplainCommand::Layers { model, json } => explain::Arch::parse(&model).map(|arch| {
            let l = explain::layers(arch);
            if json {
                println!("{}", serde_json::to_string_pretty(&l).unwrap_or_default());
            } else {
                print!("{}", explain::layers_text(&l));
            }
        }),
        ExplainCommand::Kernels { layer, weights: w, out, tensor, zoom } => (|| {
            let file = weights(w);
            let key = explain::conv_key(layer)?;
            let vs = explain::load_resnet18(&file)?;
            let w = vs.variables()[&format!("{key}.weight")].shallow_clone();
            let grid = explain::kernel_grid(&w, zoom.clamp(1, 64));
            crate::output::write_image(&out, &grid, image::ImageFormat::Png, 90)?;
            if let Some(t) = &tensor {
                Tensor::write_safetensors(&[(format!("{key}.weight"), w.shallow_clone())], t)
                    .map_err(|e| format!("{}: {e}", t.display()))?;
            }
            println!(
                "boxwalk: conv #{layer} = {key}, weight {:?} from {}; grid: {}{}",
                w.size(),
                file.display(),
                out.display(),
                tensor.map(|t| format!(", tensor: {}", t.display())).unwrap_or_default()
            );
            Ok(())
        })(),
        ExplainCommand::Batchnorm { image, layer, weights: w, plot, channels, json } => (|| {
            let file = weights(w);
            let vs = explain::load_resnet18(&file)?;
            let img =
                crate::decode::decode_file(&image, &crate::decode::Limits::default()).map_err(|e| e.to_string())?.rgb;
            let r = explain::batchnorm(&vs, &img, &layer)?;
            if let Some(p) = &plot {
                crate::output::write_image(
                    p,
                    &explain::batchnorm_plot(&r, channels.min(6)),
                    image::ImageFormat::Png,
                    90,
                )?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                return Ok(());
            }
            println!("BatchNorm {layer} of {} on {} (eps {}):", file.display(), image.display(), r.eps);
            println!("  train mode: y = slope·x + intercept with slope = γ/√(batch var + eps), intercept = β − batch mean·slope");
            println!("  eval mode:  the same with the running mean and variance");
            println!("  channel   train slope  train icpt    eval slope   eval icpt");
            for c in r.channels.iter().take(channels) {
                println!(
                    "  {:>7} {:>13.5} {:>11.5} {:>13.5} {:>11.5}",
                    c.channel, c.train_slope, c.train_intercept, c.eval_slope, c.eval_intercept
                );
            }
            println!(
                "  max |prediction − layer output|: train {:.2e}, eval {:.2e}",
                r.max_error_train, r.max_error_eval
            );
            let names = Classifier::open(&file, Placement { device: Device::Cpu, half: false })
                .map(|c| c.classes)
                .unwrap_or_default();
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
            Ok(())
        })(),
    };
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk serve`.
fn serve(a: ServeArgs) -> Exit {
    let device = match config::parse_device(&a.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            return Exit::Usage;
        }
    };
    let (det_file, det_demo) =
        config::resolve_weights(a.detector_weights, config::DETECTOR_FILE, config::DEMO_DETECTOR_FILE);
    let (cls_file, cls_demo) =
        config::resolve_weights(a.classifier_weights, config::CLASSIFIER_FILE, config::DEMO_CLASSIFIER_FILE);
    let place = Placement { device, half: false };
    let models = Detector::open(&det_file, place).and_then(|d| Classifier::open(&cls_file, place).map(|c| (d, c)));
    let (detector, classifier) = match models {
        Ok(m) => m,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            return Exit::Fatal;
        }
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let opts = crate::serve::ServeOptions {
        host: a.host,
        port: a.port,
        max_upload: a.max_upload,
        limits: crate::decode::Limits { max_file_size: a.max_upload, max_pixels: a.max_pixels },
        device,
        workers: a.workers.unwrap_or(threads),
        // A demo model given by path is still a demo model: its card says so.
        demo: det_demo
            || cls_demo
            || [&detector.card, &classifier.card].iter().any(|c| c.as_ref().is_some_and(|c| c.demo)),
    };
    match crate::serve::serve(opts, detector, classifier) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk render`.
fn render(a: RenderArgs) -> Exit {
    if a.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        eprintln!("boxwalk: --threshold must be within 0..1");
        return Exit::Usage;
    }
    if a.font_size.is_some_and(|f| !(1.0..=1000.0).contains(&f)) {
        eprintln!("boxwalk: --font-size must be within 1..1000");
        return Exit::Usage;
    }
    let opts = crate::render::RenderOptions {
        threshold: a.threshold,
        classes: a.classes.map(|v| v.into_iter().map(|n| n.trim().to_string()).collect()),
        line_width: a.line_width,
        font_size: a.font_size,
        no_scores: a.no_scores,
        html: !a.no_html,
        jpeg_quality: a.jpeg_quality,
        threads: a.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
    };
    match crate::render::render(&a.report, &a.out, &opts) {
        Ok(r) => {
            for w in &r.warnings {
                eprintln!("boxwalk: warning: {w}");
            }
            for e in r.report.images.iter().filter_map(|e| e.error.as_ref()) {
                eprintln!("boxwalk: {}", e.message);
            }
            let c = &r.report.counts;
            println!(
                "boxwalk: rendered {} images ({} ok, {} failed) into {}; report: {}",
                c.images,
                c.ok,
                c.failed,
                a.out.display(),
                r.report_path.display()
            );
            Exit::finished(c.failed)
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk models import`.
pub fn models_import(file: &std::path::Path, role: Option<&str>) -> Exit {
    let role = match role.map(|r| store::Role::parse(r).ok_or(r)).transpose() {
        Ok(r) => r,
        Err(r) => {
            eprintln!("boxwalk: --as {r}: use detector or classifier");
            return Exit::Usage;
        }
    };
    match store::import(file, role, None) {
        Ok((path, card)) => {
            println!(
                "boxwalk: installed {} as the {} ({} classes; sha256 of the original {})",
                path.display(),
                card.role,
                card.classes.len(),
                card.source_sha256.as_deref().unwrap_or("?")
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk models fetch`.
pub fn models_fetch(detector: bool, classifier: bool) -> Exit {
    let both = !detector && !classifier;
    let mirror = std::env::var("BOXWALK_MIRROR").ok().filter(|m| !m.is_empty());
    let mut failed = false;
    for src in crate::models::fetch::SOURCES {
        let wanted = both
            || (detector && src.role == store::Role::Detector)
            || (classifier && src.role == store::Role::Classifier);
        if !wanted {
            continue;
        }
        match crate::models::fetch::fetch(&src, mirror.as_deref()) {
            Ok((path, card)) => println!(
                "boxwalk: installed {} from {} (sha256 {})",
                path.display(),
                card.source,
                card.source_sha256.as_deref().unwrap_or("?")
            ),
            Err(e) => {
                eprintln!("boxwalk: {e}");
                failed = true;
            }
        }
    }
    if failed {
        Exit::Fatal
    } else {
        Exit::Ok
    }
}

/// `boxwalk models list`.
pub fn models_list(json: bool) -> Exit {
    let all = store::list();
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Exit::Ok;
    }
    println!("model store: {}", config::model_store().display());
    if all.is_empty() {
        println!("no models installed");
    }
    for m in &all {
        println!(
            "{} {:<10} {:>9.1} MB  sha256 {}  {}{}\n      source: {}",
            if m.in_use { "*" } else { " " },
            m.role,
            m.bytes as f64 / 1e6,
            &m.sha256[..m.sha256.len().min(16)],
            m.file,
            if m.demo { "  (demo)" } else { "" },
            m.source
        );
    }
    println!("* = used by `boxwalk detect` by default");
    Exit::Ok
}

/// `boxwalk detect`.
pub fn detect(args: DetectArgs) -> Exit {
    let bench_forward = args.bench_forward;
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("boxwalk: {e}");
            return Exit::Usage;
        }
    };
    if bench_forward {
        return match pipeline::forward_floor(&cfg) {
            Ok(floor) => {
                println!("{}", serde_json::to_string(&floor).unwrap_or_default());
                Exit::Ok
            }
            Err(e) => {
                eprintln!("boxwalk: {e}");
                Exit::Fatal
            }
        };
    }
    let quiet = cfg.quiet;
    if !cfg.demo_roles.is_empty() && !quiet {
        eprintln!(
            "boxwalk: note: no official weights installed, so the offline DEMO {} from {} {} used. They were trained \
             on synthetic shapes (circle, square, triangle, star, cross; background kinds), not on COCO/ImageNet. \
             For the real SSD300/ResNet-18, run `boxwalk models import FILE` on the official checkpoints (they go to {}; \
             see README, \"Official weights\").",
            cfg.demo_roles.join(" and "),
            config::demo_dir().display(),
            if cfg.demo_roles.len() > 1 { "are" } else { "is" },
            config::model_store().display()
        );
    }
    let progress = Progress::new(progress::Style::pick(quiet, cfg.json_progress));
    // First Ctrl-C: finish the batch in flight, write the report, exit 130. Second: exit now
    // (the journal still lets the next run continue).
    let stop = progress.stop.clone();
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(Exit::Interrupted as i32);
        }
        eprintln!("\nboxwalk: stopping after the current batch (Ctrl-C again to quit at once)");
    });
    let result = pipeline::run(&cfg, &progress);
    progress.finish();
    match result {
        Err(e @ pipeline::FatalError::Usage(_)) => {
            eprintln!("boxwalk: {e}");
            Exit::Usage
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
        Ok(s) => {
            let c = &s.report.counts;
            if cfg.json_progress {
                println!(
                    "{}",
                    serde_json::json!({"event": "finished", "counts": c, "interrupted": s.report.interrupted,
                    "report": s.report_path})
                );
            } else if !quiet {
                println!(
                    "boxwalk: {} images ({} ok, {} failed; {} new, {} changed, {} unchanged, {} removed; {} processed) \
                     in {:.1} s on {}; annotated copies in {}, report: {}{}",
                    c.images,
                    c.ok,
                    c.failed,
                    c.new,
                    c.changed,
                    c.unchanged,
                    c.removed,
                    c.processed,
                    s.report.timing.total_s,
                    s.report.device,
                    cfg.out.display(),
                    s.report_path.display(),
                    if cfg.html { format!(", contact sheet: {}", cfg.out.join("index.html").display()) } else { String::new() }
                );
            }
            if s.report.interrupted {
                eprintln!("boxwalk: interrupted; rerun the same command to continue");
                Exit::Interrupted
            } else if c.images == 0 {
                eprintln!("boxwalk: no images found in the inputs");
                Exit::NoInputs
            } else {
                Exit::finished(c.failed)
            }
        }
    }
}

/// `boxwalk synth`.
pub fn synth(a: SynthArgs) -> Exit {
    if a.n == 0 || a.width < 32 || a.height < 32 {
        eprintln!("boxwalk: synth needs --n >= 1 and scenes of at least 32×32");
        return Exit::Usage;
    }
    let opts =
        crate::synth::SynthOptions { n: a.n, seed: a.seed, width: a.width, height: a.height, ..Default::default() };
    match crate::synth::write_set(&opts, &a.out) {
        Ok(ds) => {
            println!(
                "boxwalk: wrote {} scenes with {} objects to {} (annotations.json, images/, crops/, scenes/)",
                ds.images.len(),
                ds.annotations.len(),
                a.out.display()
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

fn optim(c: &TrainCommon) -> Result<Optim, Exit> {
    match c.optimizer.as_str() {
        "adam" => Ok(Optim::Adam),
        "sgd" => Ok(Optim::Sgd { momentum: c.momentum }),
        other => {
            eprintln!("boxwalk: --optimizer {other}: use adam or sgd");
            Err(Exit::Usage)
        }
    }
}

fn set_threads(c: &TrainCommon) {
    let n = c.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    tch::set_num_threads(n.max(1) as i32);
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `boxwalk train classifier`.
pub fn train_classifier(a: TrainClassifierArgs) -> Exit {
    let optim = match optim(&a.common) {
        Ok(o) => o,
        Err(e) => return e,
    };
    set_threads(&a.common);
    let init = if a.scratch {
        None
    } else {
        a.init.or_else(|| {
            [config::model_store().join(config::CLASSIFIER_FILE), config::demo_dir().join(config::DEMO_CLASSIFIER_FILE)]
                .into_iter()
                .find(|p| p.is_file())
        })
    };
    let o = train::classifier::ClassifierTrainOptions {
        data: a.common.data,
        out: a.common.out,
        init,
        width_divisor: a.width_divisor,
        freeze_backbone: a.freeze_backbone,
        epochs: a.common.epochs,
        batch_size: a.common.batch_size.max(1),
        lr: a.common.lr,
        optim,
        weight_decay: a.common.weight_decay,
        augment: !a.common.no_augment,
        seed: a.common.seed,
        command: command_line(),
    };
    match train::classifier::train(&o, &mut train::Stdout) {
        Ok((path, acc)) => {
            println!("boxwalk: wrote {} (val top-1 {acc:.3}); use it with --classifier-weights", path.display());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk train detector`.
pub fn train_detector(a: TrainDetectorArgs) -> Exit {
    let optim = match optim(&a.common) {
        Ok(o) => o,
        Err(e) => return e,
    };
    set_threads(&a.common);
    let o = train::detector::DetectorTrainOptions {
        data: a.common.data,
        val: a.val,
        out: a.common.out,
        backbone: a.backbone,
        width_divisor: a.width_divisor,
        epochs: a.common.epochs,
        batch_size: a.common.batch_size.max(1),
        lr: a.common.lr,
        optim,
        weight_decay: a.common.weight_decay,
        warmup_steps: a.warmup,
        augment: !a.common.no_augment,
        seed: a.common.seed,
        resume: a.resume,
        max_steps: a.max_steps,
        command: command_line(),
    };
    match train::detector::train(&o, &mut train::Stdout) {
        Ok(path) => {
            println!("boxwalk: wrote {}; use it with --detector-weights", path.display());
            Exit::Ok
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}

/// `boxwalk eval`.
pub fn eval(a: EvalArgs) -> Exit {
    let place = Placement { device: Device::Cpu, half: false };
    let result = if let Some(w) = &a.detector_weights {
        Detector::open(w, place).map_err(|e| e.to_string()).and_then(|det| {
            let ds = crate::coco::Dataset::read(&a.data.join("annotations.json"))?;
            let r = crate::eval::eval_detector(&det, &ds, &a.data, a.batch_size)?;
            Ok((
                serde_json::to_value(&r).unwrap_or_default(),
                format!(
                    "mAP@0.5 {:.4}, mAP@[.5:.95] {:.4} over {} images, {} boxes",
                    r.map50, r.map50_95, r.images, r.truths
                ),
            ))
        })
    } else if let Some(w) = &a.classifier_weights {
        Classifier::open(w, place).map_err(|e| e.to_string()).and_then(|cls| {
            let names: Vec<String> = cls.classes.iter().map(|c| c.name.clone()).collect();
            let items = crate::eval::image_folder(&a.data, Some(&names))?.items;
            let r = crate::eval::eval_classifier(&cls, &items, a.batch_size)?;
            Ok((
                serde_json::to_value(&r).unwrap_or_default(),
                format!("top-1 {:.4}, top-5 {:.4} over {} images", r.top1, r.top5, r.images),
            ))
        })
    } else {
        Err("pass --detector-weights or --classifier-weights".into())
    };
    match result {
        Ok((json, text)) => {
            println!("{}", if a.json { json.to_string() } else { text });
            Exit::Ok
        }
        Err(e) => {
            eprintln!("boxwalk: {e}");
            Exit::Fatal
        }
    }
}
