//! The Kafka source: partitions of one or more topics (or of the topics a
//! pattern matches), spread over the cores, read without ever blocking one.
//!
//! Each core's reader owns its own `BaseConsumer` with a manual assignment
//! (no consumer-group rebalance: the engine decides who reads what, and
//! restores it). Partition `p` of topic `t` belongs to split
//! `(h(t) + p) % splits`, where `h` is a stable hash of the name, so a new
//! partition found by discovery never moves an old one (Flink's
//! `KafkaSourceEnumerator` rule).
//!
//! Everything librdkafka could block on (metadata, start offsets from the
//! group or a timestamp, watermarks) runs on glommio's blocking-thread pool
//! and is awaited; records are taken with `poll(0)`, which only looks at the
//! client's bounded in-memory queue.
//!
//! The position a checkpoint records is every owned partition's next offset
//! (and its stop offset, for a bounded read). A restore puts every recorded
//! partition back wherever it now belongs, so a job restores at another core
//! count; a partition the checkpoint does not know starts at the configured
//! start position. When a checkpoint completes, its offsets are committed to
//! the consumer group (for monitoring only: the checkpoint is the truth).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use brisk_engine::{
    Clock, Counter, Finisher, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus,
    StreamStatus,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::format::{KafkaDeserializer, KafkaRecord};
use super::{CountingProducer, DeliveryErrors, KafkaMalformed, StartOffsets};

/// How long a blocking metadata or offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reader waits between polls that found nothing.
const IDLE_POLL: Duration = Duration::from_millis(1);
/// Pending offset commits kept (older ones are superseded by newer).
const PENDING_COMMITS_MAX: usize = 8;
/// Headers of one record shown to a deserializer; more are dropped.
const HEADERS_MAX: usize = 64;

/// Which topics to read.
#[derive(Debug, Clone)]
enum Topics {
    Names(Vec<String>),
    Pattern(regex::Regex),
}

/// A Kafka topic (or pattern) as a source of `T`, decoded by `D`.
#[derive(Clone)]
pub struct KafkaSource<D> {
    brokers: String,
    topics: Topics,
    group_id: Option<String>,
    start: StartOffsets,
    bounded: bool,
    discovery: Option<Duration>,
    properties: Vec<(String, String)>,
    deserializer: D,
    malformed: KafkaMalformed,
    name: String,
}

impl<D> KafkaSource<D> {
    /// Reads `topics` from the cluster at `brokers` (`host:port,...`),
    /// decoding values with `deserializer` (see [`super::format`]). Starts at
    /// the earliest offsets, never ends, commits no offsets.
    pub fn new(brokers: &str, topics: &[&str], deserializer: D) -> Self {
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        Self {
            name: format!("kafka({})", names.join(",")),
            brokers: brokers.to_string(),
            topics: Topics::Names(names),
            group_id: None,
            start: StartOffsets::Earliest,
            bounded: false,
            discovery: None,
            properties: Vec::new(),
            deserializer,
            malformed: KafkaMalformed::Fail,
        }
    }

    /// Reads every topic whose whole name matches the regular expression
    /// `pattern`, looking for new ones (and new partitions) every
    /// `discovery_interval` (default 30 s; see
    /// [`with_discovery_interval`](Self::with_discovery_interval)).
    pub fn pattern(brokers: &str, pattern: &str, deserializer: D) -> Result<Self, SourceError> {
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            SourceError(format!("kafka topic pattern '{pattern}' is not a regular expression: {e}"))
        })?;
        Ok(Self {
            name: format!("kafka(/{pattern}/)"),
            brokers: brokers.to_string(),
            topics: Topics::Pattern(re),
            group_id: None,
            start: StartOffsets::Earliest,
            bounded: false,
            discovery: Some(Duration::from_secs(30)),
            properties: Vec::new(),
            deserializer,
            malformed: KafkaMalformed::Fail,
        })
    }

    /// Where partitions without a restored offset start.
    pub fn with_start(mut self, start: StartOffsets) -> Self {
        self.start = start;
        self
    }

    /// The consumer group: needed for [`StartOffsets::Committed`], and where
    /// the offsets of every completed checkpoint are committed.
    pub fn with_group_id(mut self, group: &str) -> Self {
        self.group_id = Some(group.to_string());
        self
    }

    /// Reads up to the end offsets found when the job starts, then ends
    /// (Flink's `setBounded(OffsetsInitializer.latest())`): a bounded job.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Looks for new partitions (and, with a pattern, new topics) this often.
    pub fn with_discovery_interval(mut self, every: Duration) -> Self {
        self.discovery = Some(every);
        self
    }

    /// What to do with a record the deserializer rejects (default: fail).
    pub fn on_malformed(mut self, policy: KafkaMalformed) -> Self {
        self.malformed = policy;
        self
    }

    /// Sets a librdkafka consumer property (e.g. `fetch.min.bytes`).
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", self.group_id.as_deref().unwrap_or("brisk"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "error")
            // A bounded client-side queue per partition (librdkafka's
            // default is 64 MiB).
            .set("queued.max.messages.kbytes", "16384");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// A stable hash of a topic's name (FNV-1a), to spread partitions.
