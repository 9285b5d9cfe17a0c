//! Finds the images to process: each input is a file or a folder walked recursively in sorted
//! order. The output folder is never walked, even when it sits inside an input. Files are
//! picked by extension (JPEG, PNG, WebP, BMP, TIFF, GIF; any case) and decoded by content later.
//! Symbolic links are not followed.
//!
//! Each job keeps its path relative to its input root; the annotated copy goes to the same
//! relative path under OUT, so `a/img1.jpg` and `b/img1.jpg` never collide. With several inputs,
//! each folder input's own name is put in front (`OUT/<folder name>/…`), numbered if two share a
//! name; a file input keeps its bare name. Any output path that would still collide gets a `-2`,
//! `-3`… before its extension.

use crate::sys::FileStat;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Extensions treated as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// One image to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageJob {
    /// The file on disk.
    pub source: PathBuf,
    /// The input it was found under (a folder; a file input's own folder).
    pub root: PathBuf,
    /// Path relative to `root`, `/`-separated.
    pub rel: String,
    /// Output path relative to OUT, `/`-separated.
    pub out_rel: String,
    /// SHA-256 of the content, once hashed.
    pub sha256: Option<String>,
    /// The file as the walk saw it.
    pub stat: Option<FileStat>,
    /// Whether `stat` can stand for the content on a later run ([`FileStat::settled`]).
    pub stat_settled: bool,
}

/// A path under an input that could not be walked (e.g. an unreadable folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    pub jobs: Vec<ImageJob>,
    pub skipped: Vec<Skipped>,
    /// Folder inputs in which no image was found (as an unmounted mount point looks).
    pub empty_roots: Vec<PathBuf>,
    /// Files in the folders left out for their extension (without `strict`).
    pub not_images: Vec<PathBuf>,
}

/// A problem with an input as given on the command line.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{path}: input does not exist or cannot be read: {source}")]
    Missing { path: PathBuf, source: std::io::Error },
}

/// Whether the file name has one of the image extensions (any case).
pub fn is_image_name(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn slash_path(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Unique output prefix per input when there are several, from the input's last component.
fn prefixes(inputs: &[PathBuf]) -> Vec<String> {
    if inputs.len() < 2 {
        return vec![String::new(); inputs.len()];
    }
    let mut used = HashSet::new();
    inputs
        .iter()
        .map(|p| {
            let base = p
                .canonicalize()
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "input".into());
            let mut name = base.clone();
            let mut k = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}-{k}");
                k += 1;
            }
            format!("{name}/")
        })
        .collect()
}

/// Walks `inputs` and returns the image jobs in order (inputs in the order given, each sorted).
/// `out_dir` (which should exist) is excluded. A file named explicitly is taken whatever its
/// extension; with `strict`, so is every regular file in the folders (non-images then fail as
/// errors instead of being ignored). Walk errors inside a folder (unreadable subfolders) are
/// returned as `skipped`.
pub fn discover(inputs: &[PathBuf], out_dir: &Path, strict: bool) -> Result<Discovered, DiscoverError> {
    let out_canon = out_dir.canonicalize().ok();
    let mut jobs = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = HashSet::new();
    let mut empty_roots = Vec::new();
    let mut not_images = Vec::new();
    for (input, prefix) in inputs.iter().zip(prefixes(inputs)) {
        let meta = std::fs::metadata(input).map_err(|source| DiscoverError::Missing { path: input.clone(), source })?;
        if meta.is_file() {
            let root = input.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            let rel = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if seen.insert(input.canonicalize().unwrap_or(input.clone())) {
                let stat = Some(FileStat::of(&meta));
                jobs.push(ImageJob {
                    source: input.clone(),
                    root,
                    out_rel: rel.clone(),
                    rel,
                    sha256: None,
                    stat,
                    stat_settled: false,
                });
            }
            continue;
        }
        let mut images = 0;
        let walker = WalkDir::new(input).follow_links(false).sort_by_file_name().into_iter().filter_entry(|e| {
            !(e.file_type().is_dir()
                && out_canon.as_ref().is_some_and(|o| e.path().canonicalize().ok().as_ref() == Some(o)))
        });
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| input.clone());
                    skipped.push(Skipped { path, reason: e.to_string() });
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            if !(strict || is_image_name(entry.path())) {
                not_images.push(entry.into_path());
                continue;
            }
            images += 1;
            let Ok(rel) = entry.path().strip_prefix(input) else { continue };
            if !seen.insert(entry.path().canonicalize().unwrap_or(entry.path().to_path_buf())) {
                continue;
            }
            let rel = slash_path(rel);
            jobs.push(ImageJob {
                source: entry.path().to_path_buf(),
                root: input.clone(),
                out_rel: format!("{prefix}{rel}"),
                rel,
                sha256: None,
                stat: entry.metadata().ok().map(|m| FileStat::of(&m)),
                stat_settled: false,
            });
        }
        if images == 0 {
            empty_roots.push(input.clone());
        }
    }
    dedupe_outputs(&mut jobs);
    Ok(Discovered { jobs, skipped, empty_roots, not_images })
}

/// Gives every job a distinct `out_rel` (case-insensitively, for case-folding file systems).
fn dedupe_outputs(jobs: &mut [ImageJob]) {
    let mut used = HashSet::new();
    for job in jobs {
        let mut candidate = job.out_rel.clone();
        let mut k = 2;
        while !used.insert(candidate.to_lowercase()) {
            let p = Path::new(&job.out_rel);
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
            let dir = job.out_rel.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
            candidate = format!("{dir}{stem}-{k}{ext}");
            k += 1;
        }
        job.out_rel = candidate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }

    #[test]
    fn walks_sorted_mirrors_paths_and_skips_the_output_folder() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("in");
        for f in ["b/img1.jpg", "a/img1.jpg", "a/z.PNG", "notes.txt", "c.webp", "out/old.jpg"] {
            touch(&root.join(f));
        }
        let out = root.join("out");
        let Discovered { jobs, skipped, empty_roots, .. } =
            discover(std::slice::from_ref(&root), &out, false).expect("discover");
        let rels: Vec<_> = jobs.iter().map(|j| j.out_rel.as_str()).collect();
        assert_eq!(rels, vec!["a/img1.jpg", "a/z.PNG", "b/img1.jpg", "c.webp"]);
        assert!(skipped.is_empty() && empty_roots.is_empty());
        // A folder with files, none of them images, holds no images.
        let notes = d.path().join("notes");
        touch(&notes.join("a.txt"));
        let found = discover(&[root.clone(), notes.clone()], &out, false).expect("discover");
        assert_eq!(found.empty_roots, vec![notes]);
        assert_eq!(found.jobs.len(), 4);
    }

    #[test]
    fn several_inputs_get_distinct_prefixes() {
        let d = tempfile::tempdir().expect("tempdir");
        let (x, y) = (d.path().join("x/photos"), d.path().join("y/photos"));
        touch(&x.join("1.jpg"));
        touch(&y.join("1.jpg"));
        let (f1, f2) = (d.path().join("f/one.gif"), d.path().join("g/one.gif"));
        touch(&f1);
        touch(&f2);
        let jobs = discover(&[x, y, f1, f2], &d.path().join("out"), false).expect("discover").jobs;
        let rels: Vec<_> = jobs.iter().map(|j| j.out_rel.as_str()).collect();
        assert_eq!(rels, vec!["photos/1.jpg", "photos-2/1.jpg", "one.gif", "one-2.gif"]);
        assert_eq!(jobs[1].rel, "1.jpg");
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let e = discover(&[d.path().join("nope")], d.path(), false).expect_err("missing");
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
