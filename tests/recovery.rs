//! Checkpoints proven by killing: shared/RELIABILITY.md R1 (kill -9 at random
//! moments, restart, same committed output), R3 (savepoint at 2 cores,
//! restore at 1, and 1 → 2) and R6 (corrupt checkpoint files detected on
//! restore, fallback only when it cannot duplicate committed output).
//!
//! The job is the `window_csv` example run as a user runs it, on seeded
//! input whose disorder stays within the watermark bound, so the failure-free
//! result does not depend on timing. A kill is real fault injection: the
//! test follows the job's own log until the running incarnation reports a
//! completed checkpoint, then lets it run a seeded random 0–150 ms more
//! before SIGKILL. That delay picks the moment of the fault; no step waits
//! on time for progress.

mod common;

use common::example;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Rows `key,timestamp,value`: 10 ms apart, jittered by < 50 ms, so a
/// bound of 100 ms makes no element late.
fn write_input(path: &Path, rows: usize, keys: u64, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::new();
    for i in 0..rows {
        let ts = i as i64 * 10 + rng.i64(0..50);
        out.push_str(&format!("k{},{ts},{}.{}\n", rng.u64(0..keys), rng.u32(0..1000), rng.u32(0..10)));
    }
    std::fs::write(path, out).unwrap();
}

/// Watermarks after every event: windows fire continuously, so nearly every
/// checkpoint commits output (periodic watermarks would fire every 200 ms).
const WINDOW: [&str; 5] = ["--window", "tumble:1000", "--out-of-orderness", "100", "--watermark-every-event"];

fn reference(dir: &Path, input: &Path, window: &[&str]) -> Vec<String> {
    let out = dir.join("reference.csv");
    let status = Command::new(example("window_csv"))
        .args(["--input", input.to_str().unwrap(), "--cores", "2", "--output", out.to_str().unwrap()])
        .args(window)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    sorted_lines(&std::fs::read_to_string(out).unwrap())
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// `cat OUT/part-*`, sorted; hidden (uncommitted) files are not read.
fn committed(out: &Path) -> Vec<String> {
    common::committed_lines(out)
}

/// Lost and duplicated rows of `got` against `want` (both sorted).
fn diff(want: &[String], got: &[String]) -> (usize, usize) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for w in want {
        *count.entry(w).or_default() += 1;
    }
    for g in got {
        *count.entry(g).or_default() -= 1;
    }
    let lost = count.values().filter(|&&c| c > 0).map(|&c| c as usize).sum();
    let dup = count.values().filter(|&&c| c < 0).map(|&c| (-c) as usize).sum();
    (lost, dup)
}

/// Complete checkpoints (ids with a manifest) under `chk`.
fn complete_ids(chk: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(chk)
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
                e.path().join("_manifest").exists().then_some(id)
            })
            .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// A running `window_csv` and the lines of its log, read on a helper
