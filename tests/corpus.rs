//! A corpus of bad and unusual inputs, generated here, run through `boxwalk detect` in one go:
//! each bad file must end as one error entry naming it (or a documented skip), never a crash or a
//! hang; every unusual but valid image must be processed; inputs stay untouched and nothing is
//! written outside OUT.

mod common;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

fn encode(img: &DynamicImage, f: ImageFormat) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    img.write_to(&mut c, f).expect("encode");
    c.into_inner()
}

fn photo(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }))
}

/// A PNG whose IHDR declares `w`×`h` (CRC fixed up) followed by a tiny, useless IDAT.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut png = encode(&photo(1, 1), ImageFormat::Png);
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A baseline JPEG whose SOF0 declares `w`×`h`.
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut j = encode(&photo(8, 8), ImageFormat::Jpeg);
    let sof = j.windows(2).position(|p| p == [0xFF, 0xC0]).expect("SOF0");
    j[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    j[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    j
}

#[test]
fn every_bad_input_ends_as_an_error_or_a_skip_and_good_ones_are_processed() {
    let t = tempfile::tempdir().expect("tempdir");
    let inp = t.path().join("in");
    std::fs::create_dir_all(&inp).expect("mkdir");
    let w = |name: &str, bytes: &[u8]| std::fs::write(inp.join(name), bytes).expect("write");

    // Bad files: (name, expected error kind).
    let good_png = encode(&photo(64, 48), ImageFormat::Png);
    let good_jpg = encode(&photo(64, 48), ImageFormat::Jpeg);
    // Large enough that two thirds of it reach into the pixel data.
    let big_jpg = encode(&photo(320, 240), ImageFormat::Jpeg);
    let mut crc = good_png.clone();
    let idat = crc.windows(4).position(|p| p == b"IDAT").expect("IDAT");
    crc[idat + 6] ^= 0xFF;
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("zero.jpg", vec![], "decode"),
        ("truncated.png", good_png[..good_png.len() / 2].to_vec(), "truncated"),
        ("truncated.jpg", big_jpg[..big_jpg.len() * 2 / 3].to_vec(), "truncated"),
        ("header-only.jpg", good_jpg[..40].to_vec(), "decode"),
        ("random.png", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), "unknown_format"),
        ("text.jpg", b"Dear grader, this is not a photo.\n".to_vec(), "unknown_format"),
        ("crc.png", crc, "decode"),
        ("bomb.png", png_declaring(30000, 30000), "limit"),
        ("bomb.jpg", jpeg_declaring(65500, 65500), "limit"),
    ];
    for (name, bytes, _) in &bad {
        w(name, bytes);
    }

    // Unusual but valid images.
    w("misleading.jpg", &good_png);
    w("grey.png", &encode(&DynamicImage::ImageLuma8(ImageBuffer::from_pixel(40, 30, Luma([90]))), ImageFormat::Png));
    w(
        "deep.png",
        &encode(&DynamicImage::ImageLuma16(ImageBuffer::from_pixel(40, 30, Luma([40000u16]))), ImageFormat::Png),
    );
    w(
        "alpha.png",
        &encode(&DynamicImage::ImageRgba8(ImageBuffer::from_pixel(40, 30, Rgba([9, 9, 9, 0]))), ImageFormat::Png),
    );
    w("photo.webp", &encode(&photo(50, 40), ImageFormat::WebP));
    w("photo.bmp", &encode(&photo(50, 40), ImageFormat::Bmp));
    w("photo.tiff", &encode(&photo(50, 40), ImageFormat::Tiff));
    w("big.jpg", &encode(&photo(8000, 6000), ImageFormat::Jpeg));
    {
        let mut gif = Vec::new();
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let f = |c| image::Frame::new(ImageBuffer::from_pixel(30, 20, Rgba(c)));
        enc.encode_frames([f([0, 0, 255, 255]), f([255, 0, 0, 255])]).expect("gif");
        drop(enc);
        w("animated.gif", &gif);
    }
    // CMYK JPEG and palette PNG, written by Pillow (the image crate encodes neither).
    let py = std::process::Command::new(common::python())
        .arg("-c")
        .arg(
            "import sys; from PIL import Image; d=sys.argv[1]; \
             Image.new('CMYK', (40, 30), (0, 200, 200, 0)).save(d + '/cmyk.jpg'); \
             Image.new('RGB', (40, 30), (10, 200, 30)).convert('P', palette=Image.ADAPTIVE, colors=8).save(d + '/palette.png')",
        )
        .arg(&inp)
        .output()
        .expect("python");
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let rotated = boxwalk::testutil::with_exif_orientation(&encode(&photo(60, 20), ImageFormat::Jpeg), 8);
    w("rotated.jpg", &rotated);
    let non_utf8 = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9.png");
    std::fs::write(inp.join(non_utf8), &good_png).expect("non-UTF-8 name");

    // Documented skips: special files and links are never opened.
    std::fs::create_dir_all(inp.join("folder.jpg")).expect("dir named like an image");
    let fifo = inp.join("pipe.jpg");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    std::os::unix::fs::symlink(inp.join("nowhere.jpg"), inp.join("dangling.jpg")).expect("symlink");
    std::os::unix::fs::symlink(inp.join("loop.jpg"), inp.join("loop.jpg")).expect("loop");
    std::os::unix::fs::symlink(t.path().join("outside.jpg"), inp.join("outside-link.jpg")).expect("outside link");
    std::fs::write(t.path().join("outside.jpg"), &good_jpg).expect("outside file");
    w("notes.txt", b"ignored");
    // Unreadable: mode 000. Root reads anything through CAP_DAC_OVERRIDE, so as root boxwalk runs
    // under setpriv without the two file-permission capabilities, and the kernel refuses the open
    // as it would for any other user.
    w("locked.png", &good_png);
    std::fs::set_permissions(inp.join("locked.png"), std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .expect("chmod 000");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search"]);
        c.arg(env!("CARGO_BIN_EXE_boxwalk"));
        c
    } else {
        common::boxwalk()
    };

    let before = common::snapshot(t.path());
    let out = t.path().join("out");
    let r = common::reference();
    let result = cmd
        .arg("detect")
        .arg(&inp)
        .arg("--out")
        .arg(&out)
        .args(["--device", "cpu", "--batch-size", "4"])
        .arg("--detector-weights")
        .arg(r.join("ssd300.safetensors"))
        .arg("--classifier-weights")
        .arg(r.join("resnet18.safetensors"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(3), "finished with failures: {stderr}");

    let report: Value = common::read_report(&out);
    let by_path: BTreeMap<String, &Value> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|e| (e["path"].as_str().expect("path").to_string(), e))
        .collect();
    let locked = by_path.get("locked.png").expect("locked.png in the report");
    assert_eq!(locked["error"]["kind"], "io", "{}", locked["error"]);
    let why = locked["error"]["message"].as_str().expect("message");
    assert!(why.contains("locked.png") && why.contains("Permission denied"), "{why}");
    for (name, _, kind) in &bad {
        let e = by_path.get(*name).unwrap_or_else(|| panic!("{name} missing from the report"));
        assert_eq!(e["error"]["kind"], *kind, "{name}: {}", e["error"]);
        assert!(e["error"]["message"].as_str().expect("message").contains(name), "{name}: message names the file");
        assert!(stderr.contains(name), "{name} reported on stderr");
    }
    let ok = [
        "misleading.jpg",
        "grey.png",
        "deep.png",
        "alpha.png",
        "photo.webp",
        "photo.bmp",
        "photo.tiff",
        "big.jpg",
        "animated.gif",
        "rotated.jpg",
        "cmyk.jpg",
        "palette.png",
        "caf\u{FFFD}.png",
    ];
    for name in ok {
        let e = by_path.get(name).unwrap_or_else(|| panic!("{name} missing from the report: {:?}", by_path.keys()));
        assert!(e.get("error").is_none(), "{name}: {}", e["error"]);
        let output = out.join(e["output"].as_str().expect("output"));
        assert!(image::open(&output).is_ok(), "{name}: annotated copy decodes");
    }
    assert_eq!((by_path["big.jpg"]["width"].as_u64(), by_path["big.jpg"]["height"].as_u64()), (Some(8000), Some(6000)));
    assert_eq!(
        (by_path["rotated.jpg"]["width"].as_u64(), by_path["rotated.jpg"]["height"].as_u64()),
        (Some(20), Some(60))
    );
    // CMYK (0, 200, 200, 0) is red once converted to RGB.
    let cmyk = boxwalk::decode::decode_file(&inp.join("cmyk.jpg"), &Default::default()).expect("cmyk decodes").rgb;
    let p = cmyk.get_pixel(20, 15).0;
    assert!(p[0] > 150 && p[1] < 120 && p[2] < 120, "CMYK converted to RGB: {p:?}");
    for skipped in ["folder.jpg", "pipe.jpg", "dangling.jpg", "loop.jpg", "outside-link.jpg", "notes.txt"] {
        assert!(!by_path.contains_key(skipped), "{skipped} is skipped, not processed");
    }
    assert_eq!(report["counts"]["failed"], bad.len() + 1, "the bad files and locked.png");
    assert_eq!(report["counts"]["ok"], ok.len());

    // Inputs untouched; everything new is under OUT.
    let after = common::snapshot(t.path());
    for (p, bytes) in &before {
        assert!(after.get(p) == Some(bytes), "{} changed", p.display());
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        assert!(p.starts_with(&out), "{} written outside OUT", p.display());
    }
}

