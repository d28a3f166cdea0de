//! The Kafka sink: records serialized into a bounded staging buffer by the
//! operator chain, handed to librdkafka's producer when the driving task
//! drains the sink, with one of three delivery guarantees.
//!
//! - `None`: handed over and forgotten; failed deliveries are counted
//!   (`delivery_failed`) and logged.
//! - `AtLeastOnce`: at every checkpoint barrier the sink waits until the
//!   broker acknowledged everything handed over so far; a failed delivery
//!   fails the checkpoint and the job (replay then resends it).
//! - `ExactlyOnce`: Kafka transactions driven by checkpoints, Flink's
//!   `KafkaSink` protocol. Each core has a small pool of transactional
//!   producers (`<prefix>-<core>-<slot>`); at a barrier the open transaction
//!   is flushed (pre-commit) and set aside, and the next records go into a
//!   new transaction on the next producer; once the checkpoint is complete,
//!   the set-aside transactions up to it are committed. At start every
//!   producer of the pool runs `init_transactions`, which aborts whatever
//!   an earlier run left open under its id (lingering transactions).
//!
//! Blocking librdkafka calls (metadata, `init_transactions`, commit, abort)
//! run on glommio's blocking-thread pool and are awaited; `send` never
//! blocks: when the producer's bounded queue is full the sink polls and
//! waits on a timer.

use std::sync::Arc;
use std::time::Duration;

use brisk_engine::{Batch, CheckpointProgress, Counter, Finisher, Sink, SinkContext, SinkError, SinkWriter};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::format::{KafkaOut, KafkaSerializer};
use super::{CountingProducer, DeliveryErrors};

/// How long a blocking producer call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long librdkafka keeps trying to deliver a record before it reports
/// the record failed (`message.timeout.ms`, alias `delivery.timeout.ms`),
/// unless the sink's properties say otherwise: Flink's Kafka sink default.
/// Within it, a request the broker never answers is sent again once
/// librdkafka's `request.timeout.ms` (30 s) has passed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after the delivery timeout a flush still waits for the
/// delivery reports before it gives up on its own.
const REPORT_MARGIN: Duration = Duration::from_secs(10);
/// Staged bytes that make the sink ask to be drained.
const STAGED_BYTES_MAX: usize = 1 << 20;
/// Staged records that make the sink ask to be drained.
const STAGED_RECORDS_MAX: usize = 8192;
/// Transactional producers per core (transactions open or awaiting commit).
pub const TRANSACTION_POOL: usize = 4;
/// The wait between polls of a producer that has no room or is flushing.
const POLL_WAIT: Duration = Duration::from_micros(200);

/// What the sink promises about each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaDelivery {
    /// Fire and forget.
    None,
    /// Every record at least once: flushed at every checkpoint.
    AtLeastOnce,
    /// Every record exactly once through Kafka transactions committed with
    /// checkpoints, under transactional ids starting with this prefix
    /// (unique per job and cluster).
    ExactlyOnce {
        /// `transactional.id` = `<prefix>-<core>-<slot>`.
        transactional_id_prefix: String,
    },
}

/// A custom partitioner: `(key, value, partition count) -> partition`
/// (taken modulo the count).
pub type PartitionFn = Arc<dyn Fn(Option<&[u8]>, &[u8], i32) -> i32 + Send + Sync>;

/// How records are spread over the topic's partitions.
pub enum KafkaPartitioner {
    /// By key, with the Java client's murmur2 hash (records without a key
    /// spread at random): what a Java consumer or Kafka Streams expects.
    Key,
    /// Core `c` writes partition `c % partitions` (Flink's
    /// `FlinkFixedPartitioner`).
    Fixed,
    /// A function of the serialized key and value and the partition count.
    Custom(PartitionFn),
}

impl Clone for KafkaPartitioner {
    fn clone(&self) -> Self {
        match self {
            Self::Key => Self::Key,
            Self::Fixed => Self::Fixed,
            Self::Custom(f) => Self::Custom(f.clone()),
        }
    }
}

