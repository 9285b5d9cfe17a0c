//! Shared helpers for the end-to-end and parity tests.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python: `$BOXWALK_PYTHON` (set by `make test`), else whatever `scripts/venv.sh`
/// creates or reuses.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BOXWALK_PYTHON") {
        return PathBuf::from(p);
    }
    let out = Command::new(repo().join("scripts/venv.sh")).output().expect("run scripts/venv.sh");
    assert!(out.status.success(), "scripts/venv.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/python")
}

/// The parity fixtures written by `tests/reference/make_reference.py`, regenerated whenever the
/// reference scripts change (keyed by their hash). Safe to call from parallel tests and from
/// several test binaries at once (a lock file serialises generation).
pub fn reference() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let scripts = ["make_reference.py", "ssd_reference.py"];
        let mut h = Sha256::new();
        for s in scripts {
            h.update(std::fs::read(repo().join("tests/reference").join(s)).expect("read reference script"));
        }
        let key = format!("{:x}", h.finalize());
        let dir = repo().join("target/parity").join(&key[..16]);
        let done = dir.join("done");
        if done.exists() {
            return dir;
        }
        std::fs::create_dir_all(&dir).expect("mkdir target/parity");
        let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
        lock.lock().expect("lock");
        if !done.exists() {
            let out = Command::new(python())
                .arg(repo().join("tests/reference/make_reference.py"))
                .arg(&dir)
                .output()
                .expect("run the Python reference");
            assert!(
                out.status.success(),
                "tests/reference/make_reference.py failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&done, &out.stdout).expect("write done stamp");
        }
        dir
    })
}

/// The built binary.
pub fn boxwalk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_boxwalk"))
}

/// Runs boxwalk and returns (exit code, stdout, stderr).
pub fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = boxwalk().args(args).output().expect("run boxwalk");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report a run wrote into `out`.
pub fn read_report(out: &Path) -> serde_json::Value {
    let file = out.join("report.json");
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: not JSON: {e}", file.display()))
}

/// Runs `boxwalk detect INPUTS --out OUT --device cpu` with the shipped demo models (whatever the
/// model store holds) and `extra` flags; returns (exit code, stdout, stderr).
pub fn detect_demo(inputs: &[&Path], out: &Path, extra: &[impl AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let demo = repo().join("models/demo");
    let mut args: Vec<std::ffi::OsString> = vec!["detect".into()];
    args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    args.extend(["--out".into(), out.as_os_str().to_owned(), "--device".into(), "cpu".into()]);
    args.extend(["--detector-weights".into(), demo.join("detector.safetensors").into_os_string()]);
    args.extend(["--classifier-weights".into(), demo.join("classifier.safetensors").into_os_string()]);
    args.extend(extra.iter().map(|a| a.as_ref().to_owned()));
    run(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>())
}

/// Asserts two JSON values are equal up to `tol` on every number (float results may differ in
/// the last bits between batch compositions).
pub fn assert_json_close(a: &serde_json::Value, b: &serde_json::Value, tol: f64, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            assert!((x - y).abs() <= tol, "{at}: {x} vs {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths differ");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                assert_json_close(p, q, tol, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            assert_eq!(kx, ky, "{at}: fields differ");
            for (k, v) in x {
                assert_json_close(v, &y[k], tol, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

/// Writes checkpoints in the official formats (`tests/reference/make_checkpoints.py`) into `dir`
/// from the parity fixtures' weights; returns the SHA-256 of the torchvision-format file.
pub fn official_checkpoints(dir: &Path) -> String {
    let out = Command::new(python())
        .arg(repo().join("tests/reference/make_checkpoints.py"))
        .arg(reference())
        .arg(dir)
        .output()
        .expect("run make_checkpoints.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `boxwalk serve` child on a free loopback port with the demo models; killed on drop.
pub struct Served {
    child: std::process::Child,
    pub url: String,
}

impl Served {
    pub fn start(extra: &[&str]) -> Served {
        use std::io::BufRead;
        let demo = repo().join("models/demo");
        let mut child = boxwalk()
            .args(["serve", "--port", "0", "--device", "cpu"])
            .arg("--detector-weights")
            .arg(demo.join("detector.safetensors"))
            .arg("--classifier-weights")
            .arg(demo.join("classifier.safetensors"))
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start boxwalk serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("read the address line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "not loopback by default: {url}");
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where tests leave artefacts for people to look at (screenshots): `target/test-artifacts`.
pub fn artifacts() -> PathBuf {
    let d = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&d).expect("mkdir target/test-artifacts");
    d
}

/// A file of the committed demo models.
pub fn demo(file: &str) -> PathBuf {
    repo().join("models/demo").join(file)
}

/// `boxwalk detect INPUT --out OUT` on the CPU, quiet, with the demo models, batches of 8
/// unless `extra` sets `--batch-size`.
pub fn detect_cmd(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = boxwalk();
    c.arg("detect")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--quiet"])
        .args(if extra.contains(&"--batch-size") { &[][..] } else { &["--batch-size", "8"][..] })
        .arg("--detector-weights")
        .arg(demo("detector.safetensors"))
        .arg("--classifier-weights")
        .arg(demo("classifier.safetensors"))
        .args(extra);
    c
}

/// Runs [`detect_cmd`], asserts that it exits 0 and returns its report.
pub fn detect_ok(input: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = detect_cmd(input, out, extra).output().expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    read_report(out)
}

/// Waits until the run writing `out` has journalled at least `images` images (the journal is the
/// record of finished work, so the run is then part-way by construction, however fast or slow
/// the machine is). Returns false if the child exits first.
pub fn wait_for_progress(child: &mut std::process::Child, out: &Path, images: usize) -> bool {
    let journal = out.join(boxwalk::outputs::journal::JOURNAL);
    loop {
        // One line opens the run; every other line is an image.
        let done = std::fs::read_to_string(&journal).map(|j| j.lines().count().saturating_sub(1)).unwrap_or(0);
        if done >= images {
            return true;
        }
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `n` small synthetic scenes (96×72 PNGs) in `dir/photos`.
pub fn scenes(dir: &Path, n: usize, seed: u64) {
    scenes_sized(dir, n, seed, 96, 72);
}

/// `n` synthetic scenes of `width`×`height` in `dir/photos`.
pub fn scenes_sized(dir: &Path, n: usize, seed: u64, width: u32, height: u32) {
    let o = boxwalk::synth::SynthOptions { n, seed, width, height, ..Default::default() };
    boxwalk::synth::write_set(&o, &dir.join("set")).expect("synth");
    std::fs::rename(dir.join("set/images"), dir.join("photos")).expect("move");
}

/// Every file under `dir` with its content.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap_or_default()))
        .collect()
}
