//! Kafka helpers for the tests: producing, reading a whole topic back,
//! and librdkafka's in-process mock cluster.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A consumed record: partition, offset, key, value, headers.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Produces `(key, value)` records to `topic` and waits for all of them.
pub fn produce(brokers: &str, topic: &str, records: &[(Option<String>, String)]) {
    send_all(
        brokers,
        records.iter().map(|(k, v)| {
            let r: BaseRecord<'_, str, str> = BaseRecord::to(topic).payload(v.as_str());
            match k {
                Some(k) => r.key(k.as_str()),
                None => r,
            }
        }),
    );
}

/// Produces `(timestamp, value)` records to partition `partition` of
/// `topic`, with those Kafka timestamps, and waits for all of them.
pub fn produce_at(brokers: &str, topic: &str, partition: i32, records: &[(i64, String)]) {
    send_all(
        brokers,
        records.iter().map(|(ts, v)| {
            BaseRecord::<'_, str, str>::to(topic).payload(v.as_str()).partition(partition).timestamp(*ts)
        }),
    );
}

/// Produces `records` and waits until every one is acknowledged. A
/// request the broker never answers (tansu, loaded, now and then drops
/// one) is sent again after 10 s instead of librdkafka's 30 s, well
/// within the flush's wait.
fn send_all<'a>(brokers: &str, records: impl Iterator<Item = BaseRecord<'a, str, str>>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("request.timeout.ms", "10000")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for mut r in records {
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(90)).unwrap();
}

/// The partitions of `topic`.
pub fn partitions(brokers: &str, topic: &str) -> Vec<i32> {
    let c = consumer(brokers, None);
    let md = asked(&format!("the metadata of {topic}"), |t| c.fetch_metadata(Some(topic), t));
    md.topics()[0].partitions().iter().map(|p| p.id()).collect()
}

/// A query to the broker, `ask(timeout)`, asked again while it fails, 10 s
/// at a time and at most 90 s in all (as the tests' producer waits for its
/// flush): the test broker (tansu) now and then leaves a request
/// unanswered under load. Seen: a metadata fetch timing out in the
/// real-broker test with the machine's cores busy.
fn asked<T>(what: &str, mut ask: impl FnMut(Duration) -> rdkafka::error::KafkaResult<T>) -> T {
    let mut last = None;
    for _ in 0..9 {
        match ask(Duration::from_secs(10)) {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
    }
    panic!("no answer for {what} within 90 s: {last:?}");
}

fn consumer(brokers: &str, group: Option<&str>) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group.unwrap_or("brisk-tests"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// Every record of `topic`, in partition then offset order (reads up to
/// the end offsets at the call).
pub fn read_all(brokers: &str, topic: &str) -> Vec<Consumed> {
    let c = consumer(brokers, None);
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in partitions(brokers, topic) {
        let (low, high) = asked(&format!("the offsets of {topic}/{p}"), |t| c.fetch_watermarks(topic, p, t));
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).unwrap();
            ends.insert(p, high);
        }
    }
    let total: i64 = ends.values().sum::<i64>();
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = std::collections::HashSet::new();
    while done.len() < ends.len() {
        assert!(Instant::now() < deadline, "read {} of up to {total} records of {topic}", out.len());
        let Some(m) = c.poll(Duration::from_millis(100)) else { continue };
        let m = m.unwrap();
        if m.offset() + 1 >= ends[&m.partition()] {
            done.insert(m.partition());
        }
        if m.offset() >= ends[&m.partition()] {
            continue;
        }
        out.push(Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect()
                })
                .unwrap_or_default(),
        });
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// The values of every record of `topic`, as UTF-8.
pub fn read_values(brokers: &str, topic: &str) -> Vec<String> {
    read_all(brokers, topic)
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
        .collect()
}

/// The offsets `group` committed for `topic`'s partitions (`None`: none).
pub fn committed(brokers: &str, group: &str, topic: &str) -> Vec<(i32, Option<i64>)> {
    let c = consumer(brokers, Some(group));
    let mut tpl = TopicPartitionList::new();
    for p in partitions(brokers, topic) {
        tpl.add_partition(topic, p);
    }
    let got = asked(&format!("{group}'s offsets of {topic}"), |t| c.committed_offsets(tpl.clone(), t));
    got.elements()
        .iter()
        .map(|e| (e.partition(), if let Offset::Offset(o) = e.offset() { Some(o) } else { None }))
        .collect()
}

