//! What graders and other tools read: the contact sheet's files, `--csv`, `--coco-json` (checked
//! with pycocotools against `boxwalk eval`), and `boxwalk render`.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn demo() -> PathBuf {
    common::repo().join("models/demo")
}

/// `boxwalk detect INPUT --out OUT --quiet` on the CPU with the demo models; returns (exit code, report).
fn detect(input: &Path, out: &Path, extra: &[&std::ffi::OsStr]) -> (i32, Value) {
    let mut flags = vec![std::ffi::OsStr::new("--quiet")];
    flags.extend_from_slice(extra);
    let (code, _, _) = common::detect_demo(&[input], out, &flags);
    (code, common::read_report(out))
}

fn synth(dir: &Path, n: usize, seed: u64) {
    let o = boxwalk::synth::SynthOptions { n, seed, ..Default::default() };
    boxwalk::synth::write_set(&o, dir).expect("synth");
}

fn python_json(script: &str, args: &[&Path]) -> Value {
    let out = Command::new(common::python()).arg(common::repo().join(script)).args(args).output().expect("run python");
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn csv_coco_and_contact_sheet_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let set = t.path().join("set");
    synth(&set, 30, 4242);
    std::fs::write(set.join("images/zz-broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let (csv_file, coco_file) = (t.path().join("dets.csv"), t.path().join("coco.json"));
    let out = t.path().join("out");
    let (code, report) = detect(
        &set.join("images"),
        &out,
        &[
            os("--csv"),
            csv_file.as_os_str(),
            os("--coco-json"),
            coco_file.as_os_str(),
            os("--coco-images"),
            set.join("annotations.json").as_os_str(),
        ],
    );
    assert_eq!(code, 3, "one broken file");
    let images = report["images"].as_array().expect("images");
    assert_eq!(images.len(), 31);
    // Demo models given by path are reported as demo models (their cards say so).
    let models = report["models"].as_array().expect("models");
    assert!(models.len() == 2 && models.iter().all(|m| m["demo"] == true), "{models:?}");

    // The contact sheet: the page, and one small JPEG thumbnail per annotated copy.
    let page = std::fs::read_to_string(out.join("index.html")).expect("index.html");
    assert!(!page.contains("http://") && !page.contains("https://"), "the page must not reach the network");
    for e in images.iter().filter(|e| e["error"].is_null()) {
        let o = e["output"].as_str().expect("output");
        assert!(page.contains(o), "{o} missing from the page");
        let thumb = image::open(out.join(boxwalk::outputs::sheet::thumb_rel(o))).expect("thumbnail decodes");
        assert!(thumb.width().max(thumb.height()) <= boxwalk::outputs::sheet::THUMB_SIDE);
        assert!(thumb.width() > 1 && thumb.height() > 1);
    }
    assert!(page.contains("zz-broken.png"), "the failure is on the page");

    // CSV: a row per detection above the threshold, one per failed image.
    let mut rows = csv::Reader::from_path(&csv_file).expect("csv");
    let header: Vec<String> = rows.headers().expect("header").iter().map(String::from).collect();
    assert_eq!(header[..6], ["path", "root", "output", "class", "class_index", "score"]);
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("row")).collect();
    let dets: usize = images.iter().map(|e| e["detections"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(rows.len(), dets + 1);
    let failed: Vec<_> = rows.iter().filter(|r| !r[10].is_empty()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(&failed[0][0], "zz-broken.png");
    assert!(failed[0][11].contains("zz-broken.png"), "the reason names the file");
    let first = images.iter().find(|e| e["detections"].as_array().is_some_and(|d| !d.is_empty())).expect("a hit");
    let row = rows.iter().find(|r| r[0] == *first["path"].as_str().expect("path")).expect("its row");
    let d = &first["detections"][0];
    assert_eq!(&row[3], d["label"].as_str().expect("label"));
    assert!((row[5].parse::<f64>().expect("score") - d["score"].as_f64().expect("score")).abs() < 1e-3);
    assert!((row[6].parse::<f64>().expect("x1") - d["box"][0].as_f64().expect("x1")).abs() < 0.01);

    // COCO results: low scores kept, ids from the annotations file, boxes as x,y,w,h.
    let results: Value = serde_json::from_slice(&std::fs::read(&coco_file).expect("coco")).expect("json");
    let results = results.as_array().expect("a list");
    let all: usize = images.iter().map(|e| e["all_detections"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(results.len(), all);
    let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().expect("score")).collect();
    assert!(scores.iter().all(|&s| s > 0.05) && scores.iter().any(|&s| s < 0.4), "scores down to 0.05");
    let ann: Value = serde_json::from_slice(&std::fs::read(set.join("annotations.json")).expect("ann")).expect("json");
    let id_of = |name: &str| {
        ann["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["file_name"] == format!("images/{name}"))
            .expect("in ann")["id"]
            .clone()
    };
    let r0 =
        results.iter().find(|r| r["image_id"] == id_of(first["path"].as_str().expect("p"))).expect("first's results");
    let b = r0["bbox"].as_array().expect("bbox");
    assert!(b[2].as_f64().expect("w") > 0.0 && b[3].as_f64().expect("h") > 0.0);

    // pycocotools reads it and finds the mAP that boxwalk's own evaluation reports.
    let py = python_json("tests/reference/coco_check.py", &[&set.join("annotations.json"), &coco_file]);
    let o = common::boxwalk()
        .args(["eval", "--json", "--data"])
        .arg(&set)
        .arg("--detector-weights")
        .arg(demo().join("detector.safetensors"))
        .output()
        .expect("eval");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ours: Value = serde_json::from_slice(&o.stdout).expect("eval json");
    let (a, b) = (py["map50"].as_f64().expect("py"), ours["map50"].as_f64().expect("ours"));
    println!("mAP@0.5: pycocotools {a:.4}, boxwalk eval {b:.4}");
    assert!(a > 0.5, "pycocotools found the demo detector's hits: {py}");
    assert!((a - b).abs() < 0.02, "pycocotools {a} vs boxwalk eval {b}");

    // A copy redrawn by a --no-html run gets a fresh thumbnail on the next run with the page.
    let o = first["output"].as_str().expect("output");
    let thumb = out.join(boxwalk::outputs::sheet::thumb_rel(o));
    let old_thumb = std::fs::read(&thumb).expect("thumbnail");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (_, _) = detect(&set.join("images"), &out, &[os("--no-html"), os("--force"), os("--threshold"), os("0.99")]);
    assert!(std::fs::read(&thumb).expect("thumbnail") == old_thumb, "--no-html leaves thumbnails alone");
    let (_, again) = detect(&set.join("images"), &out, &[os("--threshold"), os("0.99")]);
    assert!(again["counts"]["processed"].as_u64().expect("processed") <= 1, "the images are carried over");
    assert!(std::fs::read(&thumb).expect("thumbnail") != old_thumb, "the stale thumbnail is redrawn");
    // Thumbnails are not synced: one a power loss left empty is redrawn, though newer than its image.
    std::fs::write(&thumb, b"").expect("empty the thumbnail");
    let (_, _) = detect(&set.join("images"), &out, &[os("--threshold"), os("0.99")]);
    assert!(image::open(&thumb).is_ok(), "the empty thumbnail is redrawn");

    // --no-html leaves no page and no thumbnails.
    let bare = t.path().join("bare");
    let (code, _) = detect(&set.join("images"), &bare, &[os("--no-html")]);
    assert_eq!(code, 3);
    assert!(!bare.join("index.html").exists() && !bare.join(boxwalk::outputs::sheet::THUMBS).exists());
}

#[test]
fn an_empty_coco_export_is_still_valid_pycocotools_input() {
    let t = tempfile::tempdir().expect("tempdir");
    let set = t.path().join("set");
    synth(&set, 3, 7);
    let coco = t.path().join("empty.json");
    // With the detector off there is no detection at all.
    let (code, _) =
        detect(&set.join("images"), &t.path().join("out"), &[os("--no-detect"), os("--coco-json"), coco.as_os_str()]);
    assert_eq!(code, 0);
    let images_file = boxwalk::outputs::export::images_file(&coco);
    let generated: Value = serde_json::from_slice(&std::fs::read(&images_file).expect("images.json")).expect("json");
    assert_eq!(generated["images"].as_array().map(Vec::len), Some(3));
    for gt in [&images_file, &set.join("annotations.json")] {
        let (code, _) = detect(
            &set.join("images"),
            &t.path().join("out2"),
            &[
                os("--no-detect"),
                os("--coco-json"),
                coco.as_os_str(),
                os("--coco-images"),
                gt.as_os_str(),
                os("--force"),
            ],
        );
        assert_eq!(code, 0);
        let py = python_json("tests/reference/coco_check.py", &[gt, &coco]);
        assert_eq!(py["results"], 1, "one zero-score placeholder: {py}");
        assert!(py["map50"].as_f64().expect("map") <= 0.0, "the placeholder matches nothing: {py}");
    }
}

fn pixels(p: &Path) -> image::RgbImage {
    image::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).to_rgb8()
}

fn render(report: &Path, out: &Path, extra: &[&str]) -> (i32, String, Value) {
    let o = common::boxwalk().arg("render").arg(report).arg("--out").arg(out).args(extra).output().expect("render");
    let report = std::fs::read(out.join("report.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned(), report.unwrap_or(Value::Null))
}

#[test]
fn render_redraws_without_models() {
    let t = tempfile::tempdir().expect("tempdir");
    let set = t.path().join("set");
    synth(&set, 6, 99);
    let input = set.join("images");
    let out = t.path().join("out");
    let (code, report) = detect(&input, &out, &[os("--coco-json"), t.path().join("c.json").as_os_str()]);
    assert_eq!(code, 0);

    // Same threshold and style: the very pixels `detect` drew (PNG, lossless).
    let same = t.path().join("same");
    let (code, err, r) = render(&out, &same, &[]);
    assert_eq!(code, 0, "{err}");
    for e in report["images"].as_array().expect("images") {
        let o = e["output"].as_str().expect("output");
        assert!(pixels(&out.join(o)) == pixels(&same.join(o)), "{o} differs from detect's drawing");
    }
    assert!(same.join("index.html").is_file());
    assert_eq!(r["images"], report["images"], "same threshold, same entries");

    // Re-thresholding, both ways, and a class filter.
    let count = |r: &Value| -> usize {
        r["images"].as_array().expect("images").iter().map(|e| e["detections"].as_array().map_or(0, Vec::len)).sum()
    };
    let (_, _, high) = render(&out, &t.path().join("high"), &["--threshold", "0.9"]);
    let (_, _, low) = render(&out, &t.path().join("low"), &["--threshold", "0.2"]);
    let (_, _, squares) =
        render(&out, &t.path().join("sq"), &["--classes", "square", "--no-scores", "--line-width", "4"]);
    assert!(
        count(&high) < count(&report) && count(&report) < count(&low),
        "{} {} {}",
        count(&high),
        count(&report),
        count(&low)
    );
    for e in squares["images"].as_array().expect("images") {
        for d in e["detections"].as_array().expect("dets") {
            assert_eq!(d["label"], "square");
            assert!(d["score"].as_f64().expect("score") > 0.4);
        }
    }
    let e0 = &squares["images"][0];
    let o = e0["output"].as_str().expect("output");
    assert!(pixels(&t.path().join("sq").join(o)) != pixels(&out.join(o)), "restyled copies differ");

    // Refusals and failures: the run's own folder, a changed input, a report without low scores.
    let (code, err, _) = render(&out, &out, &[]);
    assert_eq!(code, 2, "{err}");
    let first = report["images"][0]["path"].as_str().expect("path");
    std::fs::write(input.join(first), pixels(&out.join(first)).as_raw()).expect("change the input");
    let (code, err, changed) = render(&out.join("report.json"), &t.path().join("changed"), &[]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(changed["images"][0]["error"]["kind"], "changed");
    assert!(err.contains(first), "{err}");
    let plain = t.path().join("plain");
    let (_, _) = detect(&set.join("images"), &plain, &[os("--force")]);
    let (_, err, _) = render(&plain, &t.path().join("p2"), &["--threshold", "0.1"]);
    assert!(err.contains("--coco-json"), "warns that low scores are not in the report: {err}");
}
