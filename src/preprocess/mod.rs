//! RGB image → normalised network input, with libtorch ops on the model's device, so that the
//! Python reference (`tests/reference/`) runs the same ops.
//!
//! Both presets resize **uint8** images, as the published protocols do:
//! - Detector (NVIDIA's evaluation protocol, `SSDTransformer(val=True)`): PIL `Resize((300,300))`
//!   stretches the whole image with antialiased bilinear into a uint8 image, then `ToTensor`
//!   (/255) and ImageNet mean/std. Boxes map back by multiplying by the original width and height.
//! - Classifier (torchvision `ImageClassification(crop_size=224)` on a uint8 tensor): short side
//!   to 256 with antialiased bilinear on the uint8 image, centre crop 224 with round-half-even
//!   offsets, /255, ImageNet mean/std.
//!
//! The resize is libtorch's uint8 antialiased bilinear kernel (a port of Pillow-SIMD's: int16
//! fixed-point weights, horizontal then vertical pass, each rounded to uint8). It agrees with
//! PIL's own resize within one level (checked by the reference generator). On the CPU boxwalk calls
//! that kernel; on other devices, which have no uint8 kernel, [`resize_u8_separable`] computes
//! the same integers with two exact float64 matrix products, so a GPU run sees the very pixels a
//! CPU run sees (normalised, they can differ in the last bit: CUDA divides by a scalar through its
//! reciprocal).
//!
//! On the CPU each worker prepares its own image ([`image_inputs`]). On an accelerator a worker
//! only [`stage`]s the pixels, and a batch's inputs are made together ([`batch_inputs`]): one
//! set of kernels per image size in the batch, not per image.

mod resize;

pub use resize::{aa_weights, resize_u8, resize_u8_separable};

use image::RgbImage;
use std::cell::RefCell;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// ImageNet mean and std (torchvision; NVIDIA `generate_mean_std`).
pub const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const STD: [f64; 3] = [0.229, 0.224, 0.225];
/// SSD300 input side.
pub const SSD_SIZE: i64 = 300;
/// ResNet preset: resize short side, then centre crop.
pub const RESIZE_SHORT: i64 = 256;
pub const CROP: i64 = 224;

/// Uploads an RGB image as a 1×3×H×W uint8 tensor on `device` (channels-last in memory, which
/// is the layout libtorch's vectorised uint8 resize reads). On the CPU the tensor owns a copy of
/// the pixels; [`image_inputs`] and [`resize_rgb`] read them in place instead.
pub fn upload(img: &RgbImage, device: Device) -> Tensor {
    // Complies with `with_pixels`: a CPU copy, or a page-locked (or device) one, is new memory,
    // and the queued copy to the device reads that, not the view.
    nchw(&with_pixels(img, |hwc| if device == Device::Cpu { hwc.copy() } else { upload_without_waiting(hwc, device) }))
}

/// H×W×3 → 1×3×H×W, a view (so channels-last in memory).
///
/// The batch dimension goes in first: `permute` then `unsqueeze(0)` gives it a stride of 3, and
/// libtorch then takes the view for channels-first, so the resize wrote channels-first output
/// (about 15% slower at 640×480) and the models copied every batch back to channels-last.
fn nchw(hwc: &Tensor) -> Tensor {
    hwc.unsqueeze(0).permute([0, 3, 1, 2])
}

/// Runs `f` on `img`'s pixels as an H×W×3 uint8 CPU tensor that borrows them: no copy of a
/// photo that may be 12 MP before the resize reads it.
///
/// The view must not outlive `img`, so `f` may return only what libtorch computed into new
/// memory (a resized image, a kind conversion, a copy on another device or into a `Vec`), never
/// the view or a view of it. Every caller is in this module, and each says why it complies.
fn with_pixels<R>(img: &RgbImage, f: impl FnOnce(&Tensor) -> R) -> R {
    let (w, h) = img.dimensions();
    let raw = img.as_raw();
    // SAFETY: `raw` holds h*w*3 initialised bytes, row-major H×W×3 (`RgbImage`'s layout, the
    // default strides for that shape), and outlives `view`, which is dropped when this returns
    // (the contract above keeps `f` from returning it). libtorch only reads it: nothing here
    // writes to, or resizes, its input.
    let view =
        unsafe { Tensor::from_blob(raw.as_ptr(), &[i64::from(h), i64::from(w), 3], &[], Kind::Uint8, Device::Cpu) };
    f(&view)
}