/// thread (the channel closes when the job exits).
struct Job {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

/// A run of the job with `WINDOW`'s windows (see [`start_job_with`]).
fn start_job(input: &Path, out: &Path, chk: &Path, cores: &str, rate: Option<&str>, extra: &[&str]) -> Job {
    start_job_with(input, out, chk, cores, rate, &WINDOW, extra)
}

/// A run of the job with the windows `window` names, checkpointing every
/// 40 ms into `chk`, with `extra` arguments.
fn start_job_with(
    input: &Path,
    out: &Path,
    chk: &Path,
    cores: &str,
    rate: Option<&str>,
    window: &[&str],
    extra: &[&str],
) -> Job {
    let mut cmd = Command::new(example("window_csv"));
    cmd.args(["--input", input.to_str().unwrap(), "--cores", cores, "--output", out.to_str().unwrap()])
        .args(window)
        .args(["--checkpoint-dir", chk.to_str().unwrap(), "--checkpoint-interval-ms", "40"])
        .args(extra)
        // The coordinator logs each completed checkpoint at info, and the
        // commit of its output at debug.
        .env("RUST_LOG", "warn,brisk_engine::checkpoint=info,brisk_engine::checkpoint::coordinator=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(r) = rate {
        cmd.args(["--rate", r]);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Job { child, log, seen: Vec::new() }
}

impl Job {
    /// Follows the log until the job reports completing a checkpoint newer
    /// than `after`; `false` if the job exited first.
    fn wait_for_checkpoint(&mut self, after: u64) -> bool {
        loop {
            let line = match self.log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => panic!("no checkpoint completed within 60 s"),
            };
            let id = line
                .split_once("checkpoint ")
                .and_then(|(_, rest)| rest.split_once(" complete"))
                .and_then(|(id, _)| id.parse::<u64>().ok());
            self.seen.push(line);
            if id.is_some_and(|id| id > after) {
                return true;
            }
        }
    }

    /// Follows the log until a checkpoint numbered at least `at_least`
    /// commits output files; its id, or `None` if the job exited first.
    fn wait_for_commit(&mut self, at_least: u64) -> Option<u64> {
        loop {
            let line = match self.log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => panic!("no output committed within 60 s"),
            };
            // `checkpoint ID: output committed (N files)`
            let commit = line.split_once("checkpoint ").and_then(|(_, rest)| {
                let (id, rest) = rest.split_once(": output committed (")?;
                let (files, _) = rest.split_once(" files)")?;
                Some((id.parse::<u64>().ok()?, files.parse::<usize>().ok()?))
            });
            self.seen.push(line);
            if let Some((id, _)) = commit.filter(|&(id, files)| id >= at_least && files > 0) {
                return Some(id);
            }
        }
    }

    /// Sends `signal` to the job.
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(r, 0, "kill({signal}) failed");
    }

    /// Lets the job run for `d` more, then SIGKILLs it; `false` if it had
    /// already exited.
    fn kill_after(mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match self.log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if self.child.try_wait().unwrap().is_some() {
            return false;
        }
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        true
    }

    /// Waits for the job to end; it must succeed. Returns its log.
    fn finish(mut self) -> String {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.log.iter());
        let log = self.seen.join("\n");
        assert!(status.success(), "window_csv failed: {log}");
        log
    }
}

#[test]
fn r1_kill_9_at_random_moments_then_restore_gives_the_failure_free_output() {
    r1(&[], "memory backend");
}

/// R1 with the window rows on the log backend at the smallest budget: rows
/// are evicted and read back all the time, checkpoints are incremental
/// (segment files shared between checkpoints, torn by the kills), and every
/// restore changes the core count.
#[test]
fn r1_on_the_log_backend_with_incremental_checkpoints() {
    r1(&["--state-backend", "log", "--state-memory-budget", "4096"], "log backend");
}

/// R1 with session windows on the log backend: each key's merging-window
/// set and timers change from checkpoint to checkpoint and go into the
/// checkpoints' timer files as changes (a session of a key lasts about as
/// long as several checkpoints).
#[test]
fn r1_session_windows_on_the_log_backend() {
    let window = ["--window", "session:3000", "--out-of-orderness", "100", "--watermark-every-event"];
    r1_with(&window, &["--state-backend", "log", "--state-memory-budget", "4096"], "sessions, log backend");
}

/// R1 with allowed lateness on the log backend: each window's row outlives
/// its end timer under a cleanup timer of its own, 3 s of event time later,
/// across several checkpoints and kills (the operator registers both
/// timers by the rows' memos, without looking them up).
#[test]
fn r1_with_allowed_lateness_on_the_log_backend() {
    let window = [
        "--window",
        "tumble:1000",
        "--out-of-orderness",
        "100",
        "--allowed-lateness",
        "3000",
        "--watermark-every-event",
    ];
    r1_with(
        &window,
        &["--state-backend", "log", "--state-memory-budget", "4096"],
        "allowed lateness, log backend",
    );
}

fn r1(backend: &[&str], what: &str) {
    r1_with(&WINDOW, backend, what);
}

