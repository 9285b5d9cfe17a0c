//! `boxwalk models fetch` against a mirror on the loopback interface (BOXWALK_MIRROR): a download
//! cut off half-way resumes with a range request, the result is installed with its observed
//! SHA-256, and a file that does not match torchvision's published hash prefix is refused. The
//! server is bounded: it stops when the test is done or after 120 s.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Mirror {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn handle(mut s: TcpStream, dir: &Path, cut: &AtomicBool, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
    }
    requests.lock().expect("lock").push(format!("{} range={range_start:?}", first.trim()));
    let name = first.split_whitespace().nth(1).unwrap_or("/").rsplit('/').next().unwrap_or("").to_string();
    let Ok(body) = std::fs::read(dir.join(&name)) else {
        let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range_start.unwrap_or(0).min(body.len());
    let rest = &body[start..];
    let head = if range_start.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            rest.len(),
            body.len() - 1,
            body.len()
        )
    } else {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", rest.len())
    };
    let _ = s.write_all(head.as_bytes());
    // The first transfer is cut off half-way, as a flaky network would.
    let send = if cut.swap(false, Ordering::SeqCst) { &rest[..rest.len() / 2] } else { rest };
    let _ = s.write_all(send);
}

fn mirror(dir: PathBuf, cut_first: bool) -> Mirror {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, st) = (requests.clone(), stop.clone());
    std::thread::spawn(move || {
        let cut = AtomicBool::new(cut_first);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).expect("blocking");
                    handle(s, &dir, &cut, &r);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Mirror { port, requests, stop }
}

fn fetch(home: &Path, mirror: &str, which: &str) -> (i32, String, String) {
    let out = common::boxwalk()
        .env("BOXWALK_HOME", home)
        .env("BOXWALK_MIRROR", mirror)
        .env("BOXWALK_PYTHON", common::python())
        .args(["models", "fetch", which])
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn an_interrupted_download_resumes_and_installs() {
    let t = tempfile::tempdir().expect("tempdir");
    let served = t.path().join("served");
    common::official_checkpoints(&served);
    let m = mirror(served.clone(), true);
    let home = t.path().join("home");
    let url = format!("http://127.0.0.1:{}/models", m.port);
    let (code, stdout, stderr) = fetch(&home, &url, "--detector");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let reqs = m.requests.lock().expect("lock").clone();
    assert!(reqs.len() >= 2 && reqs[0].contains("range=None"), "{reqs:?}");
    assert!(reqs[1..].iter().any(|r| r.contains("range=Some(")), "the second request resumes: {reqs:?}");
    let original = served.join("nvidia_ssdpyt_amp_200703.pt");
    let downloaded = home.join("downloads/nvidia_ssdpyt_amp_200703.pt");
    assert_eq!(std::fs::read(&downloaded).expect("downloaded"), std::fs::read(&original).expect("original"));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("models/ssd300_resnet50.json")).expect("card")).expect("json");
    assert_eq!(card["source"], format!("{url}/nvidia_ssdpyt_amp_200703.pt"));
    assert_eq!(card["source_sha256"], boxwalk::sys::sha256_file(&original).expect("sha").as_str());
    assert!(home.join("models/ssd300_resnet50.safetensors").is_file());
    assert!(!home.join("downloads/nvidia_ssdpyt_amp_200703.pt.part").exists());
}

#[test]
fn a_file_that_fails_the_published_hash_is_refused_and_no_server_fails_fast() {
    let t = tempfile::tempdir().expect("tempdir");
    let served = t.path().join("served");
    let digest = common::official_checkpoints(&served);
    // Our test ResNet is not torchvision's file, so its hash cannot start with f37072fd.
    std::fs::rename(served.join(format!("resnet18-{}.pth", &digest[..8])), served.join("resnet18-f37072fd.pth"))
        .expect("rename");
    let m = mirror(served, false);
    let home = t.path().join("home");
    let (code, _, stderr) = fetch(&home, &format!("http://127.0.0.1:{}", m.port), "--classifier");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("f37072fd") && stderr.contains("corrupt"), "{stderr}");
    assert!(!home.join("models/resnet18.safetensors").exists());
    assert!(!home.join("downloads/resnet18-f37072fd.pth.part").exists());
    assert!(!home.join("downloads/resnet18-f37072fd.pth").exists());

    // Nothing listening: a clear message that says how to get the file by hand, quickly.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let started = Instant::now();
    let (code, _, stderr) = fetch(&home, &format!("http://127.0.0.1:{closed}"), "--classifier");
    assert_eq!(code, 2);
    assert!(stderr.contains("models import resnet18-f37072fd.pth"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
}
