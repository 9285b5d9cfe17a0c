//! The content hash of each input by its stat (`OUT/.hashes.jsonl`), as rsync, the git index and
//! restic keep one: a later run finding an input with the same size, mtime, inode and ctime takes
//! the hash from here instead of reading the file. Only a changed stat leads to reading, and the
//! hash still decides whether a result carries over. A cache: rewritten by every run, and a
//! missing or unreadable file only means reading everything once.

use super::files;
use crate::sys::FileStat;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

pub const HASHES: &str = ".hashes.jsonl";

/// One input: where it is, its stat, and the hash of its content with that stat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    pub root: String,
    pub path: String,
    pub stat: FileStat,
    pub sha256: String,
}

/// The hashes recorded in `out`, by (root, path); lines that do not parse are skipped.
pub fn read(out: &Path) -> HashMap<(String, String), Known> {
    let Ok(f) = std::fs::File::open(out.join(HASHES)) else { return HashMap::new() };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Known>(&l).ok())
        .map(|k| ((k.root.clone(), k.path.clone()), k))
        .collect()
}

/// Replaces the hashes recorded in `out` with `known`, atomically.
pub fn write<'a>(out: &Path, known: impl Iterator<Item = &'a Known>) -> std::io::Result<()> {
    files::write_atomic(&out.join(HASHES), |w| {
        for k in known {
            serde_json::to_writer(&mut *w, k).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hashes_round_trip_and_a_torn_line_is_skipped() {
        let d = tempfile::tempdir().expect("tempdir");
        let stat =
            FileStat { size: 3, mtime_ns: 1_700_000_000_123_456_789, ino: 42, ctime_ns: 1_700_000_000_500_000_000 };
        let k = |p: &str| Known { root: "in".into(), path: p.into(), stat, sha256: format!("sha-{p}") };
        write(d.path(), [k("a.png"), k("b/c.png")].iter()).expect("write");
        let mut f = std::fs::OpenOptions::new().append(true).open(d.path().join(HASHES)).expect("open");
        f.write_all(br#"{"root":"in","path":"d.pn"#).expect("torn");
        let known = read(d.path());
        assert_eq!(known.len(), 2);
        assert_eq!(known[&("in".to_string(), "b/c.png".to_string())], k("b/c.png"));
        assert!(read(&d.path().join("nowhere")).is_empty());
    }
}
