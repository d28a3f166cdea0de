//! The log backend tells its user when state that eviction cannot free
//! (the index of cold keys, timers, unwritten segments) outgrows a core's
//! memory budget: a warning naming each part, counted in
//! `state_memory_over_budget_warnings`, and none when the budget holds it.

mod common;

use brisk::prelude::*;
use brisk::{DiscardSink, StateBackendKind};

/// Records; each of [`KEYS`] keys gets several.
const EVENTS: u64 = 60_000;
const KEYS: u64 = 30_000;

/// Per record: a count in a `ValueState` and a timer at the end of time,
/// so every key holds one timer until the input ends.
#[derive(Clone, Default)]
struct Remind {
    count: ValueState<u64>,
}

impl KeyedProcessFunction<u64, u64, u64> for Remind {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.count = ctx.value_state("count")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        _i: u64,
        ctx: &mut Context<'_, u64>,
        _out: &mut Collector<'_, u64>,
    ) -> Result<(), UserError> {
        let mut c = ctx.value(&self.count);
        let n = c.get().copied().unwrap_or(0) + 1;
        c.set(n);
        ctx.register_event_time_timer(1 << 40);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _timestamp: i64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), UserError> {
        out.collect(ctx.value(&self.count).get().copied().unwrap_or(0));
        Ok(())
    }
}

/// The warnings a one-core run with a budget of `budget` bytes counts.
fn warnings(budget: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let config = JobConfig {
        pin_cores: false,
        state_backend: StateBackendKind::Log,
        state_memory_budget_bytes: budget,
        state_dir: Some(dir.path().join("state")),
        ..JobConfig::with_cores(1)
    };
    let result = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        // About 0.4 s of processing time: the watch looks every 100 ms.
        env.from_source(GeneratorSource::new(EVENTS, |i| i).with_rate(150_000.0))
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_monotonous_timestamps()
                    .with_timestamp_assigner(|i: &u64, _| *i as i64),
            )
            .key_by(|i: &u64| *i % KEYS)
            .process(Remind::default())
            .sink_to(DiscardSink);
        env.execute()
    })
    .unwrap();
    assert_eq!(result.metrics.total("records_in"), KEYS, "each key's timer fired at the end, into the sink");
    result.metrics.total("state_memory_over_budget_warnings")
}

#[test]
fn state_that_eviction_cannot_free_past_the_budget_is_reported() {
    // 30,000 timers and as many cold keys' index slots: far past 64 KiB.
    let small = warnings(64 << 10);
    println!("{small} warnings at a 64 KiB budget");
    assert!(small >= 1, "{small} warnings at a 64 KiB budget");
    // Each warning needs that part to have doubled since the last.
    assert!(small <= 8, "{small} warnings at a 64 KiB budget");
    assert_eq!(warnings(256 << 20), 0, "at a 256 MiB budget");
}
