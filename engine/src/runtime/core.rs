//! The per-core context and the contract between synchronous operator chains
//! and the asynchronous tasks that drive them.
//!
//! # Design note: who waits for what
//!
//! Operators are chained by plain calls ([`Push`]): a driving task (a source,
//! or the receiving end of one exchange channel) hands a batch to the first
//! operator and the batch flows synchronously to the end of the chain. Some
//! ends of a chain cannot finish synchronously: an exchange sender whose queue
//! is full, a sink whose buffer must be written. Such an end is an [`Outlet`]:
//! on every push it *touches* itself on the [`Core`], and the driving task,
//! right after its synchronous push returns (no await in between), claims the
//! touched outlets and awaits their [`Outlet::drain`] before taking more input.
//!
//! Because an outlet is claimed only by the tasks that pushed into it, a task
//! only ever waits for operators downstream of itself. The job graph is a DAG
//! and the last stage (sinks) never waits for an exchange, so by induction
//! every wait ends: backpressure without deadlock. The bound on what an outlet
//! can hold is what one input batch produces, because the pushing task drains
//! before pushing again.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::batch::{Batch, Control};
use crate::checkpoint::tracker::CoreCheckpoints;
use crate::config::ResolvedConfig;
use crate::error::JobError;
use crate::metrics::{Counter, CounterEntry, Gauge, GaugeEntry};
use crate::runtime::timers::ProcessingTimeService;

/// The input end of an operator instance on one core: its upstream calls it
/// with each batch and control message, synchronously.
pub trait Push<T> {
    /// Takes every record out of `batch` (leaving it empty, allocation kept).
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError>;
    /// Handles a control message (watermark, status, end of input).
    fn control(&mut self, control: Control) -> Result<(), JobError>;
}

impl<T> Push<T> for Box<dyn Push<T>> {
    #[inline]
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        (**self).push(batch)
    }
    #[inline]
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        (**self).control(control)
    }
}

/// A boxed future local to one core.
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The end of a chain that may need to wait (see the module docs).
pub(crate) trait Outlet {
    /// Hands on what is ready, waiting for room as needed. With
    /// `flush_partial`, also partly filled buffers.
    fn drain(self: Rc<Self>, flush_partial: bool) -> LocalFuture<'static, Result<(), JobError>>;
    /// Whether something is still held back (a partial buffer).
    fn has_unsent(&self) -> bool;
}

/// State shared by all cores of one job run (read-mostly).
pub(crate) struct JobShared {
    cancelled: AtomicBool,
    /// The longest time a core took to build its operators (µs), which
    /// includes loading restored state.
    build_us_max: std::sync::atomic::AtomicU64,
    /// What sources and sinks leave to do once the job's output is final
    /// (the receiver is the control thread's; at most one message per
    /// operator instance, so the queue has room for one per instance).
    finishers: std::sync::mpsc::SyncSender<(String, crate::operator::Finisher)>,
    /// The web server's monitor, when the job serves one.
    monitor: Option<crate::web::MonitorTx>,
    /// Each sink's latency histogram at its end of input, per core (room
    /// for one per operator instance, like `finishers`).
    latencies: std::sync::mpsc::SyncSender<(String, hdrhistogram::Histogram<u64>)>,
    /// Where sources report how far they have read (the job's control).
    pub progress: Arc<crate::operator::source::ProgressBoard>,
    /// The process's resident set against the cores' state budgets (log
    /// backend only; see memory.rs).
    pub(crate) process_memory: Option<Arc<super::memory::ProcessMemory>>,
}

/// A message found no room in a queue sized for one per operator
/// instance: a bug (tests fail on it; a release build logs it).
fn one_per_instance_broken(message: String) {
    debug_assert!(false, "{message}");
    tracing::error!("{message}");
}

/// What the control thread receives from a run's cores besides counters.
pub(crate) struct JobReceivers {
    /// Finishers left by sources and sinks.
    pub finishers: std::sync::mpsc::Receiver<(String, crate::operator::Finisher)>,
    /// Latency histograms of the sinks that reached their end of input.
    pub latencies: std::sync::mpsc::Receiver<(String, hdrhistogram::Histogram<u64>)>,
}

