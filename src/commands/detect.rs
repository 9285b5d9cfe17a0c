//! `boxwalk detect`: the run, its progress, its stop on a signal (Ctrl-C, SIGTERM, SIGHUP), its
//! summary line and exit code.

use super::Error;
use crate::cli::DetectArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::{self, Progress};
use crate::run;
use crate::weights::{demo_dir, model_store, Role};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

pub fn detect(args: DetectArgs) -> Result<Exit, Error> {
    let fail_on = args.fail_on;
    super::under_policy(fail_on, detect_under(args))
}

/// Stops the run on SIGINT, SIGTERM or SIGHUP: the first lets the batch in flight finish (or
/// drops what is queued behind it), writes the report and ends with 128 + the signal; a second
/// exits at once (the journal still lets the next run continue). Returns the first signal caught,
/// 0 while there is none.
fn stop_on_signals(stop: Arc<AtomicBool>) -> Result<Arc<AtomicI32>, std::io::Error> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let caught = Arc::new(AtomicI32::new(0));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let first = caught.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if stop.swap(true, Ordering::SeqCst) {
                // At once, without running destructors while the other threads still work (the
                // journal is synced batch by batch: nothing recorded is lost).
                // SAFETY: _exit ends the process; it touches no memory of ours.
                unsafe { libc::_exit(Exit::stopped_by(signal) as i32) };
            }
            first.store(signal, Ordering::SeqCst);
            let name = match signal {
                SIGINT => "Ctrl-C",
                SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            eprintln!("\nboxwalk: {name}: stopping after the batch in flight (a second signal quits at once)");
        }
    });
    Ok(caught)
}

fn detect_under(args: DetectArgs) -> Result<Exit, Error> {
    let bench_forward = args.bench_forward;
    let cfg = Config::from_args(args)?;
    if cfg.dry_run {
        return dry_run(&cfg);
    }
    if bench_forward {
        let floor = run::floor::forward_floor(&cfg)?;
        println!("{}", serde_json::to_string(&floor)?);
        return Ok(Exit::Ok);
    }
    if !cfg.demo_roles.is_empty() && !cfg.quiet {
        eprintln!(
            "boxwalk: note: no official weights installed, so the offline DEMO {} from {} {} used. They were trained \
             on synthetic shapes (circle, square, triangle, star, cross; background kinds), not on COCO/ImageNet. \
             For the real SSD300/ResNet-18, run `boxwalk models import FILE` on the official checkpoints (they go to {}; \
             see README, \"Official weights\").",
            cfg.demo_roles.iter().map(|r: &Role| r.name()).collect::<Vec<_>>().join(" and "),
            demo_dir().display(),
            if cfg.demo_roles.len() > 1 { "are" } else { "is" },
            model_store().display()
        );
    }
    let progress = Progress::new(progress::Style::pick(cfg.quiet, cfg.json_progress));
    let caught = stop_on_signals(progress.stop.clone()).map_err(Error::Signals)?;
    let result = run::run(&cfg, &progress);
    progress.finish();
    let s = result?;
    let c = &s.report.counts;
    if cfg.json_progress {
        println!(
            "{}",
            serde_json::json!({"event": "finished", "counts": c, "interrupted": s.report.interrupted,
            "report": s.report_path})
        );
    } else if !cfg.quiet {
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
    Ok(if s.report.interrupted {
        eprintln!("boxwalk: interrupted; rerun the same command to continue");
        Exit::stopped_by(caught.load(Ordering::SeqCst))
    } else if c.images == 0 {
        eprintln!("boxwalk: no images found in the inputs");
        Exit::NoInputs
    } else {
        Exit::finished(c.failed)
    })
}

/// Prints the plan of a run, per folder, and what it adds up to.
fn dry_run(cfg: &Config) -> Result<Exit, Error> {
    let plan = run::dry::dry_run(cfg)?;
    println!("boxwalk: dry run into {} (no model loaded, nothing written):", cfg.out.display());
    for (folder, f) in &plan.folders {
        let mut rejected = Vec::new();
        if f.too_large > 0 {
            rejected.push(format!("{} over --max-file-size", f.too_large));
        }
        if f.not_images > 0 {
            rejected.push(format!("{} not images", f.not_images));
        }
        let rejected = if rejected.is_empty() { String::new() } else { format!(", rejected: {}", rejected.join(", ")) };
        println!("  {}: {} to process, {} carried over{rejected}", folder.display(), f.process, f.carry);
    }
    for s in &plan.skipped {
        println!("  {}: cannot be read: {}", s.path.display(), s.reason);
    }
    let c = &plan.counts;
    let sum = |f: fn(&run::dry::Folder) -> usize| plan.folders.values().map(f).sum::<usize>();
    println!(
        "boxwalk: would process {}, carry over {}, reject {} ({} new, {} changed, {} unchanged, {} removed{})",
        sum(|f| f.process),
        sum(|f| f.carry),
        sum(|f| f.too_large + f.not_images),
        c.new,
        c.changed,
        c.unchanged,
        c.removed,
        if cfg.prune { format!(", {} copies pruned", c.removed) } else { String::new() }
    );
    Ok(Exit::Ok)
}