fn topic_hash(topic: &str) -> u64 {
    topic.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The split that owns partition `partition` of `topic`.
pub fn owner_split(topic: &str, partition: i32, splits: usize) -> usize {
    ((topic_hash(topic) % splits as u64 + partition as u64) % splits as u64) as usize
}

impl<T: 'static, D: KafkaDeserializer<T>> Source<T> for KafkaSource<D> {
    type Reader = KafkaReader<D>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn is_bounded(&self) -> bool {
        self.bounded
    }

    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError> {
        if matches!(self.start, StartOffsets::Committed { .. }) && self.group_id.is_none() {
            return Err(SourceError(format!(
                "{}: starting from committed offsets needs a consumer group (with_group_id)",
                self.name
            )));
        }
        let consumer: BaseConsumer = self
            .consumer_config()
            .create()
            .map_err(|e| SourceError(format!("{}: cannot create the consumer: {e}", self.name)))?;
        let mut restored = HashMap::new();
        if let Some(positions) = ctx.restored_positions() {
            for p in positions {
                let parts: Vec<(String, i32, i64, i64)> = postcard::from_bytes(&p.position).map_err(|e| {
                    SourceError(format!("{}: a restored position is not a Kafka position: {e}", self.name))
                })?;
                for (topic, partition, next, stop) in parts {
                    restored.insert((topic, partition), (next, stop));
                }
            }
        }
        let dead_letters = match &self.malformed {
            KafkaMalformed::DeadLetter(topic) => {
                let mut c = ClientConfig::new();
                c.set("bootstrap.servers", &self.brokers).set("enable.idempotence", "true");
                for (k, v) in &self.properties {
                    if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                        c.set(k, v);
                    }
                }
                let producer: CountingProducer =
                    c.create_with_context(DeliveryErrors::default()).map_err(|e| {
                        SourceError(format!("{}: cannot create the dead-letter producer: {e}", self.name))
                    })?;
                Some(DeadLetters { producer, topic: topic.clone() })
            }
            _ => None,
        };
        Ok(KafkaReader {
            name: self.name.clone(),
            consumer: Arc::new(consumer),
            topics: self.topics.clone(),
            start: self.start,
            bounded: self.bounded,
            commit: self.group_id.is_some(),
            discovery: self.discovery.map(|d| d.as_nanos() as u64),
            next_discovery_ns: 0,
            discovered_once: false,
            split: ctx.split(),
            splits: ctx.splits(),
            parts: Vec::new(),
            last_hit: 0,
            restored,
            deserializer: self.deserializer.clone(),
            malformed: self.malformed.clone(),
            dead_letters,
            pending_commits: VecDeque::new(),
            idle_reported: false,
            clock: ctx.clock(),
            records: ctx.counter("records_read"),
            skipped: ctx.counter("malformed_skipped"),
            dead_lettered: ctx.counter("malformed_dead_lettered"),
        })
    }
}

/// One owned partition.
#[derive(Debug, Clone)]
struct Part {
    topic: String,
    partition: i32,
    /// The next offset to emit.
    next: i64,
    /// Bounded reads end before this offset (-1: unbounded).
    stop: i64,
}

impl Part {
    fn done(&self) -> bool {
        self.stop >= 0 && self.next >= self.stop
    }
}

