//! The contact sheet, `OUT/index.html`: one static page with no network access that graders
//! open from disk. The report's results are embedded in it as JSON; thumbnails are JPEG files
//! under `OUT/.thumbs/`, so the browser never scales full images for the grid. The page
//! paginates (200 cards a page, images loaded lazily), which keeps it usable at 10,000 images.
//!
//! Filters, the view and the sort order live in the URL's fragment (`#class=dog&min=0.5`,
//! `#view=failed`, `#sort=most`), so a grader can bookmark or share a filtered view.

use super::files;
use super::report::Report;
use crate::preprocess;
use image::{ImageFormat, RgbImage};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use rayon::prelude::*;
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;

const TEMPLATE: &str = include_str!("sheet/index.html");
const DATA_SLOT: &str = "/*DATA*/";
/// Folder of the thumbnails inside OUT (never walked as input: OUT is excluded).
pub const THUMBS: &str = ".thumbs";
/// Longest side of a thumbnail, px.
pub const THUMB_SIDE: u32 = 320;

/// Characters escaped in the relative URLs of the page: everything but unreserved characters
/// and `/` (so `#`, `?`, `%` and spaces in file names stay part of the path).
const PATH_SET: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');

fn url(rel: &str) -> String {
    utf8_percent_encode(rel, PATH_SET).to_string()
}

/// Thumbnail of the annotated copy at `output_rel`, relative to OUT.
pub fn thumb_rel(output_rel: &str) -> String {
    format!("{THUMBS}/{output_rel}.jpg")
}

/// Writes the thumbnail of an annotated image (atomically, as every output).
pub fn write_thumbnail(out: &Path, output_rel: &str, img: &RgbImage) -> std::io::Result<()> {
    let (w, h) = img.dimensions();
    let scale = (THUMB_SIDE as f64 / w.max(h).max(1) as f64).min(1.0);
    let (tw, th) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    let thumb = preprocess::resize_rgb(img, tw, th);
    // Derived from the annotated copy and recreated when missing or stale: never worth a sync.
    let rel = thumb_rel(output_rel);
    files::write_image_below(out, Path::new(&rel), &thumb, ImageFormat::Jpeg, 85, files::Durability::Deferred)
}

/// Whether the thumbnail of `output_rel` is missing, empty (thumbnails are not synced, so a power
/// loss can leave one empty) or older than the annotated copy.
fn thumbnail_stale(out: &Path, output_rel: &str) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).ok().filter(|m| m.len() > 0).and_then(|m| m.modified().ok());
    match (modified(&out.join(thumb_rel(output_rel))), modified(&out.join(output_rel))) {
        (Some(thumb), Some(image)) => thumb < image,
        _ => true,
    }
}

/// Creates the thumbnails that are missing or stale (images carried over from, or redrawn by, a
/// run with `--no-html`; thumbnails deleted by hand) from the annotated copies. Failures only
/// cost the thumbnail: the page then shows the full image. Returns the outputs left without one.
pub fn ensure_thumbnails(out: &Path, report: &Report) -> HashSet<String> {
    let missing: Vec<&str> =
        report.images.iter().filter_map(|e| e.output.as_deref()).filter(|o| thumbnail_stale(out, o)).collect();
    missing
        .par_iter()
        .filter(|o| {
            let img = image::open(out.join(o));
            img.map_or(true, |img| write_thumbnail(out, o, &img.to_rgb8()).is_err())
        })
        .map(|o| o.to_string())
        .collect()
}