/// Copies a CPU tensor to an accelerator through page-locked memory, so that the copy is queued
/// instead of waited for. A copy from ordinary memory first synchronises the stream: the worker
/// would wait for every forward pass the inference thread has queued, and the device would then
/// wait for the workers. libtorch keeps the page-locked block until the copy is done. Where memory
/// cannot be page-locked, the ordinary copy.
fn upload_without_waiting(t: &Tensor, device: Device) -> Tensor {
    // `_pin_memory`: `pin_memory` with a device argument prints a deprecation warning every call.
    match t.f_internal_pin_memory(device) {
        Ok(pinned) => queued_copy(&pinned, device),
        Err(_) => t.to_device(device),
    }
}

/// A CPU tensor on `device`: itself on the CPU, else queued through page-locked memory (a worker's
/// first image of a size uploads its resize matrices; from ordinary memory each upload would
/// wait for the forward passes queued before it).
fn to_device(t: &Tensor, device: Device) -> Tensor {
    if device == Device::Cpu {
        t.shallow_clone()
    } else {
        upload_without_waiting(t, device)
    }
}

/// uint8 → float /255 → ImageNet mean/std: the reference's `(x / 255 - mean) / std`, in place
/// on the one float copy (the same operations in the same order, so the same floats, without
/// three more image-sized buffers to allocate and page in).
///
/// A channels-last image is normalised as rows of interleaved R, G, B values against a row of
/// the repeating means and stds: broadcasting a 1×3×1×1 tensor over channels-last memory makes
/// the innermost loop 3 values long, which took 2.7× as long (1.17 against 0.43 ms per image for
/// both inputs, one thread) for the same floats.
fn normalize(u8_img: &Tensor) -> Tensor {
    let device = u8_img.device();
    let mut x = u8_img.to_kind(Kind::Float);
    let _ = x.g_div_scalar_(255.0);
    let size = x.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    let hwc = x.permute([0, 2, 3, 1]);
    if hwc.is_contiguous() {
        let mut rows = hwc.view([n * h, w * 3]);
        let (mean, std) = mean_std(device, Some(w));
        let _ = rows.g_sub_(&mean);
        let _ = rows.g_div_(&std);
    } else {
        let (mean, std) = mean_std(device, None);
        let _ = x.g_sub_(&mean);
        let _ = x.g_div_(&std);
    }
    x
}

/// [`MEAN`] and [`STD`] by device and row width ([`mean_std`]).
type MeanStdCache = HashMap<(Device, Option<i64>), (Tensor, Tensor)>;

thread_local! {
    static MEAN_STD: RefCell<MeanStdCache> = RefCell::new(HashMap::new());
}

/// [`MEAN`] and [`STD`] on `device`, uploaded once per thread, without waiting ([`to_device`]):
/// as 1×3×1×1 tensors, or with `row_width` W as 1×3W rows of R, G, B repeated W times.
fn mean_std(device: Device, row_width: Option<i64>) -> (Tensor, Tensor) {
    MEAN_STD.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (mean, std) = cache.entry((device, row_width)).or_insert_with(|| {
            let t = |v: &[f64]| {
                let v = Tensor::from_slice(v).to_kind(Kind::Float);
                let v = match row_width {
                    Some(w) => v.repeat([w]).view([1, 3 * w]),
                    None => v.view([1, 3, 1, 1]),
                };
                to_device(&v, device)
            };
            (t(&MEAN), t(&STD))
        });
        (mean.shallow_clone(), std.shallow_clone())
    })
}

/// An RGB image resized to `w`×`h` with the same uint8 kernel on the CPU (for thumbnails: an
/// order of magnitude faster than `image`'s resamplers on large photos).
pub fn resize_rgb(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let n = w as usize * h as usize * 3;
    let mut raw = vec![0u8; n];
    // Complies with `with_pixels`: the result is copied out into `raw`.
    with_pixels(img, |hwc| {
        let out = resize_u8(&nchw(hwc), i64::from(h), i64::from(w));
        out.squeeze_dim(0).permute([1, 2, 0]).contiguous().copy_data(&mut raw, n);
    });
    RgbImage::from_raw(w, h, raw).expect("w*h*3 bytes")
}

/// 1×3×H×W uint8 → 1×3×300×300 normalised float.
pub fn detector_input(u8_img: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    normalize(&resize_u8(u8_img, SSD_SIZE, SSD_SIZE))
}

/// Both network inputs from one upload.
pub fn inputs(u8_img: &Tensor, detector: bool, classifier: bool) -> (Option<Tensor>, Option<Tensor>) {
    (detector.then(|| detector_input(u8_img)), classifier.then(|| classifier_input(u8_img)))
}

