//! Crash-safe, incremental runs. While a run goes, every finished image is appended to
//! `OUT/journal.jsonl` (one JSON line each, flushed per batch). The next run in the same OUT reads
//! the last report plus that journal, and an image whose content hash, model files and
//! result-relevant options are unchanged is carried over instead of processed again. So a run
//! killed at any moment continues where it stopped, and a nightly run over a growing archive only
//! processes what is new or changed.

use super::report::{ImageEntry, ModelInfo, Options, Report};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub const JOURNAL: &str = "journal.jsonl";

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    /// Opens a run: results below hold for this key.
    Run {
        key: String,
    },
    Image(Box<ImageEntry>),
}

/// Identity of what produces results: the model files' hashes and the options that change
/// detections, classifications or the written copies (not the device, threads or batch size).
pub fn run_key(models: &[ModelInfo], options: &Options) -> String {
    let mut h = Sha256::new();
    for m in models {
        h.update(format!("{}={};", m.role, m.sha256));
    }
    let mut relevant = serde_json::json!({
        "threshold": options.threshold,
        "max_detections": options.max_detections,
        "classes": options.classes,
        "top_k": options.top_k,
        "classify_crops": options.classify_crops,
        "detect": options.detect,
        "classify": options.classify,
        "half": options.half,
        "format": options.format,
        "jpeg_quality": options.jpeg_quality,
    });
    // Only when set, so that the keys of runs without it stay what they were.
    if options.allow_truncated {
        relevant["allow_truncated"] = true.into();
    }
    h.update(relevant.to_string());
    format!("{:x}", h.finalize())
}

/// An image's result from an earlier run in the same OUT.
#[derive(Debug, Clone)]
pub struct Previous {
    pub entry: ImageEntry,
    /// Produced under the same run key (models and options) as the current run.
    pub same_key: bool,
}

/// Results of earlier runs in `out` by (root, path): the last report's, then the journal's (later
/// lines win). A torn last line (a crash mid-write) is ignored.
pub fn previous(out: &Path, key: &str) -> HashMap<(String, String), Previous> {
    let mut found = HashMap::new();
    let mut put = |e: ImageEntry, same_key: bool| {
        found.insert((e.root.clone(), e.path.clone()), Previous { entry: e, same_key });
    };
    if let Ok(bytes) = std::fs::read(out.join("report.json")) {
        if let Ok(r) = serde_json::from_slice::<Report>(&bytes) {
            let same = r.run_key == key;
            for e in r.images {
                put(e, same);
            }
        }
    }
    if let Ok(f) = std::fs::File::open(out.join(JOURNAL)) {
        let mut same = false;
        for line in std::io::BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Run { key: k }) => same = k == key,
                Ok(Line::Image(e)) => put(*e, same),
                Err(_) => {}
            }
        }
    }
    found
}

/// Whether `file` is non-empty and does not end with a newline.
fn ends_torn(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// Error kinds that would recur on the same bytes; others (I/O, inference, write) are retried.
pub fn is_permanent(kind: &str) -> bool {
    matches!(kind, "decode" | "truncated" | "unknown_format" | "limit")
}

/// The append-only journal of the current run.
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    /// Opens `OUT/journal.jsonl` for appending and records the run's key. A torn last line (a
    /// crash mid-write) is ended first, so that it stays one unreadable line, not the start of
    /// this run's first.
    pub fn open(out: &Path, key: &str) -> std::io::Result<Journal> {
        let path = out.join(JOURNAL);
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        if ends_torn(&mut file)? {
            file.write_all(b"\n")?;
        }
        let mut j = Journal { file, path };
        j.write(&[Line::Run { key: key.to_string() }])?;
        Ok(j)
    }

    /// Appends `lines`, synced. Should the write fail part-way (a full disk), the part written is
    /// cut off again, so the journal keeps only whole lines.
    fn write(&mut self, lines: &[Line]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let before = self.file.metadata()?.len();
        let written = self.file.write_all(&buf).and_then(|()| self.file.sync_data());
        if written.is_err() {
            let _ = self.file.set_len(before);
        }
        written
    }

    /// Appends finished images (one write and one sync per batch).
    pub fn append(&mut self, entries: &[ImageEntry]) -> std::io::Result<()> {
        self.write(&entries.iter().map(|e| Line::Image(Box::new(e.clone()))).collect::<Vec<_>>())
    }

    /// Whether the journal is still the file at its path: once OUT is removed or moved, appends
    /// would go to a file no later run can read.
    pub fn in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(open), Ok(there)) => (open.dev(), open.ino()) == (there.dev(), there.ino()),
            _ => false,
        }
    }

    /// After the report is written, the journal's content is in it: start the next run afresh.
    pub fn finish(self) -> std::io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> ImageEntry {
        ImageEntry {
            path: path.into(),
            root: "in".into(),
            input_sha256: Some("ab".into()),
            width: Some(4),
            height: Some(3),
            detections: Some(vec![]),
            all_detections: None,
            classification: None,
            output: Some(path.into()),
            error: None,
            not_seen: false,
            warning: None,
        }
    }

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_runs_key() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::open(d.path(), "k1").expect("open");
        j.append(&[entry("a.png")]).expect("append");
        drop(j);
        // A crash (or a full disk) mid-line.
        let mut f = std::fs::OpenOptions::new().append(true).open(d.path().join(JOURNAL)).expect("open");
        f.write_all(br#"{"image":{"path":"b.pn"#).expect("torn");
        drop(f);
        let mut j = Journal::open(d.path(), "k2").expect("reopen");
        j.append(&[entry("c.png")]).expect("append");
        let found = previous(d.path(), "k2");
        let same = |p: &str| found.get(&("in".to_string(), p.to_string())).map(|p| p.same_key);
        assert_eq!(same("a.png"), Some(false), "journaled under k1");
        assert_eq!(same("b.pn"), None, "the torn line is dropped");
        assert_eq!(same("c.png"), Some(true), "the second run's key line survived the torn line before it");
    }
}
