//! `boxwalk models import` on files the test writes in exactly the official formats (NVIDIA's
//! pickled training dict, a DDP-saved variant, torchvision's zip state dict), then `detect` with
//! the installed models must give the same results as with the reference weights.

mod common;

use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;

fn run_with_home(home: &Path, args: &[OsString]) -> (i32, String, String) {
    let out = common::boxwalk()
        .env("BOXWALK_HOME", home)
        .env("BOXWALK_PYTHON", common::python())
        .args(args)
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

fn detections(report: &Path) -> Vec<Value> {
    let r: Value = serde_json::from_slice(&std::fs::read(report).expect("report")).expect("json");
    r["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| serde_json::json!([i["detections"], i["classification"]]))
        .collect()
}

#[test]
fn official_checkpoints_import_and_then_match_the_reference() {
    let fixtures = common::reference();
    let t = tempfile::tempdir().expect("tempdir");
    let ck = t.path().join("checkpoints");
    let digest = common::official_checkpoints(&ck);
    let home = t.path().join("home");

    let (code, stdout, stderr) =
        run_with_home(&home, &os(&[&"models", &"import", &ck.join("nvidia_ssdpyt_amp_200703.pt")]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("as the detector"), "{stdout}");
    let resnet = ck.join(format!("resnet18-{}.pth", &digest[..8]));
    let (code, stdout, stderr) = run_with_home(&home, &os(&[&"models", &"import", &resnet]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let card: Value =
        serde_json::from_slice(&std::fs::read(home.join("models/resnet18.json")).expect("card")).expect("json");
    assert_eq!(card["source_sha256"], digest.as_str());
    assert_eq!(card["classes"].as_array().expect("classes").len(), 1000);
    assert_eq!(card["classes"][0]["name"], "tench");

    let (code, stdout, _) = run_with_home(&home, &os(&[&"models", &"list"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("ssd300_resnet50.safetensors") && stdout.contains("resnet18.safetensors"), "{stdout}");

    // detect with no weight flags uses the installed models and matches the reference weights.
    let images = fixtures.join("images");
    let a = t.path().join("a");
    let b = t.path().join("b");
    let (code, _, e) = run_with_home(&home, &os(&[&"detect", &images, &"--out", &a, &"--device", &"cpu"]));
    assert_eq!(code, 0, "{e}");
    assert!(!e.contains("DEMO"), "official weights are installed: {e}");
    let (code, _, e) = run_with_home(
        &home,
        &os(&[
            &"detect",
            &images,
            &"--out",
            &b,
            &"--device",
            &"cpu",
            &"--detector-weights",
            &fixtures.join("ssd300.safetensors"),
            &"--classifier-weights",
            &fixtures.join("resnet18.safetensors"),
        ]),
    );
    assert_eq!(code, 0, "{e}");
    assert_eq!(detections(&a.join("report.json")), detections(&b.join("report.json")));
}

#[test]
fn ddp_prefixes_are_stripped_and_bad_files_are_refused_with_reasons() {
    let t = tempfile::tempdir().expect("tempdir");
    let ck = t.path().join("checkpoints");
    let digest = common::official_checkpoints(&ck);
    let home = t.path().join("home");
    let (code, stdout, stderr) =
        run_with_home(&home, &os(&[&"models", &"import", &ck.join("ssd_ddp.pt"), &"--as", &"detector"]));
    assert_eq!(code, 0, "{stdout}{stderr}");

    // A torchvision file whose name does not match its hash.
    let wrong = ck.join("resnet18-00000000.pth");
    std::fs::copy(ck.join(format!("resnet18-{}.pth", &digest[..8])), &wrong).expect("copy");
    let (code, _, stderr) = run_with_home(&home, &os(&[&"models", &"import", &wrong]));
    assert_eq!(code, 2);
    assert!(stderr.contains("00000000") && stderr.contains("corrupt"), "{stderr}");

    // Declared the wrong role: the strict check names a key.
    let (code, _, stderr) = run_with_home(
        &home,
        &os(&[&"models", &"import", &ck.join("nvidia_ssdpyt_amp_200703.pt"), &"--as", &"classifier"]),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("fc.bias") || stderr.contains("key"), "{stderr}");

    // Not a checkpoint at all.
    let junk = t.path().join("junk.pt");
    std::fs::write(&junk, b"not a pickle").expect("write");
    let (code, _, stderr) = run_with_home(&home, &os(&[&"models", &"import", &junk]));
    assert_eq!(code, 2);
    assert!(stderr.contains("junk.pt"), "{stderr}");
    // The store still holds only the good detector.
    let names: Vec<String> = std::fs::read_dir(home.join("models"))
        .expect("store")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".import-")), "no temporary files left: {names:?}");
}
