//! What `detect` shows while it runs: a progress bar with rate and ETA on a terminal, a plain
//! line every 10 seconds otherwise, JSON lines with `--json-progress`, nothing but errors with
//! `--quiet`. Also carries the Ctrl-C request to stop after the current batch.

use crate::outputs::report::ImageEntry;
use crate::run::Observer;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Quiet,
    Bar,
    Lines,
    Json,
}

impl Style {
    /// Bar on a terminal, lines otherwise.
    pub fn pick(quiet: bool, json: bool) -> Style {
        if json {
            Style::Json
        } else if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

pub struct Progress {
    style: Style,
    bar: indicatif::ProgressBar,
    total: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicUsize,
    start: Instant,
    last_line: Mutex<Instant>,
    every: Duration,
    /// Set by Ctrl-C.
    pub stop: Arc<AtomicBool>,
}

impl Progress {
    pub fn new(style: Style) -> Progress {
        let bar = if style == Style::Bar { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            style,
            bar,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            start: Instant::now(),
            last_line: Mutex::new(Instant::now()),
            every: Duration::from_secs(10),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Images per second so far and the estimated seconds left.
    fn rate_eta(&self, done: usize, total: usize) -> (f64, f64) {
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 { total.saturating_sub(done) as f64 / rate } else { f64::INFINITY };
        (rate, eta)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn started(&self, todo: usize, carried: usize) {
        self.total.store(todo, Ordering::Relaxed);
        self.bar.set_length(todo as u64);
        match self.style {
            Style::Json => {
                println!("{}", serde_json::json!({"event": "started", "todo": todo, "carried_over": carried}))
            }
            Style::Lines if carried > 0 || todo > 0 => {
                eprintln!("boxwalk: {todo} images to process, {carried} unchanged since the last run")
            }
            _ => {}
        }
    }

    fn finished(&self, e: &ImageEntry) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        let line = match (&e.error, &e.warning) {
            (Some(err), _) => {
                let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
                self.bar.set_message(format!("{failed} failed"));
                Some(format!("boxwalk: error [{}] {}", err.kind, err.message))
            }
            (None, Some(w)) => Some(format!("boxwalk: warning {}/{}: {w}", e.root, e.path)),
            (None, None) => None,
        };
        if let Some(line) = line {
            if self.style == Style::Bar {
                self.bar.suspend(|| eprintln!("{line}"));
            } else {
                eprintln!("{line}");
            }
        }
        self.bar.set_position(done as u64);
        let (rate, eta) = self.rate_eta(done, total);
        match self.style {
            Style::Json => println!(
                "{}",
                serde_json::json!({"event": "image", "path": e.path, "ok": e.error.is_none(), "done": done,
                    "total": total, "failed": self.failed.load(Ordering::Relaxed), "images_per_s": rate,
                    "eta_s": if eta.is_finite() { Some(eta) } else { None }})
            ),
            Style::Lines => {
                let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= self.every || done == total {
                    *last = Instant::now();
                    eprintln!(
                        "boxwalk: {done}/{total} images, {} failed, {rate:.1} images/s, ETA {:.0} s",
                        self.failed.load(Ordering::Relaxed),
                        if eta.is_finite() { eta } else { 0.0 }
                    );
                }
            }
            Style::Bar | Style::Quiet => {}
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
