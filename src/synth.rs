//! `boxwalk synth`: a deterministic synthetic scene generator, the offline training and test data.
//!
//! Each scene is a textured or noisy background (plain, gradient, stripes, checker, noise) with
//! 1–6 filled shapes (circle, square, triangle, star, cross) of random size, colour and rotation;
//! shapes may partly occlude earlier ones. Written:
//!
//! ```text
//! OUT/images/000000.png …                 the scenes
//! OUT/annotations.json                    COCO format (boxes of the full, unoccluded shapes)
//! OUT/crops/{train,val}/<shape>/…png      ImageFolder of object crops (every 5th scene is val)
//! OUT/scenes/{train,val}/<background>/…   ImageFolder of whole scenes by background kind
//! ```

use crate::coco;
use crate::error::FileError;
use crate::outputs::files;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_polygon_mut};
use imageproc::point::Point;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::f32::consts::PI;
use std::path::Path;

/// Shape classes, in category-id order (id = index + 1).
pub const SHAPES: &[&str] = &["circle", "square", "triangle", "star", "cross"];
/// Background kinds, the scene classes.
pub const BACKGROUNDS: &[&str] = &["checker", "gradient", "noise", "plain", "stripes"];

/// Options of one synth run.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub n: usize,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// Shape size range as a fraction of the short side.
    pub min_size: f32,
    pub max_size: f32,
    pub max_objects: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { n: 100, seed: 0, width: 320, height: 240, min_size: 0.12, max_size: 0.45, max_objects: 6 }
    }
}

/// One generated scene.
pub struct Scene {
    pub image: RgbImage,
    pub background: usize,
    /// (shape index, `[x1, y1, x2, y2]`).
    pub objects: Vec<(usize, [f32; 4])>,
}

fn random_colour(rng: &mut ChaCha8Rng) -> Rgb<u8> {
    Rgb([rng.gen(), rng.gen(), rng.gen()])
}

fn background(kind: usize, w: u32, h: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let (a, b) = (random_colour(rng), random_colour(rng));
    let period = rng.gen_range(8.0..40.0f32);
    let angle = rng.gen_range(0.0..PI);
    let (ca, sa) = (angle.cos(), angle.sin());
    let mix = |t: f32| Rgb([0, 1, 2].map(|i| (a.0[i] as f32 * (1.0 - t) + b.0[i] as f32 * t) as u8));
    let mut img = RgbImage::new(w, h);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        *p = match BACKGROUNDS[kind] {
            "plain" => a,
            "gradient" => mix(((xf * ca + yf * sa) / (w + h) as f32 + 0.5).clamp(0.0, 1.0)),
            "stripes" => {
                if ((xf * ca + yf * sa) / period).floor() as i64 % 2 == 0 {
                    a
                } else {
                    b
                }
            }
            "checker" => {
                if ((xf / period).floor() as i64 + (yf / period).floor() as i64) % 2 == 0 {
                    a
                } else {
                    b
                }
            }
            _ => Rgb([0; 3]), // noise: filled below
        };
    }
    if BACKGROUNDS[kind] == "noise" {
        for p in img.pixels_mut() {
            *p = mix(rng.gen());
        }
    }
    img
}

/// Polygon vertices of a shape centred at (cx, cy) with radius r, rotated by `rot`.
fn polygon(shape: &str, cx: f32, cy: f32, r: f32, rot: f32) -> Vec<(f32, f32)> {
    let pts: Vec<(f32, f32)> = match shape {
        "square" => (0..4).map(|i| (r, PI / 4.0 + i as f32 * PI / 2.0)).collect(),
        "triangle" => (0..3).map(|i| (r, -PI / 2.0 + i as f32 * 2.0 * PI / 3.0)).collect(),
        "star" => (0..10).map(|i| (if i % 2 == 0 { r } else { r * 0.45 }, -PI / 2.0 + i as f32 * PI / 5.0)).collect(),
        "cross" => {
            let (a, b) = (r, r * 0.35);
            let corners = [
                (b, a),
                (b, b),
                (a, b),
                (a, -b),
                (b, -b),
                (b, -a),
                (-b, -a),
                (-b, -b),
                (-a, -b),
                (-a, b),
                (-b, b),
                (-b, a),
            ];
            corners.iter().map(|&(x, y)| ((x * x + y * y).sqrt(), y.atan2(x))).collect()
        }
        _ => Vec::new(),
    };
    pts.into_iter().map(|(rad, t)| (cx + rad * (t + rot).cos(), cy + rad * (t + rot).sin())).collect()
}

fn bounds(pts: &[(f32, f32)]) -> [f32; 4] {
    pts.iter().fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, &(x, y)| {
        [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)]
    })
}

