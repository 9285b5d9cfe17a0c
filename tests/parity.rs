//! Parity with the Python reference (`tests/reference/`): torchvision-built models with
//! deterministic random weights under the official keys, the same preprocessing ops, and NVIDIA's
//! decoding re-stated in Python. boxwalk must match its preprocessed inputs, raw outputs,
//! detections and top-5, both through the library and through the real CLI and report.

mod common;

use boxwalk::models::boxes::DecodeParams;
use boxwalk::models::{Classifier, Detector, Placement};
use boxwalk::{decode, preprocess};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Tensor};

const CPU: Placement = Placement { device: Device::Cpu, half: false };

struct Fixture {
    dir: PathBuf,
    expected: Value,
    tensors: HashMap<String, Tensor>,
}

fn fixture() -> Fixture {
    let dir = common::reference().to_path_buf();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json")).expect("json");
    let tensors =
        Tensor::read_safetensors(dir.join("expected.safetensors")).expect("expected.safetensors").into_iter().collect();
    Fixture { dir, expected, tensors }
}

impl Fixture {
    fn images(&self) -> &Vec<Value> {
        self.expected["images"].as_array().expect("images")
    }
    fn t(&self, key: &str, what: &str) -> &Tensor {
        &self.tensors[&format!("{key}.{what}")]
    }
    fn detector(&self) -> Detector {
        Detector::open(&self.dir.join("ssd300.safetensors"), CPU).expect("load detector")
    }
    fn classifier(&self) -> Classifier {
        Classifier::open(&self.dir.join("resnet18.safetensors"), CPU).expect("load classifier")
    }
    /// Decodes and preprocesses one reference image with boxwalk's own code.
    fn our_inputs(&self, im: &Value) -> (Tensor, Tensor) {
        let path = self.dir.join("images").join(im["file"].as_str().expect("file"));
        let d = decode::decode_file(&path, &decode::Limits::default()).expect("decode");
        let u8_img = preprocess::upload(&d.rgb, Device::Cpu);
        (preprocess::detector_input(&u8_img), preprocess::classifier_input(&u8_img))
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn preprocessing_matches_the_reference_ops() {
    let f = fixture();
    for im in f.images() {
        let key = im["key"].as_str().expect("key");
        let (det, cls) = f.our_inputs(im);
        let dd = max_abs_diff(&det, f.t(key, "det_input"));
        let dc = max_abs_diff(&cls, f.t(key, "cls_input"));
        assert!(dd <= 1e-5, "{key}: detector input differs by {dd}");
        assert!(dc <= 1e-5, "{key}: classifier input differs by {dc}");
    }
}

/// The Python pipeline decodes with PIL (libjpeg-turbo); boxwalk's JPEG decoding must give its
/// models the same pixels, for every variant the reference saves.
#[test]
fn jpegs_decode_to_the_pixels_pil_decodes() {
    let f = fixture();
    let pil: HashMap<String, Tensor> =
        Tensor::read_safetensors(f.dir.join("jpegs.safetensors")).expect("jpegs.safetensors").into_iter().collect();
    assert!(pil.len() >= 5, "the fixture has {} JPEGs", pil.len());
    for (name, want) in &pil {
        let path = f.dir.join("jpegs").join(format!("{name}.jpg"));
        let d = decode::decode_file(&path, &decode::Limits::default()).expect("decode");
        let (h, w) = (want.size()[0], want.size()[1]);
        assert_eq!((i64::from(d.rgb.width()), i64::from(d.rgb.height())), (w, h), "{name}");
        let ours = Tensor::from_slice(d.rgb.as_raw()).view([h, w, 3]);
        let differ = ours.ne_tensor(want).sum(tch::Kind::Int64).int64_value(&[]);
        assert_eq!(differ, 0, "{name}: {differ} of {} values differ from PIL's", h * w * 3);
    }
}

#[test]
fn raw_outputs_match_within_1e_4() {
    let f = fixture();
    let (det, cls) = (f.detector(), f.classifier());
    for im in f.images() {
        let key = im["key"].as_str().expect("key");
        let raw = det.raw(f.t(key, "det_input"));
        assert_eq!(raw.locs.size(), vec![1, 4, 8732]);
        assert_eq!(raw.confs.size(), vec![1, 81, 8732]);
        let dl = max_abs_diff(&raw.locs, f.t(key, "locs"));
        let dc = max_abs_diff(&raw.confs, f.t(key, "confs"));
        let dg = max_abs_diff(&cls.logits(f.t(key, "cls_input")), f.t(key, "logits"));
        assert!(dl <= 1e-4 && dc <= 1e-4 && dg <= 1e-4, "{key}: locs {dl}, confs {dc}, logits {dg}");
    }
}

/// Expected detections of one image in pixels: (label, score, box).
fn expected_dets(im: &Value, min_score: f64) -> Vec<(u64, f64, [f64; 4])> {
    let (w, h) = (im["width"].as_f64().expect("w"), im["height"].as_f64().expect("h"));
    im["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter(|d| d["score"].as_f64().expect("score") > min_score)
        .map(|d| {
            let b: Vec<f64> = d["box"].as_array().expect("box").iter().map(|v| v.as_f64().expect("coord")).collect();
            (
                d["label"].as_u64().expect("label"),
                d["score"].as_f64().expect("score"),
                [b[0] * w, b[1] * h, b[2] * w, b[3] * h],
            )
        })
        .collect()
}

/// Asserts two detection lists are the same set: same label, score within 1e-4, box within 0.05 px.
fn assert_same_detections(what: &str, ours: &[(u64, f64, [f64; 4])], theirs: &[(u64, f64, [f64; 4])]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: {} detections, reference has {}", ours.len(), theirs.len());
    let mut used = vec![false; ours.len()];
    for (label, score, bx) in theirs {
        let hit = ours.iter().enumerate().position(|(i, (l, s, b))| {
            !used[i] && l == label && (s - score).abs() <= 1e-4 && b.iter().zip(bx).all(|(p, q)| (p - q).abs() <= 0.05)
        });
        match hit {
            Some(i) => used[i] = true,
            None => panic!("{what}: reference detection label {label} score {score} box {bx:?} not found in ours"),
        }
    }
    assert!(ours.windows(2).all(|w| w[0].1 >= w[1].1), "{what}: not in descending score order");
}

#[test]
fn detections_and_top5_match_the_reference() {
    let f = fixture();
    let (det, cls) = (f.detector(), f.classifier());
    let mut total = 0;
    for im in f.images() {
        let key = im["key"].as_str().expect("key");
        let (w, h) = (im["width"].as_f64().expect("w"), im["height"].as_f64().expect("h"));
        let (det_in, cls_in) = f.our_inputs(im);
        let ours: Vec<_> = det.detect(&det_in, &DecodeParams::default())[0]
            .iter()
            .map(|d| {
                let b = d.bbox.map(f64::from);
                (d.label as u64, f64::from(d.score), [b[0] * w, b[1] * h, b[2] * w, b[3] * h])
            })
            .collect();
        let theirs = expected_dets(im, 0.0);
        total += theirs.len();
        assert_same_detections(key, &ours, &theirs);

        let top = &cls.top_k(&cls_in, 5)[0];
        let want = im["top5"].as_array().expect("top5");
        assert_eq!(top.len(), 5);
        for (o, t) in top.iter().zip(want) {
            assert_eq!(o.index as u64, t["index"].as_u64().expect("index"), "{key}: top-5 order");
            assert!((f64::from(o.prob) - t["prob"].as_f64().expect("prob")).abs() <= 1e-4, "{key}: top-5 prob");
        }
    }
    assert!(total > 100, "the fixture should exercise the decoder ({total} detections)");
}

/// A GPU run copies back only each class's 200 best scores; decoding them must give exactly what
/// decoding every score gives (checked here on the CPU, where both can run). The reference's
/// random weights put more than 200 candidates above 0.05 in some classes, so the cut matters.
#[test]
fn decoding_each_class_top_200_equals_decoding_every_score() {
    let f = fixture();
    let det = f.detector();
    let p = DecodeParams::default();
    let x = Tensor::cat(&f.images().iter().map(|im| f.our_inputs(im).0).collect::<Vec<_>>(), 0);
    let (all, top) = (det.outputs_with(&x, None), det.outputs_with(&x, Some(p.per_class_top)));
    let dec = det.decoder();
    let mut cut = 0;
    for i in 0..all.images {
        let (a, b) = (dec.decode(&top, i, &p), dec.decode(&all, i, &p));
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(a == b, "image {i}: {} vs {} detections, first difference at {first:?}", a.len(), b.len());
        cut += (1..all.classes).filter(|&c| all.candidates(i, c, p.min_score) > p.per_class_top).count();
    }
    assert!(cut > 0, "no class had more than {} candidates: the cut is not exercised", p.per_class_top);
}

#[test]
fn results_do_not_depend_on_the_batch_and_no_training_state_leaks() {
    let f = fixture();
    let det = f.detector();
    let cls = f.classifier();
    assert!(!det.has_trainable_weights() && !cls.has_trainable_weights(), "weights must be frozen");
    let keys: Vec<&str> = f.images().iter().take(3).map(|im| im["key"].as_str().expect("key")).collect();
    let batch = Tensor::cat(&keys.iter().map(|k| f.t(k, "det_input").shallow_clone()).collect::<Vec<_>>(), 0);
    // Twice, in a batch: train-mode BatchNorm would use batch statistics and update running ones.
    for _ in 0..2 {
        let raw = det.raw(&batch);
        assert!(!raw.locs.requires_grad() && !raw.confs.requires_grad(), "autograd must be off");
        for (i, k) in keys.iter().enumerate() {
            let d = max_abs_diff(&raw.confs.get(i as i64).unsqueeze(0), f.t(k, "confs"));
            assert!(d <= 1e-4, "{k} in a batch of {}: confs differ by {d}", keys.len());
        }
    }
    let logits =
        cls.logits(&Tensor::cat(&keys.iter().map(|k| f.t(k, "cls_input").shallow_clone()).collect::<Vec<_>>(), 0));
    assert!(!logits.requires_grad());
    for (i, k) in keys.iter().enumerate() {
        assert!(max_abs_diff(&logits.get(i as i64).unsqueeze(0), f.t(k, "logits")) <= 1e-4, "{k}: logits in a batch");
    }
}

/// The report of a CPU run over the reference images at `--threads 2`, batches of 4 and 2
/// (each batch size is checked on its own), with the test hooks in `env`.
fn reference_run_report(f: &Fixture, env: &[(&str, &str)]) -> Value {
    reference_run(f, env).0
}

/// [`reference_run_report`] with the run's stderr.
fn reference_run(f: &Fixture, env: &[(&str, &str)]) -> (Value, String) {
    let out = tempfile::tempdir().expect("tempdir");
    let d = &f.dir;
    let mut cmd = common::boxwalk();
    cmd.arg("detect").arg(d.join("images")).arg("--out").arg(out.path());
    cmd.arg("--detector-weights").arg(d.join("ssd300.safetensors"));
    cmd.arg("--classifier-weights").arg(d.join("resnet18.safetensors"));
    cmd.args(["--device", "cpu", "--threads", "2", "--batch-size", "4", "--quiet", "--no-html"]);
    cmd.envs(env.iter().copied());
    let o = cmd.output().expect("run boxwalk");
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    let report = common::read_report(out.path());
    assert_eq!(report["images"].as_array().expect("images").len(), f.images().len());
    (report, stderr)
}

/// Every image's detections and classification in `b` are `a`'s, to the last bit.
fn assert_same_results(a: &Value, b: &Value, what: &str) {
    let images = |r: &Value| r["images"].as_array().expect("images").clone();
    let drawn: usize = images(a).iter().map(|e| e["detections"].as_array().map_or(0, Vec::len)).sum();
    assert!(drawn > 0, "the reference weights draw boxes above the threshold");
    for (a, b) in images(a).iter().zip(&images(b)) {
        assert_eq!(a["path"], b["path"]);
        assert_eq!(a["detections"], b["detections"], "{}: detections, to the last bit ({what})", a["path"]);
        assert_eq!(a["classification"], b["classification"], "{}: classification ({what})", a["path"]);
    }
}

/// A CPU run lowers the models' thread count when the workers are its bottleneck (and then runs
/// batches side by side in several lanes), and SSD300-R50's floats depend on the thread count
/// (oneDNN blocks its sums by it). A lower count must only be used where it gives --threads' very
/// outputs: a run started at 1 thread (the test hook), with one lane or two, reports exactly what
/// a run at --threads does.
#[test]
fn the_models_thread_count_never_changes_a_runs_results() {
    let f = fixture();
    let at_threads = reference_run_report(&f, &[("BOXWALK_TEST_LANES", "1")]);
    assert_eq!(at_threads["timing"]["model_lanes"], 1, "the hook gave the run one lane");
    for lanes in [1, 2] {
        let env = [("BOXWALK_TEST_MODEL_THREADS", "1"), ("BOXWALK_TEST_LANES", if lanes == 1 { "1" } else { "2" })];
        let from_one = reference_run_report(&f, &env);
        assert_eq!(from_one["timing"]["model_lanes"], lanes, "{lanes} lanes ran batches");
        assert_same_results(&at_threads, &from_one, &format!("{lanes} lanes"));
    }
}

/// On an accelerator the inputs are prepared a batch at a time, the images of each size together
/// (the reference images have several sizes, so the batches mix them): the run reports exactly
/// what preparing each image alone gives. The test hook takes that path on the CPU.
#[test]
fn preparing_a_batch_at_once_gives_each_image_its_own_results() {
    let f = fixture();
    let one_lane = ("BOXWALK_TEST_LANES", "1");
    let (alone, said) = reference_run(&f, &[one_lane]);
    assert!(!said.contains("a batch at a time"), "without the hook, each image is prepared alone: {said}");
    let (batched, said) = reference_run(&f, &[one_lane, ("BOXWALK_TEST_BATCHED_PREPROCESSING", "1")]);
    assert!(said.contains("inputs prepared a batch at a time"), "the hook took the batched path: {said}");
    assert_same_results(&alone, &batched, "inputs prepared a batch at a time");
}

#[test]
fn the_cli_report_matches_the_reference() {
    let f = fixture();
    let out = tempfile::tempdir().expect("tempdir");
    let d = &f.dir;
    let args: Vec<std::ffi::OsString> = vec![
        "detect".into(),
        d.join("images").into(),
        "--out".into(),
        out.path().into(),
        "--detector-weights".into(),
        d.join("ssd300.safetensors").into(),
        "--classifier-weights".into(),
        d.join("resnet18.safetensors").into(),
        "--device".into(),
        "cpu".into(),
        "--batch-size".into(),
        "4".into(),
    ];
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, stdout, stderr) = common::run(&args);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).expect("report")).expect("json");
    assert_eq!(report["schema"], "boxwalk.report/1");
    let entries = report["images"].as_array().expect("images");
    assert_eq!(entries.len(), f.images().len());
    let mut drawn = 0;
    for im in f.images() {
        let file = im["file"].as_str().expect("file");
        let e = entries.iter().find(|e| e["path"] == file).unwrap_or_else(|| panic!("{file} missing from the report"));
        assert_eq!(e["width"], im["width"]);
        assert_eq!(e["height"], im["height"]);
        let ours: Vec<_> = e["detections"]
            .as_array()
            .expect("detections")
            .iter()
            .map(|d| {
                let b: Vec<f64> = d["box"].as_array().expect("box").iter().map(|v| v.as_f64().expect("c")).collect();
                let label = d["class_index"].as_u64().expect("class_index");
                let name = boxwalk::models::labels::coco_class(label as usize).expect("class").name;
                assert_eq!(d["label"], name);
                (label, d["score"].as_f64().expect("score"), [b[0], b[1], b[2], b[3]])
            })
            .collect();
        drawn += ours.len();
        assert_same_detections(file, &ours, &expected_dets(im, 0.4));
        let top: Vec<u64> = e["classification"]
            .as_array()
            .expect("classification")
            .iter()
            .map(|c| c["index"].as_u64().expect("index"))
            .collect();
        let want: Vec<u64> =
            im["top5"].as_array().expect("top5").iter().map(|c| c["index"].as_u64().expect("index")).collect();
        assert_eq!(top, want, "{file}: top-5 through the CLI");
        let annotated = out.path().join(e["output"].as_str().expect("output"));
        let img = image::open(&annotated).expect("annotated copy decodes");
        assert_eq!(
            (img.width() as u64, img.height() as u64),
            (im["width"].as_u64().expect("w"), im["height"].as_u64().expect("h"))
        );
    }
    assert!(drawn >= 3, "some detections pass the 0.4 threshold ({drawn})");
}