fn r1_with(window: &[&str], backend: &[&str], what: &str) {
    let seed = common::seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    write_input(&input, 60_000, 200, seed);
    let want = reference(dir.path(), &input, window);
    let (out, chk) = (dir.path().join("out"), dir.path().join("chk"));
    let mut kills = 0;
    let mut recoveries = Vec::new();
    let mut incarnation = 0;
    let mut last_log = String::new();
    loop {
        incarnation += 1;
        assert!(incarnation < 200, "the job never finished");
        let cores = if incarnation % 2 == 0 { "2" } else { "1" };
        let restore: &[&str] = if incarnation > 1 { &["--restore", "latest"] } else { &[] };
        let started = Instant::now();
        let before = complete_ids(&chk).last().copied().unwrap_or(0);
        let args: Vec<&str> = restore.iter().chain(backend).copied().collect();
        let mut job = start_job_with(&input, &out, &chk, cores, Some("10000"), window, &args);
        if kills >= 10 {
            last_log = job.finish();
            break;
        }
        if !job.wait_for_checkpoint(before) {
            last_log = job.finish(); // ended before a checkpoint of its own: no kill
            break;
        }
        recoveries.push(started.elapsed());
        if job.kill_after(Duration::from_millis(rng.u64(0..150))) {
            kills += 1;
        } else {
            break; // it finished on its own (and succeeded: checked below)
        }
    }
    let got = committed(&out);
    let (lost, dup) = diff(&want, &got);
    recoveries.sort();
    println!(
        "R1 ({what}): {kills} kills landed over {incarnation} runs (1 and 2 cores alternating); \
         {} rows committed, {} expected, lost = {lost}, duplicates = {dup}; \
         restart to first own checkpoint p50 {:?}",
        got.len(),
        want.len(),
        recoveries.get(recoveries.len() / 2)
    );
    assert!(kills >= 10, "only {kills} kills landed before the input ran out");
    if !backend.is_empty() {
        // The last run, restored from a checkpoint, read evicted rows back.
        let line = last_log.lines().find(|l| l.contains("window rows evicted")).expect("log backend summary");
        println!("last run: {line}");
        let read_back: u64 =
            line.split(", ").nth(1).and_then(|p| p.split(' ').next()).unwrap().parse().unwrap();
        assert!(read_back > 0, "{line}");
    }
    assert_eq!((lost, dup), (0, 0));
    assert_eq!(got, want);
}

#[test]
fn r3_stop_with_savepoint_then_restore_at_another_core_count() {
    let seed = common::seed();
    for (from, to) in [("2", "1"), ("1", "2")] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        write_input(&input, 20_000, 100, seed);
        let want = reference(dir.path(), &input, &WINDOW);
        let (out, chk, sp) = (dir.path().join("out"), dir.path().join("chk"), dir.path().join("savepoint"));
        let mut job = start_job(&input, &out, &chk, from, Some("10000"), &["--control-stdin"]);
        assert!(job.wait_for_checkpoint(0), "the job ended before its first checkpoint");
        writeln!(job.child.stdin.as_mut().unwrap(), "stop {}", sp.display()).unwrap();
        let stderr = job.finish();
        assert!(sp.join("_manifest").exists(), "no savepoint in {}: {stderr}", sp.display());
        let partial = committed(&out);
        assert!(partial.len() < want.len(), "the job finished before the savepoint ({from} cores)");
        start_job(&input, &out, &chk, to, None, &["--restore", sp.to_str().unwrap()]).finish();
        let got = committed(&out);
        println!(
            "R3 {from} → {to} cores: {} rows committed before the savepoint, {} in all, {} expected",
            partial.len(),
            got.len(),
            want.len()
        );
        assert_eq!(diff(&want, &got), (0, 0), "{from} → {to} cores");
    }
}

/// A killed run with at least three complete checkpoints, and output
/// committed after the older ones. With `after_commit`, the kill lands
/// after the newest complete checkpoint's output was committed: the job is
/// stopped (SIGSTOP, so the files hold still) just after a commit, and let
/// go again if a newer checkpoint completed in between.
fn killed_run(dir: &Path, input: &Path, after_commit: bool) -> (PathBuf, PathBuf, Vec<u64>) {
    let (out, chk) = (dir.join("out"), dir.join("chk"));
    let mut job = start_job(input, &out, &chk, "2", Some("10000"), &[]);
    for _ in 0..3 {
        let last = complete_ids(&chk).last().copied().unwrap_or(0);
        assert!(job.wait_for_checkpoint(last), "the job ended too early");
    }
    if after_commit {
        loop {
            let newest = complete_ids(&chk).last().copied().unwrap_or(0);
            let committed = job.wait_for_commit(newest).expect("the job ended too early");
            job.signal(libc::SIGSTOP);
            if complete_ids(&chk).last() == Some(&committed) {
                break;
            }
            job.signal(libc::SIGCONT);
        }
    }
    assert!(job.kill_after(Duration::ZERO), "the job ended too early");
    let ids = complete_ids(&chk);
    assert!(ids.len() >= 2, "retains at least two checkpoints: {ids:?}");
    (out, chk, ids)
}