/// A Kafka topic as a sink of `T`, serialized by `S`.
pub struct KafkaSink<T, S> {
    brokers: String,
    topic: String,
    serializer: S,
    delivery: KafkaDelivery,
    partitioner: KafkaPartitioner,
    properties: Vec<(String, String)>,
    create_partitions: Option<i32>,
    _type: std::marker::PhantomData<fn(&T)>,
}

impl<T, S: Clone> Clone for KafkaSink<T, S> {
    fn clone(&self) -> Self {
        Self {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            delivery: self.delivery.clone(),
            partitioner: self.partitioner.clone(),
            properties: self.properties.clone(),
            create_partitions: self.create_partitions,
            _type: std::marker::PhantomData,
        }
    }
}

impl<T, S> KafkaSink<T, S> {
    /// Writes to `topic` on the cluster at `brokers`, at least once, keyed
    /// partitioning.
    pub fn new(brokers: &str, topic: &str, serializer: S) -> Self {
        Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            serializer,
            delivery: KafkaDelivery::AtLeastOnce,
            partitioner: KafkaPartitioner::Key,
            properties: Vec::new(),
            create_partitions: None,
            _type: std::marker::PhantomData,
        }
    }

    /// Creates the topic with `partitions` partitions (replication 1) when
    /// the sink starts and it does not exist. Without this a missing topic
    /// fails the job.
    pub fn create_topic_if_missing(mut self, partitions: i32) -> Self {
        self.create_partitions = Some(partitions.max(1));
        self
    }

    /// The delivery guarantee.
    pub fn with_delivery(mut self, delivery: KafkaDelivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The partitioner.
    pub fn with_partitioner(mut self, partitioner: KafkaPartitioner) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// Sets a librdkafka producer property (e.g. `linger.ms`).
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// How long a flush waits for its records' delivery reports: the
    /// delivery timeout (see [`DELIVERY_TIMEOUT`]) and a margin; `None` when
    /// the properties make librdkafka retry forever (`0`).
    fn settle_within(&self) -> Option<Duration> {
        let ms = self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "message.timeout.ms" || k == "delivery.timeout.ms")
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        match ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms) + REPORT_MARGIN),
            // Unset, or a value librdkafka rejects when the producer is made.
            None => Some(DELIVERY_TIMEOUT + REPORT_MARGIN),
        }
    }

    fn producer(&self, transactional_id: Option<&str>) -> Result<Arc<CountingProducer>, SinkError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "65536")
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string());
        if let Some(id) = transactional_id {
            c.set("transactional.id", id).set("transaction.timeout.ms", "900000");
        } else if self.delivery != KafkaDelivery::None {
            c.set("enable.idempotence", "true");
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        let producer: CountingProducer = c
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| SinkError(format!("kafka({}): cannot create a producer: {e}", self.topic)))?;
        Ok(Arc::new(producer))
    }
}

