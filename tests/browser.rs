//! The two pages in a real browser (headless Chromium through Selenium, scripts in
//! tests/browser/): the contact sheet loaded from disk, and the `serve` page with an upload.
//! Screenshots are left in target/test-artifacts/ for people to look at.
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver; `make test` installs
//! them through `make browser`).

mod common;

use std::path::Path;
use std::process::Command;

fn run_check(script: &str, args: &[&std::ffi::OsStr]) -> String {
    for tool in ["BOXWALK_CHROMIUM:/usr/bin/chromium", "BOXWALK_CHROMEDRIVER:/usr/bin/chromedriver"] {
        let (var, default) = tool.split_once(':').expect("pair");
        let path = std::env::var(var).unwrap_or_else(|_| default.into());
        assert!(
            Path::new(&path).exists(),
            "{path} not found: install Chromium and its driver (`make browser`) or set {var}"
        );
    }
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/browser").join(script))
        .args(args)
        .output()
        .expect("run the browser check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{script}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn contact_sheet_in_a_real_browser() {
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    for dir in ["samples/synthetic", "samples/photos"] {
        for f in std::fs::read_dir(common::repo().join(dir)).expect("samples") {
            let f = f.expect("entry").path();
            if f.extension().is_some_and(|e| e == "png" || e == "jpg") {
                std::fs::copy(&f, input.join(f.file_name().expect("name"))).expect("copy");
            }
        }
    }
    let images = std::fs::read_dir(&input).expect("in").count();
    std::fs::write(input.join("corrupt.jpg"), b"\xff\xd8\xff\xe0 this JPEG stops here").expect("write");
    let out = t.path().join("out");
    let demo = common::repo().join("models/demo");
    let o = common::boxwalk()
        .arg("detect")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--device", "cpu", "--quiet", "--detector-weights"])
        .arg(demo.join("detector.safetensors"))
        .arg("--classifier-weights")
        .arg(demo.join("classifier.safetensors"))
        .output()
        .expect("detect");
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let shot = common::artifacts().join("contact-sheet.png");
    let _ = std::fs::remove_file(&shot);
    let n = images.to_string();
    let printed = run_check(
        "check_sheet.py",
        &[out.as_os_str(), shot.as_os_str(), n.as_ref(), "corrupt.jpg".as_ref(), "square".as_ref()],
    );
    println!("{printed}");
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
}

#[test]
fn serve_page_uploads_a_sample_and_draws_its_boxes() {
    let s = common::Served::start(&[]);
    let shot = common::artifacts().join("serve.png");
    let _ = std::fs::remove_file(&shot);
    let sample = common::repo().join("samples/synthetic/000000.png");
    let printed = run_check("check_serve.py", &[s.url.as_ref(), sample.as_os_str(), shot.as_os_str()]);
    println!("{printed}");
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000);
}
