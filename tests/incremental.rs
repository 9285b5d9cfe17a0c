//! Nightly-run behaviour: a second run over an unchanged tree does no inference; changed, new
//! and removed inputs are counted and handled; `--force` redoes everything; shards merge to one
//! run. Runs stopped by a kill, a signal or a fault of the machine are in `faults.rs`.

mod common;

use common::{demo, detect_cmd, detect_ok as detect, scenes};
use serde_json::Value;
use std::time::Duration;

#[test]
fn unchanged_trees_are_not_processed_again_and_changes_are_counted() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 30, 21);
    let input = t.path().join("photos");
    let out = t.path().join("out");
    let first = detect(&input, &out, &[]);
    assert_eq!(first["counts"]["new"], 30);
    assert_eq!(first["counts"]["processed"], 30);
    assert!(!out.join("journal.jsonl").exists(), "the journal is folded into the report");
    // The process's CPU time: positive, and within what its threads could use in the wall time.
    let (cpu, wall) =
        (first["timing"]["cpu_s"].as_f64().expect("cpu_s"), first["timing"]["total_s"].as_f64().expect("s"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(cpu > 0.0 && cpu <= wall * cores + 1.0, "cpu_s {cpu} for {wall} s on {cores} cores");
    // The inference lanes' time: waiting for the first batch at least, and each lane's waits and
    // work within the wall time; every output was synced.
    let secs = |k: &str| first["timing"][k].as_f64().unwrap_or_else(|| panic!("timing.{k}"));
    let (input_wait, output_wait, inference) =
        (secs("wait_for_input_s"), secs("wait_for_output_s"), secs("inference_s"));
    let lanes = first["timing"]["model_lanes"].as_u64().expect("model_lanes");
    assert!((1..=cores as u64).contains(&lanes), "{lanes} lanes on {cores} cores");
    assert!(input_wait > 0.0 && output_wait >= 0.0, "waits {input_wait} {output_wait}");
    assert!(
        input_wait + output_wait + inference <= wall * lanes as f64,
        "{input_wait} + {output_wait} + {inference} > {wall} × {lanes} lanes"
    );
    assert!(secs("sync_s") > 0.0);
    let first_batch = secs("first_batch_s");
    assert!(first_batch > secs("load_models_s") && first_batch < wall, "first batch done at {first_batch} s of {wall}");

    let second = detect(&input, &out, &[]);
    assert_eq!(second["counts"]["processed"], 0, "no inference on an unchanged tree");
    assert_eq!(second["counts"]["unchanged"], 30);
    assert_eq!(second["images"], first["images"]);
    assert_eq!(second["timing"]["inference_s"], 0.0);

    // One changed, one new, one removed.
    std::fs::copy(input.join("000001.png"), input.join("000000.png")).expect("change");
    std::fs::copy(input.join("000002.png"), input.join("extra.png")).expect("add");
    std::fs::remove_file(input.join("000029.png")).expect("remove");
    let third = detect(&input, &out, &["--prune"]);
    let c = &third["counts"];
    assert_eq!((c["new"].as_u64(), c["changed"].as_u64(), c["removed"].as_u64()), (Some(1), Some(1), Some(1)), "{c}");
    assert_eq!(c["processed"], 2);
    assert_eq!(c["images"], 30);
    assert!(!out.join("000029.png").exists(), "--prune removes the copy of a removed input");
    assert!(out.join("extra.png").is_file());

    // Other options: a different run key, so everything is redone; so does --force.
    let fourth = detect(&input, &out, &["--threshold", "0.6"]);
    assert_eq!(fourth["counts"]["processed"], 30);
    let fifth = detect(&input, &out, &["--threshold", "0.6", "--force"]);
    assert_eq!(fifth["counts"]["processed"], 30);
    assert_eq!(fifth["images"], fourth["images"]);
}

/// A CPU run whose models run on fewer threads than `--threads` runs several batches at once, one
/// per inference lane; whichever lane takes a batch, the report is the one a single lane gives.
/// The same holds for lanes without a thread count to share out (as on a GPU, where a second lane
/// queues its batch while the first copies its outputs back), taken here with `--classify-crops`.
#[test]
fn several_inference_lanes_report_what_one_lane_does() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 24, 33);
    let input = t.path().join("photos");
    let run = |lanes: &str, extra: &[&str]| -> Value {
        let out = t.path().join(format!("out-{lanes}-{}", extra.len()));
        let mut args = vec!["--threads", "2", "--batch-size", "2", "--no-html"];
        args.extend(extra);
        let mut c = detect_cmd(&input, &out, &args);
        // From 1 thread per lane at once (test hooks), so that the second lane opens from the first batch.
        c.env("BOXWALK_TEST_MODEL_THREADS", "1").env("BOXWALK_TEST_LANES", lanes);
        let o = c.output().expect("run");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        common::read_report(&out)
    };
    for extra in [&[][..], &["--classify-crops"]] {
        let (one, two) = (run("1", extra), run("2", extra));
        assert_eq!(one["timing"]["model_lanes"], 1);
        assert_eq!(two["timing"]["model_lanes"], 2, "{extra:?}: the second lane ran batches");
        assert_eq!(two["counts"], one["counts"]);
        let images = |r: &Value| r["images"].as_array().expect("images").clone();
        assert_eq!(images(&two).len(), 24);
        for (a, b) in images(&one).iter().zip(&images(&two)) {
            assert_eq!(a["path"], b["path"]);
            assert!(a["detections"].as_array().is_some(), "{}: no detections", a["path"]);
            assert_eq!(a["detections"], b["detections"], "{}: detections ({extra:?})", a["path"]);
            assert_eq!(a["classification"], b["classification"], "{}: classification ({extra:?})", a["path"]);
        }
    }
}