impl<T: 'static, S: KafkaSerializer<T>> Sink<T> for KafkaSink<T, S> {
    type Writer = KafkaWriter<T, S>;

    fn name(&self) -> String {
        format!("kafka({})", self.topic)
    }

    fn create_writer(&self, ctx: &SinkContext) -> Result<Self::Writer, SinkError> {
        let mut orphans = Vec::new();
        let (producers, transactional) = match &self.delivery {
            KafkaDelivery::ExactlyOnce { transactional_id_prefix } => {
                if transactional_id_prefix.is_empty() {
                    return Err(SinkError(format!(
                        "kafka({}): exactly-once needs a non-empty transactional id prefix",
                        self.topic
                    )));
                }
                let mut pool = Vec::with_capacity(TRANSACTION_POOL);
                for slot in 0..TRANSACTION_POOL {
                    let id = format!("{transactional_id_prefix}-{}-{slot}", ctx.core());
                    pool.push(self.producer(Some(&id))?);
                }
                // Restored from a run with more cores: this core also fences
                // the ids of the cores that no longer exist (core c takes
                // c + cores, c + 2 cores, ...), aborting what they left open.
                let old = ctx.restored_cores().unwrap_or(0);
                for gone in (ctx.core() + ctx.cores()..old).step_by(ctx.cores()) {
                    for slot in 0..TRANSACTION_POOL {
                        orphans
                            .push(self.producer(Some(&format!("{transactional_id_prefix}-{gone}-{slot}")))?);
                    }
                }
                (pool, true)
            }
            _ => (vec![self.producer(None)?], false),
        };
        Ok(KafkaWriter {
            topic: self.topic.clone(),
            serializer: self.serializer.clone(),
            partitioner: self.partitioner.clone(),
            delivery: self.delivery.clone(),
            transactional,
            core: ctx.core(),
            producers,
            orphans,
            settle_within: self.settle_within(),
            current: 0,
            initialized: false,
            partitions: None,
            brokers: self.brokers.clone(),
            create_partitions: self.create_partitions,
            staged: Vec::new(),
            _type: std::marker::PhantomData,
            arena: Vec::new(),
            out: KafkaOut::default(),
            set_aside: Vec::new(),
            ending: Vec::new(),
            progress: ctx.checkpoint_progress(),
            records: ctx.counter("records_written"),
            failed: ctx.counter("delivery_failed"),
            failed_seen: 0,
            committed: ctx.counter("transactions_committed"),
            aborted_at_start: ctx.counter("transactions_aborted_at_start"),
            stopped: false,
            aborted_on_stop: ctx.counter("transactions_aborted_on_stop"),
        })
    }
}

/// A serialized record waiting to be handed to the producer.
struct Staged {
    key: Option<(u32, u32)>,
    value: (u32, u32),
    timestamp: Option<i64>,
    headers: Option<OwnedHeaders>,
}

/// One core's writer of a [`KafkaSink`].
pub struct KafkaWriter<T, S> {
    topic: String,
    serializer: S,
    partitioner: KafkaPartitioner,
    delivery: KafkaDelivery,
    transactional: bool,
    core: usize,
    producers: Vec<Arc<CountingProducer>>,
    /// Producers of the transactional ids of restored cores that no longer
    /// exist: initialized once (which aborts their transactions), then
    /// dropped.
    orphans: Vec<Arc<CountingProducer>>,
    /// How long a flush waits for delivery reports before it fails on its
    /// own (librdkafka reports a record it gave up on before that).
    settle_within: Option<Duration>,
    /// The producer taking records (its transaction is open, if transactional).
    current: usize,
    initialized: bool,
    partitions: Option<i32>,
    brokers: String,
    create_partitions: Option<i32>,
    staged: Vec<Staged>,
    _type: std::marker::PhantomData<fn(&T)>,
    arena: Vec<u8>,
    out: KafkaOut,
    /// Pre-committed transactions: (checkpoint, producer slot).
    set_aside: Vec<(u64, usize)>,
    /// At the end of input: the producer slots whose transactions the
    /// finisher commits, in order.
    ending: Vec<usize>,
    progress: CheckpointProgress,
    records: Counter,
    failed: Counter,
    failed_seen: u64,
    committed: Counter,
    aborted_at_start: Counter,
    /// The job is stopping with a savepoint this sink saw the barrier of.
    stopped: bool,
    aborted_on_stop: Counter,
}

/// The partition count of `topic`, creating it with `create` partitions
/// when missing (if asked); runs on the blocking pool.
fn topic_partitions(
    p: &CountingProducer,
    brokers: &str,
    topic: &str,
    create: Option<i32>,
) -> Result<i32, String> {
    let count = || -> Result<i32, String> {
        let md = p
            .client()
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| format!("cannot read the topic's metadata from {brokers}: {e}"))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32))
    };
    let n = count()?;
    if n > 0 {
        return Ok(n);
    }
    let Some(partitions) = create else {
        return Err(format!("topic '{topic}' does not exist on {brokers} (create it first)"));
    };
    super::create_topic(brokers, topic, partitions)?;
    // Metadata follows creation with a delay on some brokers (this runs on
    // the blocking pool, not a core).
    for _ in 0..50 {
        let n = count()?;
        if n > 0 {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("topic '{topic}' was created but does not show in the metadata"))
}

