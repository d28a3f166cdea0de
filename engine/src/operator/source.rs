//! Sources: the [`Source`] a user adds to a job (cloned per core), the
//! [`SourceReader`] each core runs for its share of the input, and the task
//! that drives a reader into its operator chain.

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::batch::{
    BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK, MIN_WATERMARK, StreamStatus, Timestamp,
};
use crate::error::{JobError, OperatorInfo};
use crate::metrics::Counter;
use crate::operator::watermarks::SplitWatermarks;
use crate::runtime::core::{Core, Owned, Push};

/// A source's description, cloned to every core, where it opens a reader for
/// that core's split of the input.
pub trait Source<T>: Clone + Send + 'static {
    /// The per-core reader.
    type Reader: SourceReader<T>;
    /// A short name for logs, metrics and errors (e.g. `file(data.csv)`).
    fn name(&self) -> String;
    /// Whether the input ends (files, collections, bounded generators).
    fn is_bounded(&self) -> bool;
    /// Opens the reader for split `ctx.split()` of `ctx.splits()`.
    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError>;
}

/// Reads one core's split of a source, a batch at a time.
pub trait SourceReader<T>: 'static {
    /// Appends up to `out.remaining()` records to `out` and says what next.
    /// Must not block the core: wait through the returned future, or return
    /// [`SourceStatus::Wait`].
    fn next_batch(
        &mut self,
        out: &mut SourceOutput<'_, T>,
    ) -> impl Future<Output = Result<SourceStatus, SourceError>>;

    /// Where the reader is, for a checkpoint: bytes from which its source
    /// resumes exactly after the records emitted so far (see
    /// [`SourceContext::restored_positions`]). `None`: the reader cannot be
    /// replayed, and a job that takes checkpoints refuses it.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// The position for checkpoint `checkpoint`, taken as its barrier
    /// leaves the source. The default is [`position`](Self::position); a
    /// reader that acts when a checkpoint completes (Kafka commits offsets)
    /// remembers what it recorded here.
    fn snapshot_position(&mut self, checkpoint: u64) -> Option<Vec<u8>> {
        let _ = checkpoint;
        self.position()
    }

    /// Checkpoint `checkpoint` is complete (Flink's
    /// `notifyCheckpointComplete`): called between batches, at most once per
    /// newer completed checkpoint; one call may stand for several. Must not
    /// block the core.
    fn checkpoint_complete(&mut self, checkpoint: u64) {
        let _ = checkpoint;
    }

    /// How far this split has read: `(done, total)` in the source's own
    /// units (records, bytes), for progress bars; `None` when unknown
    /// (unbounded input, size not known yet).
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }

    /// Called once when the reader's split has ended (input exhausted, or
    /// stopped with a savepoint), just before the reader is dropped: what to
    /// do once the job's output is final (see [`super::Finisher`]; a Kafka
    /// reader commits its last offsets there).
    fn finisher(&mut self) -> Option<super::Finisher> {
        None
    }
}

/// A split's position recorded by a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoredPosition {
    /// The split that recorded it.
    pub split: usize,
    /// How many splits the source had then.
    pub splits: usize,
    /// What the reader's [`SourceReader::position`] returned.
    pub position: Vec<u8>,
}

/// What a reader reports after filling a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More input may follow immediately.
    More,
    /// Nothing is due for this long (rate limit, nothing available yet).
    Wait(Duration),
    /// The split is exhausted.
    Done,
}

/// A source failure: what and where (file and line, offset, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError(pub String);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

/// Where a reader runs: its split, and metrics registration.
pub struct SourceContext {
    pub(crate) core: Rc<Core>,
    pub(crate) name: String,
    pub(crate) split: usize,
    pub(crate) splits: usize,
    pub(crate) restored: Option<Vec<RestoredPosition>>,
}

impl SourceContext {
    /// When the job restores from a checkpoint: the positions every split
    /// of this source recorded (from all cores of the run that wrote it,
    /// which may have had another number of splits). `None` on a fresh
    /// start. A reader resumes from the entry of its split when the split
    /// count is unchanged; otherwise it is the source's business to
    /// redistribute the remaining input, or to refuse with an error.
    pub fn restored_positions(&self) -> Option<&[RestoredPosition]> {
        self.restored.as_deref()
    }