/// A JPEG cut short (a copy in progress, a half upload) is a `truncated` error naming the file and
/// how much it holds, as PIL refuses it; `--allow-truncated` processes what decodes, and the
/// entry's warning shows in the report, the CSV and the contact sheet.
#[test]
fn truncated_jpegs_fail_unless_allowed_and_then_carry_a_warning() {
    let t = tempfile::tempdir().expect("tempdir");
    let inp = t.path().join("in");
    std::fs::create_dir_all(&inp).expect("mkdir");
    let jpg = encode(&photo(320, 240), ImageFormat::Jpeg);
    let cut = &jpg[..jpg.len() / 3];
    std::fs::write(inp.join("half.jpg"), cut).expect("write");
    std::fs::write(inp.join("whole.jpg"), &jpg).expect("write");
    let entry = |out: &Path| -> Value {
        let r = common::read_report(out);
        r["images"].as_array().expect("images").iter().find(|e| e["path"] == "half.jpg").expect("entry").clone()
    };

    let out = t.path().join("strict");
    let (code, _, err) = common::detect_demo(&[&inp], &out, &["--quiet"]);
    assert_eq!(code, 3, "{err}");
    let e = entry(&out);
    assert_eq!(e["error"]["kind"], "truncated", "{e}");
    let message = e["error"]["message"].as_str().expect("message");
    assert!(message.contains("half.jpg") && message.contains(&format!("after {} bytes", cut.len())), "{message}");
    assert!(e["output"].is_null());

    let out = t.path().join("allowed");
    let csv = t.path().join("allowed.csv");
    let (code, _, err) = common::detect_demo(
        &[&inp],
        &out,
        &["--quiet".as_ref(), "--allow-truncated".as_ref(), "--csv".as_ref(), csv.as_os_str()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning") && err.contains("half.jpg"), "the warning is printed: {err}");
    let e = entry(&out);
    assert!(e["error"].is_null() && e["output"] == "half.jpg", "{e}");
    let warning = e["warning"].as_str().expect("a warning");
    assert!(warning.starts_with("truncated") && warning.contains(&format!("after {} bytes", cut.len())), "{warning}");
    let copy = image::open(out.join("half.jpg")).expect("the copy decodes").to_rgb8();
    assert_eq!(copy.dimensions(), (320, 240), "the whole frame, the missing part filled");
    let csv = std::fs::read_to_string(&csv).expect("csv");
    assert!(csv.lines().next().is_some_and(|h| h.ends_with(",warning")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("half.jpg,") && l.contains("truncated")), "{csv}");
    let page = std::fs::read_to_string(out.join("index.html")).expect("page");
    assert!(page.contains("\"w\":\"truncated"), "the sheet's data holds the warning");
    let r = common::read_report(&out);
    assert_eq!(r["options"]["allow_truncated"], true);
    assert_ne!(
        r["run_key"],
        common::read_report(&t.path().join("strict"))["run_key"],
        "it changes results: another key"
    );
}
