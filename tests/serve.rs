//! `boxwalk serve` over HTTP: the page, detection answers, refusals, and concurrent requests
//! sharing the one inference thread.

mod common;

use serde_json::Value;
use std::time::Duration;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn post(url: &str, body: &[u8]) -> (u16, Value) {
    let mut r = agent().post(url).send(body).expect("POST");
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

fn sample() -> Vec<u8> {
    std::fs::read(common::repo().join("samples/synthetic/000000.png")).expect("sample")
}

#[test]
fn answers_an_image_with_boxes_and_top5_and_refuses_everything_else() {
    let s = common::Served::start(&["--max-upload", "400000"]);
    let mut page = agent().get(&s.url).call().expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers().get("content-type").expect("type").to_str().expect("ascii").starts_with("text/html"));
    assert!(page.body_mut().read_to_string().expect("page").contains("/api/detect"));

    let api = format!("{}api/detect", s.url);
    let (status, a) = post(&api, &sample());
    assert_eq!(status, 200, "{a}");
    assert_eq!((a["width"].as_u64(), a["height"].as_u64()), (Some(320), Some(240)));
    let dets = a["detections"].as_array().expect("detections");
    let scores: Vec<f64> = dets.iter().map(|d| d["score"].as_f64().expect("score")).collect();
    assert!(scores.iter().any(|&s| s > 0.9), "the demo detector sees this sample's square: {scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "highest first");
    assert!(scores.iter().all(|&s| s > 0.05), "the decoder's floor");
    assert_eq!(a["classification"].as_array().map(Vec::len), Some(5));
    assert_eq!(a["classification"][0]["label"], "stripes");
    assert_eq!(a["demo"], true);

    // Same answer as `detect` gives for the same file and models.
    let t = tempfile::tempdir().expect("tempdir");
    let input = t.path().join("in");
    std::fs::create_dir_all(&input).expect("mkdir");
    std::fs::write(input.join("x.png"), sample()).expect("write");
    let demo = common::repo().join("models/demo");
    let o = common::boxwalk()
        .arg("detect")
        .arg(&input)
        .arg("--out")
        .arg(t.path().join("out"))
        .args(["--device", "cpu", "--quiet", "--no-html", "--detector-weights"])
        .arg(demo.join("detector.safetensors"))
        .arg("--classifier-weights")
        .arg(demo.join("classifier.safetensors"))
        .output()
        .expect("detect");
    assert!(o.status.success());
    let report: Value =
        serde_json::from_slice(&std::fs::read(t.path().join("out/report.json")).expect("report")).expect("json");
    let want: Vec<f64> = report["images"][0]["detections"]
        .as_array()
        .expect("dets")
        .iter()
        .map(|d| d["score"].as_f64().expect("s"))
        .collect();
    let got: Vec<f64> = scores.iter().copied().filter(|&s| s > 0.4).collect();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4), "{got:?} vs {want:?}");

    let (status, e) = post(&api, b"just some text, not an image");
    assert_eq!(status, 415, "{e}");
    let (status, e) = post(&api, &vec![0u8; 500_000]);
    assert_eq!(status, 413, "over --max-upload: {e}");
    let (status, _) = post(&api, b"\x89PNG\r\n\x1a\ntruncated");
    assert_eq!(status, 422);
    for path in ["../../etc/passwd", "report.json", "%2e%2e/%2e%2e/etc/passwd", "api/info/../../Cargo.toml"] {
        let r = agent().get(&format!("{}{path}", s.url)).call().expect("GET");
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = agent().get(&api).call().expect("GET api");
    assert_eq!(r.status().as_u16(), 405);
}

#[test]
fn concurrent_uploads_are_queued_to_one_inference_thread_and_agree() {
    let s = common::Served::start(&[]);
    let api = format!("{}api/detect", s.url);
    let body = sample();
    let answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| post(&api, &body))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (status, a) in &answers {
        assert_eq!(*status, 200, "{a}");
        assert_eq!(a["detections"].as_array().map(Vec::len), answers[0].1["detections"].as_array().map(Vec::len));
        common::assert_json_close(&a["detections"], &answers[0].1["detections"], 1e-4, "detections");
    }
}
