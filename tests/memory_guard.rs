//! The memory guard under the log backend: a core's budget is a soft limit
//! for the process.
//!
//! Its own test binary: the guard measures the whole process, whose memory
//! other tests' jobs (and what their allocations leave resident) would
//! change.

mod common;

use brisk::prelude::*;
use brisk::{DiscardSink, StateBackendKind};

/// Under the log backend a core's budget is a soft limit for the process
/// (engine/src/runtime/memory.rs): memory no budget sees, here 256 MiB of
/// ballast a map function takes at its first record, lowers the state's
/// limit, down to half the budget. Ballast held before the job started
/// does not (an embedding service's own memory), and `memory_guard: false`
/// turns the guard off.
#[test]
fn memory_the_job_takes_outside_the_budgets_lowers_the_state_limit() {
    const BUDGET: usize = 16 << 20;
    let lowest = |guard: bool, ballast_in_job: bool| {
        let dir = tempfile::tempdir().unwrap();
        let config = JobConfig {
            pin_cores: false,
            state_backend: StateBackendKind::Log,
            state_memory_budget_bytes: BUDGET,
            state_dir: Some(dir.path().join("state")),
            memory_guard: guard,
            ..JobConfig::with_cores(1)
        };
        // Written, so resident; taken before the job or at its first record.
        let before = (!ballast_in_job).then(|| vec![1u8; 256 << 20]);
        let result = common::run_guarded(120, move || {
            let env = StreamEnv::new(config);
            let mut ballast = None;
            // About half a second of processing time: the guard looks every
            // 20 ms.
            env.from_source(GeneratorSource::new(100_000, |i| i).with_rate(200_000.0))
                .map(move |i: u64| {
                    if ballast_in_job && ballast.is_none() {
                        ballast = Some(vec![1u8; 256 << 20]);
                    }
                    i + u64::from(ballast.as_ref().map_or(0, |b| b[i as usize % b.len()]))
                })
                .key_by(|i: &u64| *i % 1000)
                .process(common::Sum::default())
                .sink_to(DiscardSink);
            env.execute()
        })
        .unwrap();
        std::hint::black_box(&before);
        result.metrics.total("state_memory_limit_lowest_bytes") as usize
    };
    assert_eq!(lowest(true, true), BUDGET / 2, "256 MiB taken by the job outside the budget");
    assert_eq!(lowest(false, true), BUDGET, "the guard turned off");
    assert!(lowest(true, false) > BUDGET / 2, "256 MiB held before the job does not count");
}
