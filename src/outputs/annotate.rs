//! Drawing on the annotated copy: each detection as a box in a fixed per-class colour with a
//! filled label `<class> <score>` (two decimals), and the whole-image classification as one
//! banner along the bottom. Line width and text size scale with the image's short side, so
//! labels stay legible from a 256 px thumbnail to a 6000 px photo.

use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut, draw_text_mut, text_size};
use imageproc::rect::Rect;

const FONT_BYTES: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

/// The bundled DejaVu Sans, parsed once.
pub fn font() -> &'static FontRef<'static> {
    static FONT: std::sync::OnceLock<FontRef<'static>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("fonts/DejaVuSans.ttf is a valid font"))
}

/// One box to draw, in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxLabel {
    /// Colour key (the SSD class index).
    pub class_index: usize,
    pub text: String,
    /// `[x1, y1, x2, y2]`, may extend past the image.
    pub bbox: [f32; 4],
}

/// Stroke and text sizes for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub line_width: u32,
    pub font_px: f32,
}

impl Style {
    /// Scales with the short side: 1 px lines and 11 px text on a 256 px thumbnail,
    /// ~13 px lines and ~140 px text on a 6000×4000 photo.
    pub fn for_size(w: u32, h: u32) -> Self {
        let short = w.min(h) as f32;
        Style { line_width: ((short / 300.0).round() as u32).max(1), font_px: (short * 0.035).clamp(11.0, 400.0) }
    }
}

/// A fixed, well-spread colour per class (golden-ratio hue steps).
pub fn class_colour(class_index: usize) -> Rgb<u8> {
    let hue = (class_index as f32 * 0.618_034).fract() * 6.0;
    let (s, v) = (0.75f32, 0.95f32);
    let c = v * s;
    let x = c * (1.0 - ((hue % 2.0) - 1.0).abs());
    let (r, g, b) = match hue as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    Rgb([r, g, b].map(|u| ((u + m) * 255.0).round() as u8))
}