/// Generates scene `index` of a run; the same (seed, index) always gives the same scene.
pub fn scene(opts: &SynthOptions, index: usize) -> Scene {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
    let (w, h) = (opts.width, opts.height);
    let kind = rng.gen_range(0..BACKGROUNDS.len());
    let mut img = background(kind, w, h, &mut rng);
    let short = w.min(h) as f32;
    let mut objects: Vec<(usize, [f32; 4])> = Vec::new();
    let n = rng.gen_range(1..=opts.max_objects);
    for _ in 0..n * 10 {
        if objects.len() == n {
            break;
        }
        let shape = rng.gen_range(0..SHAPES.len());
        let r = rng.gen_range(opts.min_size..opts.max_size) * short / 2.0;
        let (cx, cy) = (rng.gen_range(r..w as f32 - r), rng.gen_range(r..h as f32 - r));
        let rot = rng.gen_range(0.0..2.0 * PI);
        let pts = polygon(SHAPES[shape], cx, cy, r, rot);
        let bbox = if pts.is_empty() { [cx - r, cy - r, cx + r, cy + r] } else { bounds(&pts) };
        // Partial occlusion is fine; hiding most of an earlier shape is not.
        if objects.iter().any(|(_, b)| crate::models::boxes::iou(b, &bbox) > 0.35) {
            continue;
        }
        let colour = random_colour(&mut rng);
        if pts.is_empty() {
            draw_filled_circle_mut(&mut img, (cx.round() as i32, cy.round() as i32), r.round() as i32, colour);
        } else {
            let poly: Vec<Point<i32>> =
                pts.iter().map(|&(x, y)| Point::new(x.round() as i32, y.round() as i32)).collect();
            draw_polygon_mut(&mut img, &poly, colour);
        }
        objects.push((shape, bbox));
    }
    let sigma = rng.gen_range(0.0..14.0f32);
    for p in img.pixels_mut() {
        for c in p.0.iter_mut() {
            // Triangular noise (sum of two uniforms) of std ~sigma.
            let n = (rng.gen::<f32>() + rng.gen::<f32>() - 1.0) * sigma * 2.45;
            *c = (*c as f32 + n).clamp(0.0, 255.0) as u8;
        }
    }
    Scene { image: img, background: kind, objects }
}

/// Writes a whole synthetic set under `out`.
pub fn write_set(opts: &SynthOptions, out: &Path) -> Result<coco::Dataset, FileError> {
    let per_image: Vec<Result<Vec<coco::Annotation>, FileError>> = (0..opts.n)
        .into_par_iter()
        .map(|i| {
            let s = scene(opts, i);
            let name = format!("{i:06}.png");
            let split = if i % 5 == 4 { "val" } else { "train" };
            let save = |path: &Path, img: &RgbImage| {
                files::write_image(path, img, image::ImageFormat::Png, 95).map_err(FileError::io(path))
            };
            save(&out.join("images").join(&name), &s.image)?;
            save(&out.join("scenes").join(split).join(BACKGROUNDS[s.background]).join(&name), &s.image)?;
            let mut anns = Vec::new();
            for (k, (shape, b)) in s.objects.iter().enumerate() {
                let x1 = b[0].max(0.0);
                let y1 = b[1].max(0.0);
                let x2 = b[2].min(opts.width as f32);
                let y2 = b[3].min(opts.height as f32);
                let crop = image::imageops::crop_imm(
                    &s.image,
                    x1 as u32,
                    y1 as u32,
                    ((x2 - x1).ceil() as u32).max(1),
                    ((y2 - y1).ceil() as u32).max(1),
                )
                .to_image();
                let crop_path = out.join("crops").join(split).join(SHAPES[*shape]).join(format!("{i:06}_{k}.png"));
                save(&crop_path, &crop)?;
                anns.push(coco::Annotation {
                    id: 0,
                    image_id: i as u64,
                    category_id: *shape as u32 + 1,
                    bbox: [x1, y1, x2 - x1, y2 - y1],
                    area: (x2 - x1) * (y2 - y1),
                    iscrowd: 0,
                });
            }
            Ok(anns)
        })
        .collect();
    let mut annotations = Vec::new();
    for r in per_image {
        annotations.extend(r?);
    }
    for (k, a) in annotations.iter_mut().enumerate() {
        a.id = k as u64 + 1;
    }
    let ds = coco::Dataset {
        images: (0..opts.n)
            .map(|i| coco::Image {
                id: i as u64,
                file_name: format!("images/{i:06}.png"),
                width: opts.width,
                height: opts.height,
            })
            .collect(),
        annotations,
        categories: SHAPES
            .iter()
            .enumerate()
            .map(|(i, n)| coco::Category { id: i as u32 + 1, name: n.to_string() })
            .collect(),
    };
    let path = out.join("annotations.json");
    files::write_atomic(&path, |w| serde_json::to_writer(&mut *w, &ds).map_err(std::io::Error::other))
        .map_err(FileError::io(&path))?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_and_boxes_lie_in_the_image() {
        let o = SynthOptions::default();
        for i in 0..20 {
            let (a, b) = (scene(&o, i), scene(&o, i));
            assert_eq!(a.image, b.image);
            assert_eq!(a.objects, b.objects);
            assert!(!a.objects.is_empty());
            for (_, bx) in &a.objects {
                assert!(
                    bx[0] >= -1.0 && bx[1] >= -1.0 && bx[2] <= o.width as f32 + 1.0 && bx[3] <= o.height as f32 + 1.0
                );
                assert!(bx[2] - bx[0] >= 0.1 * o.height as f32 * 0.5, "not degenerate: {bx:?}");
            }
        }
        assert_ne!(scene(&o, 0).image, scene(&SynthOptions { seed: 1, ..o.clone() }, 0).image);
    }

    #[test]
    fn write_set_produces_coco_and_imagefolders() {
        let d = tempfile::tempdir().expect("tempdir");
        let o = SynthOptions { n: 6, ..Default::default() };
        let ds = write_set(&o, d.path()).expect("write");
        let back = coco::Dataset::read(&d.path().join("annotations.json")).expect("read");
        assert_eq!(ds, back);
        assert_eq!(back.images.len(), 6);
        assert_eq!(back.categories.len(), SHAPES.len());
        assert!(back.annotations.iter().all(|a| a.bbox[2] > 0.0 && a.bbox[3] > 0.0));
        assert!(d.path().join("images/000005.png").is_file());
        let crops = walkdir::WalkDir::new(d.path().join("crops"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count();
        assert_eq!(crops, back.annotations.len());
        assert!(d.path().join("scenes/val").is_dir() && d.path().join("scenes/train").is_dir());
    }
}