fn restore_error(input: &Path, out: &Path, chk: &Path) -> String {
    let mut job = start_job(input, out, chk, "2", None, &["--restore", "latest"]);
    let status = job.child.wait().unwrap();
    assert!(!status.success(), "restore from a corrupt checkpoint succeeded");
    job.log.iter().collect::<Vec<_>>().join("\n")
}

fn state_file(chk: &Path, id: u64) -> PathBuf {
    let dir = chk.join(format!("chk-{id}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "state"))
        .collect();
    files.sort();
    // The window operator's state (the largest file).
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    files.remove(0)
}

#[test]
fn r6_corrupt_checkpoints_are_detected_naming_the_file() {
    let seed = common::seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    write_input(&input, 60_000, 200, seed);
    let want = reference(dir.path(), &input, &WINDOW);
    let (mut detected, mut refused) = (0, 0);
    for damage in ["flip", "truncate", "missing", "manifest"] {
        let case = dir.path().join(damage);
        std::fs::create_dir_all(&case).unwrap();
        // Two cases are killed after the newest checkpoint's commit, so the
        // refusal below runs; the others wherever the kill lands.
        let after_commit = matches!(damage, "flip" | "truncate");
        let (out, chk, ids) = killed_run(&case, &input, after_commit);
        let newest = *ids.last().unwrap();
        let victim = if damage == "manifest" {
            chk.join(format!("chk-{newest}")).join("_manifest")
        } else {
            state_file(&chk, newest)
        };
        let mut bytes = std::fs::read(&victim).unwrap();
        match damage {
            "flip" | "manifest" => {
                let at = rng.usize(0..bytes.len());
                bytes[at] ^= 1 << rng.u32(0..8);
                std::fs::write(&victim, &bytes).unwrap();
            }
            "truncate" => std::fs::write(&victim, &bytes[..rng.usize(0..bytes.len())]).unwrap(),
            _ => std::fs::remove_file(&victim).unwrap(),
        }
        // If output was committed after the previous checkpoint, falling
        // back would write it again: the restore must refuse, naming the
        // file. (A kill between the manifest and the commit leaves none.)
        let previous = ids[ids.len() - 2];
        let newer_output = |out: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_str().unwrap();
                    n.strip_prefix("part-")
                        .and_then(|r| r.split('-').next()?.parse::<u64>().ok())
                        .is_some_and(|id| id > previous)
                })
                .collect()
        };
        let name = victim.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            !after_commit || !newer_output(&out).is_empty(),
            "{damage}: checkpoint {newest} committed nothing"
        );
        if !newer_output(&out).is_empty() {
            let err = restore_error(&input, &out, &chk);
            assert!(err.contains(&name), "{damage}: the error does not name {name}: {err}");
            assert!(err.contains("would be written again"), "{damage}: {err}");
            refused += 1;
            // With that output moved away, falling back is safe.
            for p in newer_output(&out) {
                std::fs::remove_file(p).unwrap();
            }
        }
        // The run completes from the previous checkpoint with the exact
        // output, saying which checkpoint it skipped and why.
        let stderr = start_job(&input, &out, &chk, "2", None, &["--restore", "latest"]).finish();
        assert!(
            stderr.contains(&format!("checkpoint {newest} skipped")) && stderr.contains(&name),
            "{damage}: {stderr}"
        );
        detected += 1;
        assert_eq!(diff(&want, &committed(&out)), (0, 0), "{damage}: fallback output");
    }
    println!(
        "R6: {detected} of 4 corruptions detected and named; {refused} refused a fallback that would duplicate output"
    );
    assert!(refused >= 2, "the refusal path ran only {refused} times");
    assert_eq!(detected, 4);
}