    /// Whether the job takes checkpoints.
    pub fn checkpointing(&self) -> bool {
        self.core.checkpoints.is_some()
    }
    /// This reader's split index (0-based).
    pub fn split(&self) -> usize {
        self.split
    }
    /// How many splits the input is divided into.
    pub fn splits(&self) -> usize {
        self.splits
    }
    /// A counter for this source on this core (summed over cores in
    /// [`crate::Metrics`]).
    pub fn counter(&self, metric: &str) -> Counter {
        self.core.counter(&self.name, metric)
    }
    /// Processing time in epoch milliseconds, from the job's clock.
    pub fn now_ms(&self) -> i64 {
        self.core.now_ms()
    }
    /// Monotonic nanoseconds from the job's clock.
    pub fn monotonic_ns(&self) -> u64 {
        self.core.monotonic_ns()
    }
    /// The job's clock, for readers that pace themselves.
    pub fn clock(&self) -> std::sync::Arc<dyn crate::clock::Clock> {
        self.core.config.clock.clone()
    }
}

/// Where a reader puts records (and, optionally, a watermark or status).
pub struct SourceOutput<'a, T> {
    batch: &'a mut Batch<T>,
    watermark: Option<Timestamp>,
    status: Option<StreamStatus>,
    /// With a watermark strategy inside the source: per-split generators.
    splits: Option<&'a mut SplitWatermarks<T>>,
    /// Per-event mode: `(records before it, watermark)` to emit mid-batch.
    marks: &'a mut Vec<(usize, Timestamp)>,
    error: Option<String>,
    /// When the newest record of this batch was created (epoch µs).
    origin_us: Option<i64>,
}

impl<T: 'static> SourceOutput<'_, T> {
    /// Room left in this batch.
    #[inline]
    pub fn remaining(&self) -> usize {
        BATCH_RECORDS_MAX.saturating_sub(self.batch.len())
    }
    /// Emits a record without a timestamp (of split 0, when the source
    /// generates watermarks per split).
    #[inline]
    pub fn collect(&mut self, record: T) {
        if self.splits.is_some() {
            self.collect_from_split(0, record);
        } else {
            self.batch.push(record);
        }
    }

    /// Emits a record read from split `split` (a file, a partition...). With
    /// `from_source_with_watermarks`, each split gets its own watermark
    /// generator and the source emits the minimum over its splits; otherwise
    /// the split is ignored.
    pub fn collect_from_split(&mut self, split: usize, record: T) {
        self.collect_split(split, record, None);
    }

    /// Emits a record of split `split` that carries a timestamp (a Kafka
    /// record's): with `from_source_with_watermarks` the split's generator
    /// sees it (an assigner may replace it); otherwise the record keeps it.
    pub fn collect_from_split_with_timestamp(&mut self, split: usize, record: T, timestamp: Timestamp) {
        self.collect_split(split, record, Some(timestamp));
    }

    fn collect_split(&mut self, split: usize, record: T, carried: Option<Timestamp>) {
        let Some(sw) = self.splits.as_deref_mut() else {
            match carried {
                Some(ts) => self.batch.push_with(record, Some(ts)),
                None => self.batch.push(record),
            }
            return;
        };
        match sw.on_record(split, &record, carried) {
            Ok(ts) => self.batch.push_with(record, Some(ts)),
            Err(e) => {
                self.error.get_or_insert(e);
                return;
            }
        }
        if sw.every_event() {
            let (wm, _) = sw.combined();
            if let Some(w) = wm {
                self.marks.push((self.batch.len(), w));
            }
        }
    }

    /// Declares split `split` as assigned to this reader before its first
    /// record (a partition just assigned): with per-split watermarks it then
    /// holds the source's watermark back until it has data or turns idle,
    /// as in Flink. Without a watermark strategy this does nothing.
    pub fn declare_split(&mut self, split: usize) {
        if let Some(sw) = self.splits.as_deref_mut() {
            sw.declare(split);
        }
    }