/// Both network inputs of `img` on `device`. On the CPU the resizes read the image's own pixels;
/// elsewhere the image is uploaded once.
pub fn image_inputs(
    img: &RgbImage,
    device: Device,
    detector: bool,
    classifier: bool,
) -> (Option<Tensor>, Option<Tensor>) {
    if device == Device::Cpu {
        // Complies with `with_pixels`: both inputs end in `normalize`'s conversion to float,
        // which always allocates (even where a resize or the crop returned a view).
        with_pixels(img, |hwc| inputs(&nchw(hwc), detector, classifier))
    } else {
        inputs(&upload(img, device), detector, classifier)
    }
}

/// What a worker hands on for [`batch_inputs`]: the pixels as a 1×3×H×W uint8 CPU tensor of its
/// own, page-locked for an accelerator (so that the upload is queued, not waited for: see
/// [`upload_without_waiting`]).
pub fn stage(img: &RgbImage, device: Device) -> Tensor {
    // Complies with `with_pixels`: a copy, page-locked or not, is new memory.
    nchw(&with_pixels(img, |hwc| {
        if device == Device::Cpu {
            hwc.copy()
        } else {
            hwc.f_internal_pin_memory(device).unwrap_or_else(|_| hwc.copy())
        }
    }))
}

/// At most this many bytes of float64 pixels per step of [`batch_inputs`] (which is what the
/// separable resize works in, with about as much again for its intermediate results): a 640×480
/// image takes 7 MiB, so a batch of 64 goes in one step; a 12 MP one takes 288 MiB.
const BATCH_STEP_BYTES: i64 = 512 << 20;

/// Both network inputs of a batch of [`stage`]d images, in their order, on `device`. The images
/// of one size are uploaded and resized together, so a batch costs a few dozen kernel launches per
/// size instead of per image. The values are those [`inputs`] gives each image alone: every step
/// works image by image, and the separable resize's float64 sums are exact.
pub fn batch_inputs(
    staged: &[Tensor],
    device: Device,
    detector: bool,
    classifier: bool,
) -> (Option<Tensor>, Option<Tensor>) {
    batch_inputs_in_steps(staged, device, detector, classifier, BATCH_STEP_BYTES)
}

fn batch_inputs_in_steps(
    staged: &[Tensor],
    device: Device,
    detector: bool,
    classifier: bool,
    step_bytes: i64,
) -> (Option<Tensor>, Option<Tensor>) {
    if staged.is_empty() {
        return (None, None);
    }
    let _guard = tch::no_grad_guard();
    // The images' indices by size, sizes in order of first appearance.
    let mut sizes: Vec<((i64, i64), Vec<usize>)> = Vec::new();
    for (i, t) in staged.iter().enumerate() {
        let size = t.size();
        let key = (size[2], size[3]);
        match sizes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, indices)) => indices.push(i),
            None => sizes.push((key, vec![i])),
        }
    }
    let (mut order, mut det, mut cls) = (Vec::new(), Vec::new(), Vec::new());
    for ((h, w), indices) in sizes {
        let per_step = (step_bytes / (h * w * 3 * 8)).max(1) as usize;
        for step in indices.chunks(per_step) {
            let up: Vec<Tensor> =
                step.iter()
                    .map(|&i| {
                        if device == Device::Cpu {
                            staged[i].shallow_clone()
                        } else {
                            queued_copy(&staged[i], device)
                        }
                    })
                    .collect();
            let (d, c) = inputs(&Tensor::cat(&up, 0), detector, classifier);
            order.extend_from_slice(step);
            det.extend(d);
            cls.extend(c);
        }
    }
    let in_order = |parts: Vec<Tensor>| in_batch_order(&parts, &order);
    (detector.then(|| in_order(det)), classifier.then(|| in_order(cls)))
}

/// A CPU tensor queued for copying to `device` (without waiting where it is page-locked).
fn queued_copy(t: &Tensor, device: Device) -> Tensor {
    t.to_device_(device, t.kind(), true, false)
}