struct DeadLetters {
    producer: CountingProducer,
    topic: String,
}

/// One core's reader of a [`KafkaSource`].
pub struct KafkaReader<D> {
    name: String,
    consumer: Arc<BaseConsumer>,
    topics: Topics,
    start: StartOffsets,
    bounded: bool,
    commit: bool,
    discovery: Option<u64>,
    next_discovery_ns: u64,
    discovered_once: bool,
    split: usize,
    splits: usize,
    /// Owned partitions; the index is the watermark split id.
    parts: Vec<Part>,
    last_hit: usize,
    restored: HashMap<(String, i32), (i64, i64)>,
    deserializer: D,
    malformed: KafkaMalformed,
    dead_letters: Option<DeadLetters>,
    pending_commits: VecDeque<(u64, Offsets)>,
    idle_reported: bool,
    clock: Arc<dyn Clock>,
    records: Counter,
    skipped: Counter,
    dead_lettered: Counter,
}

impl<D> Drop for KafkaReader<D> {
    fn drop(&mut self) {
        // Destroying a librdkafka client joins its threads and may wait for
        // the network: never on a core.
        let consumer = self.consumer.clone();
        let dead_letters = self.dead_letters.take();
        let _ = std::thread::Builder::new().name("brisk-kafka-close".into()).spawn(move || {
            drop(consumer);
            drop(dead_letters);
        });
    }
}

/// `(topic, partition, next offset)` of every owned partition.
type Offsets = Vec<(String, i32, i64)>;

/// What a discovery found: new partitions with their start and stop.
type Found = Result<Vec<Part>, String>;

impl<D> KafkaReader<D> {
    /// Finds this split's partitions not yet owned, resolves where each
    /// starts (and stops), on the blocking pool.
    async fn discover(&mut self) -> Result<(), SourceError> {
        let consumer = self.consumer.clone();
        let topics = self.topics.clone();
        let (split, splits) = (self.split, self.splits);
        let known: Vec<(String, i32)> = self.parts.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        let restored = self.restored.clone();
        let (start, bounded, first) = (self.start, self.bounded, !self.discovered_once);
        let found: Found = glommio::executor()
            .spawn_blocking(move || {
                let metadata = match &topics {
                    Topics::Names(names) if names.len() == 1 => {
                        consumer.fetch_metadata(Some(&names[0]), REQUEST_TIMEOUT)
                    }
                    _ => consumer.fetch_metadata(None, REQUEST_TIMEOUT),
                }
                .map_err(|e| format!("cannot read the topics' metadata: {e}"))?;
                let mut new = Vec::new();
                for t in metadata.topics() {
                    let wanted = match &topics {
                        Topics::Names(names) => names.iter().any(|n| n == t.name()),
                        Topics::Pattern(re) => !t.name().starts_with("__") && re.is_match(t.name()),
                    };
                    if !wanted {
                        continue;
                    }
                    if let Some(e) = t.error() {
                        return Err(format!(
                            "topic '{}': {}",
                            t.name(),
                            rdkafka::types::RDKafkaErrorCode::from(e)
                        ));
                    }
                    for p in t.partitions() {
                        let key = (t.name().to_string(), p.id());
                        if owner_split(&key.0, key.1, splits) != split || known.contains(&key) {
                            continue;
                        }
                        new.push(key);
                    }
                }
                if let Topics::Names(names) = &topics {
                    for n in names {
                        if !metadata.topics().iter().any(|t| t.name() == n && t.error().is_none()) {
                            return Err(format!("topic '{n}' does not exist"));
                        }
                    }
                }
                new.sort();
                resolve(&consumer, new, &restored, start, bounded, first)
            })
            .await;
        let found = found.map_err(|e| SourceError(format!("{}: {e}", self.name)))?;
        self.discovered_once = true;
        if found.is_empty() {
            return Ok(());
        }
        tracing::debug!(source = %self.name, split = self.split, partitions = found.len(), "kafka partitions assigned");
        self.parts.extend(found);
        self.assign()
    }

