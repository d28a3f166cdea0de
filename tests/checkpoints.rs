//! Checkpoint failure handling and the restart strategy, in process: a
//! checkpoint whose state file cannot be written is abandoned without
//! touching completed ones and the job goes on (up to the tolerated number
//! of consecutive failures); a user-function failure restarts the job from
//! its last checkpoint; either way the committed output is exact.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use brisk::JobResult;
use brisk::prelude::*;

const EVENTS: u64 = 20_000;

/// Tumbling 100 ms windows of `(key, ts)` events, 5 ms apart, counted per
/// key; each result line is `key,window_start,count`.
fn job(
    config: JobConfig,
    out: &Path,
    fail_at: Option<(u64, Arc<AtomicBool>)>,
) -> Result<JobResult, JobError> {
    let env = StreamEnv::new(config);
    let committed_dir = out.to_path_buf();
    env.from_source(GeneratorSource::new(EVENTS, |i| (i % 37, i as i64 * 5)).with_rate(20_000.0))
        .map(move |e: (u64, i64)| {
            // Fails at the first event from `at` on once a checkpoint has
            // committed output, so that a restart has a checkpoint to resume
            // from however slowly the machine runs.
            if let Some((at, armed)) = &fail_at
                && e.1 >= *at as i64 * 5
                && armed.load(Ordering::SeqCst)
                && !common::committed_lines(&committed_dir).is_empty()
                && armed.swap(false, Ordering::SeqCst)
            {
                panic!("injected failure at event {at}");
            }
            e
        })
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(u64, i64), _| e.1),
        )
        .key_by(|e: &(u64, i64)| e.0)
        .window(WindowAssigner::tumbling(100))
        .process(|key: &u64, ctx: &WindowContext, items: &[(u64, i64)], out: &mut Collector<'_, String>| {
            out.collect(format!("{key},{},{}", ctx.window.start(), items.len()));
            Ok::<(), UserError>(())
        })
        .sink_to(TransactionalFileSink::lines(out));
    env.execute()
}

fn expected() -> Vec<String> {
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..EVENTS {
        *counts.entry((i % 37, (i as i64 * 5) / 100 * 100)).or_insert(0) += 1;
    }
    let mut v: Vec<String> = counts.iter().map(|((k, w), n)| format!("{k},{w},{n}")).collect();
    v.sort();
    v
}

fn committed(out: &Path) -> Vec<String> {
    common::committed_lines(out)
}

fn config(dir: &Path, cores: usize) -> JobConfig {
    JobConfig {
        checkpoint_dir: Some(dir.join("chk")),
        checkpoint_interval_ms: 20,
        pin_cores: false,
        ..JobConfig::with_cores(cores)
    }
}

/// Makes checkpoints 1 and 2 fail: a file stands where each one's
/// directory must be created (as a full or failing disk would refuse it).
fn plant_obstacles(chk: &Path) {
    std::fs::create_dir_all(chk).unwrap();
    for id in 1..=2 {
        std::fs::write(chk.join(format!("chk-{id}")), b"in the way").unwrap();
    }
}

#[test]
fn failed_checkpoints_are_abandoned_and_the_job_goes_on() {
    for cores in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let chk = dir.path().join("chk");
        plant_obstacles(&chk);
        let out = dir.path().join("out");
        let result = common::run_guarded(60, {
            let (config, out) = (config(dir.path(), cores), out.clone());
            move || job(config, &out, None)
        })
        .unwrap();
        let ids: Vec<u64> = result.checkpoints.iter().map(|c| c.id).collect();
        println!("{cores} cores: checkpoints completed {ids:?}");
        // The fault fired: 1 and 2 failed; later ones completed.
        assert_eq!(result.checkpoints_failed, 2, "{ids:?}");
        assert_eq!(ids.first(), Some(&3), "{ids:?}");
        assert_eq!(committed(&out), expected(), "{cores} cores");
    }
}

#[test]
fn too_many_consecutive_checkpoint_failures_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    plant_obstacles(&dir.path().join("chk"));
    let config = JobConfig { tolerable_checkpoint_failures: 1, ..config(dir.path(), 1) };
    let out = dir.path().join("out");
    let err = common::run_guarded(60, move || job(config, &out, None)).unwrap_err().to_string();
    assert!(
        err.contains("2 consecutive checkpoints failed") && err.contains("tolerable_checkpoint_failures = 1"),
        "{err}"
    );
    assert!(err.contains("chk-2"), "the error names the directory: {err}");
}

