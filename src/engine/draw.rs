//! From an image and its results to files: the boxes and the classifier's banner drawn on the
//! image, the copy encoded and written atomically under OUT, and its contact-sheet thumbnail.

use crate::error::{is_environment_fault, ImageError};
use crate::outputs::annotate::{self, BoxLabel, Style};
use crate::outputs::files::{self, Durability};
use crate::outputs::report::{Class, Detection, ErrorEntry, ImageEntry};
use crate::outputs::sheet;
use image::{ImageFormat, RgbImage};
use std::path::Path;

/// How results are drawn.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    /// Labels show `class 0.93`; without scores, the class only.
    pub scores: bool,
    /// Box outline width; default: scaled to the image.
    pub line_width: Option<u32>,
    /// Label text height; default: scaled to the image.
    pub font_px: Option<f32>,
}

impl Default for Look {
    fn default() -> Self {
        Look { scores: true, line_width: None, font_px: None }
    }
}

/// Where and how an annotated copy is written.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub out: &'a Path,
    /// Relative to `out`.
    pub rel: &'a str,
    pub format: ImageFormat,
    pub jpeg_quality: u8,
    pub durability: Durability,
    /// Also write the contact sheet's thumbnail.
    pub thumbnail: bool,
}

/// The format an annotated copy at `rel` is written in: its extension's, when boxwalk writes
/// that format, else the input's own.
pub fn format_for(rel: &str, decoded: ImageFormat) -> ImageFormat {
    ImageFormat::from_path(rel).ok().filter(|f| f.writing_enabled()).unwrap_or(decoded)
}

/// Draws `detections` and the classifier's top-1 as a banner onto `rgb`.
pub fn draw(rgb: &mut RgbImage, detections: Option<&[Detection]>, classification: Option<&[Class]>, look: Look) {
    let label = |name: &str, score: f32| if look.scores { format!("{name} {score:.2}") } else { name.to_string() };
    let boxes: Vec<BoxLabel> = detections
        .into_iter()
        .flatten()
        .map(|d| BoxLabel { class_index: d.class_index, text: label(&d.label, d.score), bbox: d.bbox })
        .collect();
    let banner = classification.and_then(|c| c.first()).map(|c| label(&c.label, c.prob));
    let auto = Style::for_size(rgb.width(), rgb.height());
    let style = Style {
        line_width: look.line_width.unwrap_or(auto.line_width).max(1),
        font_px: look.font_px.unwrap_or(auto.font_px).max(1.0),
    };
    annotate::annotate_with(rgb, &boxes, banner.as_deref(), style);
}

/// Writes the drawn `rgb` to its destination, then its thumbnail, creating folders below
/// `dest.out` but never `dest.out` itself. Only the page needs the thumbnail, and the page
/// recreates a missing one, so failing to write it is no image error, unless the cause is the
/// machine's ([`is_environment_fault`]), which every later write would meet too.
pub fn write(rgb: &RgbImage, dest: Destination) -> Result<(), ImageError> {
    let rel = Path::new(dest.rel);
    files::write_image_below(dest.out, rel, rgb, dest.format, dest.jpeg_quality, dest.durability)
        .map_err(|source| ImageError::Write { path: dest.out.join(rel), source })?;
    if dest.thumbnail {
        match sheet::write_thumbnail(dest.out, dest.rel, rgb) {
            Err(source) if is_environment_fault(&source) => {
                return Err(ImageError::Write { path: dest.out.join(sheet::thumb_rel(dest.rel)), source })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Records in `entry` what [`write`] did: the copy's path, or the error.
pub fn record(entry: &mut ImageEntry, rel: &str, written: Result<(), ImageError>) {
    match written {
        Ok(()) => entry.output = Some(rel.to_string()),
        Err(e) => fail(entry, &e),
    }
}

/// Turns `entry` into an error entry for `e`, without an output.
pub fn fail(entry: &mut ImageEntry, e: &ImageError) {
    entry.output = None;
    entry.error = Some(ErrorEntry { kind: e.kind().into(), message: e.to_string() });
}