#[test]
fn shard_runs_merged_equal_one_run() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 40, 23);
    let input = t.path().join("photos");
    let whole = detect(&input, &t.path().join("whole"), &[]);
    let mut dirs = Vec::new();
    let mut total = 0;
    for k in 0..3 {
        let dir = t.path().join(format!("shard{k}"));
        let shard = format!("{k}/3");
        let r = detect(&input, &dir, &["--shard", &shard]);
        let n = r["counts"]["images"].as_u64().expect("images");
        assert!(n > 0 && n < 40, "shard {k} has a share: {n}");
        total += n;
        dirs.push(dir);
    }
    assert_eq!(total, 40, "shards cover every image once");

    // Slurm's environment gives the same share as the flag.
    let slurm_dir = t.path().join("slurm");
    let o = detect_cmd(&input, &slurm_dir, &["--shard", "auto"])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0));
    let slurm: Value = serde_json::from_slice(&std::fs::read(slurm_dir.join("report.json")).expect("r")).expect("json");
    let shard1: Value = serde_json::from_slice(&std::fs::read(dirs[1].join("report.json")).expect("r")).expect("json");
    assert_eq!(slurm["images"], shard1["images"]);

    let merged_dir = t.path().join("merged");
    let mut merge = common::boxwalk();
    merge.arg("merge").args(&dirs).arg("--out").arg(&merged_dir);
    let o = merge.output().expect("merge");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let merged: Value =
        serde_json::from_slice(&std::fs::read(merged_dir.join("report.json")).expect("r")).expect("json");
    // Other batch compositions than the whole run: equal up to float noise.
    common::assert_json_close(&merged["images"], &whole["images"], 1e-3, "images");
    let page = std::fs::read_to_string(merged_dir.join("index.html")).expect("the merged contact sheet");
    for e in merged["images"].as_array().expect("images") {
        let o = e["output"].as_str().expect("output");
        assert!(merged_dir.join(o).is_file());
        assert!(
            page.contains(o) && merged_dir.join(boxwalk::outputs::sheet::thumb_rel(o)).is_file(),
            "{o} on the merged sheet"
        );
    }

    // Overlapping shards and shards run with other options are refused.
    let o = common::boxwalk()
        .arg("merge")
        .arg(&dirs[0])
        .arg(&dirs[0])
        .arg("--out")
        .arg(t.path().join("m2"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("overlapping"));
    let other = t.path().join("other");
    detect(&input, &other, &["--shard", "0/3", "--threshold", "0.7"]);
    let o = common::boxwalk()
        .arg("merge")
        .arg(&dirs[1])
        .arg(&other)
        .arg("--out")
        .arg(t.path().join("m3"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run keys differ"));
}

#[test]
fn progress_is_plain_lines_off_a_terminal_and_json_on_request_and_strict_reports_non_images() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 12, 25);
    let input = t.path().join("photos");
    std::fs::write(input.join("readme.txt"), b"not an image").expect("write");

    let mut c = common::boxwalk();
    c.arg("detect").arg(&input).arg("--out").arg(t.path().join("a"));
    c.arg("--detector-weights").arg(demo("detector.safetensors"));
    c.arg("--classifier-weights").arg(demo("classifier.safetensors"));
    let o = c.output().expect("run");
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("12/12 images") && err.contains("images/s"), "a plain progress line: {err}");

    let mut c = detect_cmd(&input, &t.path().join("b"), &["--json-progress", "--strict"]);
    let o = c.output().expect("run");
    assert_eq!(o.status.code(), Some(3), "readme.txt fails under --strict");
    let events: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(events.first().map(|e| e["event"].clone()), Some(Value::from("started")));
    assert_eq!(events.iter().filter(|e| e["event"] == "image").count(), 13);
    let last = events.last().expect("events");
    assert_eq!(last["event"], "finished");
    assert_eq!(last["counts"]["failed"], 1);
    assert!(events.iter().any(|e| e["path"] == "readme.txt" && e["ok"] == false));
}

