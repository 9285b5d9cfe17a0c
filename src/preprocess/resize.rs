//! The uint8 antialiased bilinear resize: libtorch's kernel on the CPU, and on other devices the
//! same integers from two exact float64 matrix products ([`resize_u8_separable`]).

use super::to_device;
use std::cell::RefCell;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Antialiased bilinear resize of a 1×3×H×W uint8 image to `h`×`w`, in uint8 arithmetic.
pub fn resize_u8(u8_img: &Tensor, h: i64, w: i64) -> Tensor {
    let _guard = tch::no_grad_guard();
    if u8_img.device() == Device::Cpu {
        u8_img.internal_upsample_bilinear2d_aa([h, w], false, None, None)
    } else {
        resize_u8_separable(u8_img, h, w)
    }
}

/// The integers of libtorch's CPU uint8 antialiased bilinear resize, on any device: each pass is
/// a product with a matrix of the kernel's int16 weights, plus half, floored after dividing by
/// 2^precision and clamped to 0..=255. Every value is an integer below 2^53, so float64 is exact.
pub fn resize_u8_separable(u8_img: &Tensor, h: i64, w: i64) -> Tensor {
    let _guard = tch::no_grad_guard();
    let size = u8_img.size();
    let (in_h, in_w) = (size[2], size[3]);
    let mut x = u8_img.to_kind(Kind::Double);
    if in_w != w {
        x = fixed_point_pass(&x, in_w, w);
    }
    if in_h != h {
        x = fixed_point_pass(&x.transpose(2, 3), in_h, h).transpose(2, 3);
    }
    x.to_kind(Kind::Uint8).contiguous()
}

/// One pass along the last dimension (`from` → `to` values).
fn fixed_point_pass(x: &Tensor, from: i64, to: i64) -> Tensor {
    let (m, precision) = weight_matrix(from, to, x.device());
    let scale = f64::from(1u32 << precision);
    ((x.matmul(&m.tr()) + scale / 2.0) / scale).floor().clamp(0.0, 255.0)
}

/// A pass's weight matrix on its device and its precision, by (from, to, device).
type WeightCache = HashMap<(i64, i64, Device), (Tensor, u32)>;

thread_local! {
    /// A folder's images mostly share a few sizes, so each worker keeps its matrices.
    static WEIGHTS: RefCell<WeightCache> = RefCell::new(HashMap::new());
}

/// At most this many matrix entries (8 bytes each) stay cached per thread: 64 MiB, a few photo
/// sizes' worth (12 MP needs about 4M), so that a folder of all-different sizes cannot fill a GPU.
const CACHED_ENTRIES: i64 = 8 << 20;

fn weight_matrix(from: i64, to: i64, device: Device) -> (Tensor, u32) {
    WEIGHTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(&(from, to, device)) {
            let held: i64 = cache.keys().map(|(f, t, _)| f * t).sum();
            if held + from * to > CACHED_ENTRIES {
                cache.clear();
            }
        }
        let (m, p) = cache.entry((from, to, device)).or_insert_with(|| {
            let (rows, p) = aa_weights(from as usize, to as usize);
            (to_device(&Tensor::from_slice(&rows).view([to, from]), device), p)
        });
        (m.shallow_clone(), *p)
    })
}

/// The antialiased bilinear weights for `from` → `to` samples as libtorch's uint8 kernel (and
/// Pillow-SIMD) computes them: a triangle filter widened by the downscale factor, normalised per
/// output, then scaled by 2^precision (the largest precision ≤ 22 that keeps twice the largest
/// weight below 2^15) and rounded half away from zero. Returns the dense `to`×`from` matrix
/// (row-major) and the precision.
pub fn aa_weights(from: usize, to: usize) -> (Vec<f64>, u32) {
    let scale = from as f64 / to as f64;
    let (support, inv_scale) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
    let mut taps = Vec::with_capacity(to);
    for i in 0..to {
        let center = scale * (i as f64 + 0.5);
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).min(from as i64) as usize;
        let mut ws: Vec<f64> =
            (lo..hi).map(|j| (1.0 - ((j as f64 - center + 0.5) * inv_scale).abs()).max(0.0)).collect();
        let total: f64 = ws.iter().sum();
        if total != 0.0 {
            ws.iter_mut().for_each(|v| *v /= total);
        }
        taps.push((lo, ws));
    }
    let max_w = taps.iter().flat_map(|(_, ws)| ws.iter().copied()).fold(0.0, f64::max);
    let mut precision = 0u32;
    while precision < 22 && ((0.5 + max_w * f64::from(1u32 << (precision + 1))) as i64) < (1 << 15) {
        precision += 1;
    }
    let one = f64::from(1u32 << precision);
    let mut m = vec![0.0; to * from];
    for (i, (lo, ws)) in taps.iter().enumerate() {
        for (k, v) in ws.iter().enumerate() {
            let q = if *v < 0.0 { (-0.5 + v * one) as i64 } else { (0.5 + v * one) as i64 };
            m[i * from + lo + k] = q as f64;
        }
    }
    (m, precision)
}
