//! Incremental checkpoints on the log backend refer to the segments earlier
//! checkpoints wrote instead of copying them.
//!
//! The input writes 2,000 keys once and then updates 5 hot keys for the rest
//! of the run: the segment a checkpoint wrote the cold keys into stays live
//! (not compacted), so every later checkpoint must refer to it and add only
//! the hot keys' new records.

mod common;

use brisk::prelude::*;
use brisk::{DiscardSink, StateBackendKind};

const COLD: u64 = 2_000;
const HOT: u64 = 5;
const EVENTS: u64 = COLD + 20_000;

/// 2 cores, the log backend with 4 MiB per core, checkpoints every 20 ms.
fn checkpointed_on_log(dir: &std::path::Path) -> JobConfig {
    JobConfig {
        checkpoint_dir: Some(dir.join("chk")),
        checkpoint_interval_ms: 20,
        pin_cores: false,
        state_backend: StateBackendKind::Log,
        state_memory_budget_bytes: 4 << 20,
        state_dir: Some(dir.join("state")),
        ..JobConfig::with_cores(2)
    }
}

#[test]
fn later_checkpoints_refer_to_the_segments_of_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkpointed_on_log(dir.path());
    let result = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        // Keys 0..COLD once each, then only the HOT keys, at a rate that
        // spreads the hot phase over about a second of 20 ms checkpoints.
        env.from_source(GeneratorSource::new(EVENTS, |i| i).with_rate(20_000.0))
            .key_by(|i: &u64| if *i < COLD { *i } else { COLD + i % HOT })
            .process(common::Sum::default())
            .sink_to(DiscardSink);
        env.execute()
    })
    .unwrap();
    let sizes: Vec<(u64, u64)> = result.checkpoints.iter().map(|c| (c.bytes, c.full_bytes)).collect();
    println!("checkpoints (added / whole state, bytes): {sizes:?}");
    // Each core noted what its checkpoints held at once (the memory guard
    // keeps that free): at least the open segment its flush left charged.
    let burst = result.metrics.total("state_checkpoint_burst_peak_bytes") as usize;
    assert!(
        burst >= 2 * brisk::config::STATE_SEGMENT_BYTES,
        "checkpoint bursts noted: {burst} bytes on 2 cores"
    );
    // A checkpoint with every cold key: at least COLD records of the log.
    let cold_bytes = COLD * 20;
    let first_full =
        sizes.iter().position(|&(_, whole)| whole >= cold_bytes).expect("the cold keys were checkpointed");
    // Every later checkpoint of the running job holds them too (one taken
    // after the input ended has no operator state left) and adds only what
    // changed since the previous one.
    let later: Vec<_> = sizes[first_full + 1..].iter().filter(|&&(_, whole)| whole >= cold_bytes).collect();
    assert!(later.len() >= 2, "checkpoints after the cold keys were written: {sizes:?}");
    for &&(added, whole) in &later {
        assert!(added * 4 < whole, "a later checkpoint refers to earlier segments: {sizes:?}");
    }
}

/// [`common::Sum`], and a timer per key that fires only at the end of the input:
/// the timers of the cold keys do not change after they are set.
#[derive(Default, Clone)]
struct SumAndRemind(common::Sum);

impl KeyedProcessFunction<u64, u64, u64> for SumAndRemind {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        self.0.open(ctx)
    }

    fn process_element(
        &mut self,
        i: u64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), UserError> {
        ctx.register_event_time_timer(1 << 40);
        self.0.process_element(i, ctx, out)
    }
}

/// Timers are checkpointed by their changes, not whole each time: 50,000
/// keys arrive at a steady rate (over 2.5 s) and set a timer each, which then stays. A
/// checkpoint adds the new keys' records and timers, so the last ones add
/// about as much per millisecond since the previous checkpoint as the first
/// ones; written whole, the timers made the last checkpoints add over 3
/// times what the first ones did. (Per millisecond: on a loaded machine the
/// checkpoints come further apart, and each adds more keys.)
#[test]
fn checkpoints_add_the_new_timers_not_all_of_them() {
    const KEYS: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let config = checkpointed_on_log(dir.path());
    let result = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        env.from_source(GeneratorSource::new(KEYS, |i| i).with_rate(20_000.0))
            .key_by(|i: &u64| *i)
            .process(SumAndRemind::default())
            .sink_to(DiscardSink);
        env.execute()
    })
    .unwrap();
    // Checkpoints while the keys arrived, in order, as (bytes added, whole
    // state, ms since the previous checkpoint was triggered). The whole
    // state grows until the input ends; a checkpoint after that holds no
    // operator state, so it is less than half the one before. (A compaction
    // can shrink the whole state by a few percent while the keys arrive: it
    // drops records a later checkpoint replaced.)
    let mut sizes: Vec<(u64, u64, i64)> = Vec::new();
    let mut previous: Option<(i64, u64)> = None;
    for c in &result.checkpoints {
        if let Some((at, whole)) = previous {
            if 2 * c.full_bytes < whole {
                break;
            }
            sizes.push((c.bytes, c.full_bytes, c.triggered_ms - at));
        }
        previous = Some((c.triggered_ms, c.full_bytes));
    }
    println!("checkpoints (added / whole state, bytes; ms since the previous one): {sizes:?}");
    assert!(sizes.len() >= 12, "checkpoints while the keys arrived: {sizes:?}");
    let median = |part: &[(u64, u64, i64)]| {
        let mut rates: Vec<f64> = part.iter().map(|s| s.0 as f64 / s.2.max(1) as f64).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let quarter = sizes.len() / 4;
    let (first, last) = (median(&sizes[..quarter]), median(&sizes[sizes.len() - quarter..]));
    println!("median bytes added per ms: {first:.0} in the first quarter, {last:.0} in the last");
    assert!(last < 2.0 * first, "the last checkpoints add no more than the first ones: {sizes:?}");
}