/// Black or white, whichever reads better on `bg`.
fn text_colour(bg: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = bg.0.map(f32::from);
    if 0.299 * r + 0.587 * g + 0.114 * b > 150.0 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// Pixel rectangle of a box clamped to the image, at least 1×1. `None` if it lies fully outside.
pub fn clamp_box(bbox: [f32; 4], w: u32, h: u32) -> Option<Rect> {
    if w == 0 || h == 0 || bbox.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (wf, hf) = (w as f32, h as f32);
    if bbox[2] < 0.0 || bbox[3] < 0.0 || bbox[0] >= wf || bbox[1] >= hf {
        return None;
    }
    let x1 = bbox[0].clamp(0.0, wf - 1.0).floor() as i32;
    let y1 = bbox[1].clamp(0.0, hf - 1.0).floor() as i32;
    let x2 = bbox[2].clamp(0.0, wf).ceil() as i32;
    let y2 = bbox[3].clamp(0.0, hf).ceil() as i32;
    Some(Rect::at(x1, y1).of_size((x2 - x1).max(1) as u32, (y2 - y1).max(1) as u32))
}

/// Draws `boxes` and an optional bottom `banner` onto `img`, sized for the image.
pub fn annotate(img: &mut RgbImage, boxes: &[BoxLabel], banner: Option<&str>) {
    let style = Style::for_size(img.width(), img.height());
    annotate_with(img, boxes, banner, style);
}

/// [`annotate`] with an explicit style (`boxwalk render --line-width --font-size`).
pub fn annotate_with(img: &mut RgbImage, boxes: &[BoxLabel], banner: Option<&str>, style: Style) {
    let (w, h) = img.dimensions();
    let scale = PxScale::from(style.font_px);
    let pad = (style.font_px * 0.15).ceil() as i32;
    for b in boxes {
        let Some(rect) = clamp_box(b.bbox, w, h) else { continue };
        let colour = class_colour(b.class_index);
        for t in 0..style.line_width {
            let t = t as i32;
            let (rw, rh) = (rect.width() as i32 - 2 * t, rect.height() as i32 - 2 * t);
            if rw < 1 || rh < 1 {
                break;
            }
            draw_hollow_rect_mut(img, Rect::at(rect.left() + t, rect.top() + t).of_size(rw as u32, rh as u32), colour);
        }
        let (tw, th) = text_size(scale, font(), &b.text);
        let (lw, lh) = (tw as i32 + 2 * pad, th as i32 + 2 * pad);
        // Above the box when there is room, else just inside its top edge; kept inside the image.
        let ly = if rect.top() >= lh { rect.top() - lh } else { rect.top() };
        let lx = rect.left().min(w as i32 - lw).max(0);
        draw_filled_rect_mut(img, Rect::at(lx, ly).of_size(lw as u32, lh as u32), colour);
        draw_text_mut(img, text_colour(colour), lx + pad, ly + pad, scale, font(), &b.text);
    }
    if let Some(text) = banner {
        let (_, th) = text_size(scale, font(), text);
        let bh = th as i32 + 2 * pad;
        let top = (h as i32 - bh).max(0);
        draw_filled_rect_mut(img, Rect::at(0, top).of_size(w, bh.min(h as i32) as u32), Rgb([20, 20, 20]));
        draw_text_mut(img, Rgb([255, 255, 255]), pad, top + pad, scale, font(), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([128, 128, 128]))
    }

    #[test]
    fn box_outline_is_drawn_in_the_class_colour() {
        let mut img = grey(300, 300);
        let b = BoxLabel { class_index: 17, text: "dog 0.93".into(), bbox: [100.0, 120.0, 200.0, 220.0] };
        annotate(&mut img, &[b], None);
        let c = class_colour(17);
        assert_eq!(*img.get_pixel(100, 180), c, "left edge");
        assert_eq!(*img.get_pixel(199, 180), c, "right edge");
        assert_eq!(*img.get_pixel(150, 219), c, "bottom edge");
        assert_eq!(*img.get_pixel(150, 170), Rgb([128, 128, 128]), "inside untouched");
        // The label sits above the box: some pixels there carry the colour, some the text.
        let label_row: Vec<_> = (100..160).map(|x| *img.get_pixel(x, 110)).collect();
        assert!(label_row.contains(&c));
        assert!(label_row.iter().any(|p| *p != c && *p != Rgb([128, 128, 128])), "text drawn on the label");
    }

    #[test]
    fn boxes_past_the_edges_are_clipped_and_tiny_boxes_get_one_pixel() {
        assert_eq!(clamp_box([-10.0, -5.0, 4.0, 3.0], 8, 8), Some(Rect::at(0, 0).of_size(4, 3)));
        assert_eq!(clamp_box([5.2, 5.2, 5.3, 5.3], 8, 8), Some(Rect::at(5, 5).of_size(1, 1)));
        assert_eq!(clamp_box([2.0, 2.0, 100.0, 100.0], 8, 8), Some(Rect::at(2, 2).of_size(6, 6)));
        assert_eq!(clamp_box([9.0, 0.0, 12.0, 3.0], 8, 8), None);
        assert_eq!(clamp_box([f32::NAN, 0.0, 1.0, 1.0], 8, 8), None);
        // Drawing them never panics, even on a 1×1 image with a label wider than it.
        let mut img = grey(1, 1);
        let b = BoxLabel { class_index: 1, text: "person 0.99".into(), bbox: [-3.0, -3.0, 0.4, 0.4] };
        annotate(&mut img, &[b], Some("tabby 0.50"));
        let mut img = grey(8, 8);
        let b = BoxLabel { class_index: 1, text: "person 0.99".into(), bbox: [6.9, 6.9, 7.0, 7.0] };
        annotate(&mut img, &[b], None);
        assert_eq!(*img.get_pixel(6, 6), class_colour(1));
    }

    #[test]
    fn labels_at_the_right_edge_stay_inside() {
        let mut img = grey(200, 100);
        let b = BoxLabel { class_index: 3, text: "car 0.50".into(), bbox: [190.0, 50.0, 199.0, 90.0] };
        annotate(&mut img, &[b], None);
        let c = class_colour(3);
        // The label is shifted left so that it ends at the image edge.
        assert_eq!(*img.get_pixel(199, 49), c);
        assert!((150..190).any(|x| *img.get_pixel(x, 45) == c));
    }

    #[test]
    fn banner_spans_the_bottom() {
        let mut img = grey(256, 256);
        annotate(&mut img, &[], Some("golden retriever 0.88"));
        assert_eq!(*img.get_pixel(255, 255), Rgb([20, 20, 20]));
        assert_eq!(*img.get_pixel(128, 10), Rgb([128, 128, 128]));
        let text_pixels = (0..256)
            .flat_map(|x| (236..256).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] > 200)
            .count();
        assert!(text_pixels > 20, "white text in the banner: {text_pixels}");
    }

    #[test]
    fn style_scales_with_the_image() {
        let thumb = Style::for_size(256, 192);
        let photo = Style::for_size(6000, 4000);
        assert_eq!(thumb.line_width, 1);
        assert!(thumb.font_px >= 11.0);
        assert!(photo.line_width >= 10 && photo.font_px >= 100.0, "{photo:?}");
    }

    #[test]
    fn class_colours_are_fixed_and_distinct_for_neighbours() {
        assert_eq!(class_colour(5), class_colour(5));
        for i in 1..80 {
            assert_ne!(class_colour(i), class_colour(i + 1));
        }
    }
}
