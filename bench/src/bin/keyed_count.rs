//! Keyed count and sum over the KW events (shared/BENCHMARKS.md) through the
//! `key_by` exchange, into a discarding sink.
//!
//! ```text
//! cargo run --release -p brisk-bench --bin keyed_count -- --events 20000000 --keys 10000 --cores 2
//! ```
//!
//! In streaming mode (the default) the keyed reduce emits the updated
//! `(key, count, sum)` for every event, as Flink's `keyBy().reduce()` does; in
//! batch mode once per key at the end. `--limit` runs the plain single-thread
//! loop the engine is measured against (a hash-map update per event, no
//! framework). The last line is machine-readable.

use std::collections::HashMap;
use std::time::Instant;

use brisk::prelude::*;
use brisk::state::hash::fmix64;
use brisk_bench::kw_event;
use clap::Parser;

/// Keyed count benchmark.
#[derive(Parser)]
struct Cli {
    /// Events to generate.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
    /// Emit one result per key at the end instead of one per event.
    #[arg(long)]
    batch: bool,
    /// Run the plain single-threaded loop instead of the engine.
    #[arg(long)]
    limit: bool,
}

/// A fast hasher for the limit loop (keys are already uniform).
#[derive(Default, Clone, Copy)]
struct Mix(u64);

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

fn limit(events: u64, keys: u64) -> (u64, f64) {
    let start = Instant::now();
    let mut state: HashMap<u64, (u64, u64), std::hash::BuildHasherDefault<Mix>> = HashMap::default();
    for i in 0..events {
        let e = kw_event(i, keys);
        let s = state.entry(e.key).or_insert((0, 0));
        s.0 += 1;
        s.1 += e.value;
    }
    let total: u64 = state.values().map(|s| s.0).sum();
    (total, start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let (events, keys) = (cli.events, cli.keys);
    if cli.limit {
        let (total, secs) = limit(events, keys);
        anyhow::ensure!(total == events, "limit loop counted {total} of {events} events");
        println!(
            "keyed_count_limit events={events} keys={keys} cores=1 secs={secs:.3} events_per_s={:.0}",
            events as f64 / secs
        );
        return Ok(());
    }
    let mode = if cli.batch { ExecutionMode::Batch } else { ExecutionMode::Streaming };
    let env = StreamEnv::new(JobConfig { execution_mode: mode, ..cli.job.config() });
    env.from_source(GeneratorSource::new(events, move |i| {
        let e = kw_event(i, keys);
        (e.key, 1u64, e.value)
    }))
    .key_by(|r: &(u64, u64, u64)| r.0)
    .reduce(|a: (u64, u64, u64), b: (u64, u64, u64)| (a.0, a.1 + b.1, a.2 + b.2))
    .name("count and sum")
    .sink_to(brisk::DiscardSink);
    let result = cli.job.execute(env)?;
    let secs = result.elapsed.as_secs_f64();
    let delivered = result.metrics.total("records_in");
    let expected = if cli.batch { keys.min(events) } else { events };
    anyhow::ensure!(delivered == expected, "sink saw {delivered} results, expected {expected}");
    println!("# mode={} results_emitted={delivered}", if cli.batch { "batch" } else { "streaming" });
    println!(
        "keyed_count events={events} keys={keys} cores={} secs={secs:.3} events_per_s={:.0}",
        result.cores,
        events as f64 / secs
    );
    Ok(())
}