/// Out of device memory on a batch: the models retry its halves, and where the inputs are
/// prepared a batch at a time (on an accelerator; a test hook here), the preparation retries image
/// by image. An image that still does not fit is one error, not a crash.
#[test]
fn out_of_memory_on_a_batch_retries_with_smaller_batches() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 10, 26);
    let input = t.path().join("photos");
    let normal = detect(&input, &t.path().join("normal"), &["--batch-size", "2"]);
    for batched in ["0", "1"] {
        let run = |limit: &str| -> (Option<i32>, Value) {
            let out = t.path().join(format!("oom{limit}-{batched}"));
            let o = detect_cmd(&input, &out, &["--batch-size", "8"])
                .env("BOXWALK_FAULT_OOM_ABOVE", limit)
                .env("BOXWALK_TEST_BATCHED_PREPROCESSING", batched)
                .output()
                .expect("run");
            let r = serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report")).expect("json");
            (o.status.code(), r)
        };
        let (code, r) = run("2");
        assert_eq!(code, Some(0), "every image succeeds after the retries (batched inputs: {batched})");
        common::assert_json_close(&r["images"], &normal["images"], 1e-3, "images");
        let (code, r) = run("0");
        assert_eq!(code, Some(3));
        assert_eq!(r["counts"]["failed"], 10);
        let error = &r["images"][0]["error"];
        assert_eq!(error["kind"], "inference");
        let preparing = error["message"].as_str().is_some_and(|m| m.contains("preparing the network inputs"));
        assert_eq!(preparing, batched == "1", "{error}");
    }
}

/// Names of the files in a folder opened while a watch is on it (inotify `IN_OPEN`).
struct OpenWatch {
    fd: i32,
}

impl OpenWatch {
    fn on(dir: &std::path::Path) -> OpenWatch {
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: plain system calls on a descriptor this struct owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN) };
        assert!(wd >= 0, "inotify_add_watch {}", dir.display());
        OpenWatch { fd }
    }

    /// The files opened since the watch began (the folder's own opens, to list it, left out).
    fn opened(self) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            // SAFETY: reads into a buffer of the length given.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0;
            while at < n as usize {
                // struct inotify_event: wd, mask, cookie, len, then len bytes of name.
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().expect("len")) as usize;
                let name = &buf[at + 16..at + 16 + len];
                let name = String::from_utf8_lossy(name).trim_end_matches('\0').to_string();
                if !name.is_empty() {
                    names.insert(name);
                }
                at += 16 + len;
            }
        }
        names
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this struct owns, once.
        unsafe { libc::close(self.fd) };
    }
}

