//! Process-level helpers: how threads share the cores ([`threads`]), how threads wait for a GPU
//! ([`cuda_wait`]), IEEE fp32 on a GPU ([`tf32`]), the heap and resident memory ([`memory`]),
//! the test and fault-injection hooks ([`hooks`]), CPU time, the clock and file hashes.

pub mod cuda_wait;
pub mod hooks;
pub mod memory;
pub mod tf32;
pub mod threads;

use sha2::{Digest, Sha256};
use std::path::Path;

/// The current time as RFC 3339 UTC, as every report, card and journal writes it.
pub fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// User + system CPU seconds of this process so far (all threads).
pub fn process_cpu_s() -> Option<f64> {
    // SAFETY: getrusage fills the struct we pass and touches nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut u) == 0).then_some(u)?
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// How many threads to use when the user did not say: every core this process may run on.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// SHA-256 of a file's content, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The name of a libtorch device as reports write it: `cpu`, `cuda:0`, ….
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cpu => "cpu".into(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Process-wide settings of a run's device, before any work on it: the workers stage images in
/// page-locked memory from the start, which creates the CUDA context.
pub fn set_up_device(device: tch::Device, cudnn_benchmark: bool) {
    if let tch::Device::Cuda(index) = device {
        if let Err(e) = cuda_wait::sleep_while_waiting(index) {
            eprintln!("boxwalk: warning: threads that wait for the GPU will spin on their cores ({e})");
        }
        // Read by every later convolution on the device.
        tch::Cuda::cudnn_set_benchmark(cudnn_benchmark);
    }
}