#[test]
fn a_user_failure_restarts_from_the_last_checkpoint() {
    for cores in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let config = JobConfig { restart_attempts: 2, restart_delay_ms: 10, ..config(dir.path(), cores) };
        let out = dir.path().join("out");
        let armed = Arc::new(AtomicBool::new(true));
        let result = common::run_guarded(60, {
            let (out, armed) = (out.clone(), armed.clone());
            move || job(config, &out, Some((EVENTS * 3 / 4, armed)))
        })
        .unwrap();
        assert!(!armed.load(Ordering::SeqCst), "the failure was injected");
        assert_eq!(result.restarts, 1);
        // The restarted run resumed from a checkpoint: it produced only part
        // of the results (counters are the last run's; a restart from
        // scratch would produce them all).
        let produced = result.metrics.total("records_in") as usize;
        println!("{cores} cores: {produced} of {} results after the restart", expected().len());
        assert!(produced < expected().len(), "{produced} results after the restart");
        assert_eq!(committed(&out), expected(), "{cores} cores");
    }
    // Without restarts the same failure fails the job.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let config = config(dir.path(), 1);
    let err =
        common::run_guarded(60, move || job(config, &out, Some((100, Arc::new(AtomicBool::new(true))))))
            .unwrap_err()
            .to_string();
    assert!(err.contains("injected failure at event 100"), "{err}");
}

/// Flink's stop without `--drain`: stopping with a savepoint ends the inputs
/// without the final watermark, so no window fires that the input did not
/// complete; the restored job then fires each window once, complete.
#[test]
fn stop_with_savepoint_fires_no_incomplete_window() {
    const N: u64 = 20_000;
    // Event time stays inside the first 10 s window.
    let build = |env: &StreamEnv, signal: Option<std::sync::mpsc::SyncSender<()>>| {
        env.from_source(
            GeneratorSource::new(N, |i| (i % 37, i as i64 / 4)).with_splits(2).with_rate(20_000.0),
        )
        .map(move |e: (u64, i64)| {
            if let Some(tx) = &signal
                    // Event N / 4: halfway through the first of two splits.
                    && e.1 == (N / 4 / 4) as i64
            {
                let _ = tx.try_send(());
            }
            e
        })
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(u64, i64), _| e.1),
        )
        .key_by(|e: &(u64, i64)| e.0)
        .window(WindowAssigner::tumbling(10_000))
        .process(
            |key: &u64, _: &WindowContext, items: &[(u64, i64)], out: &mut Collector<'_, (u64, usize)>| {
                out.collect((*key, items.len()));
                Ok::<(), UserError>(())
            },
        )
        .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let savepoint = dir.path().join("savepoint");
    let (tx, half) = std::sync::mpsc::sync_channel(1);
    let (send_control, control) = std::sync::mpsc::sync_channel(1);
    let first = std::thread::spawn({
        let config = config(dir.path(), 2);
        move || {
            let env = StreamEnv::new(config);
            let out = build(&env, Some(tx));
            send_control.send(env.control()).unwrap();
            env.execute().map(|_| out.take())
        }
    });
    let control: brisk::JobControl = control.recv().unwrap();
    half.recv().expect("the job reaches event N / 4");
    control.stop_with_savepoint(&savepoint).unwrap();
    let emitted = first.join().unwrap().unwrap();
    assert_eq!(emitted, Vec::new(), "a stop fired windows the input had not completed");

    let config = JobConfig { restore: Some(RestoreFrom::Path(savepoint)), ..config(dir.path(), 1) };
    let mut got = common::run_guarded(60, move || {
        let env = StreamEnv::new(config);
        let out = build(&env, None);
        env.execute().map(|_| out.take())
    })
    .unwrap();
    got.sort();
    let want: Vec<(u64, usize)> = (0..37).map(|k| (k, (0..N).filter(|i| i % 37 == k).count())).collect();
    assert_eq!(got, want, "each window fires once, complete, after the restore");
}
