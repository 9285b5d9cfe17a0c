//! `boxwalk render`.

use super::Error;
use crate::cli::RenderArgs;
use crate::config::UsageError;
use crate::engine::draw::Look;
use crate::exit::Exit;
use crate::render::RenderOptions;

pub fn render(a: RenderArgs) -> Result<Exit, Error> {
    if a.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(UsageError("--threshold must be within 0..1".into()).into());
    }
    if a.font_size.is_some_and(|f| !(1.0..=1000.0).contains(&f)) {
        return Err(UsageError("--font-size must be within 1..1000".into()).into());
    }
    let opts = RenderOptions {
        threshold: a.threshold,
        classes: a.classes.map(|v| v.into_iter().map(|n| n.trim().to_string()).collect()),
        look: Look { scores: !a.no_scores, line_width: a.line_width, font_px: a.font_size },
        html: !a.no_html,
        jpeg_quality: a.jpeg_quality,
        threads: a.threads.unwrap_or_else(crate::sys::available_threads),
    };
    let r = crate::render::render(&a.report, &a.out, &opts)?;
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
    Ok(Exit::finished(c.failed))
}
