//! Atomic writers: every file boxwalk produces is written to a temporary file in the destination
//! folder and renamed into place, so a crash never leaves a torn output.

use image::{ImageFormat, RgbImage};
use std::io::{BufWriter, Write};
use std::path::Path;
use turbojpeg::{PixelFormat, Subsamp};

/// When a written file's data reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced before the rename: the file survives a power loss once the call returns.
    Synced,
    /// Left to the caller, who syncs ([`sync_file`]) before recording the file as done (the
    /// pipeline does so per batch, before its journal line), or to nobody for derived files such
    /// as thumbnails. A process crash still never leaves a torn file.
    Deferred,
}

/// Writes `path` atomically with the bytes `write` produces, synced.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    write_atomic_as(path, Durability::Synced, write)
}

/// Writes `path` atomically with the bytes `write` produces.
pub fn write_atomic_as(
    path: &Path,
    durability: Durability,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(parent(path))?;
    persist(path, durability, write)
}

/// Writes `root/rel` atomically, creating the folders between `root` and the file but never
/// `root` itself: when `root` (OUT) has been removed under a run, the write fails with
/// `NotFound` instead of quietly making a new, partial OUT.
pub fn write_atomic_below(
    root: &Path,
    rel: &Path,
    durability: Durability,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut dir = root.to_path_buf();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        dir.push(c);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    persist(&root.join(rel), durability, write)
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `path` through a temporary file beside it, renamed into place; its folder must exist.
fn persist(
    path: &Path,
    durability: Durability,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent(path);
    // Readable like any other output (tempfile's default is owner-only).
    let mut tmp = tempfile::Builder::new()
        .prefix(".boxwalk-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush()?;
    }
    if durability == Durability::Synced {
        tmp.as_file().sync_data()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Which folder a path named when a run began (device and inode), to tell later whether it is
/// still there and still the same folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderId {
    dev: u64,
    ino: u64,
}

impl FolderId {
    pub fn of(path: &Path) -> std::io::Result<FolderId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FolderId { dev: m.dev(), ino: m.ino() })
    }

    /// Whether `path` still names this folder (not removed, nor replaced by another).
    pub fn is_at(&self, path: &Path) -> bool {
        FolderId::of(path).is_ok_and(|now| now == *self)
    }
}

/// Makes a [`Durability::Deferred`] file's data durable.
pub fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_data()
}

/// Removes temporary files a killed run left under `out` (they are never renamed into place).
pub fn remove_stale_temps(out: &Path) {
    for e in walkdir::WalkDir::new(out).into_iter().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy();
        if e.file_type().is_file() && name.starts_with(".boxwalk-") && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Encodes `img` in `format` into `w` (JPEG at `jpeg_quality`).
pub fn encode_image(
    img: &RgbImage,
    format: ImageFormat,
    jpeg_quality: u8,
    w: &mut dyn Write,
) -> Result<(), image::ImageError> {
    match format {
        ImageFormat::Jpeg => encode_jpeg(img, jpeg_quality, w).map_err(image::ImageError::IoError),
        other => {
            let mut buf = std::io::Cursor::new(Vec::new());
            img.write_to(&mut buf, other)?;
            w.write_all(buf.get_ref()).map_err(image::ImageError::IoError)
        }
    }
}

/// Encodes `img` as a JPEG with libjpeg-turbo, 4:2:0 chroma (libjpeg's default).
fn encode_jpeg(img: &RgbImage, quality: u8, w: &mut dyn Write) -> std::io::Result<()> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width > 65500 || height > 65500 {
        return Err(std::io::Error::other(format!("{width}×{height} is beyond libjpeg's 65500 px limit")));
    }
    let pixels =
        turbojpeg::Image { pixels: img.as_raw().as_slice(), width, pitch: width * 3, height, format: PixelFormat::RGB };
    let jpeg = turbojpeg::compress(pixels, i32::from(quality), Subsamp::Sub2x2).map_err(std::io::Error::other)?;
    w.write_all(&jpeg)
}

/// Writes an image atomically, synced.
pub fn write_image(path: &Path, img: &RgbImage, format: ImageFormat, jpeg_quality: u8) -> std::io::Result<()> {
    write_atomic(path, |w| encode_image(img, format, jpeg_quality, w).map_err(into_io))
}

/// Writes an image atomically to `root/rel`, creating folders below `root` only
/// ([`write_atomic_below`]).
pub fn write_image_below(
    root: &Path,
    rel: &Path,
    img: &RgbImage,
    format: ImageFormat,
    jpeg_quality: u8,
    durability: Durability,
) -> std::io::Result<()> {
    write_atomic_below(root, rel, durability, |w| encode_image(img, format, jpeg_quality, w).map_err(into_io))
}

/// An encoder's error as an I/O error; the writer's own I/O errors stay as they were, so that
/// their OS error (a full disk, say) can still be told.
fn into_io(e: image::ImageError) -> std::io::Error {
    match e {
        image::ImageError::IoError(e) => e,
        other => std::io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/r.json");
        write_atomic(&p, |w| w.write_all(b"one")).expect("first");
        write_atomic(&p, |w| w.write_all(b"two")).expect("second");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let failed = write_atomic(&p, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&p).expect("read"), b"two", "a failed write keeps the old file");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("sub")).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.json")]);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).expect("stat").permissions());
        assert_eq!(mode & 0o777, 0o644, "outputs are world-readable like ordinary files");
    }

    #[test]
    fn writing_below_a_root_makes_its_subfolders_but_never_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("out");
        std::fs::create_dir(&root).expect("mkdir");
        write_atomic_below(&root, Path::new("a/b/c.txt"), Durability::Synced, |w| w.write_all(b"x")).expect("write");
        assert_eq!(std::fs::read(root.join("a/b/c.txt")).expect("read"), b"x");
        std::fs::remove_dir_all(&root).expect("rm");
        let e = write_atomic_below(&root, Path::new("a/c.txt"), Durability::Synced, |w| w.write_all(b"x"))
            .expect_err("root gone");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = write_atomic_below(&root, Path::new("c.txt"), Durability::Synced, |w| w.write_all(b"x"))
            .expect_err("root gone");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(!root.exists(), "a removed root is not made again");
    }

    #[test]
    fn jpeg_keeps_the_colours_and_follows_the_quality() {
        // A colour gradient: a channel swap or a quality ignored shows in the error or the size.
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 200]));
        let encode = |q| {
            let mut v = Vec::new();
            encode_image(&img, ImageFormat::Jpeg, q, &mut v).expect("encodes");
            v
        };
        let fine = encode(95);
        let back = image::load_from_memory(&fine).expect("decodes").to_rgb8();
        let err: f64 = img.as_raw().iter().zip(back.as_raw()).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(err < 2.0, "mean error {err} at quality 95");
        let coarse = encode(30);
        assert!(coarse.len() < fine.len() * 2 / 3, "quality 30: {} bytes, 95: {}", coarse.len(), fine.len());
        let mut v = Vec::new();
        let e = encode_image(&RgbImage::new(65501, 1), ImageFormat::Jpeg, 90, &mut v).expect_err("too wide");
        assert!(e.to_string().contains("65500 px limit"), "{e}");
    }

    #[test]
    fn every_output_format_round_trips() {
        let img = RgbImage::from_pixel(9, 7, image::Rgb([0, 128, 255]));
        for f in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
            ImageFormat::Gif,
        ] {
            let mut v = Vec::new();
            encode_image(&img, f, 90, &mut v).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            let back = image::load_from_memory(&v).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            assert_eq!((back.width(), back.height()), (9, 7), "{f:?}");
        }
    }
}