/// The page's data: per image the output, thumbnail (unless in `no_thumb`), detections and
/// top-k; the failures.
fn page_data(report: &Report, no_thumb: &HashSet<String>) -> serde_json::Value {
    let images: Vec<serde_json::Value> = report
        .images
        .iter()
        .map(|e| {
            let d: Vec<_> = e.detections.iter().flatten().map(|d| json!([d.label, d.score])).collect();
            let c: Vec<_> = e.classification.iter().flatten().map(|c| json!([c.label, c.prob])).collect();
            let thumb = e.output.as_deref().filter(|o| !no_thumb.contains(*o)).map(thumb_rel);
            json!({
                "p": e.path,
                "o": e.output.as_deref().map(url),
                "t": thumb.as_deref().map(url),
                "d": d,
                "c": c,
                "e": e.error.is_some(),
                "w": e.warning,
            })
        })
        .collect();
    let mut failed: Vec<serde_json::Value> = report
        .images
        .iter()
        .filter_map(|e| {
            e.error.as_ref().map(|err| json!({"p": Path::new(&e.root).join(&e.path), "k": err.kind, "m": err.message}))
        })
        .collect();
    failed.extend(report.skipped.iter().map(|s| json!({"p": s.path, "k": "skipped", "m": s.reason})));
    json!({
        "summary": {
            "images": report.counts.images,
            "ok": report.counts.ok,
            "failed": report.counts.failed,
            "finished": report.finished,
            "device": report.device,
            "demo": report.models.iter().any(|m| m.demo),
        },
        "images": images,
        "failed": failed,
    })
}

/// The page for `report`, with the data embedded (`</` escaped so no file name can end the
/// script element).
pub fn render_page(report: &Report, no_thumb: &HashSet<String>) -> String {
    let data = page_data(report, no_thumb).to_string().replace("</", "<\\/");
    TEMPLATE.replacen(DATA_SLOT, &data, 1)
}

/// Writes `OUT/index.html` (thumbnails first, so the page finds them).
pub fn write_index(out: &Path, report: &Report) -> std::io::Result<()> {
    let no_thumb = ensure_thumbnails(out, report);
    let page = render_page(report, &no_thumb);
    files::write_atomic(&out.join("index.html"), |w| w.write_all(page.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample_report(path: &str) -> Report {
        serde_json::from_value(json!({
            "schema": crate::outputs::report::SCHEMA, "tool": {"name": "boxwalk", "version": "0"},
            "started": "", "finished": "", "device": "cpu",
            "options": {"threshold": 0.4, "max_detections": 200, "classes": null, "top_k": 5, "classify_crops": false,
                        "detect": true, "classify": true, "half": false, "batch_size": 8, "format": null, "jpeg_quality": 90},
            "run_key": "", "models": [],
            "counts": {"images": 1, "ok": 1, "failed": 0, "skipped": 0, "new": 1, "changed": 0, "unchanged": 0,
                       "removed": 0, "processed": 1},
            "timing": {"total_s": 0.0, "load_models_s": 0.0, "decode_s": 0.0, "preprocess_s": 0.0, "inference_s": 0.0,
                       "annotate_s": 0.0, "write_s": 0.0},
            "images": [{"path": path, "root": "in", "width": 4, "height": 4, "output": path,
                        "detections": [{"label": "dog", "class_index": 18, "score": 0.9, "box": [0.0, 0.0, 2.0, 2.0]}],
                        "classification": []}],
            "skipped": []
        }))
        .expect("a valid report")
    }

    #[test]
    fn urls_keep_slashes_and_escape_what_would_break_a_path() {
        assert_eq!(url("a/b c/#1?.jpg"), "a/b%20c/%231%3F.jpg");
        assert_eq!(url("plain/name-1_2.jpg"), "plain/name-1_2.jpg");
        assert_eq!(url("ünï/x%y.png"), "%C3%BCn%C3%AF/x%25y.png");
    }

    #[test]
    fn the_data_cannot_close_the_script_element() {
        let r = sample_report("</script><b>x.jpg");
        let page = render_page(&r, &HashSet::new());
        assert_eq!(page.matches("</script>").count(), TEMPLATE.matches("</script>").count());
        assert!(page.contains("<\\/script><b>x.jpg"));
    }
}