impl JobShared {
    /// The shared state of a run of `instances` operator instances (nodes
    /// times cores), and where the control thread receives finishers.
    pub fn new(
        monitor: Option<crate::web::MonitorTx>,
        progress: Arc<crate::operator::source::ProgressBoard>,
        process_memory: Option<Arc<super::memory::ProcessMemory>>,
        instances: usize,
    ) -> (Arc<Self>, JobReceivers) {
        let (finishers, finishers_rx) = std::sync::mpsc::sync_channel(instances);
        let (latencies, latencies_rx) = std::sync::mpsc::sync_channel(instances);
        let shared = Self {
            cancelled: AtomicBool::new(false),
            build_us_max: Default::default(),
            finishers,
            monitor,
            latencies,
            progress,
            process_memory,
        };
        (Arc::new(shared), JobReceivers { finishers: finishers_rx, latencies: latencies_rx })
    }
    /// Hands a sink's final latency histogram (one core's) to the runtime.
    pub fn sink_latency(&self, sink: String, hist: hdrhistogram::Histogram<u64>) {
        if let Err(std::sync::mpsc::TrySendError::Full((sink, _))) = self.latencies.try_send((sink, hist)) {
            one_per_instance_broken(format!(
                "sink {sink}: no room for its latency histogram: more than one per instance (a bug)"
            ));
        }
    }
    /// Tells the web server's monitor, if there is one (never blocks: see
    /// [`crate::web::MonitorTx::tell`]).
    pub fn monitor(&self, msg: impl FnOnce() -> crate::web::MonitorMsg) {
        if let Some(m) = &self.monitor {
            m.tell(msg());
        }
    }
    /// Hands `f` (of operator `name`) to the control thread, to run once
    /// the job's output is final.
    pub fn add_finisher(&self, name: String, f: crate::operator::Finisher) {
        if let Err(std::sync::mpsc::TrySendError::Full((name, _))) = self.finishers.try_send((name, f)) {
            one_per_instance_broken(format!(
                "operator {name}: no room for its finisher: more than one per instance (a bug)"
            ));
        }
    }
    /// Records that a core built its operators in `took`.
    pub fn built(&self, took: std::time::Duration) {
        self.build_us_max.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
    }
    /// The longest build time of a core so far.
    pub fn build_time_max(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.build_us_max.load(Ordering::Relaxed))
    }
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

/// Everything one core's operators share. Owned by the core (`!Send`: it
/// holds `Rc`s and `RefCell`s and never leaves its executor thread).
pub struct Core {
    index: usize,
    pub(crate) config: ResolvedConfig,
    pub(crate) shared: Arc<JobShared>,
    touched: RefCell<Vec<Rc<dyn Outlet>>>,
    /// Channels held for barrier alignment by the current push (see gate.rs).
    blocks: RefCell<Vec<Rc<glommio::sync::Semaphore>>>,
    counters: RefCell<Vec<CounterEntry>>,
    gauges: RefCell<Vec<GaugeEntry>>,
    pub(crate) timers: Rc<ProcessingTimeService>,
    /// Checkpoint bookkeeping, when checkpointing is on.
    pub(crate) checkpoints: Option<Rc<CoreCheckpoints>>,
    /// The core's managed memory for keyed state (log backend).
    memory_budget: Rc<brisk_state::log::MemoryBudget>,
    /// The core's state log segment writes in flight (log backend).
    pub(crate) segment_writes: Rc<super::segment_io::WriteSignal>,
    /// Nanoseconds the core's driving tasks waited for segment writes.
    write_stall_ns: Counter,
}

impl Core {
    pub(crate) fn new(
        index: usize,
        config: ResolvedConfig,
        shared: Arc<JobShared>,
        checkpoints: Option<Rc<CoreCheckpoints>>,
    ) -> Rc<Self> {
        let memory_budget = brisk_state::log::MemoryBudget::new(config.state_memory_budget_bytes);
        if config.state_backend == crate::config::StateBackendKind::Log
            && let Some(cp) = &checkpoints
        {
            cp.charge_state_files_to(memory_budget.clone());
        }
        Rc::new(Self {
            index,
            shared,
            touched: RefCell::new(Vec::new()),
            blocks: RefCell::new(Vec::new()),
            checkpoints,
            counters: RefCell::new(Vec::new()),
            gauges: RefCell::new(Vec::new()),
            timers: Rc::default(),
            memory_budget,
            segment_writes: Rc::default(),
            write_stall_ns: Counter::default(),
            config,
        })
    }

