//! `brisk kafka ...`: feeding and reading topics, with the rates achieved.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{FeatureArgs, Kafka, SplitMix, feature_line};

const TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(what: Kafka) -> anyhow::Result<()> {
    match what {
        Kafka::ProduceFeatures {
            brokers,
            topic,
            partitions,
            rate,
            lines: FeatureArgs { lines, users, malformed_every, seed },
        } => {
            ensure_topic(&brokers, &topic, partitions)?;
            let producer: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("partitioner", "murmur2_random")
                .set("linger.ms", "5")
                .set("enable.idempotence", "true")
                .create()
                .with_context(|| format!("cannot create a producer for {brokers}"))?;
            let mut rng = SplitMix(seed);
            let mut line = Vec::with_capacity(64);
            let started = Instant::now();
            for n in 1..=lines {
                if let Some(r) = rate {
                    let due = started + Duration::from_secs_f64((n - 1) as f64 / r);
                    let now = Instant::now();
                    if due > now {
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(due - now);
                    }
                }
                line.clear();
                feature_line(&mut rng, n, users, malformed_every, &mut line)?;
                let user_end = line.iter().position(|&b| b == b',').unwrap_or(line.len());
                let mut record: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&topic).key(&line[..user_end]).payload(&line[..]);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => bail!("cannot produce to {topic}: {e}"),
                    }
                }
                producer.poll(Duration::ZERO);
            }
            producer.flush(Duration::from_secs(120)).context("not every line was acknowledged")?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "produced {lines} lines to {topic} in {secs:.2} s: {:.0} records/s",
                lines as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Kafka::Consume { brokers, topic, count, print, timeout_s } => {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "brisk-cli")
                .set("enable.auto.commit", "false")
                .create()
                .with_context(|| format!("cannot create a consumer for {brokers}"))?;
            let md = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
            let mut tpl = TopicPartitionList::new();
            for t in md.topics() {
                if let Some(e) = t.error() {
                    bail!("topic {topic}: {:?}", RDKafkaErrorCode::from(e));
                }
                for p in t.partitions() {
                    tpl.add_partition_offset(&topic, p.id(), Offset::Beginning)?;
                }
            }
            consumer.assign(&tpl)?;
            let deadline = Instant::now() + Duration::from_secs(timeout_s);
            let mut started = None;
            let mut read = 0u64;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            while read < count {
                if Instant::now() > deadline {
                    bail!("read {read} of {count} records of {topic} within {timeout_s} s");
                }
                let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
                let m = m?;
                started.get_or_insert_with(Instant::now);
                read += 1;
                if print {
                    use std::io::Write;
                    out.write_all(m.payload().unwrap_or_default())?;
                    out.write_all(b"\n")?;
                }
            }
            drop(out);
            let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            eprintln!(
                "consumed {read} records of {topic} in {secs:.2} s: {:.0} records/s",
                read as f64 / secs.max(1e-9)
            );
            Ok(())
        }
    }
}

/// Creates `topic` with `partitions` partitions unless it exists.
fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    brisk::io::kafka::create_topic(brokers, topic, partitions).map_err(anyhow::Error::msg)
}
