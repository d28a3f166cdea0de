//! The KW workload of shared/BENCHMARKS.md, exactly: event `i` has key
//! `fmix64(i) mod K`, timestamp `i / 1000` ms and value `i mod 100`;
//! watermarks with 100 ms bounded out-of-orderness (periodic, every 200 ms of
//! processing time, as Flink's default); 10 s tumbling event-time windows;
//! count and sum per key and window; results to a discarding sink.
//!
//! ```text
//! cargo run --release -p brisk-bench --bin keyed_window -- --events 20000000 --keys 10000 --cores 2
//! shared/flink/keyed_window.sh 20000000 2 10000      # Flink, same workload
//! ```

use brisk::prelude::*;
use brisk::window::AggregateFunction;
use brisk_bench::kw_event;
use clap::Parser;

/// Keyed tumbling-window count and sum.
#[derive(Parser)]
struct Cli {
    /// Events to generate.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Cores (default: all available).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    cores: Option<u16>,
    /// Take checkpoints into this directory.
    #[arg(long)]
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Time between checkpoints, in ms (needs --checkpoint-dir).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), requires = "checkpoint_dir")]
    checkpoint_interval_ms: Option<u64>,
}

/// Count and sum of values.
#[derive(Clone)]
struct CountSum;

impl AggregateFunction<(u64, i64, u64)> for CountSum {
    type Acc = (u64, u64);
    type Out = (u64, u64);
    fn create_accumulator(&mut self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&mut self, e: (u64, i64, u64), acc: (u64, u64)) -> (u64, u64) {
        (acc.0 + 1, acc.1 + e.2)
    }
    fn get_result(&mut self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
    fn merge(&mut self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

fn main() -> anyhow::Result<()> {
    brisk::init_logging();
    let cli = Cli::parse();
    let (events, keys) = (cli.events, cli.keys);
    let env = StreamEnv::new(JobConfig {
        cores: cli.cores.map(usize::from),
        checkpoint_dir: cli.checkpoint_dir.clone(),
        checkpoint_interval_ms: cli.checkpoint_interval_ms.unwrap_or(0),
        ..JobConfig::default()
    });
    env.from_source(GeneratorSource::new(events, move |i| {
        let e = kw_event(i, keys);
        (e.key, e.timestamp_ms, e.value)
    }))
    .assign_timestamps_and_watermarks(
        WatermarkStrategy::for_bounded_out_of_orderness(100)
            .with_timestamp_assigner(|e: &(u64, i64, u64), _| e.1),
    )
    .key_by(|e: &(u64, i64, u64)| e.0)
    .window(WindowAssigner::tumbling(10_000))
    .aggregate(CountSum)
    .name("window count and sum")
    .sink_to(brisk::DiscardSink);
    let result = env.execute()?;
    let secs = result.elapsed.as_secs_f64();
    // Every (key, window) fires exactly once.
    let windows = events.div_ceil(10_000_000);
    println!("# results_emitted={} windows={windows}", result.metrics.total("records_in"));
    if !result.checkpoints.is_empty() {
        let mut ms: Vec<u64> = result.checkpoints.iter().map(|c| c.duration_ms).collect();
        ms.sort_unstable();
        let max_bytes = result.checkpoints.iter().map(|c| c.bytes).max().unwrap_or(0);
        println!(
            "# checkpoints={} duration_ms p50={} max={} largest_bytes={max_bytes}",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
    println!(
        "keyed_window events={events} keys={keys} cores={} secs={secs:.3} events_per_s={:.0}",
        result.cores,
        events as f64 / secs
    );
    Ok(())
}