    /// The core's managed memory for keyed state.
    pub(crate) fn memory_budget(&self) -> &Rc<brisk_state::log::MemoryBudget> {
        &self.memory_budget
    }

    /// Logs what the core's memory budget holds, by use, with its segment
    /// writes in flight and how long input waited for them (target
    /// `brisk::memory`, debug level: `RUST_LOG=brisk::memory=debug`).
    pub(crate) fn log_memory(&self) {
        let mib = |b: usize| b as f64 / 1048576.0;
        let budget = &self.memory_budget;
        let by = |what| mib(budget.used_by(what));
        use brisk_state::log::MemoryUse as U;
        tracing::debug!(
            target: "brisk::memory",
            core = self.index,
            used_mib = format_args!("{:.1}", mib(budget.used())),
            limit_mib = format_args!("{:.1}", mib(budget.limit())),
            entries = format_args!("{:.1}", by(U::Entries)),
            index = format_args!("{:.1}", by(U::Index)),
            timers = format_args!("{:.1}", by(U::Timers)),
            unwritten_segments = format_args!("{:.1}", by(U::Segments)),
            state_files = format_args!("{:.1}", by(U::StateFiles)),
            writes_in_flight_mib = format_args!("{:.1}", mib(self.segment_writes.bytes_in_flight())),
            write_stall_s = format_args!("{:.2}", self.write_stall_ns.get() as f64 / 1e9),
            "state memory (MiB)"
        );
    }

