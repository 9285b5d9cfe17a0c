//! Bytes → RGB image. The format is taken from the content, not the extension; EXIF orientation
//! is applied; greyscale, palette, 16-bit, CMYK and alpha images all become 8-bit RGB (alpha is
//! dropped, 16-bit is scaled by 1/257); GIFs give their first frame. Size limits are checked from
//! the header before any pixel is decoded.

use crate::error::ImageError;
use image::{ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::{BufReader, Cursor, Read};
use std::path::Path;

/// Limits against hostile or runaway inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file, bytes.
    pub max_file_size: u64,
    /// Largest accepted width × height.
    pub max_pixels: u64,
    /// `--allow-truncated`: decode what a truncated file holds (the rest grey) instead of
    /// failing it.
    pub allow_truncated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        // 512 MiB of file; 100 MP (an 8000×6000 photo is 48 MP).
        Limits { max_file_size: 512 << 20, max_pixels: 100_000_000, allow_truncated: false }
    }
}

/// A decoded image.
#[derive(Debug)]
pub struct Decoded {
    /// 8-bit RGB after EXIF orientation.
    pub rgb: RgbImage,
    /// Container format detected from the content.
    pub format: ImageFormat,
    /// Why the pixels are not all the file's (a truncated file decoded under `allow_truncated`).
    pub warning: Option<String>,
}

/// Reads and decodes one file.
pub fn decode_file(path: &Path, limits: &Limits) -> Result<Decoded, ImageError> {
    let (bytes, _) = read_file(path, limits)?;
    decode_bytes(&bytes, path, limits)
}

/// Reads one file whole, within `limits.max_file_size`; also returns the file's metadata as it
/// was once read (from the open file), to tell whether it changed meanwhile.
pub fn read_file(path: &Path, limits: &Limits) -> Result<(Vec<u8>, std::fs::Metadata), ImageError> {
    let io_err = |source| ImageError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > limits.max_file_size {
        return Err(ImageError::Limit {
            path: path.to_path_buf(),
            reason: format!("file is {len} bytes, over the --max-file-size limit of {}", limits.max_file_size),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    BufReader::new(&mut file).take(limits.max_file_size.saturating_add(1)).read_to_end(&mut bytes).map_err(io_err)?;
    let after = file.metadata().map_err(io_err)?;
    Ok((bytes, after))
}

/// Decodes an in-memory file; `path` only names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: &Limits) -> Result<Decoded, ImageError> {
    let decode_err = |e: image::ImageError| {
        // The pixel data ends before the image does: a copy in progress, a broken upload. (A file
        // cut inside its headers has no pixels to show: a decode error, as for any other garbage.)
        let eof = matches!(&e, image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof);
        if eof {
            let reason = format!("the data ends after {} bytes, before the image is complete", bytes.len());
            ImageError::Truncated { path: path.to_path_buf(), reason }
        } else {
            ImageError::Decode { path: path.to_path_buf(), reason: e.to_string() }
        }
    };
    if bytes.is_empty() {
        return Err(ImageError::Decode { path: path.to_path_buf(), reason: "file is empty".into() });
    }
    let format = image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat { path: path.to_path_buf() })?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut img_limits = image::Limits::default();
    // Decoder allocations are capped too: RGBA16 of max_pixels plus slack.
    img_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(img_limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(ImageError::Limit {
            path: path.to_path_buf(),
            reason: format!("image is {w}×{h} = {pixels} pixels, over the --max-pixels limit of {}", limits.max_pixels),
        });
    }
    if w == 0 || h == 0 {
        return Err(ImageError::Decode { path: path.to_path_buf(), reason: format!("image has zero size {w}×{h}") });
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut warning = None;
    let jpeg = match (format == ImageFormat::Jpeg).then(|| decode_jpeg(bytes)) {
        Some(Err(reason)) if is_truncation(&reason) => {
            let reason =
                format!("the JPEG data ends after {} bytes, before the image is complete ({reason})", bytes.len());
            if !limits.allow_truncated {
                return Err(ImageError::Truncated { path: path.to_path_buf(), reason });
            }
            // What decodes, the rest grey (as the `image` crate fills it).
            warning = Some(format!("truncated: {reason}; decoded what it holds (--allow-truncated)"));
            None
        }
        Some(Ok(rgb)) => Some(rgb),
        _ => None,
    };
    let mut img = match jpeg {
        Some(rgb) => image::DynamicImage::ImageRgb8(rgb),
        None => image::DynamicImage::from_decoder(decoder).map_err(decode_err)?,
    };
    img.apply_orientation(orientation);
    Ok(Decoded { rgb: img.into_rgb8(), format, warning })
}

/// A JPEG decoded by libjpeg-turbo, as PIL (the Python pipeline's decoder) decodes it: the same
/// pixels, faster than the `image` crate's decoder. Fails where libjpeg-turbo cannot decode it
/// without a warning (CMYK, truncated or corrupt data), with libjpeg's message: the `image` crate
/// then decides, and its error names the reason, except for truncated data ([`is_truncation`]),
/// which the `image` crate would decode leniently.
fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    let img = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB).map_err(|e| e.to_string())?;
    let size = |v: usize| u32::try_from(v).map_err(|e| e.to_string());
    RgbImage::from_raw(size(img.width)?, size(img.height)?, img.pixels).ok_or_else(|| "bad image size".into())
}

