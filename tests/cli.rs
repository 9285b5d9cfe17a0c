//! End-to-end tests of `boxwalk detect` on temporary trees: folder mirroring, same-named files,
//! output inside the input, failures among good files, exit codes, flags, EXIF orientation.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn weights_args() -> Vec<OsString> {
    let r = common::reference();
    vec![
        "--detector-weights".into(),
        r.join("ssd300.safetensors").into(),
        "--classifier-weights".into(),
        r.join("resnet18.safetensors").into(),
        "--device".into(),
        "cpu".into(),
    ]
}

fn detect(inputs: &[&Path], out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args: Vec<OsString> = vec!["detect".into()];
    args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    args.extend(["--out".into(), out.as_os_str().to_owned()]);
    args.extend(weights_args());
    args.extend(extra.iter().map(OsString::from));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    common::run(&args)
}

fn report(out: &Path) -> Value {
    common::read_report(out)
}

fn sample(i: usize) -> PathBuf {
    let dir = common::reference().join("images");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir).expect("images").map(|e| e.expect("entry").path()).collect();
    names.sort();
    names[i % names.len()].clone()
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(from, to).expect("copy");
}

/// Every file under `dir` with its content hash.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), boxwalk::sys::sha256_file(e.path()).expect("hash")))
        .collect()
}

