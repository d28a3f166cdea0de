//! The YSB pipeline on brisk's DataStream API:
//!
//! ```text
//! ad events → filter event_type = view → project (ad_id, event_time)
//!   → join the campaign table (ad → campaign) → count per (campaign, 10 s window), combined per batch
//!   → key by campaign → 10 s tumbling event-time windows: views per campaign and window
//! ```
//!
//! The campaign table is static and small: every core holds it and the join
//! is a lookup (the original Flink job caches Redis' table the same way). An
//! event whose ad is not in the table has no campaign and is dropped, as an
//! inner join drops it. Watermarks trail the largest event time by
//! [`OUT_OF_ORDERNESS_MS`].

use std::path::PathBuf;

use brisk::io::kafka::{FnSerializer, KafkaOut, KafkaPartitioner};
use brisk::prelude::*;
use serde::Serialize;

use super::generator::{CampaignTable, Generator};
use super::model::{AdEvent, AdEventJson, EventType, Id, write_json};
use crate::SumCounts;
use crate::nexmark::csv::Ts;
use crate::nexmark::queries::Output;

/// The window: 10 s tumbling, in event time.
pub const WINDOW_MS: i64 = 10_000;
/// How far watermarks trail the largest event time seen.
pub const OUT_OF_ORDERNESS_MS: i64 = 1_000;

/// Where the ad events come from.
#[derive(Clone, Debug)]
pub enum Input {
    /// The in-process generator, binary events `0..events`.
    Generator {
        /// What to generate.
        generator: Generator,
        /// How many events.
        events: u64,
        /// At most this many events per second of wall time (all splits).
        rate_limit: Option<f64>,
    },
    /// A file of JSON lines.
    JsonFile(PathBuf),
    /// A Kafka topic of JSON values, read from the earliest offset to the
    /// end offsets at the job's start (bounded).
    Kafka {
        /// Bootstrap servers.
        brokers: String,
        /// The topic.
        topic: String,
        /// librdkafka consumer properties (`key`, `value`).
        properties: Vec<(String, String)>,
    },
}

/// One result row: views of a campaign's ads in one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CampaignViews {
    /// The campaign.
    pub campaign_id: Id,
    /// The window's start (inclusive).
    pub window_start: Ts,
    /// The window's end (exclusive).
    pub window_end: Ts,
    /// Views in the window.
    pub views: u64,
}

/// Adds the pipeline to `env`, reading `input`, joining with `campaigns`,
/// writing rows to `out`.
pub fn build(env: &StreamEnv, input: Input, campaigns: CampaignTable, out: &Output) {
    let events: DataStream<AdEvent> = match input {
        Input::Generator { generator, events, rate_limit } => {
            let source = GeneratorSource::new(events, move |n| generator.event(n)).interleaved();
            let source = match rate_limit {
                Some(r) => source.with_rate(r),
                None => source,
            };
            env.from_source(source).name("ysb generator")
        }
        Input::JsonFile(path) => env.from_source(FileSource::with_parser(path, AdEventJson)).name("ysb json"),
        Input::Kafka { brokers, topic, properties } => env
            .from_source(
                properties.iter().fold(
                    KafkaSource::new(&brokers, &[topic.as_str()], AdEventJson).bounded(),
                    |s, (k, v)| s.with_property(k, v),
                ),
            )
            .name("ysb kafka"),
    };
    let views = events
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(OUT_OF_ORDERNESS_MS)
                .with_timestamp_assigner(|e: &AdEvent, _| e.event_time),
        )
        .filter(|e| e.event_type == EventType::View)
        .map(|e| (e.ad_id, e.event_time))
        .flat_map(move |(ad, time)| campaigns.get(&ad).map(|c| (*c, time.div_euclid(WINDOW_MS), 1u64)))
        .combine_in_batch(|v| (v.0, v.1), |acc, v| acc.2 += v.2)
        .map(|v| (v.0, v.2))
        .key_by(|v: &(Id, u64)| v.0)
        .window(WindowAssigner::tumbling(WINDOW_MS))
        .aggregate_with(
            SumCounts,
            |campaign: &Id, ctx: &WindowContext, views: &[u64], out: &mut Collector<'_, CampaignViews>| {
                for &views in views {
                    out.collect(CampaignViews {
                        campaign_id: *campaign,
                        window_start: Ts(ctx.window.start()),
                        window_end: Ts(ctx.window.end()),
                        views,
                    });
                }
                Ok(())
            },
        );
    out.sink(views);
}

/// Adds a job to `env` that writes events `0..events` of `generator` to
/// Kafka as JSON values (no key), creating the topic with `partitions`
/// partitions if it is missing. Core `c` writes partition `c % partitions`,
/// so with as many partitions as cores each partition's event times ascend.
/// `properties` are librdkafka producer properties (`key`, `value`).
pub fn build_producer(
    env: &StreamEnv,
    generator: Generator,
    events: u64,
    (brokers, topic, partitions): (&str, &str, i32),
    properties: &[(String, String)],
) {
    let json = FnSerializer(|e: &AdEvent, out: &mut KafkaOut| {
        write_json(&mut out.value, e);
        out.value.pop(); // the newline
    });
    env.from_source(GeneratorSource::new(events, move |n| generator.event(n)).interleaved())
        .name("ysb generator")
        .sink_to(
            properties.iter().fold(
                KafkaSink::new(brokers, topic, json)
                    .create_topic_if_missing(partitions)
                    .with_partitioner(KafkaPartitioner::Fixed)
                    .with_property("linger.ms", "5"),
                |s, (k, v)| s.with_property(k, v),
            ),
        );
}
