//! `boxwalk models fetch`: downloads the official checkpoints (model-facts, sections E and G),
//! resuming an interrupted download with an HTTP range request, verifying torchvision's SHA-256
//! prefix, recording the observed SHA-256, and installing them through [`super::store::import`].
//!
//! `BOXWALK_MIRROR=URL` fetches the same file names from a mirror instead (an internal server
//! for machines without internet access).

use super::{boxwalk_home, store, Error, Role};
use crate::error::FileError;
use crate::models::card::ModelCard;
use crate::sys::sha256_file;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where an official checkpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub role: Role,
    pub url: &'static str,
    /// Known leading hex digits of the file's SHA-256 (torchvision publishes 8; NVIDIA none).
    pub sha256_prefix: Option<&'static str>,
}

impl Source {
    pub fn file_name(&self) -> &'static str {
        self.url.rsplit('/').next().unwrap_or(self.url)
    }
}

/// NVIDIA's hub checkpoint (one file for fp32 and AMP) and torchvision's IMAGENET1K_V1 weights.
pub const SOURCES: [Source; 2] = [
    Source {
        role: Role::Detector,
        url: "https://api.ngc.nvidia.com/v2/models/nvidia/ssd_pyt_ckpt_amp/versions/20.06.0/files/nvidia_ssdpyt_amp_200703.pt",
        sha256_prefix: None,
    },
    Source {
        role: Role::Classifier,
        url: "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256_prefix: Some("f37072fd"),
    },
];

/// Download attempts per file (each resumes where the last stopped).
const ATTEMPTS: usize = 3;

/// The URL to fetch `src` from: the official one, or the same file name under `mirror`.
pub fn url_for(src: &Source, mirror: Option<&str>) -> String {
    match mirror {
        Some(m) => format!("{}/{}", m.trim_end_matches('/'), src.file_name()),
        None => src.url.to_string(),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn offline_help(url: &str, src: &Source) -> String {
    format!(
        "Without network access: download {url} on another machine, copy it here and run \
         `boxwalk models import {}`; or set BOXWALK_MIRROR to a server that has it.",
        src.file_name()
    )
}

/// One attempt: continues `part` from its current length to the end of the file.
fn attempt(agent: &ureq::Agent, url: &str, part: &Path, progress: &indicatif::ProgressBar) -> Result<(), String> {
    let have = part.metadata().map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| format!("cannot download {url}: {e}"))?;
    let status = resp.status().as_u16();
    let append = match status {
        206 => true,
        200 => false,
        416 if have > 0 => return Ok(()), // nothing left to send
        s => return Err(format!("cannot download {url}: HTTP {s}")),
    };
    let body_len = resp.body().content_length();
    let start = if append { have } else { 0 };
    if let Some(len) = body_len {
        progress.set_length(start + len);
    }
    progress.set_position(start);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(part)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                file.flush().ok();
                return Err(format!("download of {url} interrupted: {e}"));
            }
        };
        file.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", part.display()))?;
        progress.inc(n as u64);
    }
    file.sync_all().map_err(|e| format!("{}: {e}", part.display()))
}

/// Downloads (or reuses) the checkpoint of `src` into `dir`; returns its path and SHA-256.
fn download(src: &Source, mirror: Option<&str>, dir: &Path) -> Result<(PathBuf, String), Error> {
    std::fs::create_dir_all(dir).map_err(FileError::io(dir))?;
    let url = url_for(src, mirror);
    let failed = |reason: String| Error::Download { url: url.clone(), reason };
    let dest = dir.join(src.file_name());
    let part = dir.join(format!("{}.part", src.file_name()));
    let verify = |p: &Path| -> Result<String, Error> {
        let sha = sha256_file(p).map_err(FileError::io(p))?;
        match src.sha256_prefix {
            Some(prefix) if !sha.starts_with(prefix) => Err(failed(format!(
                "{url}: downloaded file has SHA-256 {sha}, expected it to start with {prefix}; removed it (corrupt download)"
            ))),
            _ => Ok(sha),
        }
    };
    if dest.is_file() {
        if let Ok(sha) = verify(&dest) {
            return Ok((dest, sha));
        }
    }
    let progress = indicatif::ProgressBar::new(0).with_message(src.file_name());
    progress.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let agent = agent();
    let mut last_err = String::new();
    let mut done = false;
    for _ in 0..ATTEMPTS {
        match attempt(&agent, &url, &part, &progress) {
            Ok(()) => {
                done = true;
                break;
            }
            Err(e) => {
                // A connection that never opened will not open on a retry a second later.
                let nothing_yet = part.metadata().map(|m| m.len()).unwrap_or(0) == 0;
                last_err = e;
                if nothing_yet && !last_err.contains("interrupted") {
                    break;
                }
            }
        }
    }
    progress.finish_and_clear();
    if !done {
        return Err(failed(format!("{last_err}\n  {}", offline_help(&url, src))));
    }
    match verify(&part) {
        Ok(sha) => {
            std::fs::rename(&part, &dest).map_err(FileError::io(&dest))?;
            Ok((dest, sha))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

/// Downloads and installs one official model.
pub fn fetch(src: &Source, mirror: Option<&str>) -> Result<(PathBuf, ModelCard), Error> {
    let downloads = boxwalk_home().join("downloads");
    let (file, _) = download(src, mirror, &downloads)?;
    let (path, mut card) = store::import(&file, Some(src.role), None)?;
    card.source = url_for(src, mirror);
    card.write_for(&path).map_err(FileError::io(&path))?;
    Ok((path, card))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_file_names() {
        assert_eq!(SOURCES[0].file_name(), "nvidia_ssdpyt_amp_200703.pt");
        assert_eq!(SOURCES[1].file_name(), "resnet18-f37072fd.pth");
        assert_eq!(
            url_for(&SOURCES[1], Some("http://mirror:8080/models/")),
            "http://mirror:8080/models/resnet18-f37072fd.pth"
        );
        assert_eq!(url_for(&SOURCES[0], None), SOURCES[0].url);
    }
}