/// `parts` (batches of images, concatenated in `order` of the images' indices) as one batch in
/// index order.
fn in_batch_order(parts: &[Tensor], order: &[usize]) -> Tensor {
    let all = if parts.len() == 1 { parts[0].shallow_clone() } else { Tensor::cat(parts, 0) };
    if order.iter().enumerate().all(|(k, &i)| k == i) {
        return all;
    }
    let mut at = vec![0; order.len()];
    for (k, &i) in order.iter().enumerate() {
        at[i] = k as i64;
    }
    Tensor::cat(&at.iter().map(|&k| all.narrow(0, k, 1)).collect::<Vec<_>>(), 0)
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
    let _guard = tch::no_grad_guard();
    let size = u8_img.size();
    let (h, w) = (size[2], size[3]);
    let (nw, nh) = resize_short_side(w, h, RESIZE_SHORT);
    let x = resize_u8(u8_img, nh, nw);
    let (top, left) = (crop_offset(nh, CROP), crop_offset(nw, CROP));
    normalize(&x.narrow(2, top, CROP).narrow(3, left, CROP))
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
    fn in_place_normalisation_gives_the_reference_floats() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let px: Vec<u8> = (0..3 * 37 * 23).map(|_| rng.gen()).collect();
        let u8_img = Tensor::from_slice(&px).view([1, 3, 37, 23]);
        let mean = Tensor::from_slice(&MEAN).to_kind(Kind::Float).view([1, 3, 1, 1]);
        let std = Tensor::from_slice(&STD).to_kind(Kind::Float).view([1, 3, 1, 1]);
        let reference = |u: &Tensor| (u.to_kind(Kind::Float) / 255.0 - &mean) / &std;
        assert!(normalize(&u8_img).equal(&reference(&u8_img)), "bit for bit");
        // Channels-last, as the pipeline's images are (normalised as rows), a batch of them, and
        // a crop of one (a view that is not dense).
        let px: Vec<u8> = (0..2 * 3 * 41 * 29).map(|_| rng.gen()).collect();
        let batch = Tensor::from_slice(&px).view([2, 41, 29, 3]).permute([0, 3, 1, 2]);
        for (what, u) in [("batch", batch.shallow_clone()), ("crop", batch.narrow(2, 3, 30).narrow(3, 5, 20))] {
            let x = normalize(&u);
            assert!(x.equal(&reference(&u)), "{what}: bit for bit");
            let channels_last = x.permute([0, 2, 3, 1]).is_contiguous();
            assert!(channels_last, "{what}: stays channels-last");
        }
    }

    #[test]
    fn aa_weights_by_hand() {
        // 2 -> 1: a triangle of half-width 2 centred at 1.0 weighs both samples 0.75, normalised
        // to 1/2; the largest precision with 2 * 0.5 * 2^p < 2^15 is 15.
        assert_eq!(aa_weights(2, 1), (vec![16384.0, 16384.0], 15));
        // Same size: the identity at the highest precision that fits (weight 1, 2^15 > 2^14).
        let (m, p) = aa_weights(3, 3);
        assert_eq!(p, 14);
        assert_eq!(m, vec![16384.0, 0.0, 0.0, 0.0, 16384.0, 0.0, 0.0, 0.0, 16384.0]);
    }

    #[test]
    fn halving_rounds_half_up_like_the_kernel() {
        let img =
            RgbImage::from_fn(2, 1, |x, _| if x == 0 { image::Rgb([10, 0, 255]) } else { image::Rgb([21, 1, 255]) });
        for out in [resize_u8(&upload(&img, Device::Cpu), 1, 1), resize_u8_separable(&upload(&img, Device::Cpu), 1, 1)]
        {
            let v: Vec<u8> = Vec::try_from(out.flatten(0, -1)).expect("uint8");
            assert_eq!(v, vec![16, 1, 255]); // (10+21)/2 = 15.5 -> 16, 0.5 -> 1
        }
    }

    /// The separable float64 products (the path a GPU takes) give libtorch's CPU uint8 kernel's
    /// integers, down- and upscaling, at odd sizes and one large photo size.
    #[test]
    fn separable_resize_equals_the_cpu_kernel() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut cases = vec![((3000, 4000), (300, 300)), ((3000, 4000), (256, 341)), ((1, 1), (300, 300))];
        for _ in 0..40 {
            let from = (1 + next(700) as i64, 1 + next(700) as i64);
            let to =
                [(300, 300), (256, 341), (341, 256), (1 + next(400) as i64, 1 + next(400) as i64)][next(4) as usize];
            cases.push((from, to));
        }
        for ((h, w), (oh, ow)) in cases {
            let img = RgbImage::from_fn(w as u32, h as u32, |_, _| {
                image::Rgb([next(256) as u8, next(256) as u8, next(256) as u8])
            });
            let u = upload(&img, Device::Cpu);
            let native = resize_u8(&u, oh, ow);
            let ours = resize_u8_separable(&u, oh, ow);
            assert_eq!(native.size(), vec![1, 3, oh, ow]);
            let diff = (native.to_kind(Kind::Int) - ours.to_kind(Kind::Int)).abs().max().int64_value(&[]);
            assert_eq!(diff, 0, "{w}x{h} -> {ow}x{oh}");
        }
    }

    /// A batch of images of several sizes, in any order and in steps of any length, gets the
    /// inputs each image gets alone.
    #[test]
    fn batch_inputs_are_each_images_own_inputs_in_batch_order() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let sizes = [(37, 23), (64, 48), (37, 23), (300, 300), (64, 48), (37, 23), (23, 37)];
        let images: Vec<RgbImage> =
            sizes.iter().map(|&(w, h)| RgbImage::from_fn(w, h, |_, _| image::Rgb(rng.gen()))).collect();
        let staged: Vec<Tensor> = images.iter().map(|img| stage(img, Device::Cpu)).collect();
        // 37×23 takes 20 424 bytes a step: all of one size at once, then one or two at a time.
        for step_bytes in [BATCH_STEP_BYTES, 45_000, 1] {
            for (detector, classifier) in [(true, true), (true, false), (false, true)] {
                let (det, cls) = batch_inputs_in_steps(&staged, Device::Cpu, detector, classifier, step_bytes);
                assert_eq!((det.is_some(), cls.is_some()), (detector, classifier));
                for (i, img) in images.iter().enumerate() {
                    let (want_det, want_cls) = image_inputs(img, Device::Cpu, detector, classifier);
                    let what = format!("image {i} ({:?}), steps of {step_bytes} bytes", img.dimensions());
                    if let (Some(got), Some(want)) = (&det, want_det) {
                        assert!(got.narrow(0, i as i64, 1).equal(&want), "{what}: detector input");
                    }
                    if let (Some(got), Some(want)) = (&cls, want_cls) {
                        assert!(got.narrow(0, i as i64, 1).equal(&want), "{what}: classifier input");
                    }
                }
            }
        }
        assert_eq!(batch_inputs(&[], Device::Cpu, true, true).0.map(|t| t.size()), None);
    }

    /// The separable resize of several images at once (a GPU run's batches) gives each image the
    /// CPU kernel's integers.
    #[test]
    fn separable_resize_of_a_batch_equals_the_cpu_kernel_per_image() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let images: Vec<Tensor> =
            (0..4).map(|_| upload(&RgbImage::from_fn(97, 61, |_, _| image::Rgb(rng.gen())), Device::Cpu)).collect();
        for (h, w) in [(300, 300), (256, 407), (130, 40)] {
            let batch = resize_u8_separable(&Tensor::cat(&images, 0), h, w);
            for (i, img) in images.iter().enumerate() {
                assert!(batch.narrow(0, i as i64, 1).equal(&resize_u8(img, h, w)), "image {i} to {w}×{h}");
            }
        }
    }

    #[test]
    fn resize_rgb_keeps_layout_and_colours() {
        // Left half red, right half blue: a 4:1 reduction keeps them apart and in place.
        let img =
            RgbImage::from_fn(400, 100, |x, _| if x < 200 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) });
        let t = resize_rgb(&img, 100, 25);
        assert_eq!(t.dimensions(), (100, 25));
        assert_eq!(t.get_pixel(10, 12).0, [255, 0, 0]);
        assert_eq!(t.get_pixel(90, 3).0, [0, 0, 255]);
        let mid = t.get_pixel(50, 12).0; // straddles the edge
        assert!(mid[0] > 0 && mid[2] > 0, "{mid:?}");
    }

    /// Reading the pixels in place gives the inputs of an owned upload, and nothing returned
    /// still points at the image: overwriting it afterwards changes no input. The sizes include
    /// the ones where a resize has nothing to do (300×300; a 256 short side, then the crop).
    #[test]
    fn inputs_read_in_place_equal_an_upload_and_outlive_the_image() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for (w, h) in [(300, 300), (256, 300), (341, 256), (37, 23)] {
            let mut img = RgbImage::from_fn(w, h, |_, _| image::Rgb(rng.gen()));
            let (det, cls) = image_inputs(&img, Device::Cpu, true, true);
            let (det, cls) = (det.expect("asked for"), cls.expect("asked for"));
            let thumb = resize_rgb(&img, w, h);
            let (want_det, want_cls) = inputs(&upload(&img, Device::Cpu), true, true);
            let want_thumb = img.clone();
            img.pixels_mut().for_each(|p| p.0 = [0, 255, 0]);
            assert!(det.equal(&want_det.expect("asked for")), "{w}x{h}: detector input");
            assert!(cls.equal(&want_cls.expect("asked for")), "{w}x{h}: classifier input");
            assert_eq!(thumb, want_thumb, "{w}x{h}: a same-size resize is the image");
        }
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
