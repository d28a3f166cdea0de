//! Sinks: the [`Sink`] a user adds (cloned per core) and the [`SinkWriter`]
//! each core runs. Writing is split in two: [`SinkWriter::write`] buffers
//! synchronously inside the operator chain; [`SinkWriter::flush`] does the
//! I/O asynchronously, awaited by the driving task (so a slow sink is
//! backpressure, never a blocked core).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use crossbeam::channel::{Receiver, Sender};
use glommio::sync::Semaphore;

use crate::batch::{Batch, Control, Timestamp};
use crate::checkpoint::store::Commit;
use crate::checkpoint::tracker::CoreCheckpoints;
use crate::error::{JobError, OperatorInfo};
use crate::metrics::Counter;
use crate::runtime::core::{Core, LocalFuture, Outlet, Push};

/// How many instances of a sink write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkParallelism {
    /// One writer per core, each fed by its own core.
    PerCore,
    /// One writer on core 0; every record is sent there (one output file).
    Single,
}

/// A sink's description, cloned to every core.
pub trait Sink<T>: Clone + Send + 'static {
    /// The per-core writer.
    type Writer: SinkWriter<T>;
    /// A short name for logs, metrics and errors.
    fn name(&self) -> String;
    /// Whether every core writes, or only core 0.
    fn parallelism(&self) -> SinkParallelism {
        SinkParallelism::PerCore
    }
    /// Opens the writer of core `ctx.core()` (only core 0 for `Single`).
    fn create_writer(&self, ctx: &SinkContext) -> Result<Self::Writer, SinkError>;
}

/// Writes one core's records.
pub trait SinkWriter<T>: 'static {
    /// Takes the batch's records into the writer's buffer, leaving the batch
    /// empty (synchronous; must not block). Records left in it would be
    /// written again.
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError>;
    /// Whether buffered data should go to I/O before more is written.
    fn wants_flush(&self) -> bool {
        false
    }
    /// Whether anything is buffered.
    fn has_buffered(&self) -> bool {
        false
    }
    /// Hands buffered data to I/O; with `end_of_input`, the last call (close
    /// files, deliver results).
    fn flush(&mut self, end_of_input: bool) -> impl Future<Output = Result<(), SinkError>>;
    /// Observes the combined watermark.
    fn on_watermark(&mut self, watermark: Timestamp) {
        let _ = watermark;
    }
    /// Two-phase commit, phase one, at checkpoint barrier `checkpoint`:
    /// makes everything written so far durable and returns what to commit
    /// once that checkpoint is complete (the coordinator renames each file).
    /// The default hands on buffered data and commits nothing: output is
    /// then not transactional.
    fn pre_commit(&mut self, checkpoint: u64) -> impl Future<Output = Result<Vec<Commit>, SinkError>> {
        let _ = checkpoint;
        async move {
            self.flush(false).await?;
            Ok(Vec::new())
        }
    }
    /// Before the final `flush(true)` of a job stopping with a savepoint
    /// whose barrier this sink saw (Flink's stop without `--drain`): what
    /// it received after that barrier (timers a later watermark fired, say)
    /// is the restored job's to produce again, so a transactional writer
    /// aborts it rather than commit it at the end. The default does
    /// nothing: output that is not transactional is at least once.
    fn stopped_with_savepoint(&mut self) {}
    /// After the final `flush(true)`: what the end of input pre-committed,
    /// committed when the job's last checkpoint completes.
    fn final_commits(&mut self) -> Vec<Commit> {
        Vec::new()
    }
    /// After the final `flush(true)`: what to do once the job's output is
    /// final (see [`super::Finisher`]; a transactional Kafka writer commits
    /// its last transactions there).
    fn finisher(&mut self) -> Option<super::Finisher> {
        None
    }
}

/// A sink failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError(pub String);

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError(e.to_string())
    }
}

/// Which checkpoint completed last, for a sink writer (see
/// [`SinkContext::checkpoint_progress`]).
#[derive(Clone)]
pub struct CheckpointProgress(Option<std::sync::Arc<crate::checkpoint::CheckpointShared>>);