    fn assign(&self) -> Result<(), SourceError> {
        let mut tpl = TopicPartitionList::new();
        for p in self.parts.iter().filter(|p| !p.done()) {
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next))
                .map_err(|e| SourceError(format!("{}: {e}", self.name)))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| SourceError(format!("{}: cannot assign partitions: {e}", self.name)))
    }

    /// Waits until every dead letter handed to the producer is delivered,
    /// so that a checkpoint taken after this batch never skips one.
    async fn settle_dead_letters(&mut self) -> Result<(), SourceError> {
        let Some(dl) = &self.dead_letters else { return Ok(()) };
        let deadline = self.clock.monotonic_ns() + REQUEST_TIMEOUT.as_nanos() as u64;
        loop {
            dl.producer.poll(Duration::ZERO);
            if let Some(e) = dl.producer.context().error() {
                return Err(SourceError(format!("{}: dead-letter topic '{}': {e}", self.name, dl.topic)));
            }
            if dl.producer.in_flight_count() == 0 {
                return Ok(());
            }
            if self.clock.monotonic_ns() > deadline {
                return Err(SourceError(format!(
                    "{}: dead letters to '{}' not delivered within {:?}",
                    self.name, dl.topic, REQUEST_TIMEOUT
                )));
            }
            glommio::timer::sleep(IDLE_POLL).await;
        }
    }
}

/// The index of `topic`/`partition` in `parts`, trying `last_hit` first.
fn part_index(parts: &[Part], last_hit: &mut usize, topic: &str, partition: i32) -> Option<usize> {
    let hit = |p: &Part| p.partition == partition && p.topic == topic;
    if parts.get(*last_hit).is_some_and(hit) {
        return Some(*last_hit);
    }
    let i = parts.iter().position(hit)?;
    *last_hit = i;
    Some(i)
}

/// Start (and stop) offsets of new partitions; runs on the blocking pool.
fn resolve(
    consumer: &BaseConsumer,
    new: Vec<(String, i32)>,
    restored: &HashMap<(String, i32), (i64, i64)>,
    start: StartOffsets,
    bounded: bool,
    first: bool,
) -> Found {
    let mut parts = Vec::with_capacity(new.len());
    let mut by_time = TopicPartitionList::new();
    let mut committed = TopicPartitionList::new();
    for (topic, partition) in new {
        if let Some(&(next, mut stop)) = restored.get(&(topic.clone(), partition)) {
            if bounded && stop < 0 {
                // Restored from an unbounded run into a bounded one: stop
                // at today's end.
                stop = consumer
                    .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                    .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))?
                    .1;
            }
            parts.push(Part { topic, partition, next, stop });
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))?;
        // A partition found after the job started is new: read it whole.
        let next = match start {
            _ if !first => low,
            StartOffsets::Earliest => low,
            StartOffsets::Latest => high,
            StartOffsets::Offset(o) => o.clamp(low, high),
            StartOffsets::Timestamp(ts) => {
                by_time
                    .add_partition_offset(&topic, partition, Offset::Offset(ts))
                    .map_err(|e| e.to_string())?;
                -1
            }
            StartOffsets::Committed { .. } => {
                committed.add_partition(&topic, partition);
                -1
            }
        };
        parts.push(Part { topic, partition, next, stop: if bounded { high } else { -1 } });
    }
    let fill = |parts: &mut Vec<Part>,
                tpl: TopicPartitionList,
                fallback: &dyn Fn(&str, i32) -> Result<i64, String>| {
        for e in tpl.elements() {
            let Some(p) = parts.iter_mut().find(|p| p.topic == e.topic() && p.partition == e.partition())
            else {
                continue;
            };
            p.next = match e.offset() {
                Offset::Offset(o) => o,
                _ => fallback(e.topic(), e.partition())?,
            };
        }
        Ok::<(), String>(())
    };
    let end = |topic: &str, partition: i32| {
        consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map(|(_, high)| high)
            .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))
    };
    if by_time.count() > 0 {
        let found = consumer
            .offsets_for_times(by_time, REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot look up offsets by timestamp: {e}"))?;
        // No record at or after the timestamp: start at the end.
        fill(&mut parts, found, &end)?;
    }
    if committed.count() > 0 {
        let found = consumer
            .committed_offsets(committed, REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot read the group's committed offsets: {e}"))?;
        let fallback = |topic: &str, partition: i32| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(|e| format!("cannot read the offsets of {topic}/{partition}: {e}"))?;
            match start {
                StartOffsets::Committed { or_latest: true } => Ok(high),
                _ => Ok(low),
            }
        };
        fill(&mut parts, found, &fallback)?;
    }
    Ok(parts)
}

