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

/// The status code of a raw HTTP/1.1 request with the headers given (a browser's `Host` and
/// `Origin` cannot be forged through an HTTP client library, but an attacker's page sends them).
fn status_of(url: &str, request_line: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let mut req = format!("{request_line} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).and_then(|()| s.write_all(body)).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// DNS rebinding (a name the attacker controls, resolving to 127.0.0.1) and drive-by POSTs from
/// other sites are refused; the page's own requests and plain clients are not.
#[test]
fn requests_naming_another_host_or_from_another_origin_are_refused() {
    let s = common::Served::start(&["--allow-host", "boxwalk.lan"]);
    let port = s.url.trim_end_matches('/').rsplit(':').next().expect("port").to_string();
    let host = |h: &str| ("Host", format!("{h}:{port}"));
    for ok in ["127.0.0.1", "localhost", "LOCALHOST", "boxwalk.lan"] {
        assert_eq!(status_of(&s.url, "GET /", &[host(ok)], b""), 200, "Host {ok}");
    }
    assert_eq!(status_of(&s.url, "GET /", &[host("evil.example")], b""), 403, "DNS rebinding");
    assert_eq!(status_of(&s.url, "GET /api/info", &[("Host", "localhost".into())], b""), 403, "wrong port");
    assert_eq!(status_of(&s.url, "GET /", &[], b""), 403, "no Host at all");
    let image = sample();
    let post = |origin: Option<String>| {
        let mut headers = vec![host("127.0.0.1")];
        headers.extend(origin.map(|o| ("Origin", o)));
        status_of(&s.url, "POST /api/detect", &headers, &image)
    };
    assert_eq!(post(Some("http://evil.example".into())), 403, "a drive-by POST from another site");
    assert_eq!(post(Some("null".into())), 403, "a sandboxed or file:// page");
    assert_eq!(post(Some(format!("http://127.0.0.1:{port}"))), 200, "the page's own POST");
    assert_eq!(post(None), 200, "a client that sends no Origin");
}
