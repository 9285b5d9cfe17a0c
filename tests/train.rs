//! Training smoke tests (a few steps on tiny synthetic sets: the loss must drop, checkpoints and
//! resume must work, the result must load for inference) and the demo models' documented quality.

use boxwalk::models::{card::ModelCard, Classifier, Detector, Placement};
use boxwalk::synth::{write_set, SynthOptions};
use boxwalk::train::detector::{DetectorTrainOptions, TrainState};
use boxwalk::train::{classifier::ClassifierTrainOptions, Optim};
use std::path::{Path, PathBuf};
use tch::Device;

const CPU: Placement = Placement { device: Device::Cpu, half: false };

fn det_options(data: &Path, out: &Path, epochs: usize) -> DetectorTrainOptions {
    DetectorTrainOptions {
        data: data.to_path_buf(),
        val: None,
        out: out.to_path_buf(),
        backbone: "resnet18".into(),
        width_divisor: 8,
        epochs,
        batch_size: 8,
        lr: 3e-3,
        optim: Optim::Adam,
        weight_decay: 0.0,
        warmup_steps: 0,
        augment: false,
        seed: 3,
        resume: false,
        max_steps: None,
        command: "test".into(),
    }
}

fn state(out: &Path) -> TrainState {
    serde_json::from_slice(&std::fs::read(out.join("train_state.json")).expect("state")).expect("json")
}

#[test]
fn detector_training_lowers_the_loss_checkpoints_and_resumes() {
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    write_set(&SynthOptions { n: 16, seed: 11, ..Default::default() }, &data).expect("synth");
    let out = t.path().join("run");
    let mut log = Vec::new();
    let weights = boxwalk::train::detector::train(&det_options(&data, &out, 4), &mut log).expect("train");
    let s = state(&out);
    assert_eq!(s.epoch, 4);
    assert_eq!(s.losses.len(), 4);
    assert!(s.losses[3] < s.losses[0] * 0.8, "loss must drop: {:?}", s.losses);
    assert!(log.iter().any(|l| l.starts_with("epoch 4/4: loss")), "{log:?}");

    // The trained file loads through its model card and runs.
    let card = ModelCard::for_weights(&weights).expect("card").expect("a card is written");
    assert_eq!(card.arch, "ssd300_resnet18");
    assert_eq!(card.classes.len(), boxwalk::synth::SHAPES.len());
    let det = Detector::open(&weights, CPU).expect("load trained detector");
    assert_eq!(det.classes[0].name, "circle");

    // Resume continues from the checkpoint instead of starting over.
    let mut o = det_options(&data, &out, 5);
    o.resume = true;
    let mut log = Vec::new();
    boxwalk::train::detector::train(&o, &mut log).expect("resume");
    assert!(log.first().is_some_and(|l| l.contains("resuming after epoch 4")), "{log:?}");
    let s2 = state(&out);
    assert_eq!(s2.epoch, 5);
    assert_eq!(&s2.losses[..4], &s.losses[..]);
}

#[test]
fn classifier_training_lowers_the_loss_and_reports_accuracy() {
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    write_set(&SynthOptions { n: 20, seed: 12, ..Default::default() }, &data).expect("synth");
    let out = t.path().join("cls");
    let o = ClassifierTrainOptions {
        data: data.join("scenes"),
        out: out.clone(),
        init: None,
        width_divisor: 8,
        freeze_backbone: false,
        epochs: 4,
        batch_size: 8,
        lr: 3e-3,
        optim: Optim::Adam,
        weight_decay: 0.0,
        augment: false,
        seed: 1,
        command: "test".into(),
    };
    let mut log = Vec::new();
    let (weights, acc) = boxwalk::train::classifier::train(&o, &mut log).expect("train");
    let losses: Vec<f64> =
        log.iter().filter_map(|l| l.split("loss ").nth(1)?.split(',').next()?.parse().ok()).collect();
    assert_eq!(losses.len(), 4, "{log:?}");
    assert!(losses[3] < losses[0], "loss must drop: {losses:?}");
    assert!((0.0..=1.0).contains(&acc));
    let cls = Classifier::open(&weights, CPU).expect("load");
    let mut names: Vec<String> = cls.classes.iter().map(|c| c.name.clone()).collect();
    names.sort();
    assert_eq!(names, cls.classes.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), "sorted folder order");

    // Fine-tuning from it with a frozen backbone keeps every backbone weight.
    let o2 = ClassifierTrainOptions {
        init: Some(weights.clone()),
        freeze_backbone: true,
        epochs: 1,
        out: t.path().join("ft"),
        ..o
    };
    let (ft, _) = boxwalk::train::classifier::train(&o2, &mut Vec::new()).expect("fine-tune");
    let a = tch::Tensor::read_safetensors(&weights).expect("read");
    let b: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&ft).expect("read").into_iter().collect();
    for (k, v) in a.iter().filter(|(k, _)| !k.starts_with("fc.")) {
        assert!(v.equal(&b[k]), "{k} changed with a frozen backbone");
    }
}

fn demo(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/demo").join(file)
}

/// The committed demo detector still reaches the mAP its card documents for the CI check set.
#[test]
fn demo_detector_reaches_its_documented_map() {
    let weights = demo("detector.safetensors");
    let card = ModelCard::for_weights(&weights).expect("card").expect("models/demo/detector.json");
    let q = card.quality.as_ref().expect("quality");
    let check = &q["ci_check"];
    let (n, seed) = (check["n"].as_u64().expect("n") as usize, check["seed"].as_u64().expect("seed"));
    let documented = check["map50"].as_f64().expect("map50");
    assert!(
        q["map50"].as_f64().expect("held-out map50") >= 0.9,
        "the demo detector's held-out mAP@0.5 is documented >= 0.9"
    );
    let t = tempfile::tempdir().expect("tempdir");
    let ds = write_set(&SynthOptions { n, seed, ..Default::default() }, t.path()).expect("synth");
    let det = Detector::open(&weights, CPU).expect("load demo detector");
    let r = boxwalk::eval::eval_detector(&det, &ds, t.path(), 16).expect("eval");
    // A little slack for float differences between CPUs; a real regression moves it by far more.
    assert!(r.map50 >= documented - 0.005, "mAP@0.5 {} below the documented {documented}", r.map50);
}

#[test]
fn demo_classifier_reaches_its_documented_accuracy() {
    let weights = demo("classifier.safetensors");
    let card = ModelCard::for_weights(&weights).expect("card").expect("models/demo/classifier.json");
    let check = &card.quality.as_ref().expect("quality")["ci_check"];
    let (n, seed) = (check["n"].as_u64().expect("n") as usize, check["seed"].as_u64().expect("seed"));
    let documented = check["top1"].as_f64().expect("top1");
    let t = tempfile::tempdir().expect("tempdir");
    write_set(&SynthOptions { n, seed, ..Default::default() }, t.path()).expect("synth");
    let cls = Classifier::open(&weights, CPU).expect("load demo classifier");
    let names: Vec<String> = cls.classes.iter().map(|c| c.name.clone()).collect();
    let mut items = boxwalk::eval::image_folder(&t.path().join("scenes/train"), Some(&names)).expect("folder").items;
    items.extend(boxwalk::eval::image_folder(&t.path().join("scenes/val"), Some(&names)).expect("folder").items);
    let acc = boxwalk::eval::eval_classifier(&cls, &items, 16).expect("eval");
    assert!(acc.top1 >= documented - 0.005, "top-1 {} below the documented {documented}", acc.top1);
}