#[test]
fn mirrors_the_tree_survives_a_corrupt_file_and_never_walks_its_output() {
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("photos");
    copy(&sample(0), &input.join("a/img1.png"));
    copy(&sample(1), &input.join("b/img1.png"));
    copy(&sample(2), &input.join("b/deeper/x.png"));
    std::fs::write(input.join("b/broken.jpg"), b"\xff\xd8\xff\xe0 this is not really a jpeg").expect("write");
    std::fs::write(input.join("notes.txt"), b"ignored").expect("write");
    let out = input.join("annotated"); // output inside the input
    let before = snapshot(&input);

    let (code, stdout, stderr) = detect(&[&input], &out, &["--batch-size", "2"]);
    assert_eq!(code, 3, "finished with failures\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("broken.jpg"), "the failure is named on stderr: {stderr}");
    let r = report(&out);
    let paths: Vec<&str> =
        r["images"].as_array().expect("images").iter().map(|e| e["path"].as_str().expect("path")).collect();
    assert_eq!(paths, vec!["a/img1.png", "b/broken.jpg", "b/deeper/x.png", "b/img1.png"]);
    assert_eq!(r["counts"]["ok"], 3);
    assert_eq!(r["counts"]["failed"], 1);
    let models = r["models"].as_array().expect("models");
    assert!(models.iter().all(|m| m["demo"] == false), "weights without a card are not demo models: {models:?}");
    let broken = &r["images"][1];
    assert_eq!(broken["error"]["kind"], "decode");
    assert!(broken["error"]["message"].as_str().expect("message").contains("broken.jpg"));
    assert!(broken.get("detections").is_none() && broken.get("output").is_none());
    for p in ["a/img1.png", "b/img1.png", "b/deeper/x.png"] {
        let a = image::open(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(a.width() > 0);
    }
    assert!(!out.join("b/broken.jpg").exists());
    // The annotated copies differ from the inputs (something was drawn: at least the banner).
    assert_ne!(
        std::fs::read(out.join("a/img1.png")).expect("out"),
        std::fs::read(input.join("a/img1.png")).expect("in")
    );

    // Inputs untouched, and everything new is under OUT.
    let after = snapshot(&input);
    for (p, h) in &before {
        assert_eq!(after.get(p), Some(h), "{} changed", p.display());
    }
    assert!(after.keys().filter(|p| !before.contains_key(*p)).all(|p| p.starts_with(&out)));
    let leftovers: Vec<_> = after.keys().filter(|p| p.to_string_lossy().contains(".boxwalk-")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A second run over the same input does not pick up its own outputs.
    let (code, _, _) = detect(&[&input], &out, &[]);
    assert_eq!(code, 3);
    assert_eq!(report(&out)["counts"]["images"], 4);
}

#[test]
fn exit_codes_and_messages() {
    let t = tempfile::tempdir().expect("tempdir");
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let (code, _, stderr) = detect(&[&empty], &t.path().join("o1"), &[]);
    assert_eq!(code, 4, "no inputs: {stderr}");

    let good = t.path().join("good");
    copy(&sample(0), &good.join("one.png"));
    let (code, _, stderr) = detect(&[&good], &t.path().join("o2"), &["--threshold", "2"]);
    assert_eq!(code, 1, "bad threshold: {stderr}");
    let (code, _, stderr) = detect(&[&good], &t.path().join("o3"), &["--classes", "person,unicorn"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unicorn"), "{stderr}");
    // `detect` passes `--device cpu`.
    for (flag, message) in
        [("--half", "--half needs a CUDA device"), ("--cudnn-benchmark", "--cudnn-benchmark needs a CUDA device")]
    {
        let (code, _, stderr) = detect(&[&good], &t.path().join("o3"), &[flag]);
        assert_eq!(code, 1, "{flag} on CPU: {stderr}");
        assert!(stderr.contains(message), "{flag} on CPU: {stderr}");
    }

    let missing = t.path().join("nowhere.safetensors");
    let args: Vec<OsString> = vec![
        "detect".into(),
        good.clone().into(),
        "--out".into(),
        t.path().join("o4").into(),
        "--detector-weights".into(),
        missing.clone().into(),
        "--no-classify".into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, _, stderr) = common::run(&args);
    assert_eq!(code, 2, "missing weights are fatal: {stderr}");
    assert!(stderr.contains("nowhere.safetensors") && stderr.contains("--detector-weights"), "{stderr}");

    let (code, stdout, stderr) = detect(&[&good], &t.path().join("o5"), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("report.json"), "says where the report went: {stdout}");
}

#[test]
fn flags_change_what_is_reported_and_written() {
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("in");
    copy(&sample(0), &input.join("p.png"));
    copy(&sample(3), &input.join("q.png"));

    let all = t.path().join("all");
    assert_eq!(detect(&[&input], &all, &[]).0, 0);
    let all_r = report(&all);
    let first_label = all_r["images"]
        .as_array()
        .expect("images")
        .iter()
        .find_map(|im| im["detections"][0]["label"].as_str())
        .expect("some detection above the threshold")
        .to_string();

    let out = t.path().join("filtered");
    let (code, _, e) = detect(
        &[&input],
        &out,
        &["--classes", &first_label, "--no-classify", "--format", "jpeg", "--max-detections", "50", "--top-k", "3"],
    );
    assert_eq!(code, 0, "{e}");
    let r = report(&out);
    for im in r["images"].as_array().expect("images") {
        assert!(im.get("classification").is_none(), "--no-classify");
        assert!(im["output"].as_str().expect("output").ends_with(".jpg"), "--format jpeg");
        for d in im["detections"].as_array().expect("detections") {
            assert_eq!(d["label"], first_label.as_str());
            assert!(d["score"].as_f64().expect("score") > 0.4);
        }
    }
    assert_eq!(image::ImageFormat::from_path(out.join("p.jpg")).ok(), Some(image::ImageFormat::Jpeg));
    assert!(image::open(out.join("p.jpg")).is_ok());
    assert_eq!(r["options"]["classify"], false);

    let crops = t.path().join("crops");
    let (code, _, e) = detect(&[&input], &crops, &["--classify-crops", "--top-k", "3", "--threshold", "0.5"]);
    assert_eq!(code, 0, "{e}");
    let r = report(&crops);
    let dets: Vec<&Value> =
        r["images"].as_array().expect("images").iter().flat_map(|i| i["detections"].as_array().expect("d")).collect();
    assert!(!dets.is_empty(), "the fixture has detections above 0.5");
    for d in dets {
        assert!(d["score"].as_f64().expect("score") > 0.5);
        assert_eq!(d["classification"].as_array().expect("per-box classification").len(), 3);
    }
    for im in r["images"].as_array().expect("images") {
        assert_eq!(im["classification"].as_array().expect("top-k").len(), 3);
    }
}

#[test]
fn exif_rotation_is_applied_before_everything() {
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    let img = image::open(sample(2)).expect("sample").to_rgb8(); // 640×480
    let mut jpeg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).expect("encode");
    std::fs::write(input.join("rotated.jpg"), boxwalk::testutil::with_exif_orientation(&jpeg, 6)).expect("write");
    let out = t.path().join("out");
    let (code, _, e) = detect(&[&input], &out, &[]);
    assert_eq!(code, 0, "{e}");
    let r = report(&out);
    assert_eq!((r["images"][0]["width"].as_u64(), r["images"][0]["height"].as_u64()), (Some(480), Some(640)));
    let a = image::open(out.join("rotated.jpg")).expect("annotated");
    assert_eq!((a.width(), a.height()), (480, 640));
    for d in r["images"][0]["detections"].as_array().expect("detections") {
        let b: Vec<f64> = d["box"].as_array().expect("box").iter().map(|v| v.as_f64().expect("c")).collect();
        assert!(b[0] < 480.0 + 100.0 && b[1] < 640.0 + 100.0, "boxes are in rotated coordinates: {b:?}");
    }
}

/// `--bench-forward` (the benchmark's floor) times the models on every decodable input, in
/// batches of `--batch-size` (the last one shorter), writes nothing, and says so in one JSON line.
#[test]
fn bench_forward_times_every_image_and_writes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("in");
    for i in 0..5 {
        copy(&sample(i), &input.join(format!("{i}.png")));
    }
    std::fs::write(input.join("broken.jpg"), b"not a jpeg").expect("write");
    let out = t.path().join("out");
    let (code, stdout, stderr) = detect(&[&input], &out, &["--bench-forward", "--batch-size", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let floor: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(floor["images"], 5, "the broken file is left out: {floor}");
    assert_eq!(
        (floor["batch_size"].as_u64(), floor["lanes"].as_u64(), floor["device"].as_str()),
        (Some(2), Some(1), Some("cpu"))
    );
    let (s, rate) = (floor["seconds"].as_f64().expect("seconds"), floor["images_per_s"].as_f64().expect("rate"));
    assert!(s > 0.0 && (rate * s - 5.0).abs() < 1e-6, "{floor}");
    assert!(!out.exists(), "--bench-forward writes nothing");
}