impl CheckpointProgress {
    /// The id of the newest complete checkpoint (0: none yet).
    pub fn completed(&self) -> u64 {
        self.0.as_ref().map_or(0, |s| s.completed.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// Where a sink writer runs.
pub struct SinkContext {
    pub(crate) core: Rc<Core>,
    pub(crate) name: String,
}

impl SinkContext {
    /// Whether the job takes checkpoints (a transactional sink then
    /// pre-commits at barriers; otherwise it writes plainly).
    pub fn checkpointing(&self) -> bool {
        self.core.checkpoints.is_some()
    }
    /// When the job restores from a checkpoint: how many cores the run that
    /// wrote it had (a transactional sink aborts what the cores of that run
    /// left open, including cores this run no longer has).
    pub fn restored_cores(&self) -> Option<usize> {
        self.core.checkpoints.as_ref()?.restored.as_ref().map(|r| r.cores)
    }
    /// A handle telling which checkpoint completed last (0: none, or no
    /// checkpointing), readable from the writer at any time.
    pub fn checkpoint_progress(&self) -> CheckpointProgress {
        CheckpointProgress(self.core.checkpoints.as_ref().map(|c| c.shared()))
    }
    /// Declares the directory where this sink commits output files named
    /// `part-<checkpoint>-...` (used on restore to tell whether falling back
    /// to an older checkpoint could duplicate committed output).
    pub fn declare_output_dir(&self, dir: std::path::PathBuf) {
        if let Some(cp) = &self.core.checkpoints {
            cp.declare_sink_dir(dir);
        }
    }
    /// This core's index.
    pub fn core(&self) -> usize {
        self.core.index()
    }
    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.core.cores()
    }
    /// A counter for this sink on this core.
    pub fn counter(&self, metric: &str) -> Counter {
        self.core.counter(&self.name, metric)
    }
}

struct SinkState<T, W> {
    writer: Option<W>,
    stash: Vec<Batch<T>>,
    /// Barriers not yet pre-committed, with how many stashed batches came
    /// before each.
    barriers: std::collections::VecDeque<(u64, usize)>,
    ended: bool,
    closed: bool,
    /// Saw the barrier of the savepoint the job stops with: what comes
    /// after it is not committed (see `drain_guarded`).
    stopped: bool,
}

/// The sink operator on one core: a [`Push`] that buffers into the writer and
/// an [`Outlet`] whose drain runs the writer's I/O.
pub(crate) struct SinkNode<T, W> {
    state: RefCell<SinkState<T, W>>,
    io_lock: Semaphore,
    info: OperatorInfo,
    records_in: Counter,
    checkpoints: Option<Rc<CoreCheckpoints>>,
    /// Where end-of-job finishers go.
    job: std::sync::Arc<crate::runtime::core::JobShared>,
    /// How long latency markers took to get here, in µs.
    latency: RefCell<Latency>,
    /// No writer on this core (a single-writer sink elsewhere).
    writerless: bool,
    /// This sink's index among the core's sinks (for checkpoint tracking).
    index: usize,
}

impl<T: 'static, W: SinkWriter<T>> SinkNode<T, W> {
    pub fn new(core: &Core, info: OperatorInfo, writer: Option<W>) -> Rc<Self> {
        let index = core.checkpoints.as_ref().map_or(0, |cp| cp.register_sink());
        Rc::new(Self {
            index,
            checkpoints: core.checkpoints.clone(),
            job: core.shared.clone(),
            latency: RefCell::new(Latency {
                hist: crate::metrics::latency_histogram(),
                published: std::time::Instant::now(),
                queued: Default::default(),
            }),
            writerless: writer.is_none(),
            state: RefCell::new(SinkState {
                writer,
                stash: Vec::new(),
                barriers: Default::default(),
                ended: false,
                closed: false,
                stopped: false,
            }),
            io_lock: Semaphore::new(1),
            records_in: core.counter(&info.name, "records_in"),
            info,
        })
    }

    fn fail(&self, e: SinkError) -> JobError {
        JobError::Sink { operator: self.info.name.to_string(), core: self.info.core, message: e.0 }
    }
}

impl<T: 'static, W: SinkWriter<T>> Outlet for SinkNode<T, W> {
    fn drain(self: Rc<Self>, flush_partial: bool) -> LocalFuture<'static, Result<(), JobError>> {
        let info = self.info.clone();
        Box::pin(async move { info.guard_async(self.drain_guarded(flush_partial)).await? })
    }

    fn has_unsent(&self) -> bool {
        let st = self.state.borrow();
        !st.stash.is_empty()
            || !st.barriers.is_empty()
            || st.writer.as_ref().is_some_and(|w| w.has_buffered())
    }
}

