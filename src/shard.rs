//! Scaling out on the scheduler users already have: `--shard K/N` keeps a deterministic share of
//! the inputs (by a hash of each image's output path, so adding files never moves the others),
//! and `boxwalk merge` (the `merge` module) combines the shard outputs into one.
//!
//! The shard can also come from the environment: Slurm job arrays (`SLURM_ARRAY_TASK_ID`, minus
//! `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) and Kubernetes Indexed Jobs
//! (`JOB_COMPLETION_INDEX`, with the count from `--shard-count`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A `--shard` value that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadShard(pub String);

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `K/N` (0 ≤ K < N) or `auto` (from Slurm or Kubernetes, see the module docs).
    pub fn parse(s: &str, count_flag: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, BadShard> {
        Self::parse_str(s, count_flag, env).map_err(BadShard)
    }

    fn parse_str(s: &str, count_flag: Option<u64>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
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
        assert!(Shard::parse("auto", None, &k8s).unwrap_err().0.contains("--shard-count"));
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
