//! Scaling out on the scheduler users already have: `--shard K/N` keeps a deterministic share of
//! the inputs (by a hash of each image's output path, so adding files never moves the others),
//! and `boxwalk merge` combines the shard outputs into one.
//!
//! The shard can also come from the environment: Slurm job arrays (`SLURM_ARRAY_TASK_ID`, minus
//! `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) and Kubernetes Indexed Jobs
//! (`JOB_COMPLETION_INDEX`, with the count from `--shard-count`).

use crate::report::{Counts, Report, Timing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `K/N` (0 ≤ K < N) or `auto` (from Slurm or Kubernetes, see the module docs).
    pub fn parse(s: &str, count_flag: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let num = |name: &str| -> Result<Option<u64>, String> {
            env(name).map(|v| v.trim().parse::<u64>().map_err(|_| format!("{name}={v} is not a number"))).transpose()
        };
        let shard = if s == "auto" {
            if let (Some(id), Some(n)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
                let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                Shard {
                    index: id.checked_sub(min).ok_or("SLURM_ARRAY_TASK_ID is below SLURM_ARRAY_TASK_MIN")?,
                    count: n,
                }
            } else if let Some(i) = num("JOB_COMPLETION_INDEX")? {
                let n =
                    count_flag.ok_or("JOB_COMPLETION_INDEX is set: pass the Job's completions as --shard-count N")?;
                Shard { index: i, count: n }
            } else {
                return Err("--shard auto: neither SLURM_ARRAY_TASK_ID/_COUNT nor JOB_COMPLETION_INDEX is set".into());
            }
        } else {
            let (k, n) = s.split_once('/').ok_or_else(|| format!("--shard {s}: expected K/N (e.g. 0/4) or auto"))?;
            let parse = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("--shard {s}: `{v}` is not a number"));
            Shard { index: parse(k)?, count: parse(n)? }
        };
        if shard.count == 0 || shard.index >= shard.count {
            return Err(format!("shard {}/{}: need 0 <= K < N", shard.index, shard.count));
        }
        Ok(shard)
    }

    /// Whether the image with output path `out_rel` belongs to this shard.
    pub fn owns(&self, out_rel: &str) -> bool {
        let h = Sha256::digest(out_rel.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        u64::from_be_bytes(first) % self.count == self.index
    }
}

/// Merges shard outputs into `out`: validates that they ran the same models and options (same
/// run key) and that no image appears twice, copies (hard-links where possible) the annotated
/// copies, and writes one report sorted by path.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<Report, String> {
    let mut reports = Vec::new();
    for dir in inputs {
        reports.push((dir, Report::read(&dir.join("report.json"))?));
    }
    let Some((first_dir, first)) = reports.first() else { return Err("nothing to merge".into()) };
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (dir, r) in &reports {
        if r.run_key != first.run_key {
            return Err(format!(
                "{}: ran other models or options than {} (run keys differ); shards must be run with the same flags",
                dir.display(),
                first_dir.display()
            ));
        }
        for e in &r.images {
            if !seen.insert((e.root.clone(), e.path.clone())) {
                return Err(format!("{}: {} is also in another shard (overlapping shards)", dir.display(), e.path));
            }
            if let Some(o) = &e.output {
                let (src, dst) = (dir.join(o), out.join(o));
                if src != dst {
                    if let Some(parent) = dst.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                    }
                    let _ = std::fs::remove_file(&dst);
                    if std::fs::hard_link(&src, &dst).is_err() {
                        std::fs::copy(&src, &dst).map_err(|e| format!("{}: {e}", src.display()))?;
                    }
                }
            }
            images.push(e.clone());
        }
        skipped.extend(r.skipped.iter().cloned());
    }
    images.sort_by(|a, b| (&a.root, &a.path).cmp(&(&b.root, &b.path)));
    let failed = images.iter().filter(|e| e.error.is_some()).count();
    let sum = |f: fn(&Counts) -> usize| reports.iter().map(|(_, r)| f(&r.counts)).sum::<usize>();
    let counts = Counts {
        images: images.len(),
        ok: images.len() - failed,
        failed,
        skipped: skipped.len(),
        new: sum(|c| c.new),
        changed: sum(|c| c.changed),
        unchanged: sum(|c| c.unchanged),
        removed: sum(|c| c.removed),
        processed: sum(|c| c.processed),
    };
    let timing = Timing::of_shards(reports.iter().map(|(_, r)| &r.timing));
    let merged = Report {
        started: reports.iter().map(|(_, r)| r.started.clone()).min().unwrap_or_default(),
        finished: reports.iter().map(|(_, r)| r.finished.clone()).max().unwrap_or_default(),
        counts,
        timing,
        images,
        skipped,
        shard: None,
        interrupted: reports.iter().any(|(_, r)| r.interrupted),
        peak_rss_mib: reports.iter().filter_map(|(_, r)| r.peak_rss_mib).reduce(f64::max),
        ..first.clone()
    };
    let path = out.join("report.json");
    crate::output::write_atomic(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, &merged).map_err(std::io::Error::other)
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| v.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn shards_parse_from_flags_slurm_and_kubernetes() {
        let none = env(&[]);
        assert_eq!(Shard::parse("1/4", None, &none), Ok(Shard { index: 1, count: 4 }));
        assert!(Shard::parse("4/4", None, &none).is_err());
        assert!(Shard::parse("x/4", None, &none).is_err());
        assert!(Shard::parse("auto", None, &none).is_err());
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(Shard::parse("auto", None, &slurm), Ok(Shard { index: 2, count: 3 }));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(Shard::parse("auto", Some(5), &k8s), Ok(Shard { index: 0, count: 5 }));
        assert!(Shard::parse("auto", None, &k8s).unwrap_err().contains("--shard-count"));
    }

    #[test]
    fn every_path_has_exactly_one_shard_and_keeps_it_as_files_are_added() {
        let paths: Vec<String> = (0..500).map(|i| format!("a/{i}.jpg")).collect();
        let shards: Vec<Shard> = (0..4).map(|k| Shard { index: k, count: 4 }).collect();
        for p in &paths {
            assert_eq!(shards.iter().filter(|s| s.owns(p)).count(), 1, "{p}");
        }
        let sizes: Vec<usize> = shards.iter().map(|s| paths.iter().filter(|p| s.owns(p)).count()).collect();
        assert!(sizes.iter().all(|&n| n > 80), "roughly balanced: {sizes:?}");
    }
}