/// The end offsets of `topic`'s partitions.
pub fn end_offsets(brokers: &str, topic: &str) -> Vec<(i32, i64)> {
    let c = consumer(brokers, None);
    partitions(brokers, topic)
        .into_iter()
        .map(|p| (p, asked(&format!("the offsets of {topic}/{p}"), |t| c.fetch_watermarks(topic, p, t)).1))
        .collect()
}

/// Creates `topic` with `partitions` partitions (an existing one is kept).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    brisk::io::kafka::create_topic(brokers, topic, partitions).unwrap();
}

/// Waits (in the consumer's poll, up to `deadline`) until `topic` holds
/// more than `n` records; `Err` says how many it held at the deadline.
pub fn wait_for_more_than(brokers: &str, topic: &str, n: usize, deadline: Instant) -> Result<(), String> {
    let c = consumer(brokers, None);
    let mut tpl = TopicPartitionList::new();
    for p in partitions(brokers, topic) {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut seen = 0;
    while seen <= n {
        if Instant::now() >= deadline {
            return Err(format!("{topic} holds {seen} records, not more than {n}"));
        }
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            m.unwrap();
            seen += 1;
        }
    }
    Ok(())
}

/// `n` feature lines `user_<u>,<value>` keyed by user, seeded; every
/// `malformed_every`-th (if not 0) has a value that is not a number.
pub fn feature_lines(
    n: usize,
    users: u64,
    malformed_every: usize,
    seed: u64,
) -> Vec<(Option<String>, String)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (1..=n)
        .map(|i| {
            let user = format!("user_{}", rng.u64(..users));
            let value = if malformed_every > 0 && i % malformed_every == 0 {
                "not-a-number".to_string()
            } else {
                format!("{}.{:02}", rng.u32(..1000), rng.u32(..100))
            };
            (Some(user.clone()), format!("{user},{value}"))
        })
        .collect()
}

/// Forwards each record; keyed, so it runs on the core that owns the key.
#[derive(Clone, Default)]
pub struct Forward;

impl<T: brisk::stream::Data> brisk::KeyedProcessFunction<String, T, T> for Forward {
    fn process_element(
        &mut self,
        r: T,
        _: &mut brisk::Context<'_, String>,
        out: &mut brisk::Collector<'_, T>,
    ) -> Result<(), brisk::UserError> {
        out.collect(r);
        Ok(())
    }
}

/// Asserts that a Kafka reader ran on each of 2 cores and read records.
pub fn assert_both_cores_read(metrics: &brisk::Metrics) {
    let read: Vec<u64> =
        metrics.entries().iter().filter(|e| e.metric == "records_read").map(|e| e.counter.get()).collect();
    assert_eq!(read.len(), 2, "a reader on each core: {read:?}");
    assert!(read.iter().all(|&r| r > 0), "both cores read partitions: {read:?}");
}

/// Reads `topic` (lines `<partition>,<i>`) with a bounded source on 2
/// cores starting at `start`; returns the sorted `(partition, i)` pairs.
pub fn read_pairs_from(brokers: &str, topic: &str, start: brisk::io::kafka::StartOffsets) -> Vec<(u64, u64)> {
    use brisk::prelude::*;
    let (b, t) = (brokers.to_string(), topic.to_string());
    let lines = super::run_guarded(60, move || {
        let env = StreamEnv::new(JobConfig { pin_cores: false, ..JobConfig::with_cores(2) });
        let out = env
            .from_source(KafkaSource::new(&b, &[&t], brisk::io::kafka::Lines).bounded().with_start(start))
            .collect();
        env.execute().unwrap();
        out.take()
    });
    let mut got: Vec<(u64, u64)> = lines
        .iter()
        .map(|l: &String| {
            let (p, i) = l.split_once(',').unwrap();
            (p.parse().unwrap(), i.parse().unwrap())
        })
        .collect();
    got.sort();
    got
}

/// The sorted pairs `(p, j)` for partitions `0..partitions` and `j` in
/// `from..to`.
pub fn pairs(partitions: u64, from: u64, to: u64) -> Vec<(u64, u64)> {
    (0..partitions).flat_map(|p| (from..to).map(move |j| (p, j))).collect()
}
