//! The `brisk` tool's job commands: `checkpoints list|verify|inspect` on a
//! real checkpoint directory (also a corrupted one), and `jobs
//! list|show|savepoint|cancel` against a running job's REST API.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use brisk::prelude::*;

fn brisk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brisk")).args(args).env_remove("BRISK_WEB_TOKEN").output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn config(cores: usize) -> JobConfig {
    JobConfig { pin_cores: false, ..JobConfig::with_cores(cores) }
}

/// A bounded keyed job whose checkpoints hold keyed state: a savepoint and
/// the final checkpoint under `dir`.
fn checkpointed_job(dir: &Path) {
    let config = JobConfig {
        checkpoint_dir: Some(dir.to_path_buf()),
        checkpoint_interval_ms: 20,
        checkpoints_retained: 1000,
        ..config(2)
    };
    let env = StreamEnv::new(config);
    // Rate-limited, so that checkpoints are taken mid-run (with keyed state).
    env.from_source(GeneratorSource::new(200_000, |i| (i % 500, 1u64)).with_rate(400_000.0))
        .name("pairs")
        .key_by(|r: &(u64, u64)| r.0)
        .reduce(|a: (u64, u64), b: (u64, u64)| (a.0, a.1 + b.1))
        .name("count per key")
        .sink_to(brisk::DiscardSink);
    env.execute().unwrap();
}

#[test]
fn checkpoints_are_listed_verified_and_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");
    checkpointed_job(&chk);
    let d = chk.to_str().unwrap();

    let o = brisk(&["checkpoints", "list", d]);
    assert!(o.status.success(), "{}", text(&o));
    let listing = text(&o);
    assert!(listing.contains("complete") && listing.contains("finished"), "{listing}");

    let o = brisk(&["checkpoints", "verify", d]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(": ok ("), "{}", text(&o));

    // The checkpoint with the most state (one taken mid-run, with the
    // keyed counts): inspect it, then corrupt one byte of a state file.
    let state_bytes = |p: &Path| -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|f| f.path().extension().is_some_and(|x| x == "state"))
            .map(|f| f.metadata().unwrap().len())
            .sum()
    };
    let with_state = std::fs::read_dir(&chk)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_manifest").exists())
        .max_by_key(|p| state_bytes(p))
        .expect("a complete checkpoint");
    let o = brisk(&["checkpoints", "inspect", with_state.to_str().unwrap(), "--key-groups", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = text(&o);
    assert!(shown.contains("count per key") && shown.contains("key groups ("), "{shown}");
    // Two cores' state files and the three largest key groups.
    let rows = shown.lines().filter(|l| l.trim_start().starts_with("count per key")).count();
    assert!(rows >= 2 + 3, "{shown}");

    let state = std::fs::read_dir(&with_state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "state"))
        .unwrap();
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&state, bytes).unwrap();
    let o = brisk(&["checkpoints", "verify", d]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report = text(&o);
    let name = state.file_name().unwrap().to_str().unwrap();
    assert!(report.contains("CORRUPT") && report.contains(name), "names the file: {report}");

    let o = brisk(&["checkpoints", "list", "/nonexistent/brisk-chk"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("/nonexistent/brisk-chk: not a directory"), "{}", text(&o));
}

#[test]
fn jobs_are_shown_savepointed_and_cancelled_through_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    let token = "cli-test-token-0123456789";
    let config = JobConfig {
        checkpoint_dir: Some(dir.path().join("chk")),
        checkpoint_interval_ms: 100,
        web_ui: Some("127.0.0.1:0".parse().unwrap()),
        web_token: Some(token.into()),
        ..config(2)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let job = std::thread::spawn(move || {
        let env = StreamEnv::new(config);
        tx.send(env.control()).unwrap();
        env.from_source(GeneratorSource::new(u64::MAX / 2, |i| (i % 100, 1u64)).with_rate(10_000.0))
            .name("pairs")
            .key_by(|r: &(u64, u64)| r.0)
            .reduce(|a: (u64, u64), b: (u64, u64)| (a.0, a.1 + b.1))
            .name("count per key")
            .sink_to(brisk::DiscardSink);
        env.execute()
    });
    let control = rx.recv().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Some(a) = control.web_address() {
            break a.to_string();
        }
        assert!(Instant::now() < deadline, "the job never served its API");
        std::thread::yield_now();
    };
    let o = brisk(&["jobs", "list", "--address", &addr]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("RUNNING"), "{}", text(&o));
    let o = brisk(&["jobs", "show", "--address", &addr]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("count per key") && text(&o).contains("pairs"), "{}", text(&o));
    assert!(text(&o).contains("alignment"), "{}", text(&o));

    let sp = dir.path().join("sp");
    let o = brisk(&["jobs", "savepoint", "--address", &addr, "--dir", sp.to_str().unwrap()]);
    assert!(!o.status.success(), "no token: refused");
    assert!(text(&o).contains("401"), "{}", text(&o));
    let o =
        brisk(&["jobs", "savepoint", "--address", &addr, "--token", token, "--dir", sp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(sp.join("_manifest").exists());
    let o = brisk(&["checkpoints", "verify", sp.to_str().unwrap()]);
    assert!(o.status.success(), "the savepoint verifies: {}", text(&o));

    let o = brisk(&["jobs", "cancel", "--address", &addr, "--token", "not-the-token-0123456789"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("403"), "{}", text(&o));
    let o = brisk(&["jobs", "cancel", "--address", &addr, "--token", token]);
    assert!(o.status.success(), "{}", text(&o));
    let err = job.join().unwrap().expect_err("cancelled");
    assert!(err.is_cancellation(), "{err}");
    let o = brisk(&["jobs", "list", "--address", &addr]);
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot reach the job"), "{}", text(&o));
}
