//! Criterion benchmarks of the exchange hand-off (see the module docs below).
//! Criterion benchmarks of the hand-off between cores: the same generated
//! records through a forward edge (no exchange), a rebalance and a key-by
//! exchange (1 024 keys, so state stays small), on 2 cores. Each iteration is a whole bounded job, so the
//! figure includes job start (a few milliseconds) amortized over the records.

use brisk::prelude::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: u64 = 2_000_000;

fn job(kind: &str) {
    let env = StreamEnv::new(JobConfig::with_cores(2));
    let src = env.from_source(GeneratorSource::new(RECORDS, |i| (i, i)));
    match kind {
        "forward" => src.sink_to(brisk::DiscardSink),
        "rebalance" => src.rebalance().sink_to(brisk::DiscardSink),
        _ => src.key_by(|r: &(u64, u64)| r.0 % 1024).reduce(|a, _| a).sink_to(brisk::DiscardSink),
    }
    let r = env.execute().expect("bench job runs");
    assert_eq!(r.metrics.total("records_in"), RECORDS);
}

fn exchange(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange_2_cores");
    g.throughput(Throughput::Elements(RECORDS));
    g.sample_size(10);
    for kind in ["forward", "rebalance", "key_by"] {
        g.bench_function(kind, |b| b.iter(|| job(kind)));
    }
    g.finish();
}

criterion_group!(benches, exchange);
criterion_main!(benches);
