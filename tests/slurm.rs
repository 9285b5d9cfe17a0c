//! The Slurm recipe of `docs/scale-out.md`, run for real: a one-node Slurm of the test's own
//! (config, state, munge key and socket in a temporary folder, daemons on free loopback ports)
//! runs the array script and the merge script taken from the doc, over a tree with bad files.
//! The merged report must equal one plain run, the bad files must be error entries, and a task
//! preempted with `scancel --signal=TERM`, then rerun, must end with the same results.
//!
//! `make test` installs Debian's slurm-wlm and munge when they are missing. A Slurm already
//! running on the machine is left alone: nothing here reads or writes its config, ports or socket.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A one-node cluster, torn down on drop.
struct Cluster {
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn ok(o: std::io::Result<Output>, what: &str) -> Output {
    let o = o.unwrap_or_else(|e| panic!("{what}: {e} (make test installs slurm-wlm and munge)"));
    assert!(o.status.success(), "{what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for sub in ["state", "spool", "munge"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
        std::fs::set_permissions(d.join("munge"), mode(0o700)).expect("chmod");
        let key = d.join("munge/munge.key");
        ok(Command::new("mungekey").arg("--create").arg(format!("--keyfile={}", key.display())).output(), "mungekey");
        let file = |name: &str| format!("{}", d.join(name).display());
        ok(
            Command::new("munged")
                .args(["--force", "-S", &file("munge/sock"), &format!("--key-file={}", key.display())])
                .args([format!("--log-file={}", file("munge/log")), format!("--pid-file={}", file("munge/pid"))])
                .arg(format!("--seed-file={}", file("munge/seed")))
                .output(),
            "munged",
        );
        let (ctld, slurmd) = (free_port(), free_port());
        let conf = format!(
            "ClusterName=boxwalktest\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
             SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket={sock}\nCredType=cred/munge\n\
             StateSaveLocation={state}\nSlurmdSpoolDir={spool}\nSlurmctldPidFile={ctld_pid}\nSlurmdPidFile={d_pid}\n\
             SlurmctldLogFile={ctld_log}\nSlurmdLogFile={d_log}\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\nReturnToService=2\n\
             NodeName=boxwalk1 NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=2 State=UNKNOWN\n\
             PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            sock = file("munge/sock"),
            state = file("state"),
            spool = file("spool"),
            ctld_pid = file("slurmctld.pid"),
            d_pid = file("slurmd.pid"),
            ctld_log = file("slurmctld.log"),
            d_log = file("slurmd.log"),
        );
        std::fs::write(d.join("slurm.conf"), conf).expect("slurm.conf");
        let cluster = Cluster { dir };
        ok(cluster.cmd("slurmctld").arg("-i").output(), "slurmctld");
        ok(cluster.cmd("slurmd").args(["-N", "boxwalk1"]).output(), "slurmd");
        cluster.wait_for("the node to come up", Duration::from_secs(60), || {
            cluster.text(cluster.cmd("sinfo").args(["-h", "-o", "%t"])).trim() == "idle"
        });
        cluster
    }

    /// A Slurm command against this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.dir.path().join("slurm.conf"));
        c
    }

