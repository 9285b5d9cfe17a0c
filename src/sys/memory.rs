//! The heap and resident memory: glibc's thresholds, trimming when the resident size creeps up,
//! and the resident size itself.

/// Hands freed heap pages back to the OS when the resident size creeps up. Long runs interleave
/// large transient buffers (images, activations) with small long-lived ones (report entries), and
/// without trimming glibc's heap fragments and the resident size grows with the number of
/// images. Trimming after every batch would make the next forward pass page-fault its activations
/// back in, so the resident size after a batch is the baseline, and a trim happens only when a
/// later batch ends more than 2% + 8 MiB above it; the batch after a trim sets the new baseline.
#[derive(Default)]
pub struct Trim {
    baseline: Option<f64>,
}

impl Trim {
    pub fn after_batch(&mut self) {
        let Some(now) = current_rss_mib() else { return };
        match self.baseline {
            None => self.baseline = Some(now),
            Some(base) if now > base * 1.02 + 8.0 => {
                release_free_memory();
                self.baseline = None;
            }
            Some(_) => {}
        }
    }
}

/// Keeps freed blocks in the heap instead of handing them straight back to the kernel. glibc
/// unmaps every block above its mmap threshold when it is freed (the threshold adapts, but only
/// up to 32 MiB: a 12 MP image is 36 MiB) and shrinks the heap whenever its free top exceeds the
/// trim threshold, so each batch would page-fault its activations and image buffers in again.
/// Memory still goes back through [`Trim`], which watches the resident size after every batch.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation parameters; a rejected value changes nothing.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 0 {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory that the allocator holds as free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size now (`/proc/self/statm`), in MiB; `None` off Linux.
pub fn current_rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as f64 / (1024.0 * 1024.0))
}

/// Peak resident set size of this process so far (`VmHWM`), in MiB; `None` off Linux.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
