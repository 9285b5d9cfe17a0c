//! fp32 on a GPU means IEEE fp32.
//!
//! libtorch lets cuDNN run fp32 convolutions on TF32 tensor cores by default (PyTorch's
//! `torch.backends.cudnn.allow_tf32 = True`): every input rounded to a 10-bit mantissa. Over
//! SSD300-R50's ~50 layers that could move scores by around the parity tolerance, 1e-3 (an
//! estimate: no GPU has measured it yet). boxwalk's fp32 is meant to be the models' own
//! arithmetic, and `--half` is the fast path, so a GPU run switches TF32 off for convolutions and
//! matrix products alike (the latter is already libtorch's default).
//!
//! tch has no binding for these switches; they are `at::Context` members, looked up in libtorch by
//! their C++ names as `threads` looks up OpenMP's.

use std::ffi::{c_void, CStr};

/// `at::globalContext()`
const GLOBAL_CONTEXT: &CStr = c"_ZN2at13globalContextEv";
/// `at::Context::setAllowTF32CuDNN(bool)`
const SET_CUDNN: &CStr = c"_ZN2at7Context17setAllowTF32CuDNNEb";
/// `at::Context::setAllowTF32CuBLAS(bool)`
const SET_CUBLAS: &CStr = c"_ZN2at7Context18setAllowTF32CuBLASEb";

/// Makes cuDNN convolutions and cuBLAS matrix products compute fp32 in IEEE fp32 (no TF32), in
/// every thread. Returns false when this libtorch does not export the switches (nothing changed).
pub fn ieee_fp32() -> bool {
    #[cfg(unix)]
    // SAFETY: dlsym with RTLD_DEFAULT only looks symbols up, in the libtorch_cpu the binary links.
    // `at::globalContext()` takes nothing and returns the process's `at::Context&` (a pointer in
    // the Itanium C++ ABI); the two setters are non-virtual members taking `this` first and one
    // `bool`, and only store a flag that later kernels read.
    unsafe {
        let look_up = |name: &CStr| libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        let (context, cudnn, cublas) = (look_up(GLOBAL_CONTEXT), look_up(SET_CUDNN), look_up(SET_CUBLAS));
        if context.is_null() || cudnn.is_null() || cublas.is_null() {
            return false;
        }
        let context: extern "C" fn() -> *mut c_void = std::mem::transmute(context);
        let cudnn: extern "C" fn(*mut c_void, bool) = std::mem::transmute(cudnn);
        let cublas: extern "C" fn(*mut c_void, bool) = std::mem::transmute(cublas);
        let ctx = context();
        cudnn(ctx, false);
        cublas(ctx, false);
        true
    }
    #[cfg(not(unix))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `at::Context::float32Precision(Float32Backend, Float32Op) const`, for the enums' values in
    /// libtorch 2.11's `ATen/Context.h`.
    fn cuda_precision(op: i32) -> i32 {
        const GET: &CStr = c"_ZNK2at7Context16float32PrecisionENS_14Float32BackendENS_9Float32OpE";
        // SAFETY: as in `ieee_fp32`; the getter is a const member taking two `enum class` values
        // (ints) and returning one.
        unsafe {
            let context = libc::dlsym(libc::RTLD_DEFAULT, GLOBAL_CONTEXT.as_ptr());
            let get = libc::dlsym(libc::RTLD_DEFAULT, GET.as_ptr());
            assert!(!context.is_null() && !get.is_null(), "libtorch exports the context and its getter");
            let context: extern "C" fn() -> *mut c_void = std::mem::transmute(context);
            let get: extern "C" fn(*mut c_void, i32, i32) -> i32 = std::mem::transmute(get);
            get(context(), CUDA, op)
        }
    }

    const CUDA: i32 = 1; // Float32Backend::CUDA
    const CONV: i32 = 1; // Float32Op::CONV
    const MATMUL: i32 = 3; // Float32Op::MATMUL
    const TF32: i32 = 2; // Float32Precision::TF32

    /// The switches are global flags, readable on a machine without a GPU: cuDNN convolutions
    /// start at TF32 (libtorch's default) and are not TF32 afterwards.
    #[test]
    fn gpu_fp32_is_switched_from_tf32_to_ieee() {
        let _ = tch::get_num_threads(); // libtorch is loaded
        assert_eq!(cuda_precision(CONV), TF32, "libtorch's default for cuDNN convolutions");
        assert!(ieee_fp32(), "the switches are exported");
        assert_ne!(cuda_precision(CONV), TF32, "convolutions");
        assert_ne!(cuda_precision(MATMUL), TF32, "matrix products");
    }
}
