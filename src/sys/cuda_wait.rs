//! How a thread waits for the GPU.
//!
//! By default CUDA lets a thread that waits for the device (as an inference lane does for every
//! batch, copying its outputs back) spin on its core whenever the process has fewer contexts than
//! the machine has cores: always, here. The workers need those cores: once the device keeps up,
//! decoding and encoding bound a GPU run. So a GPU run asks CUDA to put waiting threads to sleep
//! instead (the primary context's `CU_CTX_SCHED_BLOCKING_SYNC`), at the cost of a wake-up of
//! microseconds per wait.
//!
//! tch has no binding for this; the driver's functions are looked up in `libcuda.so.1`, the
//! library libtorch's CUDA runtime loads, as [`super::tf32`] looks up libtorch's switches.

use std::ffi::{c_int, c_uint, c_void, CStr};

/// Why waiting threads could not be made to sleep.
#[derive(Debug, thiserror::Error)]
pub enum CudaWaitError {
    #[error("no CUDA driver (libcuda.so.1)")]
    NoDriver,
    #[error("the CUDA driver lacks {0}")]
    Missing(String),
    #[error("{what}: CUDA error {code}")]
    Call { what: &'static str, code: i32 },
    #[error("not supported on this platform")]
    Unsupported,
}

/// `CU_CTX_SCHED_BLOCKING_SYNC` (cuda.h).
const SCHED_BLOCKING_SYNC: c_uint = 0x04;

/// Makes threads that wait for CUDA device `index` sleep instead of spinning: sets the flags its
/// primary context is created with, so it must run before any CUDA work on the device. Fails,
/// changing nothing, where there is no CUDA driver or no such device.
pub fn sleep_while_waiting(index: usize) -> Result<(), CudaWaitError> {
    #[cfg(unix)]
    // SAFETY: dlopen/dlsym only load and look up the driver library (already loaded by the CUDA
    // runtime where a GPU was used; the handle is never closed, as the runtime keeps it too). The
    // three functions are the driver API's C functions with these signatures in cuda.h: CUresult
    // (an int enum) cuInit(unsigned int flags), cuDeviceGet(CUdevice *device, int ordinal) with
    // CUdevice an int, cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags). `device`
    // outlives the call that writes it.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if lib.is_null() {
            return Err(CudaWaitError::NoDriver);
        }
        let look_up = |name: &CStr| -> Result<*mut c_void, CudaWaitError> {
            let f = libc::dlsym(lib, name.as_ptr());
            if f.is_null() {
                Err(CudaWaitError::Missing(name.to_string_lossy().into_owned()))
            } else {
                Ok(f)
            }
        };
        let init: extern "C" fn(c_uint) -> c_int = std::mem::transmute(look_up(c"cuInit")?);
        let device_get: extern "C" fn(*mut c_int, c_int) -> c_int = std::mem::transmute(look_up(c"cuDeviceGet")?);
        let set_flags: extern "C" fn(c_int, c_uint) -> c_int =
            std::mem::transmute(look_up(c"cuDevicePrimaryCtxSetFlags_v2")?);
        let check =
            |what: &'static str, code: c_int| if code == 0 { Ok(()) } else { Err(CudaWaitError::Call { what, code }) };
        check("cuInit", init(0))?;
        let mut device: c_int = 0;
        check("cuDeviceGet", device_get(&mut device, index as c_int))?;
        check("cuDevicePrimaryCtxSetFlags", set_flags(device, SCHED_BLOCKING_SYNC))
    }
    #[cfg(not(unix))]
    {
        let _ = index;
        Err(CudaWaitError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where CUDA runs, the flag is set; elsewhere the call says why not, and does not crash.
    #[test]
    fn waiting_threads_sleep_where_cuda_runs() {
        let r = sleep_while_waiting(0);
        assert_eq!(r.is_ok(), tch::Cuda::is_available(), "{r:?}");
        assert!(sleep_while_waiting(1 << 20).is_err(), "no such device");
    }
}