    /// Emits a record with an event timestamp.
    #[inline]
    pub fn collect_with_timestamp(&mut self, record: T, timestamp: Timestamp) {
        self.batch.push_with(record, Some(timestamp));
    }
    /// Emits a watermark after this batch's records (ignored unless it
    /// increases the source's watermark).
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
    }
    /// Marks this split idle or active after this batch.
    pub fn mark_status(&mut self, status: StreamStatus) {
        self.status = Some(status);
    }
    /// When the newest record of this batch came into being (epoch µs): a
    /// generator's scheduled time, a Kafka record's timestamp. A latency
    /// marker sent after this batch carries it, so sinks measure latency
    /// from creation, including any lag of the source behind its
    /// schedule; without it, from the time the batch was read.
    pub fn created_at(&mut self, epoch_us: i64) {
        self.origin_us = Some(self.origin_us.map_or(epoch_us, |o| o.max(epoch_us)));
    }
}

/// How far a job's bounded sources have read: one pair of counters per
/// core (padded to its own cache line), to which each source task adds what
/// changed since its last report. Read by [`crate::JobControl::progress`].
#[derive(Default)]
pub(crate) struct ProgressBoard {
    slots: std::sync::OnceLock<Box<[ProgressSlot]>>,
}

/// One core's `(done, total)`, alone on its cache line.
type ProgressSlot = crossbeam::utils::CachePadded<(AtomicU64, AtomicU64)>;

impl ProgressBoard {
    /// Sizes the board for `cores` (once per job; a restart reuses it).
    pub fn init(&self, cores: usize) {
        let _ = self.slots.get_or_init(|| (0..cores).map(|_| Default::default()).collect());
    }
    /// Adds what source tasks of `core` read (or learned of their total).
    fn add(&self, core: usize, done: i64, total: i64) {
        if let Some(s) = self.slots.get().and_then(|s| s.get(core)) {
            s.0.fetch_add(done as u64, Ordering::Relaxed);
            s.1.fetch_add(total as u64, Ordering::Relaxed);
        }
    }
    /// `(done, total)` over all cores, if any source reported a total.
    pub fn get(&self) -> Option<(u64, u64)> {
        let slots = self.slots.get()?;
        let (d, t) = slots.iter().fold((0u64, 0u64), |(d, t), s| {
            (d.wrapping_add(s.0.load(Ordering::Relaxed)), t.wrapping_add(s.1.load(Ordering::Relaxed)))
        });
        (t > 0).then_some((d.min(t), t))
    }
    /// Zeroes the counters (a restarted run reports from scratch).
    pub fn reset(&self) {
        for s in self.slots.get().into_iter().flatten() {
            s.0.store(0, Ordering::Relaxed);
            s.1.store(0, Ordering::Relaxed);
        }
    }
}

/// The positions recorded for source node `node` in the restored checkpoint.
pub(crate) fn restored_positions(
    core: &Core,
    node: usize,
) -> Result<Option<Vec<RestoredPosition>>, JobError> {
    let Some(restored) = core.checkpoints.as_ref().and_then(|c| c.restored.as_ref()) else { return Ok(None) };
    let mut out = Vec::new();
    for payload in restored.payloads(node) {
        for entry in crate::checkpoint::format::entries(payload) {
            let decoded = entry.and_then(|e| e.decode::<RestoredPosition>());
            out.push(decoded.map_err(|e| JobError::Restore(format!("source position of node {node}: {e}")))?);
        }
    }
    Ok(Some(out))
}

/// Records the reader's position as node `node`'s state.
fn position_payload(position: Option<Vec<u8>>, split: usize, splits: usize) -> Vec<u8> {
    let mut w = crate::checkpoint::format::StateWriter::new();
    let position = position.unwrap_or_default();
    w.entry(
        crate::checkpoint::kinds::SOURCE_POSITION,
        crate::checkpoint::format::NO_KEY_GROUP,
        &RestoredPosition { split, splits, position },
    );
    w.finish()
}

/// Where a source task's split sits, for its checkpoint state (`None`: a
/// core without a split, which has no state).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitOf {
    pub node: usize,
    pub split: usize,
    pub splits: usize,
}

