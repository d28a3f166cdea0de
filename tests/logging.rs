//! Logs: `tracing` on stderr, filtered by `--log-level` (or `RUST_LOG`,
//! which wins), and the `log` records of dependencies included: glommio
//! reports falling back from registered io_uring buffers only through
//! `log::warn!`. Each case runs in a child process (a subscriber is
//! installed once per process) and the parent reads its stderr.

use std::process::Command;

const CHILD: &str = "BRISK_LOGGING_TEST_CHILD";

/// In the child: install the subscriber as a job does, then log.
fn child(filter: &str) {
    brisk::init_logging_with(Some(filter));
    // What glommio says when it cannot register its buffers.
    log::warn!(target: "glommio::sys::uring", "Error: registering buffers in the main ring. Skipping (test)");
    tracing::info!(target: "brisk::test", "an info line");
    tracing::debug!(target: "brisk::test", "a debug line");
}

fn run(filter: &str, rust_log: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "dependency_warnings_and_the_configured_level_reach_stderr", "--nocapture"])
        .env(CHILD, filter);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn dependency_warnings_and_the_configured_level_reach_stderr() {
    if let Ok(filter) = std::env::var(CHILD) {
        return child(&filter);
    }
    let info = run("info", None);
    assert!(info.contains("registering buffers in the main ring"), "glommio's log::warn! is shown: {info}");
    assert!(info.contains("an info line") && !info.contains("a debug line"), "{info}");
    let warn = run("warn", None);
    assert!(warn.contains("registering buffers") && !warn.contains("an info line"), "{warn}");
    let env_wins = run("warn", Some("debug"));
    assert!(env_wins.contains("a debug line"), "RUST_LOG wins over --log-level: {env_wins}");
}