impl<T, S> Drop for KafkaWriter<T, S> {
    fn drop(&mut self) {
        // Destroying a librdkafka client joins its threads and may wait for
        // the network: never on a core.
        let producers = std::mem::take(&mut self.producers);
        let orphans = std::mem::take(&mut self.orphans);
        let _ = std::thread::Builder::new().name("brisk-kafka-close".into()).spawn(move || {
            drop(producers);
            drop(orphans);
        });
    }
}

fn blocking_err(topic: &str, what: &str, e: KafkaError) -> SinkError {
    SinkError(format!("kafka({topic}): {what}: {e}"))
}

impl<T, S> KafkaWriter<T, S> {
    /// First I/O: the partition count (if the partitioner needs it) and the
    /// transactional producers' initialization (aborting lingering
    /// transactions), on the blocking pool.
    async fn initialize(&mut self) -> Result<(), SinkError> {
        if self.initialized {
            return Ok(());
        }
        // The topic must exist (a missing one would make every record wait
        // for its delivery timeout); its partition count is kept.
        let p = self.producers[0].clone();
        let (topic, brokers, create) = (self.topic.clone(), self.brokers.clone(), self.create_partitions);
        let n = glommio::executor()
            .spawn_blocking(move || topic_partitions(&p, &brokers, &topic, create))
            .await
            .map_err(|e| SinkError(format!("kafka({}): {e}", self.topic)))?;
        self.partitions = Some(n);
        if self.transactional {
            let producers = self.producers.clone();
            let orphans = std::mem::take(&mut self.orphans);
            let n = producers.len() + orphans.len();
            glommio::executor()
                .spawn_blocking(move || {
                    for p in producers.iter().chain(&orphans) {
                        p.init_transactions(REQUEST_TIMEOUT)?;
                    }
                    // Destroying a client waits for its threads: here, on
                    // the blocking pool.
                    drop(orphans);
                    producers[0].begin_transaction()
                })
                .await
                .map_err(|e| blocking_err(&self.topic, "cannot initialize transactions", e))?;
            self.aborted_at_start.add(n as u64);
        }
        self.initialized = true;
        Ok(())
    }

    fn check_errors(&self) -> Result<(), SinkError> {
        for p in &self.producers {
            if let Some(e) = p.context().error() {
                if self.delivery == KafkaDelivery::None {
                    continue;
                }
                return Err(SinkError(format!("kafka({}): {e}", self.topic)));
            }
        }
        Ok(())
    }