    /// A new keyed state backend for operator `node` on this core, which
    /// owns key groups `scope`: the log backend
    /// ([`state_log`](Self::state_log)) or the heap backend, as configured.
    pub(crate) fn keyed_state_backend<K>(
        &self,
        node: usize,
        scope: brisk_state::KeyGroupRange,
    ) -> brisk_state::KeyedStateBackend<K>
    where
        K: Eq + std::hash::Hash + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        match self.state_log(node, scope) {
            Some((log, budget)) => brisk_state::KeyedStateBackend::with_log(log, budget),
            None => brisk_state::KeyedStateBackend::new(),
        }
    }

    /// Under the log backend, a new log for operator `node` on this core
    /// (segments in the run's state directory, or the checkpoint
    /// directory's `shared/` with incremental checkpoints) and the core's
    /// memory budget, which every operator's state shares. The log's
    /// segments are scoped to `scope`, the key groups the operator owns
    /// here.
    pub(crate) fn state_log(
        &self,
        node: usize,
        scope: brisk_state::KeyGroupRange,
    ) -> Option<(brisk_state::log::LogStore, Rc<brisk_state::log::MemoryBudget>)> {
        match (&self.config.state_backend, &self.config.state_dir) {
            (crate::config::StateBackendKind::Log, Some(dir)) => {
                let io = super::segment_io::GlommioSegmentIo::new(
                    dir.clone(),
                    self.config.state_deletions.clone(),
                    self.segment_writes.clone(),
                );
                // Unique per (run, operator, core) within the directory.
                let id_base = crate::checkpoint::segments::id_base(self.config.state_epoch, node, self.index);
                let mut log = brisk_state::log::LogStore::new(
                    Box::new(io),
                    id_base,
                    crate::config::STATE_SEGMENT_BYTES,
                );
                log.set_scope(scope);
                log.charge_to(self.memory_budget.clone());
                Some((log, self.memory_budget.clone()))
            }
            _ => None,
        }
    }

    /// Under the log backend, a charge against the core's memory budget for
    /// memory an operator holds outside its state tables (timers); `None`
    /// on the heap backend, which has no budget.
    pub(crate) fn memory_charge(&self) -> Option<brisk_state::log::Charge> {
        (self.config.state_backend == crate::config::StateBackendKind::Log).then(|| {
            brisk_state::log::Charge::new(self.memory_budget.clone(), brisk_state::log::MemoryUse::Timers)
        })
    }

    /// This core's index (the subtask index of every operator on it).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of cores of the job.
    pub fn cores(&self) -> usize {
        self.config.cores
    }

    /// Whether the job runs in batch execution mode.
    pub fn batch_mode(&self) -> bool {
        self.config.batch_mode
    }

    /// Whether the job is stopping with a savepoint: its inputs end without
    /// the end-of-input watermark, so nothing fires that the input did not
    /// complete (Flink's stop without `--drain`).
    pub fn is_stopping(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| c.is_stopping())
    }

    /// Monotonic processing time from the job's clock.
    pub fn monotonic_ns(&self) -> u64 {
        self.config.clock.monotonic_ns()
    }

    /// Processing time in epoch milliseconds from the job's clock.
    pub fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    /// Whether the job is being cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.shared.is_cancelled()
    }

    /// Registers a counter for `operator` on this core.
    pub fn counter(&self, operator: &str, metric: &str) -> Counter {
        let counter = Counter::default();
        self.counters.borrow_mut().push(CounterEntry {
            operator: operator.to_string(),
            metric: metric.to_string(),
            core: self.index,
            counter: counter.clone(),
        });
        counter
    }

    /// Registers a gauge of `operator` on this core (starting at `initial`).
    pub fn gauge(&self, operator: &str, metric: &str, initial: i64) -> Gauge {
        let gauge = Gauge::new(initial);
        self.gauges.borrow_mut().push(GaugeEntry {
            operator: operator.to_string(),
            metric: metric.to_string(),
            core: self.index,
            gauge: gauge.clone(),
        });
        gauge
    }

    /// What the core registered so far, for the monitor: its counters and
    /// gauges (shared handles: they keep counting).
    pub(crate) fn registered(&self) -> (Vec<CounterEntry>, Vec<GaugeEntry>) {
        (self.counters.borrow().clone(), self.gauges.borrow().clone())
    }

    pub(crate) fn take_counters(&self) -> Vec<CounterEntry> {
        if self.config.state_backend == crate::config::StateBackendKind::Log {
            // The most memory the core's state, timers and unwritten log
            // segments were charged at once (its budget's high-water mark).
            self.counter("(core)", "state_memory_peak_bytes").add(self.memory_budget.peak() as u64);
            // What each use held at that peak.
            let by_use = self.memory_budget.peak_by_use();
            for (what, bytes) in brisk_state::log::MemoryUse::ALL.iter().zip(by_use) {
                self.counter("(core)", &format!("state_memory_peak_{}_bytes", what.name())).add(bytes as u64);
            }
            self.counter("(core)", "state_write_stall_ns").add(self.write_stall_ns.get());
            // The lowest limit the process's resident set gave the state.
            self.counter("(core)", "state_memory_limit_lowest_bytes")
                .add(self.memory_budget.lowest_limit() as u64);
            // The most a checkpoint held at once: its state files and the
            // log segments its flush sealed (the guard keeps that free).
            if let Some(cp) = &self.checkpoints {
                self.counter("(core)", "state_checkpoint_burst_peak_bytes").add(cp.burst_peak() as u64);
            }
        }
        std::mem::take(&mut *self.counters.borrow_mut())
    }

    /// Called by an outlet on every push.
    pub(crate) fn touch(&self, outlet: Rc<dyn Outlet>) {
        self.touched.borrow_mut().push(outlet);
    }

    /// Called by a gate holding back the channel the current push came
    /// from: the driving task waits for `release` before its next input.
    pub(crate) fn block(&self, release: Rc<glommio::sync::Semaphore>) {
        self.blocks.borrow_mut().push(release);
    }

    fn claim_touched(&self, owned: &mut Vec<Rc<dyn Outlet>>) {
        let mut touched = self.touched.borrow_mut();
        for o in touched.drain(..) {
            if !owned.iter().any(|x| Rc::ptr_eq(x, &o)) {
                owned.push(o);
            }
        }
    }
}

/// The write backlog of a core whose state may hold `limit` bytes now (its
/// budget, less what the process guard keeps free): a quarter of it, and at
/// least two segments so that one can be written while the next fills.
fn write_backlog_bytes(limit: usize) -> usize {
    (limit / 4).max(2 * crate::config::STATE_SEGMENT_BYTES)
}

/// What one driving task owns downstream of itself: the outlets it pushed
/// into and has yet to drain, and when it last flushed partial buffers.
pub(crate) struct Owned {
    core: Rc<Core>,
    outlets: Vec<Rc<dyn Outlet>>,
    last_flush_ns: u64,
}

