//! Memory stays flat over long runs: the peak RSS of a run over 2000 small images is not
//! meaningfully above that of a run over 400 of them (bounded channels, nothing kept per image
//! but its report entry).

mod common;

use serde_json::Value;
use std::path::Path;

fn run(input: &Path, out: &Path) -> Value {
    let demo = common::repo().join("models/demo");
    let o = common::boxwalk()
        .arg("detect")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--threads", "2", "--batch-size", "16", "--quiet"])
        .arg("--detector-weights")
        .arg(demo.join("detector.safetensors"))
        .arg("--classifier-weights")
        .arg(demo.join("classifier.safetensors"))
        // Two inference lanes from the first batch (test hooks; at one thread each, two fit in
        // --threads 2 on any machine). Left to the thread-count controller, a 400-image run
        // sometimes ends before it opens the second lane, and the second lane's batch in flight
        // is 60–80 MiB of peak: 604–659 MiB with one lane against 673–717 with two, over 8 runs
        // of the 400 images.
        .env("BOXWALK_TEST_MODEL_THREADS", "1")
        .env("BOXWALK_TEST_LANES", "2")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report")).expect("json")
}

#[test]
fn peak_memory_does_not_grow_with_the_number_of_images() {
    let t = tempfile::tempdir().expect("tempdir");
    let o =
        boxwalk::synth::SynthOptions { n: 2000, seed: 31, width: 80, height: 60, max_objects: 3, ..Default::default() };
    boxwalk::synth::write_set(&o, &t.path().join("set")).expect("synth");
    let all = t.path().join("set/images");
    let few = t.path().join("few");
    std::fs::create_dir_all(&few).expect("mkdir");
    for i in 0..400 {
        let name = format!("{i:06}.png");
        std::fs::copy(all.join(&name), few.join(&name)).expect("copy");
    }
    // A run's peak varies by up to 90 MiB between identical runs (it depends on what is in flight
    // when it is reached), so the baseline is the higher of two runs over the same 400 images.
    let peak = |r: &Value| r["peak_rss_mib"].as_f64().expect("peak");
    let a = peak(&run(&few, &t.path().join("out-few-1"))).max(peak(&run(&few, &t.path().join("out-few-2"))));
    let large = run(&all, &t.path().join("out-all"));
    assert_eq!(large["counts"]["ok"], 2000);
    assert_eq!(large["timing"]["model_lanes"], 2);
    let b = peak(&large);
    println!("peak RSS: {a:.0} MiB for 400 images, {b:.0} MiB for 2000 images");
    // 5× the images; the report entries (~1 KiB each) are the only thing that should grow.
    assert!(b <= a * 1.10 + 16.0, "peak RSS grew from {a:.0} MiB (400 images) to {b:.0} MiB (2000 images)");
}
