//! Training-time augmentations on decoded images with normalised `ltrb` boxes: NVIDIA's SSD
//! random crop (`SSDCropping`), horizontal flip and colour jitter; and the classifier's flip +
//! jitter.

use image::RgbImage;
use rand::Rng;

/// An image with its boxes (normalised `[x1, y1, x2, y2]`) and their labels.
#[derive(Debug, Clone)]
pub struct Sample {
    pub image: RgbImage,
    pub boxes: Vec<[f32; 4]>,
    pub labels: Vec<i64>,
}

/// SSD random crop: pick a minimum IoU from {none, 0.1, 0.3, 0.5, 0.7, 0.9, any}; try up to 50
/// crops of 30–100 % of each side (aspect 0.5–2) whose IoU with every box reaches it; keep boxes
/// whose centre falls inside, clipped to the crop.
pub fn random_crop(s: &Sample, rng: &mut impl Rng) -> Sample {
    const OPTIONS: [Option<f32>; 7] =
        [None, Some(0.1), Some(0.3), Some(0.5), Some(0.7), Some(0.9), Some(f32::NEG_INFINITY)];
    let Some(min_iou) = OPTIONS[rng.gen_range(0..OPTIONS.len())] else { return s.clone() };
    for _ in 0..50 {
        let (w, h) = (rng.gen_range(0.3..1.0f32), rng.gen_range(0.3..1.0f32));
        if !(0.5..=2.0).contains(&(w / h)) {
            continue;
        }
        let (l, t) = (rng.gen_range(0.0..=1.0 - w), rng.gen_range(0.0..=1.0 - h));
        let crop = [l, t, l + w, t + h];
        if s.boxes.iter().any(|b| crate::models::boxes::iou(b, &crop) < min_iou) {
            continue;
        }
        let keep: Vec<usize> = (0..s.boxes.len())
            .filter(|&i| {
                let b = s.boxes[i];
                let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
                cx > crop[0] && cx < crop[2] && cy > crop[1] && cy < crop[3]
            })
            .collect();
        if keep.is_empty() {
            continue;
        }
        let (iw, ih) = (s.image.width() as f32, s.image.height() as f32);
        let (px, py) = ((l * iw) as u32, (t * ih) as u32);
        let (pw, ph) = (((w * iw) as u32).max(1), ((h * ih) as u32).max(1));
        let image = image::imageops::crop_imm(&s.image, px, py, pw, ph).to_image();
        let boxes = keep
            .iter()
            .map(|&i| {
                let b = s.boxes[i];
                [
                    ((b[0] - l) / w).clamp(0.0, 1.0),
                    ((b[1] - t) / h).clamp(0.0, 1.0),
                    ((b[2] - l) / w).clamp(0.0, 1.0),
                    ((b[3] - t) / h).clamp(0.0, 1.0),
                ]
            })
            .collect();
        return Sample { image, boxes, labels: keep.iter().map(|&i| s.labels[i]).collect() };
    }
    s.clone()
}

/// Mirrors the image and its boxes left–right.
pub fn hflip(s: &mut Sample) {
    image::imageops::flip_horizontal_in_place(&mut s.image);
    for b in &mut s.boxes {
        *b = [1.0 - b[2], b[1], 1.0 - b[0], b[3]];
    }
}

/// Brightness, contrast and saturation jitter (NVIDIA: 0.125, 0.5, 0.5), in random order.
pub fn colour_jitter(img: &mut RgbImage, rng: &mut impl Rng) {
    let brightness = rng.gen_range(0.875..1.125f32);
    let contrast = rng.gen_range(0.5..1.5f32);
    let saturation = rng.gen_range(0.5..1.5f32);
    let mean = {
        let (sum, n) = img.pixels().fold((0f64, 0f64), |(s, n), p| {
            (s + 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64, n + 1.0)
        });
        (sum / n.max(1.0)) as f32
    };
    for p in img.pixels_mut() {
        let mut c = p.0.map(f32::from);
        c = c.map(|v| v * brightness);
        c = c.map(|v| (v - mean) * contrast + mean);
        let grey = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        c = c.map(|v| (v - grey) * saturation + grey);
        p.0 = c.map(|v| v.clamp(0.0, 255.0) as u8);
    }
}

/// The detector's training augmentation: crop, flip (p 0.5), jitter.
pub fn ssd_augment(s: &Sample, rng: &mut impl Rng) -> Sample {
    let mut out = random_crop(s, rng);
    if rng.gen_bool(0.5) {
        hflip(&mut out);
    }
    colour_jitter(&mut out.image, rng);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample() -> Sample {
        let mut image = RgbImage::new(100, 50);
        for x in 10..30 {
            for y in 10..20 {
                image.put_pixel(x, y, image::Rgb([255, 0, 0]));
            }
        }
        Sample { image, boxes: vec![[0.1, 0.2, 0.3, 0.4]], labels: vec![2] }
    }

    #[test]
    fn flip_moves_pixels_and_boxes_together() {
        let mut s = sample();
        hflip(&mut s);
        assert_eq!(s.boxes[0], [0.7, 0.2, 0.9, 0.4]);
        assert_eq!(s.image.get_pixel(75, 15).0, [255, 0, 0]);
        assert_eq!(s.image.get_pixel(15, 15).0, [0, 0, 0]);
    }

    #[test]
    fn crops_keep_boxes_on_their_pixels() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let c = random_crop(&sample(), &mut rng);
            assert_eq!(c.boxes.len(), c.labels.len());
            for b in &c.boxes {
                assert!(b.iter().all(|v| (0.0..=1.0).contains(v)) && b[0] < b[2] && b[1] < b[3]);
                // The box centre is red in the cropped image.
                let (w, h) = (c.image.width() as f32, c.image.height() as f32);
                let (cx, cy) = (((b[0] + b[2]) / 2.0 * w) as u32, ((b[1] + b[3]) / 2.0 * h) as u32);
                assert_eq!(c.image.get_pixel(cx.min(c.image.width() - 1), cy.min(c.image.height() - 1)).0, [255, 0, 0]);
            }
        }
    }
}
