//! Nexmark on brisk (shared/BENCHMARKS.md, workload 2).
//!
//! ```text
//! cargo run --release -p brisk-bench --bin nexmark -- --query q5 --events 100000000 --cores 2
//! cargo run --release -p brisk-bench --bin nexmark -- --generate-to /tmp/nexmark --events 1000000
//! cargo run --release -p brisk-bench --bin nexmark -- --query q5 --input-dir /tmp/nexmark --output q5.csv
//! ```
//!
//! The last line is `nexmark query=qN events=N cores=C secs=S events_per_s=R`;
//! `events` counts every generated event (persons, auctions and bids), or,
//! over files, the rows the query's file sources read.
//!
//! Latency (shared/BENCHMARKS.md, workload 4): with `--latency`, event time
//! is processing time (the events' clock starts 250 ms from now, once the
//! job is up, and runs at
//! `--rate-limit` events per second), and q5 and q7 also print how late
//! their window results reach the sink (see `brisk_bench::latency`):
//!
//! ```text
//! nexmark --query q5 --events 60000000 --rate-limit 1000000 --latency --auto-watermark-interval-ms 1
//! ```

use std::path::PathBuf;

use brisk::prelude::*;
use brisk_bench::latency::WindowLatency;
use brisk_bench::nexmark::csv::write_tables;
use brisk_bench::nexmark::generator::GeneratorConfig;
use brisk_bench::nexmark::queries::{Input, Output, Query, Tables, build};
use clap::Parser;

/// Runs a Nexmark query, or writes the events as CSV files.
#[derive(Parser)]
struct Cli {
    /// The query to run.
    #[arg(long, value_enum, required_unless_present = "generate_to")]
    query: Option<Query>,
    /// Events to generate (persons, auctions and bids together).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events per second of event time (nexmark's `first-event.rate`): sets
    /// the spacing of timestamps, not the speed of the run.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    event_rate: u64,
    /// Generate at most this many events per second of wall time (over all
    /// cores); unlimited by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate_limit: Option<u64>,
    /// Write `person.csv`, `auction.csv` and `bid.csv` of `--events` events
    /// into this directory instead of running a query.
    #[arg(long, conflicts_with_all = ["query", "input_dir", "output"])]
    generate_to: Option<PathBuf>,
    /// Read the events from `person.csv`, `auction.csv` and `bid.csv` in
    /// this directory (as written by `--generate-to`).
    #[arg(long, conflicts_with = "rate_limit")]
    input_dir: Option<PathBuf>,
    /// Write the query's result rows to this CSV file (default: discard).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Measure latency: event time starts 250 ms from now and advances with wall time
    /// (the event rate becomes the rate limit), and q5 and q7 print how late
    /// their window results are.
    #[arg(long, requires = "rate_limit", conflicts_with = "event_rate")]
    latency: bool,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

/// How long after the command's start a latency run's schedule begins.
const LATENCY_LEAD_MS: i64 = 250;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let mut config = GeneratorConfig { rate_per_s: cli.event_rate as f64, ..GeneratorConfig::default() };
    // A latency run: events' time starts at a whole millisecond shortly
    // after now and runs at the rate limit, and so does the generator's
    // schedule. The lead lets the job start first, so that its start-up is
    // not measured as latency.
    let schedule_from_us = match (cli.latency, cli.rate_limit) {
        (true, Some(rate)) => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| anyhow::anyhow!("the system clock is before 1970: {e}"))?
                .as_millis() as i64;
            let start_ms = now_ms + LATENCY_LEAD_MS;
            config = GeneratorConfig { rate_per_s: rate as f64, base_time_ms: start_ms };
            Some(start_ms * 1000)
        }
        _ => None,
    };
    if let Some(dir) = &cli.generate_to {
        let start = std::time::Instant::now();
        let counts = write_tables(dir, &config, cli.events)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", dir.display()))?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "nexmark generate events={} persons={} auctions={} bids={} dir={} secs={secs:.3} events_per_s={:.0}",
            cli.events,
            counts.persons,
            counts.auctions,
            counts.bids,
            dir.display(),
            cli.events as f64 / secs
        );
        return Ok(());
    }
    let query = cli.query.expect("clap requires --query without --generate-to");
    let input = match &cli.input_dir {
        Some(dir) => Input::Files(dir.clone()),
        None => Input::Generator {
            config,
            events: cli.events,
            rate_limit: cli.rate_limit.map(|r| r as f64),
            schedule_from_us,
        },
    };
    let env = StreamEnv::new(cli.job.config());
    let window_latency = cli.latency.then(WindowLatency::default);
    let output = Output { path: cli.output.clone(), window_latency: window_latency.clone() };
    build(query, &Tables::new(&env, input), &output);
    let result = cli.job.execute(env)?;
    let secs = result.elapsed.as_secs_f64();
    // Over files: the rows the query's file sources read (named after their files).
    let events = match cli.input_dir {
        Some(_) => ["person.csv", "auction.csv", "bid.csv"]
            .iter()
            .map(|file| result.metrics.operator_total(file, "records_out"))
            .sum(),
        None => cli.events,
    };
    if let Some(summary) = window_latency.as_ref().and_then(WindowLatency::summary) {
        println!("{summary}");
    }
    println!("# results={}", result.metrics.total("records_written").max(result.metrics.total("records_in")));
    println!(
        "nexmark query={} events={events} cores={} secs={secs:.3} events_per_s={:.0}",
        query.name(),
        result.cores,
        events as f64 / secs
    );
    Ok(())
}
