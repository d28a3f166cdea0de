//! Helpers shared by the integration tests (each test crate uses a subset).
#![allow(dead_code)]

pub mod kafka;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// The seed of a randomized test: `BRISK_TEST_SEED` or a fresh one, printed
/// so that a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("BRISK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("seed {seed} (rerun with BRISK_TEST_SEED={seed})");
    seed
}

/// Runs `job` on its own thread and returns its result, failing instead of
/// hanging if it does not finish within `secs` seconds.
pub fn run_guarded<R: Send + 'static>(secs: u64, job: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job());
    });
    rx.recv_timeout(Duration::from_secs(secs)).unwrap_or_else(|_| {
        panic!("the job did not end within {secs} s (is a step waiting for output that never comes?)")
    })
}

/// The binary of example `name`: `cargo test` builds the examples, beside
/// the test binaries.
pub fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("examples").join(name);
    assert!(bin.exists(), "{} not built (cargo test builds examples)", bin.display());
    bin
}

/// The committed output of a transactional file sink: the lines of every
/// `part-*` file in `dir` (none if `dir` does not exist), sorted.
pub fn committed_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return lines };
    for e in entries {
        let e = e.unwrap();
        if e.file_name().to_str().unwrap().starts_with("part-") {
            lines.extend(std::fs::read_to_string(e.path()).unwrap().lines().map(str::to_string));
        }
    }
    lines.sort();
    lines
}

/// A keyed process function keeping each key's running sum in a
/// `ValueState` (state on every record) and emitting it.
#[derive(Default, Clone)]
pub struct Sum {
    sum: brisk::prelude::ValueState<u64>,
}

impl brisk::prelude::KeyedProcessFunction<u64, u64, u64> for Sum {
    fn open(
        &mut self,
        ctx: &mut brisk::prelude::OpenContext<'_, u64>,
    ) -> Result<(), brisk::prelude::UserError> {
        self.sum = ctx.value_state("sum")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        i: u64,
        ctx: &mut brisk::prelude::Context<'_, u64>,
        out: &mut brisk::prelude::Collector<'_, u64>,
    ) -> Result<(), brisk::prelude::UserError> {
        let mut s = ctx.value(&self.sum);
        let sum = s.get().copied().unwrap_or(0) + i;
        s.set(sum);
        out.collect(sum);
        Ok(())
    }
}
