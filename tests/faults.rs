//! Faults a nightly run meets, each made for real where the machine allows: a full disk (a small
//! tmpfs as OUT), OUT moved, removed or made unwritable mid-run, a failing disk or a quota (an
//! injected OS error), an input folder that is empty or unreadable (a failed mount), a file still
//! being copied, SIGKILL, Ctrl-C, SIGTERM and SIGHUP, a second run on the same OUT. Each asserts
//! that nothing journaled is lost, that no output is half-written, and that the rerun ends with
//! the report of an uninterrupted run. Also the exit codes a scheduler sees (`--fail-on`).
//!
//! The suite runs as root: mounting fails loudly otherwise. Permission checks are made real by
//! running boxwalk without the capabilities that let root ignore them.

mod common;

use common::{detect_cmd, detect_ok, scenes, scenes_sized, wait_for_progress};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tmpfs mounted at a folder for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mkdir mount point");
        let o = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).output();
        let o = o.expect("run mount");
        assert!(
            o.status.success(),
            "this test mounts a tmpfs and needs root (the suite runs as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let o = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output();
        assert!(o.expect("run mount").status.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `cmd` without the capabilities that let root read and write whatever the permissions say, so
/// that a folder made unreadable or read-only is so for boxwalk too.
fn without_root_overrides(cmd: Command) -> Command {
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    let mut c = Command::new("setpriv");
    let caps = "-dac_override,-dac_read_search,-fowner";
    c.args([&format!("--bounding-set={caps}"), &format!("--inh-caps={caps}"), "--"]);
    c.arg(cmd.get_program()).args(cmd.get_args());
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` small scenes in `dir/photos`, and the report of an uninterrupted run over them.
fn scenes_and_clean_run(dir: &Path, n: usize, seed: u64) -> (PathBuf, Value) {
    scenes(dir, n, seed);
    let input = dir.join("photos");
    let clean = detect_ok(&input, &dir.join("clean"), &[]);
    (input, clean)
}

/// Starts `cmd` (a run writing `out`, its stderr kept) and returns once it has journaled
/// `images` images.
fn started_part_way(mut cmd: Command, out: &Path, images: usize) -> std::process::Child {
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    assert!(wait_for_progress(&mut child, out, images), "the run ended before {images} images were journaled");
    child
}

/// The image lines of OUT's journal, by path.
fn journaled(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter_map(|v| v.get("image").cloned()).collect()
}

/// Every annotated copy and thumbnail under `out` decodes, and no temporary file is left.
fn assert_nothing_torn(out: &Path) {
    for e in walkdir::WalkDir::new(out).into_iter().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.file_type().is_file() {
            continue;
        }
        assert!(!name.starts_with(".boxwalk-"), "{} left behind", e.path().display());
        if name.ends_with(".png") || name.ends_with(".jpg") {
            assert!(image::open(e.path()).is_ok(), "{} is torn", e.path().display());
        }
    }
}

/// Asserts that a stopped run lost nothing it journaled: each journaled image is done (no error)
/// and its copy is whole; then reruns and asserts the report is the uninterrupted one's, with
/// only the images not journaled processed again, and nothing torn or temporary left. Returns
/// how many were journaled.
fn assert_rerun_completes(input: &Path, out: &Path, clean: &Value) -> usize {
    let done = journaled(out);
    for e in &done {
        assert!(e["error"].is_null(), "an image recorded as failed by a fault of the machine: {e}");
        let copy = out.join(e["output"].as_str().expect("output"));
        assert!(image::open(&copy).is_ok(), "{} journaled but not whole", copy.display());
    }
    let total = clean["images"].as_array().expect("images").len();
    let resumed = detect_ok(input, out, &[]);
    assert_eq!(resumed["images"], clean["images"], "the rerun's report differs from an uninterrupted run's");
    assert_eq!(resumed["counts"]["processed"].as_u64(), Some((total - done.len()) as u64), "journaled work is kept");
    // After the rerun: a run whose OUT was moved mid-write cannot remove its temporary files
    // (they are no longer where it made them); the next run in OUT does.
    assert_nothing_torn(out);
    done.len()
}

/// The single fatal message of a run stopped by a fault of the machine, checked for what it must
/// say: OUT, and the cause.
fn assert_one_fatal_message(o: &Output, out: &Path, cause: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(cause)).collect();
    assert_eq!(lines.len(), 1, "one message, not one per image: {err}");
    assert!(lines[0].contains(&out.display().to_string()) && lines[0].contains("the run stopped"), "{err}");
    assert!(!err.contains("error [write]"), "no image recorded as failed: {err}");
}

#[test]
fn a_full_disk_stops_the_run_and_the_rerun_after_freeing_space_completes() {
    let t = tempfile::tempdir().expect("tempdir");
    // 60 scenes of 320×240: their annotated copies and thumbnails fill 3 MB after a dozen or so.
    scenes_sized(t.path(), 60, 41, 320, 240);
    let input = t.path().join("photos");
    let clean = detect_ok(&input, &t.path().join("clean"), &[]);
    let out = t.path().join("small");
    let disk = Tmpfs::mount(&out, "3m");
    let o = detect_cmd(&input, &out, &[]).output().expect("run");
    assert_one_fatal_message(&o, &out, "No space left on device");
    assert!(!out.join("report.json").exists(), "no report with images missing");
    let done = journaled(&out);
    assert!(!done.is_empty() && done.len() < 60, "{} journaled before the disk filled", done.len());
    disk.resize("64m");
    assert_rerun_completes(&input, &out, &clean);
}

#[test]
fn a_failing_disk_or_a_quota_stops_the_run_like_a_full_disk() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 40, 42);
    for (errno, cause) in [(libc::EIO, "Input/output error"), (libc::EDQUOT, "Disk quota exceeded")] {
        let out = t.path().join(format!("errno{errno}"));
        let o = detect_cmd(&input, &out, &[]).env("BOXWALK_FAULT_WRITE", format!("{errno}@20")).output().expect("run");
        assert_one_fatal_message(&o, &out, cause);
        let done = assert_rerun_completes(&input, &out, &clean);
        assert!(done <= 20, "{done} journaled, though writes failed from the 21st");
    }
}

/// OUT renamed away (as a lost mount looks), then removed with `rm -rf`, while the run goes.
#[test]
fn an_output_folder_moved_or_removed_mid_run_stops_the_run_and_is_not_made_again() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 200, 43);

    let out = t.path().join("moved");
    let child = started_part_way(detect_cmd(&input, &out, &[]), &out, 40);
    let away = t.path().join("moved-away");
    std::fs::rename(&out, &away).expect("move OUT away");
    let o = child.wait_with_output().expect("wait");
    assert_one_fatal_message(&o, &out, "removed or replaced");
    assert!(!out.exists(), "a removed OUT is not made again");
    std::fs::rename(&away, &out).expect("move OUT back");
    assert_rerun_completes(&input, &out, &clean);

    let out = t.path().join("removed");
    let child = started_part_way(detect_cmd(&input, &out, &[]), &out, 40);
    // rm -rf races the run's last writes and may leave a few files: what matters is that the run
    // notices and stops.
    let _ = Command::new("rm").arg("-rf").arg(&out).status();
    let o = child.wait_with_output().expect("wait");
    assert_one_fatal_message(&o, &out, "removed or replaced");
    let _ = std::fs::remove_dir_all(&out);
    assert_eq!(detect_ok(&input, &out, &[])["images"], clean["images"]);
}

#[test]
fn an_output_folder_made_read_only_mid_run_stops_the_run() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 200, 44);
    let out = t.path().join("out");
    let child = started_part_way(without_root_overrides(detect_cmd(&input, &out, &[])), &out, 40);
    let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(&out, mode(0o555)).expect("chmod");
    let o = child.wait_with_output().expect("wait");
    std::fs::set_permissions(&out, mode(0o755)).expect("chmod back");
    assert_one_fatal_message(&o, &out, "Permission denied");
    assert_rerun_completes(&input, &out, &clean);
}

/// The copies, thumbnails, report and caches in OUT, with their contents (not the lock file,
/// which each run rewrites with who holds it).
fn snapshot(out: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut files = common::snapshot(out);
    files.retain(|p, _| p.file_name().is_none_or(|n| n != boxwalk::outputs::lock::LOCK));
    files
}

#[test]
fn prune_refuses_a_missing_empty_or_unreadable_input_and_more_than_max_prune() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 20, 45);
    let input = t.path().join("photos");
    std::fs::create_dir(input.join("sub")).expect("mkdir");
    for k in 0..4 {
        let name = format!("{k:06}.png");
        std::fs::rename(input.join(&name), input.join("sub").join(&name)).expect("move into sub");
    }
    let out = t.path().join("out");
    detect_ok(&input, &out, &[]);
    let before = snapshot(&out);
    let refused = |c: Command, why: &str| {
        let o = { c }.output().expect("run");
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        assert!(snapshot(&out) == before, "a refused --prune changed OUT ({why})");
    };

    let away = t.path().join("away");
    std::fs::rename(&input, &away).expect("unmount, as it were");
    refused(detect_cmd(&input, &out, &["--prune"]), "does not exist");
    std::fs::create_dir(&input).expect("an empty mount point");
    refused(detect_cmd(&input, &out, &["--prune"]), "--prune refused: input");
    std::fs::remove_dir(&input).expect("rmdir");
    std::fs::rename(&away, &input).expect("mount again");

    let sub = input.join("sub");
    let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(&sub, mode(0o000)).expect("chmod");
    refused(without_root_overrides(detect_cmd(&input, &out, &["--prune"])), "could not be read");
    std::fs::set_permissions(&sub, mode(0o755)).expect("chmod back");

    // 3 of 20 inputs gone: 15%, over the default 10%.
    for k in 4..7 {
        std::fs::remove_file(input.join(format!("{k:06}.png"))).expect("rm");
    }
    refused(detect_cmd(&input, &out, &["--prune"]), "over --max-prune 10%");
    refused(detect_cmd(&input, &out, &["--prune", "--max-prune", "2"]), "over --max-prune 2");
    let r = detect_ok(&input, &out, &["--prune", "--max-prune", "20%"]);
    assert_eq!(r["counts"]["removed"], 3);
    assert!(!out.join("000004.png").exists() && out.join("000007.png").is_file());
    let o = detect_cmd(&input, &out, &["--max-prune", "lots"]).output().expect("run");
    assert_eq!(o.status.code(), Some(1), "a bad --max-prune is a usage error: {}", stderr(&o));
}

#[test]
fn an_input_that_holds_no_images_or_cannot_be_read_keeps_its_earlier_results() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 12, 46);
    let input = t.path().join("photos");
    let out = t.path().join("out");
    let first = detect_ok(&input, &out, &[]);
    let away = t.path().join("away");
    std::fs::rename(&input, &away).expect("unmount, as it were");
    std::fs::create_dir(&input).expect("an empty mount point");

    let o = detect_cmd(&input, &out, &[]).output().expect("run");
    assert_eq!(o.status.code(), Some(4), "no images were found: {}", stderr(&o));
    assert!(stderr(&o).contains("holds no images"), "{}", stderr(&o));
    let r = common::read_report(&out);
    assert_eq!((r["counts"]["images"].as_u64(), r["counts"]["not_seen"].as_u64()), (Some(0), Some(12)));
    let images = r["images"].as_array().expect("images");
    assert_eq!(images.len(), 12, "earlier results are kept");
    for (now, then) in images.iter().zip(first["images"].as_array().expect("images")) {
        assert_eq!(now["not_seen"], true);
        let mut now = now.clone();
        now.as_object_mut().expect("entry").remove("not_seen");
        assert_eq!(&now, then, "kept as they were");
    }

    // Mounted again: nothing to redo, and nothing is marked.
    std::fs::remove_dir(&input).expect("rmdir");
    std::fs::rename(&away, &input).expect("mount again");
    let back = detect_ok(&input, &out, &[]);
    assert_eq!(back["counts"]["processed"], 0);
    assert_eq!(back["images"], first["images"]);

    // A subfolder that cannot be read keeps its results too; the rest of the tree goes on.
    std::fs::create_dir(input.join("sub")).expect("mkdir");
    std::fs::rename(input.join("000000.png"), input.join("sub/000000.png")).expect("move");
    detect_ok(&input, &out, &[]);
    let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(input.join("sub"), mode(0o000)).expect("chmod");
    let o = without_root_overrides(detect_cmd(&input, &out, &[])).output().expect("run");
    std::fs::set_permissions(input.join("sub"), mode(0o755)).expect("chmod back");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = common::read_report(&out);
    let kept: Vec<&Value> = r["images"].as_array().expect("images").iter().filter(|e| e["not_seen"] == true).collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["path"], "sub/000000.png");
    assert_eq!(r["counts"]["skipped"], 1);

    // Empty on purpose.
    std::fs::rename(&input, &away).expect("move");
    std::fs::create_dir(&input).expect("empty");
    let o = detect_cmd(&input, &out, &["--allow-empty-input"]).output().expect("run");
    assert_eq!(o.status.code(), Some(4));
    let r = common::read_report(&out);
    assert_eq!(r["images"].as_array().map(Vec::len), Some(0), "--allow-empty-input drops the results");
    assert_eq!(r["counts"]["removed"], 12);
}

#[test]
fn a_file_that_changes_while_it_is_read_is_left_for_the_next_run() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 16, 47);
    let input = t.path().join("photos");
    let growing = input.join("000003.png");
    let out = t.path().join("out");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let o = std::thread::scope(|s| {
        // A copy in progress: bytes keep arriving (after the PNG's end, so it still decodes).
        s.spawn(|| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&growing).expect("open");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&[0; 64]).expect("append");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let o = detect_cmd(&input, &out, &[]).output().expect("run");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        o
    });
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let r = common::read_report(&out);
    let entry = r["images"].as_array().expect("images").iter().find(|e| e["path"] == "000003.png").expect("entry");
    assert_eq!(entry["error"]["kind"], "changed_during_read", "{entry}");
    assert!(entry["error"]["message"].as_str().is_some_and(|m| m.contains("000003.png")), "{entry}");
    assert_eq!(r["counts"]["failed"], 1);
    // The copy is done: the next run takes it.
    let next = detect_ok(&input, &out, &[]);
    assert_eq!(next["counts"]["processed"], 1);
    assert_eq!(next["counts"]["failed"], 0);
    // The image went through the models alone, as a batch of one: its scores may differ from a
    // batch of eight's in the last bits.
    let clean = detect_ok(&input, &t.path().join("clean"), &[]);
    common::assert_json_close(&next["images"], &clean["images"], 1e-5, "images");
}

#[test]
fn a_run_killed_at_any_point_resumes_to_the_same_report() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 200, 22);
    assert_eq!(clean["counts"]["ok"], 200);
    for (k, fraction) in [0.15, 0.4, 0.7].into_iter().enumerate() {
        let out = t.path().join(format!("killed{k}"));
        let mut child = detect_cmd(&input, &out, &[]).spawn().expect("spawn");
        let part_way = wait_for_progress(&mut child, &out, (200.0 * fraction) as usize);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert!(part_way, "the run ended before {fraction} of it was journaled");
        assert!(!out.join("report.json").exists(), "killed at {fraction}, before the report");
        // A kill leaves the temporary files of the writes in flight; the rerun removes them.
        let done = journaled(&out);
        for e in &done {
            let copy = out.join(e["output"].as_str().expect("output"));
            assert!(image::open(&copy).is_ok(), "{} journaled but not whole", copy.display());
        }
        let resumed = detect_ok(&input, &out, &[]);
        assert_eq!(resumed["images"], clean["images"], "kill at {fraction}: report differs from a clean run");
        assert_eq!(resumed["counts"]["processed"].as_u64(), Some(200 - done.len() as u64), "journaled work is kept");
        assert_nothing_torn(&out);
    }
}

/// Ctrl-C, and SIGTERM and SIGHUP as Slurm, Kubernetes and systemd send them: the run stops
/// after the batch in flight, well inside the schedulers' 30 s grace, writes the report and ends
/// with 128 + the signal; the rerun completes. A second signal exits at once.
#[test]
fn a_signal_stops_after_the_batch_writes_the_report_and_a_rerun_completes() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 200, 24);
    let kill = |child: &std::process::Child, signal: &str| {
        let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
        assert!(status.expect("kill").success(), "kill -{signal}");
    };
    for (signal, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let out = t.path().join(format!("stopped-{signal}"));
        let child = started_part_way(detect_cmd(&input, &out, &[]), &out, 80);
        let sent = std::time::Instant::now();
        kill(&child, signal);
        let o = child.wait_with_output().expect("wait");
        let took = sent.elapsed();
        assert_eq!(o.status.code(), Some(code), "SIG{signal}: {}", stderr(&o));
        assert!(took.as_secs_f64() < 10.0, "SIG{signal}: stopped {took:?} after the signal");
        eprintln!("SIG{signal}: stopped {took:?} after the signal");
        let partial = common::read_report(&out);
        assert_eq!(partial["interrupted"], true);
        let n = partial["images"].as_array().expect("images").len();
        assert!(n > 0 && n < 200, "stopped part-way: {n}");
        assert_nothing_torn(&out);
        let resumed = detect_ok(&input, &out, &[]);
        assert_eq!(resumed["interrupted"], false);
        assert_eq!(resumed["counts"]["processed"].as_u64(), Some(200 - n as u64));
        assert_eq!(resumed["images"], clean["images"], "SIG{signal}: the rerun differs from an uninterrupted run");
    }
    let out = t.path().join("twice");
    let child = started_part_way(detect_cmd(&input, &out, &[]), &out, 80);
    // Two signals back to back, within a millisecond, long before a graceful stop could write
    // the report; two different ones, since two of a kind pending at once are one.
    let pid = child.id();
    let both = Command::new("sh").arg("-c").arg(format!("kill -TERM {pid}; kill -HUP {pid}")).status();
    assert!(both.expect("sh").success());
    let o = child.wait_with_output().expect("wait");
    assert!(matches!(o.status.code(), Some(143 | 129)), "{:?}: {}", o.status, stderr(&o));
    assert!(!out.join("report.json").exists(), "the second signal quits before the report");
    assert_rerun_completes(&input, &out, &clean);
}

/// A cron run that overran and a manual run beside it: the second exits at once naming the
/// first, which goes on undisturbed; with --wait it waits, then carries everything over.
#[test]
fn a_second_run_on_the_same_out_names_the_first_or_waits_for_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let (input, clean) = scenes_and_clean_run(t.path(), 200, 48);
    let out = t.path().join("out");
    let first = started_part_way(detect_cmd(&input, &out, &[]), &out, 40);
    let o = detect_cmd(&input, &out, &[]).output().expect("second run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("another boxwalk run") && err.contains(&format!("pid {}", first.id())), "{err}");
    let mut waiting = detect_cmd(&input, &out, &["--wait"]);
    let waiting = waiting.stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let o = first.wait_with_output().expect("first");
    assert_eq!(o.status.code(), Some(0), "the first run is not disturbed: {}", stderr(&o));
    assert_eq!(common::read_report(&out)["images"], clean["images"]);
    let o = waiting.wait_with_output().expect("waiting run");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("waiting for the other run"), "{}", stderr(&o));
    let r = common::read_report(&out);
    assert_eq!(r["counts"]["processed"], 0, "the waiting run found everything done");
    assert_eq!(r["images"], clean["images"]);
}

/// An array task with a bad file counts as done under --fail-on fatal, and so does a merge of
/// shards with failed images; --fail-on none lets even a fatal error exit 0.
#[test]
fn fail_on_sets_which_outcomes_exit_non_zero() {
    let t = tempfile::tempdir().expect("tempdir");
    scenes(t.path(), 12, 49);
    let input = t.path().join("photos");
    std::fs::write(input.join("broken.jpg"), b"not a jpeg at all").expect("write");
    let code = |c: &mut Command| c.output().expect("run").status.code();
    let out = |k: &str| t.path().join(k);
    assert_eq!(code(&mut detect_cmd(&input, &out("a"), &[])), Some(3));
    assert_eq!(code(&mut detect_cmd(&input, &out("b"), &["--fail-on", "images"])), Some(3));
    assert_eq!(code(&mut detect_cmd(&input, &out("c"), &["--fail-on", "fatal"])), Some(0));
    // A fatal error: OUT is a file.
    let not_a_folder = out("file");
    std::fs::write(&not_a_folder, b"x").expect("write");
    assert_eq!(code(&mut detect_cmd(&input, &not_a_folder, &["--fail-on", "fatal"])), Some(2));
    let o = detect_cmd(&input, &not_a_folder, &["--fail-on", "none"]).output().expect("run");
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("cannot create output folder"), "the error is still printed: {}", stderr(&o));

    let shards: Vec<PathBuf> = (0..2).map(|k| out(&format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        let shard = format!("{k}/2");
        detect_cmd(&input, dir, &["--shard", &shard, "--fail-on", "fatal"]).output().expect("shard");
    }
    let merge = |extra: &[&str]| {
        let mut c = common::boxwalk();
        c.arg("merge").args(&shards).arg("--out").arg(out("merged")).args(extra);
        c.output().expect("merge")
    };
    let o = merge(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("broken.jpg"), "merge names the failed images: {}", stderr(&o));
    assert_eq!(merge(&["--fail-on", "fatal"]).status.code(), Some(0));
    let merged = common::read_report(&out("merged"));
    assert_eq!((merged["counts"]["images"].as_u64(), merged["counts"]["failed"].as_u64()), (Some(13), Some(1)));
}
