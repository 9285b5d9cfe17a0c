//! `boxwalk render REPORT --out DIR`: redraws the annotated copies from a report and the original
//! files, without running any model: re-thresholding, class selection and re-styling for
//! graders in seconds. Writes DIR/report.json (the same schema, with the detections drawn) and
//! the contact sheet.

use crate::decode::{self, Limits};
use crate::engine::draw::{self, Destination, Look};
use crate::error::FileError;
use crate::outputs::files::Durability;
use crate::outputs::report::{Counts, Detection, ErrorEntry, ImageEntry, Report};
use crate::outputs::sheet;
use crate::sys::sha256_file;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Why a render could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}: render into another folder; this one holds the run's own report and annotated copies")]
    IntoRunFolder(PathBuf),
    #[error("{0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// What to draw and how.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Draw detections scoring above this; default: the report's own threshold.
    pub threshold: Option<f32>,
    /// Only these classes.
    pub classes: Option<Vec<String>>,
    /// Labels with or without scores, line and text sizes.
    pub look: Look,
    pub html: bool,
    pub jpeg_quality: u8,
    pub threads: usize,
}

/// The outcome of a render.
pub struct Rendered {
    pub report: Report,
    pub report_path: PathBuf,
    /// Things the user should know (e.g. a threshold below what the report kept).
    pub warnings: Vec<String>,
}

/// `REPORT` may name the file or the folder holding `report.json`.
pub fn report_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Renders every image of the report at `report_path` into `out`.
pub fn render(report_path: &Path, out: &Path, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    let file = report_file(report_path);
    let source = Report::read(&file)?;
    let source_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out).map_err(FileError::io(out))?;
    if same_dir(source_dir, out) {
        return Err(RenderError::IntoRunFolder(out.to_path_buf()));
    }
    let threshold = opts.threshold.unwrap_or(source.options.threshold);
    let mut warnings = Vec::new();
    let lacking = source.images.iter().filter(|e| e.detections.is_some() && e.all_detections.is_none()).count();
    if threshold < source.options.threshold && lacking > 0 {
        warnings.push(format!(
            "the report keeps detections above {} only ({lacking} image(s) without `all_detections`); \
             run `boxwalk detect --coco-json FILE` to keep every score down to 0.05",
            source.options.threshold
        ));
    }
    if let Some(names) = &opts.classes {
        let known: std::collections::BTreeSet<&str> = source
            .images
            .iter()
            .flat_map(|e| e.all_detections.iter().chain(&e.detections).flatten())
            .map(|d| d.label.as_str())
            .collect();
        for n in names.iter().filter(|n| !known.contains(n.as_str())) {
            warnings.push(format!("--classes: no detection in the report has class `{n}`"));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads.max(1)).build()?;
    let images: Vec<ImageEntry> =
        pool.install(|| source.images.par_iter().map(|e| render_one(e, out, threshold, opts)).collect());
    let failed = images.iter().filter(|e| e.error.is_some()).count();
    let mut report = source.clone();
    report.options.threshold = threshold;
    report.options.classes = opts.classes.clone();
    report.counts = Counts {
        images: images.len(),
        ok: images.len() - failed,
        failed,
        skipped: source.counts.skipped,
        processed: images.len(),
        ..Counts::default()
    };
    report.images = images;
    let report_path = out.join("report.json");
    report.write(&report_path)?;
    if opts.html {
        pool.install(|| sheet::write_index(out, &report)).map_err(FileError::io(out))?;
    }
    Ok(Rendered { report, report_path, warnings })
}

/// The detections to draw: from `all_detections` when the report has them (any threshold
/// works), else from `detections`.
fn pick(e: &ImageEntry, threshold: f32, classes: Option<&[String]>) -> Option<Vec<Detection>> {
    let from = e.all_detections.as_ref().or(e.detections.as_ref())?;
    Some(from.iter().filter(|d| d.score > threshold && classes.is_none_or(|c| c.contains(&d.label))).cloned().collect())
}

fn render_one(e: &ImageEntry, out: &Path, threshold: f32, opts: &RenderOptions) -> ImageEntry {
    let mut entry = e.clone();
    if e.error.is_some() {
        return entry;
    }
    entry.detections = pick(e, threshold, opts.classes.as_deref());
    let fail = |entry: &mut ImageEntry, kind: &str, message: String| {
        entry.output = None;
        entry.error = Some(ErrorEntry { kind: kind.into(), message });
    };
    let src = Path::new(&e.root).join(&e.path);
    if let Some(want) = &e.input_sha256 {
        match sha256_file(&src) {
            Ok(got) if &got == want => {}
            Ok(_) => {
                fail(&mut entry, "changed", format!("{}: changed since the report was written", src.display()));
                return entry;
            }
            Err(err) => {
                fail(&mut entry, "io", format!("{}: {err}", src.display()));
                return entry;
            }
        }
    }
    let limits = Limits { max_file_size: u64::MAX, max_pixels: u64::MAX, allow_truncated: true };
    let decoded = match decode::decode_file(&src, &limits) {
        Ok(d) => d,
        Err(err) => {
            draw::fail(&mut entry, &err);
            return entry;
        }
    };
    let mut rgb = decoded.rgb;
    draw::draw(&mut rgb, entry.detections.as_deref(), e.classification.as_deref(), opts.look);
    let rel = e.output.clone().unwrap_or_else(|| e.path.clone());
    let dest = Destination {
        out,
        rel: &rel,
        format: draw::format_for(&rel, decoded.format),
        jpeg_quality: opts.jpeg_quality,
        durability: Durability::Synced,
        thumbnail: opts.html,
    };
    let written = draw::write(&rgb, dest);
    draw::record(&mut entry, &rel, written);
    entry
}