impl<T: 'static, W: SinkWriter<T>> SinkNode<T, W> {
    /// [`Outlet::drain`], inside a panic guard (the writer is user code).
    fn drain_guarded(self: Rc<Self>, flush_partial: bool) -> LocalFuture<'static, Result<(), JobError>> {
        Box::pin(async move {
            let _permit = self
                .io_lock
                .acquire_permit(1)
                .await
                .map_err(|_| JobError::Cancelled { core: self.info.core })?;
            let Some(mut writer) = ({
                let mut st = self.state.borrow_mut();
                if st.closed {
                    return Ok(());
                }
                st.writer.take()
            }) else {
                return Ok(());
            };
            // Stashed batches and barriers, in arrival order; each barrier
            // pre-commits what came before it.
            loop {
                let (batches, barrier) = {
                    let mut st = self.state.borrow_mut();
                    match st.barriers.pop_front() {
                        Some((id, before)) => {
                            let batches: Vec<Batch<T>> = st.stash.drain(..before).collect();
                            for b in st.barriers.iter_mut() {
                                b.1 -= before;
                            }
                            (batches, Some(id))
                        }
                        None => (std::mem::take(&mut st.stash), None),
                    }
                };
                for mut b in batches {
                    if let Err(e) = writer.write(&mut b) {
                        self.state.borrow_mut().writer = Some(writer);
                        return Err(self.fail(e));
                    }
                }
                let Some(id) = barrier else { break };
                let result = writer.pre_commit(id).await.map_err(|e| e.0);
                let failed = result.as_ref().err().cloned();
                if let Some(cp) = &self.checkpoints {
                    cp.sink_pre_committed(id, result);
                }
                if let Some(e) = failed {
                    tracing::warn!(
                        "sink '{}' on core {}: pre-commit of checkpoint {id} failed: {e}",
                        self.info.name,
                        self.info.core
                    );
                }
            }
            let (ended, stopped) = {
                let st = self.state.borrow();
                (st.ended, st.stopped)
            };
            if ended && stopped {
                writer.stopped_with_savepoint();
            }
            let result = if ended || writer.wants_flush() || (flush_partial && writer.has_buffered()) {
                writer.flush(ended).await
            } else {
                Ok(())
            };
            if ended && result.is_ok() {
                if let Some(cp) = &self.checkpoints {
                    // Stopped with a savepoint (Flink's stop without
                    // --drain): what arrived after its barrier (timers fired
                    // by a later watermark, say) is the restored job's to
                    // produce again. As end-of-input commits it would be
                    // attached to the savepoint's acknowledgement and written
                    // twice; the checkpoints' own pre-commits are reported
                    // with each checkpoint already.
                    let commits = writer.final_commits();
                    cp.sink_ended(self.index, if stopped { Vec::new() } else { commits });
                }
                if let Some(f) = writer.finisher() {
                    self.job.add_finisher(self.info.name.to_string(), f);
                }
            }
            let mut st = self.state.borrow_mut();
            st.writer = Some(writer);
            st.closed = ended;
            result.map_err(|e| self.fail(e))
        })
    }
}

/// A sink's latency histogram on one core.
struct Latency {
    hist: hdrhistogram::Histogram<u64>,
    /// When the monitor last got a copy.
    published: std::time::Instant,
    /// Set while a copy waits in the monitor's queue: the next waits for
    /// it to be taken, so a stalled monitor gets one per sink and core.
    queued: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// How often a sink sends its histogram to the web monitor.
const LATENCY_PUBLISH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl<T: 'static, W: SinkWriter<T>> SinkNode<T, W> {
    fn record_latency(&self, created_us: i64) {
        let us = (crate::clock::wall_us() - created_us).max(0) as u64;
        let mut l = self.latency.borrow_mut();
        l.hist.saturating_record(us.clamp(1, crate::metrics::LATENCY_MAX_US));
        if l.published.elapsed() >= LATENCY_PUBLISH_INTERVAL
            && !l.queued.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            l.published = std::time::Instant::now();
            let (name, core, queued) = (self.info.name.to_string(), self.info.core, l.queued.clone());
            self.job.monitor(|| crate::web::MonitorMsg::Latency {
                sink: name,
                core,
                hist: l.hist.clone(),
                queued,
            });
        }
    }

    /// At the end of input: the histogram goes to the job's result (and
    /// the monitor).
    fn publish_final_latency(&self) {
        let l = self.latency.borrow();
        if l.hist.is_empty() {
            return;
        }
        let name = self.info.name.to_string();
        // The last word, sent even while an earlier copy is queued.
        l.queued.store(true, std::sync::atomic::Ordering::Release);
        self.job.monitor(|| crate::web::MonitorMsg::Latency {
            sink: name.clone(),
            core: self.info.core,
            hist: l.hist.clone(),
            queued: l.queued.clone(),
        });
        self.job.sink_latency(name, l.hist.clone());
    }
}

/// The `Push` handle upstream holds for a sink.
pub(crate) struct SinkHandle<T: 'static, W: SinkWriter<T>> {
    pub node: Rc<SinkNode<T, W>>,
    pub core: Rc<Core>,
}

