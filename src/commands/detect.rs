//! `boxwalk detect`: the run, its progress and Ctrl-C handling, and its summary line.

use super::Error;
use crate::cli::DetectArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::progress::{self, Progress};
use crate::run;
use crate::weights::{demo_dir, model_store, Role};

pub fn detect(args: DetectArgs) -> Result<Exit, Error> {
    let bench_forward = args.bench_forward;
    let cfg = Config::from_args(args)?;
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
    // First Ctrl-C: finish the batch in flight, write the report, exit 130. Second: exit now
    // (the journal still lets the next run continue).
    let stop = progress.stop.clone();
    let _ = ctrlc::set_handler(move || {
        if stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(Exit::Interrupted as i32);
        }
        eprintln!("\nboxwalk: stopping after the current batch (Ctrl-C again to quit at once)");
    });
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
        Exit::Interrupted
    } else if c.images == 0 {
        eprintln!("boxwalk: no images found in the inputs");
        Exit::NoInputs
    } else {
        Exit::finished(c.failed)
    })
}
