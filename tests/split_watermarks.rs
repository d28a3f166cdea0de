//! Watermarks generated per split inside a source, combined before emission
//! (Flink's `fromSource(source, strategy)`): a reader that interleaves splits
//! at very different event times does not make the slow splits' records late,
//! whereas one generator per core after the source does.

use brisk::Timestamp;
use brisk::prelude::*;

/// Emits whether each record arrived behind the watermark.
#[derive(Clone)]
struct Late;

impl KeyedProcessFunction<u64, u64, bool> for Late {
    fn process_element(
        &mut self,
        _v: u64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, bool>,
    ) -> Result<(), UserError> {
        out.collect(ctx.timestamp().expect("timestamped") <= ctx.current_watermark());
        Ok(())
    }
}

const N: u64 = 40_000;

/// 4 splits of `0..N` (split s holds indices [sN/4, (s+1)N/4)); the index is
/// the timestamp, so split 3 runs 30 000 ms ahead of split 0.
fn generator() -> GeneratorSource<fn(u64) -> u64> {
    GeneratorSource::new(N, (|i| i) as fn(u64) -> u64).with_splits(4)
}

fn strategy() -> WatermarkStrategy<u64> {
    WatermarkStrategy::for_bounded_out_of_orderness(0)
        .with_timestamp_assigner(|i: &u64, _| *i as Timestamp)
        .every_event()
}

fn late_records(env: StreamEnv, stream: DataStream<u64>) -> usize {
    let out = stream.key_by(|i: &u64| i % 101).process(Late).collect();
    env.execute().unwrap();
    let flags = out.take();
    assert_eq!(flags.len() as u64, N, "every record arrives");
    flags.iter().filter(|late| **late).count()
}

#[test]
fn per_split_watermarks_keep_slow_splits_on_time() {
    for cores in [1, 2] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let stream = env.from_source_with_watermarks(generator(), strategy());
        assert_eq!(late_records(env, stream), 0, "{cores} cores: per-split watermarks made records late");
    }
}

#[test]
fn one_generator_per_core_makes_interleaved_splits_late() {
    // The contrast that shows the test above can fail: the same interleaved
    // splits with one watermark generator per core after the source.
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let stream = env.from_source(generator()).assign_timestamps_and_watermarks(strategy());
    let late = late_records(env, stream);
    assert!(late > (N / 2) as usize, "expected most records of the slower splits to be late, got {late}");
}
