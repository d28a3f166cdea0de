//! The Yahoo streaming benchmark on brisk (shared/BENCHMARKS.md, workload 3).
//!
//! ```text
//! cargo run --release -p brisk-bench --bin ysb -- --events 100000000 --cores 2
//! cargo run --release -p brisk-bench --bin ysb -- --generate-to /tmp/ysb --events 1000000
//! cargo run --release -p brisk-bench --bin ysb -- --input-dir /tmp/ysb --output views.csv
//! cargo run --release -p brisk-bench --bin ysb -- --kafka-brokers localhost:9092 --topic ads --produce
//! cargo run --release -p brisk-bench --bin ysb -- --kafka-brokers localhost:9092 --topic ads
//! ```
//!
//! The last line is `ysb input=I events=N cores=C secs=S events_per_s=R`,
//! where `I` is `generator`, `json` or `kafka`; over a file or Kafka,
//! `events` counts what the source read.

use std::path::PathBuf;

use brisk_bench::nexmark::queries::Output;
use brisk_bench::ysb::generator::{Generator, YsbConfig, read_campaigns, write_inputs};
use brisk_bench::ysb::job::{Input, build, build_producer};
use clap::Parser;

/// Runs YSB, or writes its input files.
#[derive(Parser)]
struct Cli {
    /// Events to generate.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Events per second of event time: sets the spacing of timestamps, not
    /// the speed of the run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    event_rate: u64,
    /// Seed of the ids and events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Generate at most this many events per second of wall time (over all
    /// cores); unlimited by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate_limit: Option<u64>,
    /// Write `events.json` and `campaigns.csv` of `--events` events into
    /// this directory instead of running the job.
    #[arg(long, conflicts_with_all = ["input_dir", "output", "kafka_brokers"])]
    generate_to: Option<PathBuf>,
    /// Read `events.json` (JSON lines) and `campaigns.csv` from this
    /// directory (as written by `--generate-to`).
    #[arg(long, conflicts_with_all = ["rate_limit", "kafka_brokers"])]
    input_dir: Option<PathBuf>,
    /// Read JSON events from Kafka at these bootstrap servers (with
    /// `--topic`), from the earliest offsets to the end offsets at the start.
    #[arg(long, requires = "topic", conflicts_with = "rate_limit")]
    kafka_brokers: Option<String>,
    /// The Kafka topic.
    #[arg(long, requires = "kafka_brokers")]
    topic: Option<String>,
    /// With `--kafka-brokers` and `--topic`: write `--events` generated
    /// events to the topic as JSON values instead of reading it.
    #[arg(long, requires = "kafka_brokers", conflicts_with_all = ["output", "campaigns"])]
    produce: bool,
    /// Partitions of the topic `--produce` creates if it is missing
    /// (default: one per core).
    #[arg(long, requires = "produce", value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// A librdkafka property for the Kafka source or sink, `KEY=VALUE`
    /// (repeatable), e.g. `security.protocol=SSL` or, for a broker that
    /// mishandles idempotent producers, `enable.idempotence=false`.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", requires = "kafka_brokers", value_parser = brisk::cli::parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// The `ad_id,campaign_id` table for Kafka input (default: the
    /// generator's table for `--seed`).
    #[arg(long, requires = "kafka_brokers")]
    campaigns: Option<PathBuf>,
    /// Write the result rows (campaign, window, views) to this CSV file
    /// (default: discard).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let config = YsbConfig { seed: cli.seed, rate_per_s: cli.event_rate, ..YsbConfig::default() };
    if let Some(dir) = &cli.generate_to {
        let start = std::time::Instant::now();
        write_inputs(dir, &config, cli.events)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", dir.display()))?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "ysb generate events={} dir={} secs={secs:.3} events_per_s={:.0}",
            cli.events,
            dir.display(),
            cli.events as f64 / secs
        );
        return Ok(());
    }
    let generator = Generator::new(config);
    if let (true, Some(brokers), Some(topic)) = (cli.produce, &cli.kafka_brokers, &cli.topic) {
        let config = cli.job.config();
        let cores = config.cores.unwrap_or_else(brisk::JobConfig::available_cores);
        let partitions = cli.partitions.unwrap_or(cores as i32);
        let env = brisk::StreamEnv::new(config);
        build_producer(&env, generator, cli.events, (brokers, topic, partitions), &cli.kafka_properties);
        let result = cli.job.execute(env)?;
        let secs = result.elapsed.as_secs_f64();
        println!(
            "ysb produce events={} topic={topic} partitions={partitions} cores={} secs={secs:.3} events_per_s={:.0}",
            cli.events,
            result.cores,
            cli.events as f64 / secs
        );
        return Ok(());
    }
    let (name, input, campaigns, events) = if let Some(dir) = &cli.input_dir {
        let campaigns = read_campaigns(&dir.join("campaigns.csv")).map_err(anyhow::Error::msg)?;
        ("json", Input::JsonFile(dir.join("events.json")), campaigns, None)
    } else if let (Some(brokers), Some(topic)) = (&cli.kafka_brokers, &cli.topic) {
        let campaigns = match &cli.campaigns {
            Some(path) => read_campaigns(path).map_err(anyhow::Error::msg)?,
            None => generator.ids().campaign_table(),
        };
        (
            "kafka",
            Input::Kafka {
                brokers: brokers.clone(),
                topic: topic.clone(),
                properties: cli.kafka_properties.clone(),
            },
            campaigns,
            None,
        )
    } else {
        let campaigns = generator.ids().campaign_table();
        let input =
            Input::Generator { generator, events: cli.events, rate_limit: cli.rate_limit.map(|r| r as f64) };
        ("generator", input, campaigns, Some(cli.events))
    };
    let env = brisk::StreamEnv::new(cli.job.config());
    build(&env, input, campaigns, &Output::to(cli.output.clone()));
    let result = cli.job.execute(env)?;
    let secs = result.elapsed.as_secs_f64();
    // Over a file or Kafka, the events are what the source read.
    let events =
        events.unwrap_or_else(|| result.metrics.operator_total(&format!("ysb {name}"), "records_out"));
    println!("# results={}", result.metrics.total("records_written").max(result.metrics.total("records_in")));
    println!(
        "ysb input={name} events={events} cores={} secs={secs:.3} events_per_s={:.0}",
        result.cores,
        events as f64 / secs
    );
    Ok(())
}