/// Drives one reader until its split ends, the job is cancelled or it fails.
pub(crate) async fn run_source<T: 'static, R: SourceReader<T>>(
    core: Rc<Core>,
    info: OperatorInfo,
    mut reader: R,
    mut out: Box<dyn Push<T>>,
    mut split_watermarks: Option<SplitWatermarks<T>>,
    split_of: Option<SplitOf>,
    time: crate::runtime::exchange::TaskTime,
) -> Result<(), JobError> {
    let progress = core.shared.progress.clone();
    // A reader that knows its size at once reports it before reading.
    let mut reported = reader.progress().unwrap_or((0, 0));
    progress.add(core.index(), reported.0 as i64, reported.1 as i64);
    let checkpoints = core.checkpoints.clone();
    let shared = checkpoints.as_ref().map(|c| c.shared());
    let mut injected = 0;
    let mut owned = Owned::new(core.clone());
    let mut batch = Batch::with_capacity(BATCH_RECORDS_MAX);
    let mut marks = Vec::new();
    let mut watermark = MIN_WATERMARK;
    let mut completed_seen = 0;
    let mut next_marker = std::time::Instant::now();
    let fail =
        |e: SourceError| JobError::Source { operator: info.name.to_string(), core: info.core, message: e.0 };
    loop {
        if core.is_cancelled() {
            return Err(JobError::Cancelled { core: core.index() });
        }
        if let Some(cp) = &checkpoints {
            let completed =
                shared.as_ref().map_or(0, |s| s.completed.load(std::sync::atomic::Ordering::Acquire));
            if completed > completed_seen {
                completed_seen = completed;
                if split_of.is_some() {
                    reader.checkpoint_complete(completed);
                }
            }
            let triggered = cp.triggered();
            if triggered > injected {
                // Barrier `triggered`: the position after every record
                // emitted so far, then the barrier behind those records.
                injected = triggered;
                if let Some(s) = split_of {
                    let started = std::time::Instant::now();
                    let position = reader.snapshot_position(triggered);
                    cp.write_state(triggered, s.node, position_payload(position, s.split, s.splits), started);
                }
                out.control(Control::Barrier(triggered))?;
                owned.after_push().await?;
                if cp.stop_after(triggered) {
                    // Stop with savepoint: no final watermark, nothing after.
                    if let Some(f) = reader.finisher() {
                        core.shared.add_finisher(info.name.to_string(), f);
                    }
                    out.control(Control::EndOfInput)?;
                    owned.after_push().await?;
                    owned.flush_all().await?;
                    return Ok(());
                }
            }
        }
        marks.clear();
        let mut output = SourceOutput {
            origin_us: None,
            batch: &mut batch,
            watermark: None,
            status: None,
            splits: split_watermarks.as_mut(),
            marks: &mut marks,
            error: None,
        };
        let started = std::time::Instant::now();
        let status = info.guard_async(reader.next_batch(&mut output)).await?.map_err(fail)?;
        let (mut wm, mut st, error) = (output.watermark, output.status, output.error);
        let origin_us = output.origin_us;
        if let Some(e) = error {
            return Err(info.user_error(format!("timestamp assignment failed: {e}")));
        }
        if let Some(sw) = split_watermarks.as_mut() {
            sw.on_periodic(core.now_ms());
            let (combined, status) = sw.combined();
            wm = wm.max(combined);
            st = st.or(status);
        }
        // Per-event watermarks go out right after the records before them.
        let mut sent = 0;
        for &(upto, w) in &marks {
            if upto > sent {
                let mut head = Batch {
                    records: batch.records.drain(..upto - sent).collect(),
                    timestamps: batch.timestamps.drain(..upto - sent).collect(),
                };
                out.push(&mut head)?;
                sent = upto;
            }
            if w > watermark {
                watermark = w;
                out.control(Control::Watermark(w))?;
            }
        }
        if !batch.is_empty() {
            out.push(&mut batch)?;
            batch.clear();
        }
        if let Some(w) = wm.filter(|&w| w > watermark) {
            watermark = w;
            tracing::trace!(target: "brisk::timers", core = core.index(), watermark = w, "source watermark");
            out.control(Control::Watermark(w))?;
        }
        if let Some(s) = st {
            out.control(Control::Status(s))?;
        }
        if core.config.latency_interval_ns > 0 {
            // Behind this batch's records: when they were created (or now).
            // The split's last batch always gets one.
            let now = std::time::Instant::now();
            if now >= next_marker || status == SourceStatus::Done {
                next_marker = now + std::time::Duration::from_nanos(core.config.latency_interval_ns);
                out.control(Control::Latency(origin_us.unwrap_or_else(crate::clock::wall_us)))?;
            }
        }
        if let Some((done, total)) = reader.progress() {
            // Only what changed: one add per counter on this core's line.
            let (d, t) = (done as i64 - reported.0 as i64, total as i64 - reported.1 as i64);
            if d != 0 || t != 0 {
                progress.add(core.index(), d, t);
                reported = (done, total);
            }
        }
        let pushed = time.busy(started);
        owned.after_push().await?;
        let drained = time.backpressured(pushed);
        match status {
            SourceStatus::More => glommio::yield_if_needed().await,
            SourceStatus::Wait(d) => {
                owned.flush_all().await?;
                let flushed = time.backpressured(drained);
                glommio::timer::sleep(d).await;
                time.idle(flushed);
            }
            SourceStatus::Done => {
                if let (Some(cp), Some(s)) = (&checkpoints, split_of) {
                    cp.source_ended(s.node, position_payload(reader.position(), s.split, s.splits));
                }
                if let Some(f) = reader.finisher() {
                    core.shared.add_finisher(info.name.to_string(), f);
                }
                if watermark < MAX_WATERMARK {
                    out.control(Control::Watermark(MAX_WATERMARK))?;
                }
                out.control(Control::EndOfInput)?;
                owned.after_push().await?;
                owned.flush_all().await?;
                return Ok(());
            }
        }
    }
}

