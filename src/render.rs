//! `boxwalk render REPORT --out DIR`: redraws the annotated copies from a report and the original
//! files, without running any model: re-thresholding, class selection and re-styling for
//! graders in seconds. Writes DIR/report.json (the same schema, with the detections drawn) and
//! the contact sheet.

use crate::annotate::{self, BoxLabel, Style};
use crate::decode::{self, Limits};
use crate::output;
use crate::pipeline::sha256_file;
use crate::report::{Counts, Detection, ErrorEntry, ImageEntry, Report};
use crate::sheet;
use image::ImageFormat;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What to draw and how.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Draw detections scoring above this; default: the report's own threshold.
    pub threshold: Option<f32>,
    /// Only these classes.
    pub classes: Option<Vec<String>>,
    pub line_width: Option<u32>,
    pub font_size: Option<f32>,
    /// Labels show the class only.
    pub no_scores: bool,
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
pub fn render(report_path: &Path, out: &Path, opts: &RenderOptions) -> Result<Rendered, String> {
    let file = report_file(report_path);
    let source = Report::read(&file)?;
    let source_dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    if same_dir(source_dir, out) {
        return Err(format!(
            "{}: render into another folder; this one holds the run's own report and annotated copies",
            out.display()
        ));
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
    let pool = rayon::ThreadPoolBuilder::new().num_threads(opts.threads.max(1)).build().map_err(|e| e.to_string())?;
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
    output::write_atomic(&report_path, |w| {
        serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other)
    })
    .map_err(|e| format!("{}: {e}", report_path.display()))?;
    if opts.html {
        pool.install(|| sheet::write_index(out, &report)).map_err(|e| format!("{}: {e}", out.display()))?;
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
    let limits = Limits { max_file_size: u64::MAX, max_pixels: u64::MAX };
    let decoded = match decode::decode_file(&src, &limits) {
        Ok(d) => d,
        Err(err) => {
            fail(&mut entry, err.kind(), err.to_string());
            return entry;
        }
    };
    let mut rgb = decoded.rgb;
    let boxes: Vec<BoxLabel> = entry
        .detections
        .iter()
        .flatten()
        .map(|d| BoxLabel {
            class_index: d.class_index,
            text: if opts.no_scores { d.label.clone() } else { format!("{} {:.2}", d.label, d.score) },
            bbox: d.bbox,
        })
        .collect();
    let auto = Style::for_size(rgb.width(), rgb.height());
    let style = Style {
        line_width: opts.line_width.unwrap_or(auto.line_width).max(1),
        font_px: opts.font_size.unwrap_or(auto.font_px).max(1.0),
    };
    let banner = e.classification.as_ref().and_then(|c| c.first()).map(|c| {
        if opts.no_scores {
            c.label.clone()
        } else {
            format!("{} {:.2}", c.label, c.prob)
        }
    });
    annotate::annotate_with(&mut rgb, &boxes, banner.as_deref(), style);
    let rel = e.output.clone().unwrap_or_else(|| e.path.clone());
    let format = ImageFormat::from_path(&rel).ok().filter(|f| f.writing_enabled()).unwrap_or(decoded.format);
    let written = output::write_image(&out.join(&rel), &rgb, format, opts.jpeg_quality);
    match written {
        Ok(()) => {
            if opts.html {
                let _ = sheet::write_thumbnail(out, &rel, &rgb);
            }
            entry.output = Some(rel);
        }
        Err(reason) => fail(&mut entry, "write", format!("{}: {reason}", out.join(&rel).display())),
    }
    entry
}
