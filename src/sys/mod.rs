//! Process-level helpers: how threads share the cores ([`threads`]), how threads wait for a GPU
//! ([`cuda_wait`]), IEEE fp32 on a GPU ([`tf32`]), the heap and resident memory ([`memory`]),
//! the test and fault-injection hooks ([`hooks`]), CPU time and bytes read, the clock, file
//! metadata and hashes.

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

/// A file's metadata as far as carry-over needs it: the walk's view of an input, recorded with
/// its result. The same size, mtime, inode and ctime on a later run mean the same file, unread,
/// as rsync, the git index and restic take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStat {
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    pub ino: u64,
    /// Status change time, ns since the epoch: moves a file's content cannot dodge (a `touch -r`
    /// back to the old mtime still changes it).
    pub ctime_ns: i64,
}

impl FileStat {
    pub fn of(m: &std::fs::Metadata) -> FileStat {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        FileStat {
            size: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ino: m.ino(),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// How the content may have changed from this to `now` (size or mtime), in words; `None`
    /// when neither did.
    pub fn change_to(&self, now: &FileStat) -> Option<String> {
        if self.size != now.size {
            Some(format!("{} bytes when found, {} once read", self.size, now.size))
        } else if self.mtime_ns != now.mtime_ns {
            Some("modified after it was found".into())
        } else {
            None
        }
    }

    /// Whether the file had stopped changing `settle` before `now`: a file modified or changed
    /// within the file system's timestamp granularity of the walk could change again without its
    /// stat showing it, so its stat is not recorded (git's "racily clean" entries).
    pub fn settled(&self, now: std::time::SystemTime, settle: std::time::Duration) -> bool {
        let now_ns = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let limit = now_ns - settle.as_nanos() as i64;
        self.mtime_ns < limit && self.ctime_ns < limit
    }
}

/// Bytes this process has read through read(2) and the like so far (`rchar` of
/// `/proc/self/io`, page-cache hits included).
pub fn process_read_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("rchar:")).and_then(|v| v.trim().parse().ok())
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