    /// Hands the staged records to the current producer.
    async fn send_staged(&mut self) -> Result<(), SinkError> {
        let producer = self.producers[self.current].clone();
        for s in self.staged.drain(..) {
            let value = &self.arena[s.value.0 as usize..s.value.1 as usize];
            let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).payload(value);
            if let Some((a, b)) = s.key {
                r = r.key(&self.arena[a as usize..b as usize]);
            }
            let n = self.partitions.unwrap_or(1).max(1);
            match &self.partitioner {
                KafkaPartitioner::Key => {}
                KafkaPartitioner::Fixed => r = r.partition(self.core as i32 % n),
                KafkaPartitioner::Custom(f) => {
                    let key = s.key.map(|(a, b)| &self.arena[a as usize..b as usize]);
                    r = r.partition(f(key, value, n).rem_euclid(n));
                }
            }
            if let Some(ts) = s.timestamp {
                r = r.timestamp(ts);
            }
            if let Some(h) = s.headers {
                r = r.headers(h);
            }
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        r = back;
                        producer.poll(Duration::ZERO);
                        glommio::timer::sleep(POLL_WAIT).await;
                    }
                    Err((e, _)) => return Err(blocking_err(&self.topic, "cannot produce", e)),
                }
            }
        }
        self.arena.clear();
        producer.poll(Duration::ZERO);
        let failed: u64 = self.producers.iter().map(|p| p.context().failed()).sum();
        self.failed.add(failed.saturating_sub(self.failed_seen));
        self.failed_seen = failed;
        self.check_errors()
    }

    /// Waits until the broker acknowledged everything handed over. A record
    /// librdkafka gives up on (after the delivery timeout) fails the sink
    /// with librdkafka's reason; a request the broker drops is sent again
    /// meanwhile, so a flush does not give up before librdkafka does.
    async fn settle(&mut self, slot: usize) -> Result<(), SinkError> {
        let p = self.producers[slot].clone();
        let started = std::time::Instant::now();
        loop {
            p.poll(Duration::ZERO);
            self.check_errors()?;
            if p.in_flight_count() == 0 {
                return Ok(());
            }
            if let Some(within) = self.settle_within.filter(|w| started.elapsed() > *w) {
                return Err(SinkError(format!(
                    "kafka({}): {} records neither acknowledged nor reported failed within {within:?} \
                     (the delivery timeout, message.timeout.ms, and {REPORT_MARGIN:?})",
                    self.topic,
                    p.in_flight_count()
                )));
            }
            glommio::timer::sleep(POLL_WAIT).await;
        }
    }

    /// Commits the set-aside transactions of completed checkpoints.
    async fn commit_completed(&mut self) -> Result<(), SinkError> {
        let completed = self.progress.completed();
        while let Some(&(id, slot)) = self.set_aside.first() {
            if id > completed {
                break;
            }
            let p = self.producers[slot].clone();
            glommio::executor().spawn_blocking(move || p.commit_transaction(REQUEST_TIMEOUT)).await.map_err(
                |e| {
                    blocking_err(&self.topic, &format!("cannot commit the transaction of checkpoint {id}"), e)
                },
            )?;
            self.committed.add(1);
            self.set_aside.remove(0);
        }
        Ok(())
    }
}

