//! The seed story on Kafka: per-user moving-average features.
//!
//! Reads lines like `user_A,10.5` from topic `raw-features`, keys them by
//! user, keeps each user's previous value in a `ValueState`, and writes
//! `user,value,moving_average` (keyed by user) to topic `features`, and to
//! stdout with `--print`. With `--checkpoint-dir`, partition offsets and
//! state are checkpointed; after a crash, `--restore latest` resumes from
//! them and the output (at least once by default) has no gap.
//!
//! ```text
//! tools/test-broker.sh start 19092
//! cargo run --release -p brisk-tools -- kafka produce-features --lines 100000 --rate 20000
//! cargo run --release --example feature_pipeline -- --brokers 127.0.0.1:19092 --print
//! ```

use std::io::Write;

use brisk::io::kafka::{Csv, FnSerializer, KafkaOut};
use brisk::prelude::*;
use clap::Parser;

/// Per-user moving average from one Kafka topic to another.
#[derive(Parser)]
struct Cli {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    /// The topic of `user,value` lines.
    #[arg(long, default_value = "raw-features")]
    input_topic: String,
    /// The topic the features go to.
    #[arg(long, default_value = "features")]
    output_topic: String,
    /// Consumer group: where offsets are committed after each checkpoint.
    #[arg(long, default_value = "brisk-feature-pipeline")]
    group_id: String,
    /// Where partitions start without a checkpoint: earliest, latest,
    /// committed or timestamp:<epoch ms>.
    #[arg(long, default_value = "earliest")]
    start: StartOffsets,
    /// Stop at the end offsets found at start (a bounded run).
    #[arg(long)]
    bounded: bool,
    /// Malformed lines: fail, skip or dead-letter:<topic>.
    #[arg(long, default_value = "skip")]
    malformed: KafkaMalformed,
    /// Output guarantee: none, at-least-once or exactly-once (Kafka
    /// transactions; see the docs of brisk::io::kafka for what is verified).
    #[arg(long, default_value = "at-least-once", value_parser = parse_delivery)]
    delivery: KafkaDelivery,
    /// A librdkafka property for the source's consumer and the sink's
    /// producer, `KEY=VALUE`; repeatable (e.g. `socket.timeout.ms=10000`).
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = brisk::cli::parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Also print every feature on stdout.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

fn parse_delivery(s: &str) -> Result<KafkaDelivery, String> {
    match s {
        "none" => Ok(KafkaDelivery::None),
        "at-least-once" => Ok(KafkaDelivery::AtLeastOnce),
        "exactly-once" => {
            Ok(KafkaDelivery::ExactlyOnce { transactional_id_prefix: "brisk-feature-pipeline".into() })
        }
        _ => Err(format!("unknown delivery '{s}' (expected none, at-least-once or exactly-once)")),
    }
}

#[path = "common/features.rs"]
mod features;

use features::{Feature, MovingAverage};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let env = StreamEnv::new(cli.job.config());
    let mut source = KafkaSource::new(&cli.brokers, &[&cli.input_topic], Csv::<Feature>::new())
        .with_group_id(&cli.group_id)
        .with_start(cli.start)
        .on_malformed(cli.malformed.clone());
    if cli.bounded {
        source = source.bounded();
    }
    for (k, v) in &cli.kafka_properties {
        source = source.with_property(k, v);
    }
    let features = env
        .from_source(source)
        .key_by(|f: &Feature| f.user.clone())
        .process(MovingAverage::default())
        .name("moving average");
    let mut sink = KafkaSink::new(
        &cli.brokers,
        &cli.output_topic,
        FnSerializer(|(user, value, avg): &(String, f64, f64), out: &mut KafkaOut| {
            out.set_key(user.as_bytes());
            let _ = write!(out.value, "{user},{value},{avg}");
        }),
    )
    .with_delivery(cli.delivery.clone())
    .create_topic_if_missing(4);
    for (k, v) in &cli.kafka_properties {
        sink = sink.with_property(k, v);
    }
    features.sink_to(sink);
    if cli.print {
        features.sink_to(StdoutSink::lines_with(
            |(user, value, avg): &(String, f64, f64), out: &mut Vec<u8>| {
                let _ = write!(out, "{user},{value},{avg}");
            },
        ));
    }
    let result = cli.job.execute(env)?;
    let m = &result.metrics;
    eprintln!(
        "feature_pipeline: {} lines read, {} malformed skipped, {} dead-lettered, {} features written in {:.2} s",
        m.total("records_read"),
        m.total("malformed_skipped"),
        m.total("malformed_dead_lettered"),
        m.operator_total(&format!("kafka({})", cli.output_topic), "records_written"),
        result.elapsed.as_secs_f64()
    );
    Ok(())
}