/// A bounded source over a collection, split round-robin-free: core `i` of
/// `n` reads the `i`-th contiguous slice. With one split (see
/// [`crate::DataStream::set_parallelism`]) the order is the collection's.
#[derive(Clone)]
pub struct CollectionSource<T> {
    items: std::sync::Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source emitting `items`.
    pub fn new(items: Vec<T>) -> Self {
        Self { items: std::sync::Arc::new(items) }
    }
}

impl<T: Clone + Send + Sync + 'static> Source<T> for CollectionSource<T> {
    type Reader = CollectionReader<T>;
    fn name(&self) -> String {
        "collection".to_string()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, ctx: &SourceContext) -> Result<Self::Reader, SourceError> {
        let n = self.items.len();
        let (i, s) = (ctx.split(), ctx.splits());
        let mut next = n * i / s;
        if let Some(positions) = ctx.restored_positions() {
            next = resume_index(positions, i, s, "collection")?;
        }
        Ok(CollectionReader { items: self.items.clone(), next, end: n * (i + 1) / s })
    }
}

/// Reader of one slice of a [`CollectionSource`].
pub struct CollectionReader<T> {
    items: std::sync::Arc<Vec<T>>,
    next: usize,
    end: usize,
}

impl<T: Clone + Send + Sync + 'static> SourceReader<T> for CollectionReader<T> {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, SourceError> {
        let upto = self.end.min(self.next + out.remaining());
        for item in &self.items[self.next..upto] {
            out.collect(item.clone());
        }
        self.next = upto;
        Ok(if self.next == self.end { SourceStatus::Done } else { SourceStatus::More })
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some((self.next as u64).to_le_bytes().to_vec())
    }
}

/// The index split `split` of `splits` resumes from, for sources whose
/// position is one `u64` index (collections, generators): the split count
/// must be unchanged.
pub fn resume_index(
    positions: &[RestoredPosition],
    split: usize,
    splits: usize,
    what: &str,
) -> Result<usize, SourceError> {
    let mine = positions.iter().find(|p| p.split == split);
    match mine {
        Some(p) if p.splits == splits => {
            let bytes: [u8; 8] = p.position.as_slice().try_into().map_err(|_| {
                SourceError(format!("{what}: restored position of split {split} is not an index"))
            })?;
            Ok(u64::from_le_bytes(bytes) as usize)
        }
        Some(p) => Err(SourceError(format!(
            "{what}: the checkpoint has {} splits, this run {splits}; a {what} source resumes only with \
             the same number of splits (set its parallelism)",
            p.splits
        ))),
        None => Err(SourceError(format!("{what}: the checkpoint has no position for split {split}"))),
    }
}