/// Whether libjpeg's message says the data ended early ("Premature end of JPEG file", or a
/// marker missing where the data stops), as PIL's "image file is truncated".
fn is_truncation(libjpeg_message: &str) -> bool {
    let m = libjpeg_message.to_ascii_lowercase();
    m.contains("premature end") || m.contains("insufficient data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgba};

    fn encode(img: &image::DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).expect("encode test image");
        out.into_inner()
    }

    #[test]
    fn decodes_by_content_not_extension() {
        let img = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(5, 3, image::Rgb([10, 20, 30])));
        let png = encode(&img, ImageFormat::Png);
        let d = decode_bytes(&png, Path::new("photo.jpg"), &Limits::default()).expect("decodes");
        assert_eq!(d.format, ImageFormat::Png);
        assert_eq!(d.rgb.dimensions(), (5, 3));
        assert_eq!(d.rgb.get_pixel(2, 1).0, [10, 20, 30]);
    }

    #[test]
    fn grey_rgba_and_16_bit_become_rgb8() {
        let grey = image::DynamicImage::ImageLuma8(ImageBuffer::from_pixel(2, 2, Luma([77])));
        let d = decode_bytes(&encode(&grey, ImageFormat::Png), Path::new("g.png"), &Limits::default()).expect("grey");
        assert_eq!(d.rgb.get_pixel(0, 0).0, [77, 77, 77]);
        let rgba = image::DynamicImage::ImageRgba8(ImageBuffer::from_pixel(2, 2, Rgba([1, 2, 3, 0])));
        let d = decode_bytes(&encode(&rgba, ImageFormat::Png), Path::new("a.png"), &Limits::default()).expect("rgba");
        assert_eq!(d.rgb.get_pixel(1, 1).0, [1, 2, 3]);
        let deep = image::DynamicImage::ImageLuma16(ImageBuffer::from_pixel(2, 2, Luma([65535u16])));
        let d = decode_bytes(&encode(&deep, ImageFormat::Png), Path::new("d.png"), &Limits::default()).expect("16-bit");
        assert_eq!(d.rgb.get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn errors_name_the_file_and_reason() {
        let e = decode_bytes(b"", Path::new("empty.jpg"), &Limits::default()).expect_err("empty");
        assert!(e.to_string().contains("empty.jpg") && e.to_string().contains("empty"), "{e}");
        let e = decode_bytes(b"hello, I am text", Path::new("t.jpg"), &Limits::default()).expect_err("text");
        assert_eq!(e.kind(), "unknown_format");
        let img = image::DynamicImage::ImageRgb8(RgbImage::new(40, 30));
        let png = encode(&img, ImageFormat::Png);
        let e = decode_bytes(&png[..png.len() / 2], Path::new("cut.png"), &Limits::default()).expect_err("truncated");
        assert_eq!(e.kind(), "truncated", "{e}");
        // Textured, so that half the file is well into the scan data.
        let photo = RgbImage::from_fn(256, 192, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 3 % 256) as u8, 99]));
        let jpeg = encode(&image::DynamicImage::ImageRgb8(photo), ImageFormat::Jpeg);
        let cut = &jpeg[..jpeg.len() / 2];
        let e = decode_bytes(cut, Path::new("cut.jpg"), &Limits::default()).expect_err("truncated");
        assert_eq!(e.kind(), "truncated", "{e}");
        assert!(
            e.to_string().contains("cut.jpg") && e.to_string().contains(&format!("after {} bytes", cut.len())),
            "{e}"
        );
        let lenient = Limits { allow_truncated: true, ..Limits::default() };
        let d = decode_bytes(cut, Path::new("cut.jpg"), &lenient).expect("decodes what there is");
        assert_eq!(d.rgb.dimensions(), (256, 192));
        assert!(d.warning.is_some_and(|w| w.starts_with("truncated")));
        assert!(decode_bytes(&jpeg, Path::new("whole.jpg"), &lenient).expect("whole").warning.is_none());
        let small = Limits { max_pixels: 1000, ..Limits::default() };
        let e = decode_bytes(&png, Path::new("big.png"), &small).expect_err("limit");
        assert_eq!(e.kind(), "limit");
        assert!(e.to_string().contains("big.png") && e.to_string().contains("--max-pixels"), "{e}");
    }

    #[test]
    fn every_input_format_decodes_and_gifs_give_their_first_frame() {
        let img = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(6, 4, image::Rgb([250, 10, 10])));
        for f in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP, ImageFormat::Bmp, ImageFormat::Tiff] {
            let d = decode_bytes(&encode(&img, f), Path::new("x"), &Limits::default()).expect("decodes");
            assert_eq!((d.format, d.rgb.dimensions()), (f, (6, 4)));
            assert!(d.rgb.get_pixel(3, 2).0[0] > 200, "{f:?}");
        }
        let mut gif = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
            let frame = |c: [u8; 4]| image::Frame::new(ImageBuffer::from_pixel(6, 4, Rgba(c)));
            enc.encode_frames([frame([0, 0, 255, 255]), frame([255, 0, 0, 255])]).expect("gif");
        }
        let d = decode_bytes(&gif, Path::new("anim.gif"), &Limits::default()).expect("gif decodes");
        assert_eq!(d.format, ImageFormat::Gif);
        let p = d.rgb.get_pixel(0, 0).0;
        assert!(p[2] > 200 && p[0] < 50, "first frame (blue), got {p:?}");
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4×2 JPEG tagged orientation 6 (rotate 90° clockwise) must come out 2×4.
        let img = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 2, image::Rgb([200, 10, 10])));
        let jpeg = encode(&img, ImageFormat::Jpeg);
        let tagged = crate::testutil::with_exif_orientation(&jpeg, 6);
        let d = decode_bytes(&tagged, Path::new("r.jpg"), &Limits::default()).expect("rotated");
        assert_eq!(d.rgb.dimensions(), (2, 4));
    }
}
