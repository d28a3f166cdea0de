//! A checkpoint whose state file a core cannot write (here: the file-size
//! limit of the process, `EFBIG`, standing in for a full disk or an I/O
//! error) is abandoned; the checkpoints completed before it stay intact and
//! restorable, the job goes on, and its committed output is exact.
//!
//! Its own test binary: the file-size limit applies to the whole process.

mod common;

use std::path::Path;

use brisk::prelude::*;
use brisk::{JobError, RestoreFrom};

const EVENTS: u64 = 60_000;
/// State files larger than this cannot be written.
const FILE_LIMIT: u64 = 48 << 10;

fn set_file_limit(bytes: u64) {
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

fn run(dir: &Path, restore: Option<RestoreFrom>, tolerable: u32) -> Result<brisk::JobResult, JobError> {
    let config = JobConfig {
        checkpoint_dir: Some(dir.join("chk")),
        checkpoint_interval_ms: 20,
        tolerable_checkpoint_failures: tolerable,
        restore,
        pin_cores: false,
        ..JobConfig::with_cores(2)
    };
    let out = dir.join("out");
    common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        // One 10 s window holds every element (event time i / 10 ms), so
        // the window state grows with the input: early checkpoints fit
        // under the limit, later ones do not.
        env.from_source(GeneratorSource::new(EVENTS, |i| (i % 4, i as i64 / 10)).with_rate(40_000.0))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|e: &(u64, i64), _| e.1),
            )
            .key_by(|e: &(u64, i64)| e.0)
            .window(WindowAssigner::tumbling(10_000))
            .process(|key: &u64, _: &WindowContext, items: &[(u64, i64)], out: &mut Collector<'_, String>| {
                out.collect(format!("{key},{}", items.len()));
                Ok::<(), UserError>(())
            })
            .sink_to(TransactionalFileSink::lines(&out));
        env.execute()
    })
}

#[test]
fn a_state_file_that_cannot_be_written_fails_only_its_checkpoint() {
    // EFBIG instead of the signal that would kill the process.
    // SAFETY: a plain libc call with valid arguments.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk");

    // Checkpoints fail once the state outgrows the limit; after 4 in a row
    // (3 tolerated) the job fails, naming the file and the error.
    set_file_limit(FILE_LIMIT);
    let err = run(dir.path(), None, 3).unwrap_err().to_string();
    set_file_limit(libc::RLIM_INFINITY);
    println!("{err}");
    assert!(err.contains("4 consecutive checkpoints failed"), "{err}");
    assert!(err.contains("File too large") && err.contains("op-") && err.contains(".state"), "{err}");

    // The checkpoints completed before the failures are intact.
    let retained = retained(&chk);
    println!("retained complete checkpoints: {retained:?}");
    assert_eq!(retained.len(), 2, "{retained:?}");
    for id in &retained {
        brisk::checkpoint::store::load(&chk.join(format!("chk-{id}")))
            .unwrap_or_else(|e| panic!("completed checkpoint {id} no longer loads: {e}"));
    }
    let committed_before = common::committed_lines(&dir.path().join("out")).len();
    assert_eq!(committed_before, 0, "the window had not fired: nothing to commit yet");

    // Without the limit the job resumes from the newest of them and its
    // output is exact.
    let result = run(dir.path(), Some(RestoreFrom::Latest), 3).unwrap();
    assert_eq!(result.restored.as_ref().map(|r| r.checkpoint), retained.last().copied());
    let got = common::committed_lines(&dir.path().join("out"));
    let want: Vec<String> =
        (0..4).map(|k| format!("{k},{}", (0..EVENTS).filter(|i| i % 4 == k).count())).collect();
    assert_eq!(got, want);
}

/// Ids of the complete checkpoints under `root` (a `_manifest` each).
fn retained(root: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_manifest").exists().then_some(id)
        })
        .collect();
    ids.sort();
    ids
}