impl Owned {
    pub fn new(core: Rc<Core>) -> Self {
        let now = core.monotonic_ns();
        Self { core, outlets: Vec::new(), last_flush_ns: now }
    }

    /// After a synchronous push: claim what it touched and wait until those
    /// outlets accepted it (backpressure). Partial buffers go out when the
    /// flush deadline passed. While the core's unwritten state log segments
    /// exceed its write backlog, everything is sent and the task waits for
    /// the disk before it takes more input: memory stays bounded when the
    /// disk is slower than the state's churn (RocksDB's write stall).
    pub async fn after_push(&mut self) -> Result<(), JobError> {
        // What the push left on the core (outlets it touched, channels a
        // gate holds back) is this task's: claim it before the first await,
        // or another task's after_push would take it, and could wait for a
        // barrier only this task can deliver.
        self.core.claim_touched(&mut self.outlets);
        let blocks = std::mem::take(&mut *self.core.blocks.borrow_mut());
        // Of the state's current limit: when the process guard lowers it,
        // fewer unwritten segments may wait in memory too.
        let backlog = write_backlog_bytes(self.core.memory_budget.limit());
        if self.core.segment_writes.bytes_in_flight() > backlog {
            self.flush_all().await?;
            let from = self.core.monotonic_ns();
            self.core.segment_writes.at_most(backlog).await;
            self.core.write_stall_ns.add(self.core.monotonic_ns().saturating_sub(from));
        }
        if !blocks.is_empty() {
            // Held for barrier alignment: send what the push produced first.
            self.flush_all().await?;
            for release in blocks {
                release.acquire(1).await.map_err(|_| JobError::Cancelled { core: self.core.index })?;
            }
            return Ok(());
        }
        if self.outlets.is_empty() {
            return Ok(());
        }
        let now = self.core.monotonic_ns();
        let flush_partial = now.saturating_sub(self.last_flush_ns) >= self.core.config.flush_interval_ns;
        if flush_partial {
            self.last_flush_ns = now;
        }
        for o in &self.outlets {
            o.clone().drain(flush_partial).await?;
        }
        self.outlets.retain(|o| o.has_unsent());
        Ok(())
    }

    /// Before waiting for input: send everything, partial buffers included.
    pub async fn flush_all(&mut self) -> Result<(), JobError> {
        self.core.claim_touched(&mut self.outlets);
        for o in self.outlets.drain(..) {
            o.drain(true).await?;
        }
        self.last_flush_ns = self.core.monotonic_ns();
        Ok(())
    }
}

/// A `Push` that discards everything: the output of a stream nobody consumes.
pub(crate) struct Discard;

impl<T> Push<T> for Discard {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        batch.clear();
        Ok(())
    }
    fn control(&mut self, _control: Control) -> Result<(), JobError> {
        Ok(())
    }
}

/// The port of a channel from a core that emits no records (no source split
/// upstream): it only ever delivers end-of-input, which is dropped here.
pub(crate) struct NoRecords {
    pub from_core: usize,
}

impl<T> Push<T> for NoRecords {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        Err(JobError::Runtime {
            core: self.from_core,
            message: format!(
                "core {} emitted {} records where it has no input split",
                self.from_core,
                batch.len()
            ),
        })
    }
    fn control(&mut self, _control: Control) -> Result<(), JobError> {
        Ok(())
    }
}

/// A node's output as seen by the monitor: counts the records that leave
/// it and keeps its newest watermark (one counter add per batch).
pub(crate) struct Observed<T> {
    pub inner: Box<dyn Push<T>>,
    pub records_out: Counter,
    pub watermark: Gauge,
}

impl<T> Push<T> for Observed<T> {
    #[inline]
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        self.records_out.add(batch.len() as u64);
        self.inner.push(batch)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        if let Control::Watermark(w) = control {
            self.watermark.set(w);
        }
        self.inner.control(control)
    }
}

/// Hands each batch to several consumers (a stream used more than once).
pub(crate) struct Tee<T> {
    outputs: Vec<Box<dyn Push<T>>>,
    scratch: Batch<T>,
}

impl<T: Clone> Tee<T> {
    pub fn new(outputs: Vec<Box<dyn Push<T>>>) -> Self {
        Self { outputs, scratch: Batch::default() }
    }
}

