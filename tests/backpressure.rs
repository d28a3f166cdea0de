//! A slow sink slows the sources down instead of letting queues grow: the
//! number of exchange batches ever allocated stays within the queue bound
//! however many records flow.

use brisk::prelude::*;
use brisk::{Batch, Sink, SinkContext, SinkError, SinkWriter};

/// A sink that does real work for every record (no sleeping).
#[derive(Clone)]
struct SlowSink;

struct SlowWriter {
    acc: u64,
}

impl Sink<(u64, u64)> for SlowSink {
    type Writer = SlowWriter;
    fn name(&self) -> String {
        "slow".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<SlowWriter, SinkError> {
        Ok(SlowWriter { acc: 0 })
    }
}

impl SinkWriter<(u64, u64)> for SlowWriter {
    fn write(&mut self, batch: &mut Batch<(u64, u64)>) -> Result<(), SinkError> {
        for (k, v) in batch.records.drain(..) {
            let mut x = k ^ v;
            for _ in 0..400 {
                x = std::hint::black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(13));
            }
            self.acc ^= x;
        }
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, _end: bool) -> Result<(), SinkError> {
        std::hint::black_box(self.acc);
        Ok(())
    }
}

#[test]
fn a_slow_sink_keeps_exchange_memory_bounded() {
    let cores = 2;
    let queue = brisk::config::EXCHANGE_QUEUE_BATCHES_DEFAULT;
    let n: u64 = 300_000;
    let env = StreamEnv::new(JobConfig::with_cores(cores));
    env.from_source(GeneratorSource::new(n, |i| i))
        .flat_map(|i: u64| [(i % 1000, i), (i % 1000, i + 1)])
        .key_by(|r: &(u64, u64)| r.0)
        .reduce(|a: (u64, u64), b: (u64, u64)| (a.0, a.1 ^ b.1))
        .sink_to(SlowSink);
    let result = env.execute().unwrap();
    let records = result.metrics.total("records_in");
    assert_eq!(records, 2 * n, "every record reached the sink");

    // Without backpressure and recycling, this would be about
    // 2n / BATCH_RECORDS_MAX = 1953 batches; with them it is bounded by the
    // channels' capacity plus the return path, whatever n is.
    let allocated = result.metrics.total("exchange_batches_allocated");
    println!("records {records}, exchange batches allocated {allocated}");
    let channels = (cores * cores) as u64;
    let bound = channels * (queue as u64 + 4 + 1);
    assert!(allocated <= bound, "allocated {allocated} exchange batches, bound {bound}");
    // A sender queues at most what one input batch produced for a destination.
    let pending = result
        .metrics
        .entries()
        .iter()
        .filter(|e| e.metric == "exchange_pending_batches_max")
        .map(|e| e.counter.get())
        .max()
        .unwrap();
    println!("pending batches max {pending}");
    assert!(pending <= 3, "pending batches reached {pending}");
    assert!(pending >= 1, "the sink was not slow enough to exercise backpressure (pending max {pending})");
}
