//! RGB image → normalised network input, with libtorch ops on the model's device, so that the
//! Python reference (`tests/reference/`) runs the same ops.
//!
//! - Detector (NVIDIA's evaluation protocol): the whole image stretched to 300×300 with
//!   antialiased bilinear interpolation (align_corners false) on [0,1] floats, then ImageNet
//!   mean/std. Boxes map back by multiplying by the original width and height. boxwalk resizes
//!   the 0..255 floats and divides by 255 afterwards: the same linear map (the reference divides
//!   first; the results agree within float rounding, checked at 1e-5), on 300² values instead of
//!   the whole image.
//! - Classifier (torchvision `ImageClassification(crop_size=224)`): short side to 256 with
//!   antialiased bilinear on 0..255 floats rounded back to integers (the preset resizes uint8),
//!   centre crop 224 with round-half-even offsets, /255, ImageNet mean/std.

use image::RgbImage;
use tch::{Device, Kind, Tensor};

/// ImageNet mean and std (torchvision; NVIDIA `generate_mean_std`).
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];
/// SSD300 input side.
pub const SSD_SIZE: i64 = 300;
/// ResNet preset: resize short side, then centre crop.
pub const RESIZE_SHORT: i64 = 256;
pub const CROP: i64 = 224;

/// Uploads an RGB image as a 1×3×H×W uint8 tensor on `device`.
pub fn upload(img: &RgbImage, device: Device) -> Tensor {
    let (w, h) = img.dimensions();
    Tensor::from_data_size(img.as_raw(), &[i64::from(h), i64::from(w), 3], Kind::Uint8)
        .to_device(device)
        .permute([2, 0, 1])
        .unsqueeze(0)
}

fn normalize(x: &Tensor) -> Tensor {
    let opts = (Kind::Float, x.device());
    let mean = Tensor::from_slice(&MEAN).to_kind(Kind::Float).to_device(opts.1).view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&STD).to_kind(Kind::Float).to_device(opts.1).view([1, 3, 1, 1]);
    (x - mean) / std
}

/// 1×3×H×W uint8 → 1×3×300×300 normalised float.
pub fn detector_input(u8_img: &Tensor) -> Tensor {
    detector_input_from_float(&u8_img.to_kind(Kind::Float))
}

/// The detector input from the image as 0..255 floats. Resizing first and dividing by 255
/// after is the same linear map as the reverse order, and touches 300² values instead of H×W.
fn detector_input_from_float(x: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let x = x.internal_upsample_bilinear2d_aa([SSD_SIZE, SSD_SIZE], false, None, None) / 255.0;
    normalize(&x)
}

/// Both network inputs from one upload, converting the (possibly large) image to floats once.
pub fn inputs(u8_img: &Tensor, detector: bool, classifier: bool) -> (Option<Tensor>, Option<Tensor>) {
    let _guard = tch::no_grad_guard();
    let x = u8_img.to_kind(Kind::Float);
    (detector.then(|| detector_input_from_float(&x)), classifier.then(|| classifier_input_from_float(&x)))
}

/// torchvision's resize target for `[256]`: the short side becomes 256, the long side
/// `int(256 * long / short)` (Python float division, truncated).
pub fn resize_short_side(w: i64, h: i64, short_target: i64) -> (i64, i64) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((short_target * long) as f64 / short as f64) as i64;
    if w <= h {
        (short_target, new_long)
    } else {
        (new_long, short_target)
    }
}

/// torchvision `center_crop` offset: `int(round((size - crop) / 2))`, round half to even.
pub fn crop_offset(size: i64, crop: i64) -> i64 {
    ((size - crop) as f64 / 2.0).round_ties_even() as i64
}

/// 1×3×H×W uint8 → 1×3×224×224 normalised float.
pub fn classifier_input(u8_img: &Tensor) -> Tensor {
    classifier_input_from_float(&u8_img.to_kind(Kind::Float))
}

fn classifier_input_from_float(x: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    let (nw, nh) = resize_short_side(w, h, RESIZE_SHORT);
    let x = x.internal_upsample_bilinear2d_aa([nh, nw], false, None, None).round();
    let (top, left) = (crop_offset(nh, CROP), crop_offset(nw, CROP));
    let x = x.narrow(2, top, CROP).narrow(3, left, CROP) / 255.0;
    normalize(&x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_target_truncates_like_python() {
        assert_eq!(resize_short_side(640, 480, 256), (341, 256)); // 256*640/480 = 341.33
        assert_eq!(resize_short_side(480, 640, 256), (256, 341));
        assert_eq!(resize_short_side(300, 300, 256), (256, 256));
        assert_eq!(resize_short_side(1, 1000, 256), (256, 256000));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(229, 224), 2); // 2.5 -> 2
        assert_eq!(crop_offset(231, 224), 4); // 3.5 -> 4
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn inputs_have_the_network_shapes_and_normalisation() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([124, 116, 104]));
        let u = upload(&img, Device::Cpu);
        assert_eq!(u.size(), vec![1, 3, 23, 37]);
        let d = detector_input(&u);
        assert_eq!(d.size(), vec![1, 3, 300, 300]);
        // A flat image stays flat: (124/255 - 0.485)/0.229 in channel 0.
        let v = d.double_value(&[0, 0, 150, 150]);
        assert!((v - (124.0 / 255.0 - 0.485) / 0.229).abs() < 1e-5, "{v}");
        let c = classifier_input(&u);
        assert_eq!(c.size(), vec![1, 3, 224, 224]);
        let v = c.double_value(&[0, 2, 0, 0]);
        assert!((v - (104.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5, "{v}");
    }

    #[test]
    fn upload_keeps_channel_order() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(1, 0, image::Rgb([1, 2, 3]));
        let u = upload(&img, Device::Cpu);
        assert_eq!(u.int64_value(&[0, 0, 0, 1]), 1);
        assert_eq!(u.int64_value(&[0, 2, 0, 1]), 3);
    }
}