impl<T: Clone> Push<T> for Tee<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let (last, rest) = self.outputs.split_last_mut().expect("tee has outputs");
        for out in rest {
            self.scratch.records.extend_from_slice(&batch.records);
            self.scratch.timestamps.extend_from_slice(&batch.timestamps);
            out.push(&mut self.scratch)?;
            self.scratch.clear();
        }
        last.push(batch)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        for out in &mut self.outputs {
            out.control(control)?;
        }
        Ok(())
    }
}

/// Sets the job's cancel flag if the owning thread unwinds (an engine bug),
/// so other cores stop instead of waiting forever.
pub(crate) struct CancelOnUnwind(pub Arc<JobShared>);

impl Drop for CancelOnUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{JobConfig, StateBackendKind};

    /// Lets every other task on the executor run as far as it can.
    async fn settle() {
        for _ in 0..16 {
            futures_lite::future::yield_now().await;
        }
    }

    /// Runs `after_push` in its own task until it waits; the flag says when
    /// it has passed.
    async fn after_push_in_a_task(core: &Rc<Core>) -> (glommio::task::JoinHandle<()>, Rc<Cell<bool>>) {
        let passed = Rc::new(Cell::new(false));
        let task = glommio::spawn_local({
            let (core, passed) = (core.clone(), passed.clone());
            async move {
                Owned::new(core).after_push().await.expect("waits, then passes");
                passed.set(true);
            }
        })
        .detach();
        settle().await;
        (task, passed)
    }

    /// A driving task does not take more input while the core's state log
    /// writes in flight exceed its backlog (a quarter of the state's current
    /// limit), and goes on once they drained; the wait is counted.
    #[test]
    fn input_waits_while_state_writes_exceed_the_backlog() {
        let clock = ManualClock::new(0);
        let config = JobConfig {
            cores: Some(1),
            pin_cores: false,
            clock: clock.clone(),
            state_backend: StateBackendKind::Log,
            state_memory_budget_bytes: 64 << 20,
            ..JobConfig::default()
        };
        let resolved = config.resolve().expect("valid config");
        let backlog = write_backlog_bytes(64 << 20);
        assert_eq!(backlog, 16 << 20);
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let core = Core::new(0, resolved, JobShared::new(None, Default::default(), None, 1).0, None);
                // At the backlog: no wait.
                core.segment_writes.started(backlog);
                Owned::new(core.clone()).after_push().await.expect("no wait");
                // One byte over it: the push waits for a write to finish.
                core.segment_writes.started(1);
                let (task, passed) = after_push_in_a_task(&core).await;
                assert!(!passed.get(), "input taken with writes over the backlog");
                clock.advance_ms(7);
                core.segment_writes.finished(1);
                task.await;
                assert!(passed.get());
                core.segment_writes.finished(backlog);

                // The process guard lowered the state's limit to half the
                // budget: the backlog is a quarter of that now.
                core.memory_budget().set_limit(32 << 20);
                core.segment_writes.started(backlog / 2);
                core.segment_writes.started(1);
                let (task, passed) = after_push_in_a_task(&core).await;
                assert!(!passed.get(), "input taken with writes over the lowered backlog");
                core.segment_writes.finished(1);
                task.await;
                assert!(passed.get());
                core.segment_writes.finished(backlog / 2);
                core.memory_budget().set_limit(64 << 20);

                // A push that left a held-back channel, then waits for the
                // disk: the hold is its own from the start (another task
                // that took it would wait for a barrier this one delivers).
                let release = Rc::new(glommio::sync::Semaphore::new(0));
                core.block(release.clone());
                core.segment_writes.started(backlog + 1);
                let (task, passed) = after_push_in_a_task(&core).await;
                assert!(core.blocks.borrow().is_empty(), "the waiting task claimed its hold");
                core.segment_writes.finished(backlog + 1);
                settle().await;
                assert!(!passed.get(), "input taken while the channel is held back");
                release.signal(1);
                task.await;
                assert!(passed.get());
                let stall = core
                    .take_counters()
                    .into_iter()
                    .find(|c| c.metric == "state_write_stall_ns")
                    .expect("the log backend counts write stalls");
                assert_eq!(stall.counter.get(), 7_000_000);
            })
            .expect("executor starts")
            .join()
            .expect("test task");
    }
}