impl<T: 'static, D: KafkaDeserializer<T>> SourceReader<T> for KafkaReader<D> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        let now = self.clock.monotonic_ns();
        if !self.discovered_once || self.discovery.is_some_and(|_| now >= self.next_discovery_ns) {
            let first = !self.discovered_once;
            self.discover().await?;
            self.next_discovery_ns = now + self.discovery.unwrap_or(u64::MAX / 2);
            if first {
                for i in 0..self.parts.len() {
                    if !self.parts[i].done() {
                        out.declare_split(i);
                    }
                }
            }
        }
        let live = self.parts.iter().any(|p| !p.done());
        if !live {
            if self.bounded {
                return Ok(SourceStatus::Done);
            }
            // No partition (more cores than partitions): idle, so that this
            // core does not hold back the watermark downstream.
            if !self.idle_reported {
                self.idle_reported = true;
                out.mark_status(StreamStatus::Idle);
            }
            return Ok(SourceStatus::Wait(Duration::from_millis(10)));
        }
        if self.idle_reported {
            self.idle_reported = false;
            out.mark_status(StreamStatus::Active);
        }
        let mut status = SourceStatus::More;
        let mut dead = false;
        while out.remaining() > 0 {
            let Some(polled) = self.consumer.poll(Duration::ZERO) else {
                status = SourceStatus::Wait(IDLE_POLL);
                break;
            };
            let m = polled.map_err(|e| SourceError(format!("{}: {e}", self.name)))?;
            let Some(i) = part_index(&self.parts, &mut self.last_hit, m.topic(), m.partition()) else {
                continue;
            };
            let part = &self.parts[i];
            let offset = m.offset();
            if offset < part.next || part.done() {
                continue; // before a restored position, or past a bounded end
            }
            let timestamp = m.timestamp().to_millis();
            if let Some(ts) = timestamp.filter(|&t| t > 0) {
                // Latency is measured from the record's Kafka timestamp.
                out.created_at(ts.saturating_mul(1000));
            }
            let headers: Vec<(&str, Option<&[u8]>)> = m
                .headers()
                .map(|h| h.iter().take(HEADERS_MAX).map(|h| (h.key, h.value)).collect())
                .unwrap_or_default();
            let record = KafkaRecord {
                topic: m.topic(),
                partition: m.partition(),
                offset,
                key: m.key(),
                value: m.payload(),
                timestamp,
                headers: &headers,
            };
            match self.deserializer.deserialize(&record) {
                Ok(Some(v)) => {
                    self.records.add(1);
                    match timestamp {
                        Some(ts) => out.collect_from_split_with_timestamp(i, v, ts),
                        None => out.collect_from_split(i, v),
                    }
                }
                Ok(None) => {}
                Err(reason) => match &self.malformed {
                    KafkaMalformed::Fail => {
                        return Err(SourceError(format!(
                            "{}: malformed record at topic '{}' partition {} offset {offset}: {reason}",
                            self.name, record.topic, record.partition
                        )));
                    }
                    KafkaMalformed::Skip => self.skipped.add(1),
                    KafkaMalformed::DeadLetter(_) => {
                        let dl = self.dead_letters.as_ref().expect("a dead-letter policy has a producer");
                        let headers = rdkafka::message::OwnedHeaders::new()
                            .insert(rdkafka::message::Header {
                                key: "brisk.topic",
                                value: Some(record.topic),
                            })
                            .insert(rdkafka::message::Header {
                                key: "brisk.partition",
                                value: Some(&record.partition.to_string()),
                            })
                            .insert(rdkafka::message::Header {
                                key: "brisk.offset",
                                value: Some(&offset.to_string()),
                            })
                            .insert(rdkafka::message::Header { key: "brisk.error", value: Some(&reason) });
                        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&dl.topic).headers(headers);
                        if let Some(k) = record.key {
                            r = r.key(k);
                        }
                        if let Some(v) = record.value {
                            r = r.payload(v);
                        }
                        // The producer's queue is bounded; wait for room.
                        let mut pending = r;
                        loop {
                            match dl.producer.send(pending) {
                                Ok(()) => break,
                                Err((
                                    rdkafka::error::KafkaError::MessageProduction(
                                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                                    ),
                                    back,
                                )) => {
                                    pending = back;
                                    dl.producer.poll(Duration::from_millis(0));
                                    glommio::timer::sleep(IDLE_POLL).await;
                                }
                                Err((e, _)) => {
                                    return Err(SourceError(format!(
                                        "{}: cannot dead-letter the record at topic '{}' partition {} offset {offset}: {e}",
                                        self.name, record.topic, record.partition
                                    )));
                                }
                            }
                        }
                        self.dead_lettered.add(1);
                        dead = true;
                    }
                },
            }
            let part = &mut self.parts[i];
            part.next = offset + 1;
            if part.done() {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&part.topic, part.partition);
                let _ = self.consumer.pause(&tpl);
            }
        }
        if dead {
            self.settle_dead_letters().await?;
        }
        if self.bounded && self.parts.iter().all(Part::done) {
            return Ok(SourceStatus::Done);
        }
        Ok(status)
    }

    fn position(&self) -> Option<Vec<u8>> {
        let parts: Vec<(&str, i32, i64, i64)> =
            self.parts.iter().map(|p| (p.topic.as_str(), p.partition, p.next, p.stop)).collect();
        Some(postcard::to_allocvec(&parts).expect("positions serialize"))
    }

    fn snapshot_position(&mut self, checkpoint: u64) -> Option<Vec<u8>> {
        if self.commit && self.discovered_once {
            let offsets = self.parts.iter().map(|p| (p.topic.clone(), p.partition, p.next)).collect();
            if self.pending_commits.len() == PENDING_COMMITS_MAX {
                self.pending_commits.pop_front();
            }
            self.pending_commits.push_back((checkpoint, offsets));
        }
        // Before the first discovery the restored positions are still the
        // truth: keep them.
        if !self.discovered_once && !self.restored.is_empty() {
            let parts: Vec<(&str, i32, i64, i64)> = self
                .restored
                .iter()
                .filter(|((t, p), _)| owner_split(t, *p, self.splits) == self.split)
                .map(|((t, p), (n, s))| (t.as_str(), *p, *n, *s))
                .collect();
            return Some(postcard::to_allocvec(&parts).expect("positions serialize"));
        }
        self.position()
    }

    fn checkpoint_complete(&mut self, checkpoint: u64) {
        let mut newest = None;
        while self.pending_commits.front().is_some_and(|(id, _)| *id <= checkpoint) {
            newest = self.pending_commits.pop_front();
        }
        let Some((_, offsets)) = newest else { return };
        tracing::debug!(source = %self.name, checkpoint, ?offsets, "committing offsets to the group");
        // Asynchronous: never waits; a failure only delays monitoring.
        commit_offsets(&self.consumer, &self.name, &offsets, CommitMode::Async);
    }

    fn finisher(&mut self) -> Option<Finisher> {
        // The split ended (bounded input, or stopped with a savepoint): its
        // last offsets go to the group once the job's output is final. The
        // reader is gone by then, so the finisher holds the consumer.
        if !self.commit || !self.discovered_once {
            return None;
        }
        let offsets: Offsets = self.parts.iter().map(|p| (p.topic.clone(), p.partition, p.next)).collect();
        let (consumer, name) = (self.consumer.clone(), self.name.clone());
        Some(Box::new(move || {
            tracing::debug!(source = %name, ?offsets, "committing the final offsets to the group");
            commit_offsets(&consumer, &name, &offsets, CommitMode::Sync);
            Ok(())
        }))
    }
}

/// Commits `offsets` to the consumer's group. Offsets there are for
/// monitoring and `StartOffsets::Committed` only (positions come from
/// checkpoints), so a failure is logged, not fatal.
fn commit_offsets(consumer: &BaseConsumer, name: &str, offsets: &Offsets, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, mode)
    {
        tracing::warn!(source = %name, "cannot commit offsets to the group: {e}");
    }
}