/// A nightly rerun costs what changed: an input whose size, mtime, inode and ctime are those
/// recorded with its result is not even opened; a changed stat leads to reading it, and its
/// content hash decides; `--rehash` reads everything.
#[test]
fn an_unchanged_rerun_opens_no_input_and_a_changed_stat_reads_only_that_file() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 20, 27);
    let input = t.path().join("photos");
    let out = t.path().join("out");
    let first = detect(&input, &out, &[]);
    // A file changed within a few seconds of the walk could change again unseen in the same
    // timestamp tick, so its stat is recorded only by a run that sees it settled.
    std::thread::sleep(Duration::from_secs(3));
    detect(&input, &out, &[]);
    let recorded = std::fs::read_to_string(out.join(boxwalk::outputs::hashes::HASHES)).expect("hashes");
    assert_eq!(recorded.lines().count(), 20, "each input's hash recorded with its stat");

    let watch = OpenWatch::on(&input);
    let rerun = detect(&input, &out, &[]);
    assert_eq!(watch.opened(), Default::default(), "an unchanged rerun opens no input");
    assert_eq!(rerun["counts"]["processed"], 0);
    assert_eq!(rerun["images"].as_array().map(Vec::len), Some(20));
    for (a, b) in rerun["images"].as_array().expect("images").iter().zip(first["images"].as_array().expect("images")) {
        assert_eq!((&a["detections"], &a["input_sha256"]), (&b["detections"], &b["input_sha256"]));
    }

    // One touched (same content), one rewritten with other content: those two are read, and
    // only the second is processed again.
    let touched = input.join("000004.png");
    let f = std::fs::File::options().append(true).open(&touched).expect("open");
    f.set_modified(std::time::SystemTime::now()).expect("touch");
    drop(f);
    std::fs::copy(input.join("000011.png"), input.join("000012.png")).expect("rewrite");
    let watch = OpenWatch::on(&input);
    let next = detect(&input, &out, &[]);
    let opened: Vec<String> = watch.opened().into_iter().collect();
    assert_eq!(opened, ["000004.png", "000012.png"].map(String::from));
    assert_eq!((next["counts"]["processed"].as_u64(), next["counts"]["changed"].as_u64()), (Some(1), Some(1)));

    let watch = OpenWatch::on(&input);
    let rehashed = detect(&input, &out, &["--rehash"]);
    assert_eq!(watch.opened().len(), 20, "--rehash reads every input");
    assert_eq!(rehashed["counts"]["processed"], 0);
}

/// `--dry-run` says per folder what a run would process, carry over or reject, after the shard
/// and the incremental plan, and touches nothing: OUT stays as it was, and no model is loaded
/// (weights that cannot load do not stop it).
#[test]
fn a_dry_run_prints_the_plan_per_folder_and_changes_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 12, 28);
    let input = t.path().join("photos");
    std::fs::create_dir(input.join("sub")).expect("mkdir");
    for k in 0..4 {
        let name = format!("{k:06}.png");
        std::fs::rename(input.join(&name), input.join("sub").join(&name)).expect("move");
    }
    let out = t.path().join("out");
    detect(&input, &out, &[]);
    std::fs::copy(input.join("000005.png"), input.join("new.png")).expect("add");
    std::fs::write(input.join("sub/notes.txt"), b"not an image").expect("write");
    std::fs::write(input.join("sub/huge.png"), vec![0u8; 300_000]).expect("write");
    let before = common::snapshot(&out);
    let o = detect_cmd(&input, &out, &["--dry-run", "--max-file-size", "200000"]).output().expect("dry run");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = |folder: &std::path::Path| {
        let want = format!("  {}: ", folder.display());
        text.lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no line for {want:?} in {text}"))
            .to_string()
    };
    assert_eq!(line(&input), format!("  {}: 1 to process, 8 carried over", input.display()));
    assert_eq!(
        line(&input.join("sub")),
        format!(
            "  {}: 0 to process, 4 carried over, rejected: 1 over --max-file-size, 1 not images",
            input.join("sub").display()
        )
    );
    assert!(
        text.contains("would process 1, carry over 12, reject 2 (2 new, 0 changed, 12 unchanged, 0 removed)"),
        "{text}"
    );
    assert_eq!(common::snapshot(&out), before, "a dry run writes nothing");

    let mut shard = detect_cmd(&input, &out, &["--dry-run", "--shard", "1/2"]);
    let text = String::from_utf8_lossy(&shard.output().expect("dry run").stdout).into_owned();
    let total: usize = text
        .lines()
        .filter_map(|l| l.strip_prefix("boxwalk: would process "))
        .filter_map(|l| l.split(',').next()?.parse::<usize>().ok())
        .sum();
    assert!(total <= 1, "a shard plans its share only: {text}");

    let garbage = t.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not weights").expect("write");
    let o = common::boxwalk()
        .args(["detect", "--dry-run", "--device", "cpu", "--no-classify", "--out"])
        .arg(&out)
        .arg(&input)
        .arg("--detector-weights")
        .arg(&garbage)
        .output()
        .expect("dry run");
    assert_eq!(o.status.code(), Some(0), "no model is loaded: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(common::snapshot(&out), before);
}