    fn text(&self, c: &mut Command) -> String {
        String::from_utf8_lossy(&c.output().map(|o| o.stdout).unwrap_or_default()).into_owned()
    }

    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !done() {
            let logs = || std::fs::read_to_string(self.dir.path().join("slurmctld.log")).unwrap_or_default();
            assert!(t0.elapsed() < limit, "timed out waiting for {what}; slurmctld.log:\n{}", logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The states of a job's tasks (`COMPLETED`, `FAILED`, …), once none is pending or running.
    fn finished(&self, job: &str) -> Vec<String> {
        let mut states = Vec::new();
        self.wait_for(&format!("job {job}"), Duration::from_secs(600), || {
            let text = self.text(self.cmd("scontrol").args(["show", "job", job]));
            states = text
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("JobState="))
                .map(String::from)
                .collect::<Vec<_>>();
            !states.is_empty()
                && states.iter().all(|s| !matches!(s.as_str(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"))
        });
        states
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").args(["--full", "--user", "root"]).output();
        for pid in ["slurmd.pid", "slurmctld.pid", "munge/pid"] {
            if let Ok(p) = std::fs::read_to_string(self.dir.path().join(pid)) {
                let _ = Command::new("kill").arg(p.trim()).status();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The `bash` blocks of the doc's Slurm section, in order: the array script, the merge script.
fn doc_scripts() -> Vec<String> {
    let doc = std::fs::read_to_string(common::repo().join("docs/scale-out.md")).expect("docs/scale-out.md");
    let section = doc.split("\n## Slurm").nth(1).expect("a Slurm section").split("\n## ").next().expect("section");
    section.split("```bash\n").skip(1).map(|b| b.split("```").next().expect("block end").to_string()).collect()
}

/// A doc script with the site's paths put to the test's.
fn script(text: &str, at: &Path, places: &[(&str, &Path)]) -> PathBuf {
    let mut text = text.to_string();
    for (from, to) in places {
        text = text.replace(from, &to.display().to_string());
    }
    std::fs::write(at, text).expect("write script");
    at.to_path_buf()
}

fn report(out: &Path) -> Value {
    common::read_report(out)
}

#[test]
fn the_documented_slurm_recipe_merges_a_tree_with_bad_files_and_survives_preemption() {
    let started = Instant::now();
    let t = tempfile::tempdir().expect("tempdir");
    common::scenes(t.path(), 30, 61);
    let photos = t.path().join("photos");
    std::fs::write(photos.join("not-a-photo.jpg"), b"a text file named like a photo").expect("write");
    let png = std::fs::read(common::repo().join("samples/synthetic/000000.png")).expect("sample");
    std::fs::write(photos.join("half.png"), &png[..png.len() / 2]).expect("write");
    // The demo models, whatever the machine's model store holds: the same as the plain run's.
    let home = t.path().join("home");
    let plain_out = t.path().join("plain");
    let o = common::boxwalk()
        .env("BOXWALK_HOME", &home)
        .args(["detect", "--device", "cpu", "--quiet", "--threads", "1", "--out"])
        .arg(&plain_out)
        .arg(&photos)
        .output()
        .expect("plain run");
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let plain = report(&plain_out);

    let cluster = Cluster::start();
    let scripts = doc_scripts();
    assert_eq!(scripts.len(), 2, "the doc's Slurm section has the array script and the merge script");
    let (shards, merged) = (t.path().join("scratch"), t.path().join("results"));
    let places = [("/archive/photos", photos.as_path()), ("/scratch/boxwalk", &shards), ("/results/boxwalk", &merged)];
    let array = script(&scripts[0], &t.path().join("array.sh"), &places);
    let merge = script(&scripts[1], &t.path().join("merge.sh"), &places);
    assert!(std::fs::read_to_string(&array).expect("array").contains(&photos.display().to_string()));
    // The binary under test on PATH, the demo models, and resources this machine has.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_boxwalk"));
    let path = format!("{}:{}", bin.parent().expect("bin dir").display(), std::env::var("PATH").unwrap_or_default());
    let logs = t.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let common_args = |name: &str| {
        vec![
            format!("--output={}/{name}-%A_%a.out", logs.display()),
            format!("--chdir={}", t.path().display()),
            "--export=ALL".into(),
        ]
    };
    let submit = |script: &Path, mut args: Vec<String>, name: &str| {
        args.extend(common_args(name));
        let mut c = cluster.cmd("sbatch");
        c.env("PATH", &path).env("BOXWALK_HOME", &home).arg("--parsable").args(&args).arg(script);
        let o = ok(c.output(), "sbatch");
        String::from_utf8_lossy(&o.stdout).trim().split(';').next().expect("job id").to_string()
    };
    let resources = || vec!["--cpus-per-task=1".to_string(), "--gres=none".into()];
    let job = submit(&array, [vec!["--array=0-2".into()], resources()].concat(), "array");
    let merge_job = submit(&merge, vec![format!("--dependency=afterok:{job}")], "merge");
    let log_text = || {
        let mut all = String::new();
        for e in std::fs::read_dir(&logs).expect("logs").filter_map(Result::ok) {
            all += &format!("== {}\n{}", e.path().display(), std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    };
    let states = cluster.finished(&job);
    assert!(states.iter().all(|s| s == "COMPLETED"), "array tasks: {states:?}\n{}", log_text());
    let states = cluster.finished(&merge_job);
    assert_eq!(states, ["COMPLETED"], "the merge ran after the array, bad files and all:\n{}", log_text());
    let m = report(&merged);
    common::assert_json_close(&m["images"], &plain["images"], 1e-5, "merged vs plain images");
    assert_eq!(m["counts"]["failed"], 2);
    for bad in ["not-a-photo.jpg", "half.png"] {
        let e = m["images"].as_array().expect("images").iter().find(|e| e["path"] == bad).expect("bad file's entry");
        assert!(e["error"]["kind"].is_string(), "{bad}: {e}");
    }

    // Preemption: one task over the whole tree, signalled mid-run as Slurm does at a time limit,
    // then rerun: the same results, and only what was not journaled is processed again.
    common::scenes(&t.path().join("more"), 300, 62);
    let many = t.path().join("more/photos");
    let places = [
        ("/archive/photos", many.as_path()),
        ("/scratch/boxwalk", &t.path().join("preempt")),
        ("/results/boxwalk", &merged),
    ];
    let one = script(&scripts[0], &t.path().join("one.sh"), &places);
    let out = t.path().join("preempt/shard-0");
    let job = submit(&one, [vec!["--array=0-0".into()], resources()].concat(), "preempt");
    let journal = out.join("journal.jsonl");
    cluster.wait_for("the task to journal 40 images", Duration::from_secs(120), || {
        std::fs::read_to_string(&journal).map(|j| j.lines().count() > 40).unwrap_or(false)
    });
    ok(cluster.cmd("scancel").args(["--signal=TERM", &job]).output(), "scancel --signal=TERM");
    let states = cluster.finished(&job);
    assert_eq!(states, ["FAILED"], "the task ends on the signal:\n{}", log_text());
    assert!(log_text().contains("SIGTERM: stopping after the batch in flight"), "{}", log_text());
    let partial = report(&out);
    assert_eq!(partial["interrupted"], true);
    let done = partial["images"].as_array().map_or(0, Vec::len);
    assert!(done > 0 && done < 300, "stopped part-way: {done}");
    let job = submit(&one, [vec!["--array=0-0".into()], resources()].concat(), "rerun");
    assert_eq!(cluster.finished(&job), ["COMPLETED"], "{}", log_text());
    let resumed = report(&out);
    assert_eq!(resumed["counts"]["processed"].as_u64(), Some(300 - done as u64));
    let o = common::boxwalk()
        .env("BOXWALK_HOME", &home)
        .args(["detect", "--device", "cpu", "--quiet", "--threads", "1", "--out"])
        .arg(t.path().join("plain-more"))
        .arg(&many)
        .output()
        .expect("plain run");
    assert_eq!(o.status.code(), Some(0));
    common::assert_json_close(&resumed["images"], &report(&t.path().join("plain-more"))["images"], 1e-5, "preempted");
    drop(cluster);
    eprintln!("the Slurm test took {:.1} s", started.elapsed().as_secs_f64());
}
