//! One run per OUT: an advisory lock (flock) on `OUT/.lock`, which the kernel releases when the
//! process ends, however it ends. The holder writes who it is (pid, host, start time) into the
//! file, so that a second run can say whom it found there. Shard folders are separate OUTs and
//! lock separately.

use crate::sys;
use serde::{Deserialize, Serialize};
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

pub const LOCK: &str = ".lock";

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    started: String,
}

/// Why OUT could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{out}: another boxwalk run is writing this folder ({holder}); wait for it, or pass --wait")]
    Busy { out: PathBuf, holder: String },
    #[error("{path}: cannot lock the output folder: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The lock on an OUT, held until dropped.
#[derive(Debug)]
pub struct OutLock {
    _file: File,
}

/// Locks `out` (which must exist). When another run holds it: with `wait`, calls `waiting` with
/// a description of that run and blocks until it ends; without, fails at once naming it.
pub fn lock(out: &Path, wait: bool, waiting: impl FnOnce(&str)) -> Result<OutLock, LockError> {
    let path = out.join(LOCK);
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = File::options().create(true).truncate(false).read(true).write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let holder = describe(&mut file);
            if !wait {
                return Err(LockError::Busy { out: out.to_path_buf(), holder });
            }
            waiting(&holder);
            file.lock().map_err(io)?;
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let me = Holder { pid: std::process::id(), host: hostname(), started: sys::now() };
    let text = serde_json::to_string(&me).map_err(|e| io(std::io::Error::other(e)))?;
    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{text}")).map_err(io)?;
    Ok(OutLock { _file: file })
}

/// The holder as its lock file names it, in words.
fn describe(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match serde_json::from_str::<Holder>(text.trim()) {
        Ok(h) => format!("pid {} on {}, started {}", h.pid, h.host, h.started),
        Err(_) => "a run that has not said who it is yet".into(),
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "an unknown host".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_a_dropped_lock_is_free_again() {
        let d = tempfile::tempdir().expect("tempdir");
        let first = lock(d.path(), false, |_| {}).expect("first");
        let e = lock(d.path(), false, |_| {}).expect_err("held");
        let msg = e.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())) && msg.contains(&hostname()), "{msg}");
        assert!(msg.contains("--wait"), "{msg}");
        drop(first);
        lock(d.path(), false, |_| {}).expect("free again");
    }
}