impl<T: 'static, S: KafkaSerializer<T>> SinkWriter<T> for KafkaWriter<T, S> {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        for (i, record) in batch.records.iter().enumerate() {
            self.out.clear();
            self.serializer
                .serialize(record, &mut self.out)
                .map_err(|e| SinkError(format!("kafka({}): cannot serialize a record: {e}", self.topic)))?;
            if self.out.timestamp.is_none() {
                self.out.timestamp = batch.timestamps.get(i).copied().filter(|t| (0..i64::MAX).contains(t));
            }
            let key = self.out.key().map(|k| {
                let a = self.arena.len() as u32;
                self.arena.extend_from_slice(k);
                (a, self.arena.len() as u32)
            });
            let a = self.arena.len() as u32;
            self.arena.extend_from_slice(&self.out.value);
            let value = (a, self.arena.len() as u32);
            let headers = (!self.out.headers.is_empty()).then(|| {
                self.out.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header { key: k, value: Some(v.as_slice()) })
                })
            });
            self.staged.push(Staged { key, value, timestamp: self.out.timestamp, headers });
        }
        self.records.add(batch.records.len() as u64);
        batch.clear();
        Ok(())
    }

    fn wants_flush(&self) -> bool {
        self.arena.len() >= STAGED_BYTES_MAX || self.staged.len() >= STAGED_RECORDS_MAX
    }

    fn has_buffered(&self) -> bool {
        !self.staged.is_empty()
    }

    async fn flush(&mut self, end_of_input: bool) -> Result<(), SinkError> {
        if !self.initialized {
            self.initialize().await?;
        }
        if self.transactional {
            self.commit_completed().await?;
        }
        if end_of_input && self.stopped && self.transactional {
            // Stopped with a savepoint: the transactions set aside at its
            // barrier and before are the finisher's to commit; the open
            // one holds only what came after the barrier, which the job
            // restored from the savepoint produces again. Abort it.
            self.staged.clear();
            self.arena.clear();
            let p = self.producers[self.current].clone();
            glommio::executor().spawn_blocking(move || p.abort_transaction(REQUEST_TIMEOUT)).await.map_err(
                |e| blocking_err(&self.topic, "cannot abort the transaction after the savepoint", e),
            )?;
            self.aborted_on_stop.add(1);
            self.ending = self.set_aside.drain(..).map(|(_, s)| s).collect();
            return Ok(());
        }
        self.send_staged().await?;
        if end_of_input {
            let current = self.current;
            self.settle(current).await?;
            if self.transactional {
                // Everything is on the broker. The transactions still open
                // are committed once the job's output is final (after its
                // last checkpoint, or the savepoint it stopped with): see
                // `finisher`.
                self.ending = self.set_aside.drain(..).map(|(_, s)| s).collect();
                self.ending.push(current);
            }
        }
        Ok(())
    }

    fn stopped_with_savepoint(&mut self) {
        self.stopped = true;
    }

    fn finisher(&mut self) -> Option<Finisher> {
        if self.ending.is_empty() {
            return None;
        }
        let producers: Vec<Arc<CountingProducer>> =
            self.ending.drain(..).map(|slot| self.producers[slot].clone()).collect();
        let (topic, committed) = (self.topic.clone(), self.committed.clone());
        Some(Box::new(move || {
            for p in producers {
                p.commit_transaction(REQUEST_TIMEOUT)
                    .map_err(|e| format!("kafka({topic}): cannot commit the last transactions: {e}"))?;
                committed.add(1);
            }
            Ok(())
        }))
    }

    async fn pre_commit(
        &mut self,
        checkpoint: u64,
    ) -> Result<Vec<brisk_engine::checkpoint::store::Commit>, SinkError> {
        self.flush(false).await?;
        let current = self.current;
        match self.delivery {
            KafkaDelivery::None => {}
            KafkaDelivery::AtLeastOnce => self.settle(current).await?,
            KafkaDelivery::ExactlyOnce { .. } => {
                // Pre-commit: everything of this transaction is on the broker.
                self.settle(current).await?;
                self.set_aside.push((checkpoint, current));
                // The next transaction on the next free producer. All of
                // them holding set-aside transactions means checkpoints
                // failed again and again: fail rather than grow.
                let busy: Vec<usize> = self.set_aside.iter().map(|&(_, s)| s).collect();
                let Some(next) = (1..=TRANSACTION_POOL)
                    .map(|d| (current + d) % TRANSACTION_POOL)
                    .find(|s| !busy.contains(s))
                else {
                    return Err(SinkError(format!(
                        "kafka({}): {} transactions await checkpoints that have not completed; \
                         no producer is free for the next one",
                        self.topic,
                        busy.len()
                    )));
                };
                self.producers[next]
                    .begin_transaction()
                    .map_err(|e| blocking_err(&self.topic, "cannot begin a transaction", e))?;
                self.current = next;
            }
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Lines;

    fn sink(properties: &[(&str, &str)]) -> KafkaSink<String, Lines> {
        properties.iter().fold(KafkaSink::new("127.0.0.1:9", "t", Lines), |s, (k, v)| s.with_property(k, v))
    }

    #[test]
    fn a_flush_waits_for_the_delivery_timeout_the_properties_set() {
        let margin = REPORT_MARGIN;
        assert_eq!(sink(&[]).settle_within(), Some(DELIVERY_TIMEOUT + margin));
        assert_eq!(
            sink(&[("message.timeout.ms", "5000")]).settle_within(),
            Some(Duration::from_secs(5) + margin)
        );
        // The alias, and the last setting wins, as in librdkafka.
        let both = sink(&[("message.timeout.ms", "5000"), ("delivery.timeout.ms", "300000")]);
        assert_eq!(both.settle_within(), Some(Duration::from_secs(300) + margin));
        // 0: librdkafka retries forever, and so does the flush.
        assert_eq!(sink(&[("message.timeout.ms", "0")]).settle_within(), None);
        // Unrelated properties change nothing.
        assert_eq!(sink(&[("linger.ms", "50")]).settle_within(), Some(DELIVERY_TIMEOUT + margin));
    }
}