impl<T: 'static, W: SinkWriter<T>> Push<T> for SinkHandle<T, W> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let n = &*self.node;
        n.records_in.add(batch.len() as u64);
        {
            let mut st = n.state.borrow_mut();
            let st = &mut *st;
            match st.writer.as_mut() {
                // Straight into the writer only if nothing waits before this
                // batch: after an unprocessed barrier, a batch belongs to the
                // next checkpoint and must not be pre-committed with it.
                Some(w) if st.stash.is_empty() && st.barriers.is_empty() => {
                    w.write(batch).map_err(|e| n.fail(e))?
                }
                Some(_) => st.stash.push(batch.take_all()),
                None if st.ended || st.closed => {
                    return Err(JobError::Runtime {
                        core: n.info.core,
                        message: format!("sink '{}' received data after end of input", n.info.name),
                    });
                }
                // The writer is out doing I/O for another task: keep the
                // batch until it returns (bounded: that task drains first).
                None => st.stash.push(batch.take_all()),
            }
        }
        self.core.touch(self.node.clone());
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let n = &*self.node;
        let mut st = n.state.borrow_mut();
        match control {
            Control::Watermark(w) => {
                if let Some(wr) = st.writer.as_mut() {
                    wr.on_watermark(w);
                }
            }
            Control::EndOfInput => {
                st.ended = true;
                drop(st);
                n.publish_final_latency();
                if n.writerless
                    && let Some(cp) = &n.checkpoints
                {
                    cp.sink_ended(n.index, Vec::new());
                }
                self.core.touch(self.node.clone());
            }
            Control::Barrier(id) if n.writerless => {
                if let Some(cp) = &n.checkpoints {
                    cp.sink_barrier(n.index, id);
                    cp.sink_pre_committed(id, Ok(Vec::new()));
                }
            }
            Control::Barrier(id) => {
                if let Some(cp) = &n.checkpoints {
                    st.stopped |= cp.stop_after(id);
                    cp.sink_barrier(n.index, id);
                    let before = st.stash.len();
                    st.barriers.push_back((id, before));
                    drop(st);
                    self.core.touch(self.node.clone());
                }
            }
            Control::Status(_) => {}
            Control::Latency(created_us) => {
                drop(st);
                n.record_latency(created_us);
            }
        }
        Ok(())
    }
}

/// A sink that drops everything (benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardSink;

/// Writer of [`DiscardSink`].
pub struct DiscardWriter;

impl<T: 'static> Sink<T> for DiscardSink {
    type Writer = DiscardWriter;
    fn name(&self) -> String {
        "discard".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<DiscardWriter, SinkError> {
        Ok(DiscardWriter)
    }
}

impl<T: 'static> SinkWriter<T> for DiscardWriter {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, _end: bool) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink collecting every record into memory, for tests and small jobs:
/// [`CollectSink::new`] returns the sink and a [`Collected`] handle that holds
/// the records once the job has finished.
pub struct CollectSink<T> {
    tx: Sender<Vec<T>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

/// The records a [`CollectSink`] gathered, available after the job ends.
pub struct Collected<T> {
    rx: Receiver<Vec<T>>,
}

impl<T: Send + 'static> CollectSink<T> {
    /// A collect sink and its result handle.
    pub fn new() -> (Self, Collected<T>) {
        // One message per core at end of input; `CORES_MAX` bounds it.
        let (tx, rx) = crossbeam::channel::bounded(crate::config::CORES_MAX);
        (Self { tx }, Collected { rx })
    }
}

impl<T: Send + 'static> Collected<T> {
    /// Every collected record (cores concatenated; order within a core kept).
    /// Call after the job has finished.
    pub fn take(&self) -> Vec<T> {
        self.rx.try_iter().flatten().collect()
    }
}

/// Writer of [`CollectSink`].
pub struct CollectWriter<T> {
    tx: Sender<Vec<T>>,
    records: Vec<T>,
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectWriter<T>;
    fn name(&self) -> String {
        "collect".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<Self::Writer, SinkError> {
        Ok(CollectWriter { tx: self.tx.clone(), records: Vec::new() })
    }
}

impl<T: Send + 'static> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        self.records.append(&mut batch.records);
        batch.timestamps.clear();
        Ok(())
    }
    async fn flush(&mut self, end_of_input: bool) -> Result<(), SinkError> {
        if end_of_input {
            match self.tx.try_send(std::mem::take(&mut self.records)) {
                // A dropped handle means nobody wants the records.
                Ok(()) | Err(crossbeam::channel::TrySendError::Disconnected(_)) => {}
                Err(crossbeam::channel::TrySendError::Full(_)) => {
                    return Err(SinkError("collect sink: more writers than the result channel holds".into()));
                }
            }
        }
        Ok(())
    }
}
