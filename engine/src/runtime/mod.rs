//! The thread-per-core runtime: one pinned glommio executor per core, each
//! running one instance of every operator.
//!
//! glommio is used only here and in the exchange module, so that it could be
//! replaced (it is unmaintained since 2024).
//!
//! Life of a job run ([`execute`]):
//! 1. the configuration is validated and the execution mode resolved;
//! 2. on the calling (control) thread, every exchange edge's channel matrix is
//!    created, and every node factory is cloned once per core;
//! 3. one executor thread per core starts, pinned to its CPU; on it the
//!    exchange ends are connected, the operators are built in reverse graph
//!    order, and the driving tasks (sources, one receiver per inbound
//!    channel) are spawned;
//! 4. the core ends when all its tasks end; the first task error cancels the
//!    job: the core drops its tasks (and so its channel ends), the job's
//!    cancel flag stops sources elsewhere, and peers waiting on a dropped
//!    channel see it closed;
//! 5. the control thread joins every core and reports the first real error
//!    (not a cancellation echo), or the job's metrics.

pub(crate) mod core;
pub(crate) mod exchange;
pub(crate) mod memory;
pub(crate) mod segment_io;
pub(crate) mod timers;

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use glommio::{LocalExecutorBuilder, Placement, PoolPlacement};

use self::core::{CancelOnUnwind, Core, JobShared, LocalFuture};
use self::exchange::UnconnectedEnds;
use crate::checkpoint::coordinator::{self, Settings};
use crate::checkpoint::tracker::CoreCheckpoints;
use crate::checkpoint::{CheckpointShared, JobControl, RestoreFrom, Restored, ToCoordinator};
use crate::checkpoint::{segments, store};
use crate::config::{ExecutionMode, IO_MEMORY_BYTES, JobConfig, ResolvedConfig, SPIN_BEFORE_PARK_US};
use crate::error::JobError;
use crate::graph::{CoreBuilder, NodeFactory, NodeMeta, NodeSpec};
use crate::metrics::{CounterEntry, Metrics};
use crate::web::{JobState, MonitorMsg, WebServer};

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// Cores the job ran on.
    pub cores: usize,
    /// Wall time from start to the last core finishing.
    pub elapsed: Duration,
    /// Every counter of every operator on every core.
    pub metrics: Metrics,
    /// How many times the restart strategy restarted the job.
    pub restarts: u32,
    /// Checkpoints completed by the last run (the end-of-input one aside).
    pub checkpoints_completed: u64,
    /// Each of them: id, duration and size.
    pub checkpoints: Vec<crate::checkpoint::CheckpointStats>,
    /// Checkpoints that failed and were abandoned.
    pub checkpoints_failed: u64,
    /// What the last run restored from, and how long that took.
    pub restored: Option<RestoreStats>,
    /// Per sink: how long latency markers took from their origin to it
    /// (see [`JobConfig::latency_interval_ms`]), merged over cores.
    pub latency: Vec<crate::metrics::SinkLatency>,
}

/// How a run restored its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    /// The checkpoint (or savepoint) id restored.
    pub checkpoint: u64,
    /// Bytes of state files read.
    pub bytes: u64,
    /// Reading and verifying every state file (control thread), in ms.
    pub read_ms: u64,
    /// The slowest core's time to build its operators, which decode and
    /// install the key groups it owns, in ms.
    pub rebuild_ms: u64,
}

type CoreOutcome = (Result<(), JobError>, Vec<CounterEntry>);

/// A run's own directory for state log segments, deleted when dropped, and
/// the thread that deletes compacted segments for the cores (file deletion
/// may block; a core only queues the path).
struct StateRunDir {
    dir: std::path::PathBuf,
    deletions: Option<crossbeam::channel::Sender<std::path::PathBuf>>,
}

/// Segment deletions queued and not yet done; beyond this a compacted
/// segment stays until its run's directory is removed.
const STATE_DELETIONS_QUEUED_MAX: usize = 1024;

// Runs on the control thread (`execute`'s caller), never on a core.
#[allow(clippy::disallowed_methods)]
impl StateRunDir {
    fn create(parent: Option<&std::path::Path>) -> Result<Self, JobError> {
        let parent = parent.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = parent.join(format!("brisk-state-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            JobError::Config(format!(
                "state_dir = {}: cannot create {}: {e}",
                parent.display(),
                dir.display()
            ))
        })?;
        let (tx, rx) = crossbeam::channel::bounded::<std::path::PathBuf>(STATE_DELETIONS_QUEUED_MAX);
        // Ends when the last sender (the cores' copies of the config) is
        // gone; files it finds removed with the directory are not an error.
        std::thread::Builder::new()
            .name("brisk-state-deleter".into())
            .spawn(move || {
                for path in rx {
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            tracing::warn!(
                                "cannot delete the compacted state segment {}: {e}",
                                path.display()
                            );
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| JobError::Config(format!("cannot start the state segment deleter: {e}")))?;
        Ok(Self { dir, deletions: Some(tx) })
    }
}

impl Drop for StateRunDir {
    fn drop(&mut self) {
        self.deletions.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("cannot remove the state directory {}: {e}", self.dir.display());
        }
    }
}

/// Runs `nodes` under `config` (see the module docs), restarting from the
/// last checkpoint after a failure as the restart strategy allows.
pub(crate) fn execute(
    nodes: Vec<NodeSpec>,
    config: &JobConfig,
    control: &JobControl,
) -> Result<JobResult, JobError> {
    if config.tune_allocator {
        tune_allocator(
            config.cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        );
    }
    let web = match config.web_ui {
        Some(addr) => {
            let rc = config.resolve()?;
            let mut metas: Vec<NodeMeta> = nodes.iter().map(|n| n.meta.clone()).collect();
            crate::graph::fill_active_cores(&mut metas, rc.cores);
            let server =
                WebServer::start(addr, config.web_token.clone(), &metas, rc.cores, control.clone(), config)?;
            let _ = control.web.set(server.addr);
            eprintln!("brisk: REST API and web UI on http://{}/", server.addr);
            Some(server)
        }
        None => None,
    };
    let monitor = web.as_ref().map(WebServer::sender);
    let tell = |msg: MonitorMsg| {
        if let Some(m) = &monitor {
            m.tell(msg);
        }
    };
    let mut attempt = 0;
    let mut restore = config.restore.clone();
    loop {
        let outcome = execute_once(&nodes, config, restore.clone(), control, monitor.clone(), attempt);
        if let Err(e) = &outcome {
            tell(MonitorMsg::Failure { message: e.to_string() });
        }
        match outcome {
            Err(e)
                if attempt < config.restart_attempts
                    && config.checkpoint_dir.is_some()
                    && e.is_restartable() =>
            {
                attempt += 1;
                tracing::warn!(
                    "job failed ({e}); restart {attempt} of {} from the last checkpoint in {} ms",
                    config.restart_attempts,
                    config.restart_delay_ms
                );
                // The control thread, not a core: waiting here blocks nothing.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(Duration::from_millis(config.restart_delay_ms));
                restore = Some(RestoreFrom::Latest);
            }
            other => {
                let state = match &other {
                    Ok(_) => JobState::Finished,
                    Err(e) if e.is_cancellation() => JobState::Cancelled,
                    Err(_) => JobState::Failed,
                };
                tell(MonitorMsg::Ended { state });
                return other.map(|mut r| {
                    r.restarts = attempt;
                    r
                });
            }
        }
    }
}

/// `JobConfig::tune_allocator`: once per process, glibc's malloc gets a
/// fixed mmap threshold (so large freed buffers return to the kernel
/// instead of fragmenting the heap) and a bounded number of arenas.
fn tune_allocator(cores: usize) {
    static TUNED: std::sync::Once = std::sync::Once::new();
    TUNED.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let arenas = libc::c_int::try_from(cores + 2).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt only sets allocator parameters, under glibc's
            // own arena locks, so other threads may be allocating meanwhile.
            let ok = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) == 1
                    && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
            };
            if !ok {
                tracing::warn!("mallopt refused the allocator settings; memory may fragment");
            }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let _ = cores;
    });
}

fn execute_once(
    nodes: &[NodeSpec],
    config: &JobConfig,
    restore: Option<RestoreFrom>,
    control: &JobControl,
    monitor: Option<crate::web::MonitorTx>,
    attempt: u32,
) -> Result<JobResult, JobError> {
    let mut rc = config.resolve()?;
    // The log backend's scratch directory of this run (its segments unless
    // checkpoints are incremental), removed when the run ends, and the
    // thread that deletes compacted segments.
    let state_run_dir = match rc.state_backend {
        crate::config::StateBackendKind::Log => {
            if nodes.len() > segments::NODES_MAX {
                return Err(JobError::Config(format!(
                    "state_backend = log supports at most {} operators, the job has {}",
                    segments::NODES_MAX,
                    nodes.len()
                )));
            }
            Some(StateRunDir::create(config.state_dir.as_deref())?)
        }
        crate::config::StateBackendKind::Memory => None,
    };
    rc.state_dir = state_run_dir.as_ref().map(|d| d.dir.clone());
    rc.state_deletions = state_run_dir.as_ref().and_then(|d| d.deletions.clone());
    let all_bounded = nodes.iter().filter_map(|n| n.meta.bounded).all(|b| b);
    if !nodes.iter().any(|n| n.meta.is_sink) {
        return Err(JobError::Config("the job has no sink: add one with sink_to or collect".into()));
    }
    rc.batch_mode = match config.execution_mode {
        ExecutionMode::Streaming => false,
        ExecutionMode::Automatic => all_bounded,
        ExecutionMode::Batch if all_bounded => true,
        ExecutionMode::Batch => {
            let unbounded: Vec<&str> = nodes
                .iter()
                .filter(|n| n.meta.bounded == Some(false))
                .map(|n| n.meta.name.as_str())
                .collect();
            return Err(JobError::Config(format!(
                "execution_mode = batch needs bounded sources, but {} never end(s)",
                unbounded.join(", ")
            )));
        }
    };
    let cores = rc.cores;
    let cpus = if rc.pin_cores {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if ids.is_empty() {
            return Err(JobError::Runtime {
                core: 0,
                message: "cannot read this process's CPU affinity".into(),
            });
        }
        ids.into_iter().map(|c| c.id).collect()
    } else {
        Vec::new()
    };

    // Channel matrices: [node][exchange][core] → per core [node][exchange].
    let mut per_core: Vec<Vec<Vec<Box<dyn UnconnectedEnds>>>> =
        (0..cores).map(|_| (0..nodes.len()).map(|_| Vec::new()).collect()).collect();
    for (i, node) in nodes.iter().enumerate() {
        for matrix in node.factory.exchanges(cores, rc.exchange_queue_batches) {
            for (c, ends) in matrix.into_iter().enumerate() {
                per_core[c][i].push(ends);
            }
        }
    }

    control.progress.init(rc.cores);
    control.progress.reset();
    // Under the log backend, the process's resident set moves the cores'
    // state limits (memory.rs); the sampler stops when this run ends.
    let (_memory_sampler, process_memory) =
        if config.memory_guard && rc.state_backend == crate::config::StateBackendKind::Log {
            let (sampler, memory) = memory::Sampler::start(cores, rc.state_memory_budget_bytes)?;
            (Some(sampler), Some(memory))
        } else {
            (None, None)
        };
    let (shared, receivers) =
        JobShared::new(monitor, control.progress.clone(), process_memory, nodes.len() * cores);
    shared.monitor(|| MonitorMsg::Attempt { shared: shared.clone(), attempt });
    let node_names: Vec<String> = nodes.iter().map(|n| n.meta.name.clone()).collect();
    let mut checkpointing = None;
    let mut restored = None;
    let mut restore_stats = None;
    if let Some(root) = &config.checkpoint_dir {
        let read_started = Instant::now();
        let (prepared, first_id) = prepare_restore(root, restore.as_ref(), &node_names, &rc)?;
        let prepared_segments = prepared.as_ref().map(|p| p.segments.clone());
        // Paths of the restored checkpoint's segments, if they are this
        // root's own (foreign ones are never this job's to delete).
        let own_restored_segments: Vec<String> = prepared
            .as_ref()
            .filter(|p| p.restored.own_root)
            .map(|p| p.segments.iter().map(|s| s.path.clone()).collect())
            .unwrap_or_default();
        if let Some(p) = prepared {
            if p.finished {
                tracing::info!(
                    "checkpoint {} is of a finished job: its output is committed, nothing to run",
                    p.id
                );
                return Ok(JobResult {
                    cores,
                    elapsed: Duration::ZERO,
                    metrics: Metrics::default(),
                    restarts: 0,
                    checkpoints_completed: 0,
                    checkpoints: Vec::new(),
                    checkpoints_failed: 0,
                    restored: None,
                    latency: Vec::new(),
                });
            }
            restore_stats = Some(RestoreStats {
                checkpoint: p.id,
                bytes: p.restored.by_node.iter().flatten().map(|b| b.len() as u64).sum::<u64>()
                    + p.segment_bytes,
                read_ms: read_started.elapsed().as_millis() as u64,
                rebuild_ms: 0,
            });
            restored = Some(Arc::new(p.restored));
        }
        if rc.incremental_checkpoints {
            // Segments go where checkpoints can refer to them.
            let restored_segments = prepared_segments.as_deref().unwrap_or(&[]);
            rc.state_epoch = segments::prepare(root, restored_segments).map_err(JobError::Config)?;
            rc.state_dir = Some(root.join(segments::SHARED_DIR));
        }
        let (tx, rx) = crossbeam::channel::bounded(crate::config::coordinator_queue_len(cores));
        let cshared = CheckpointShared::new(root.clone());
        let settings = Settings {
            interval: (config.checkpoint_interval_ms > 0)
                .then(|| Duration::from_millis(config.checkpoint_interval_ms)),
            timeout: Duration::from_millis(config.checkpoint_timeout_ms),
            tolerable_failures: config.tolerable_checkpoint_failures,
            retained: config.checkpoints_retained,
            cores,
            max_parallelism: rc.max_parallelism.get(),
            nodes: node_names.clone(),
            first_id,
            restored_segments: own_restored_segments,
        };
        checkpointing = Some((cshared, tx, rx, settings));
    }
    let mut metas: Vec<NodeMeta> = nodes.iter().map(|n| n.meta.clone()).collect();
    crate::graph::fill_active_cores(&mut metas, cores);
    let metas: Arc<Vec<NodeMeta>> = Arc::new(metas);
    let start = Instant::now();
    // The coordinator runs beside the cores until they have all ended.
    let (stop_tx, stop_rx) = crossbeam::channel::bounded::<()>(1);
    let mut coordinator = None;
    let mut trackers: Vec<Option<(Arc<CheckpointShared>, crossbeam::channel::Sender<ToCoordinator>)>> =
        vec![None; cores];
    if let Some((cshared, tx, rx, settings)) = checkpointing {
        for t in trackers.iter_mut() {
            *t = Some((cshared.clone(), tx.clone()));
        }
        drop(tx);
        let (job, requests, cs) = (shared.clone(), control.rx.clone(), cshared.clone());
        let handle = std::thread::Builder::new()
            .name("brisk-checkpoints".into())
            .spawn(move || {
                let outcome = coordinator::run(settings.clone(), cs, job, rx, requests, stop_rx);
                (settings, outcome)
            })
            .map_err(|e| JobError::Runtime {
                core: 0,
                message: format!("cannot start the checkpoint coordinator: {e}"),
            })?;
        coordinator = Some((cshared, handle));
    }
    let mut handles = Vec::with_capacity(cores);
    for (c, ends) in per_core.into_iter().enumerate() {
        let factories: Vec<Box<dyn NodeFactory>> = nodes.iter().map(|n| n.factory.clone_box()).collect();
        let placement =
            if rc.pin_cores { Placement::Fixed(cpus[c % cpus.len()]) } else { Placement::Unbound };
        let (rc, shared_c, metas) = (rc.clone(), shared.clone(), metas.clone());
        let (tracker, restored) = (trackers[c].take(), restored.clone());
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("brisk-core-{c}"))
            .io_memory(IO_MEMORY_BYTES)
            .spin_before_park(Duration::from_micros(SPIN_BEFORE_PARK_US))
            // Blocking I/O (stdout, plain files) runs on one helper thread per
            // core, not pinned, so it does not compete with its executor's CPU.
            .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
            .spawn(move || async move {
                let _unwind = CancelOnUnwind(shared_c.clone());
                let checkpoints = tracker.map(|(cs, tx)| CoreCheckpoints::new(c, cs, tx, restored));
                let outcome = run_core(c, rc, shared_c.clone(), checkpoints, &metas, factories, ends).await;
                if outcome.0.is_err() {
                    shared_c.cancel();
                }
                outcome
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.cancel();
                for h in handles {
                    let _ = h.join();
                }
                return Err(JobError::Runtime {
                    core: c,
                    message: format!("cannot start the executor: {e}"),
                });
            }
        }
    }

    let mut metrics = Metrics::default();
    let mut first: Option<JobError> = None;
    for (c, h) in handles.into_iter().enumerate() {
        let (result, counters) = match h.join() {
            Ok(outcome) => outcome,
            Err(e) => {
                shared.cancel();
                (
                    Err(JobError::Runtime { core: c, message: format!("executor thread panicked: {e}") }),
                    Vec::new(),
                )
            }
        };
        metrics.extend(counters);
        if let Err(e) = result {
            let replace = match &first {
                None => true,
                Some(f) => f.is_cancellation() && !e.is_cancellation(),
            };
            if replace {
                first = Some(e);
            }
        }
    }
    // Whether the output is final: the last checkpoint, or the savepoint the
    // job stopped with, is complete (without checkpoints: no error).
    let mut output_final = first.is_none();
    let mut checkpoints_completed = 0;
    let mut checkpoint_stats = Vec::new();
    let mut checkpoints_failed = 0;
    if let Some((cshared, handle)) = coordinator {
        let _ = stop_tx.send(());
        let (settings, outcome) = handle.join().map_err(|_| JobError::Runtime {
            core: 0,
            message: "the checkpoint coordinator panicked".into(),
        })?;
        if let Some(e) = outcome.error {
            let e = JobError::Checkpoint(e);
            if first.as_ref().is_none_or(|f| f.is_cancellation()) {
                first = Some(e);
            }
        } else if first.is_none() && !cshared.is_stopping() {
            // All input processed: commit the end-of-input output.
            coordinator::finish(&settings, &cshared, &outcome).map_err(JobError::Checkpoint)?;
        }
        output_final &= first.is_none() && (!cshared.is_stopping() || cshared.stop_completed());
        checkpoints_completed = outcome.completed;
        checkpoint_stats = outcome.stats;
        checkpoints_failed = outcome.failed;
        if rc.incremental_checkpoints {
            // Every core has ended: a segment no complete checkpoint refers
            // to (spill never published, or compacted away) is garbage now.
            match segments::referenced(cshared.root()) {
                Ok((refs, _)) => segments::sweep_unreferenced(cshared.root(), &refs),
                Err(e) => tracing::warn!("cannot list checkpoints to delete unused segments: {e}"),
            }
        }
    }
    if output_final {
        // What sources and sinks left for this moment.
        for (name, finish) in receivers.finishers.try_iter() {
            if let Err(e) = finish() {
                first = Some(JobError::Sink {
                    operator: name,
                    core: 0,
                    message: format!("after the job's end: {e}"),
                });
                break;
            }
        }
    }
    let latency = crate::metrics::SinkLatency::merge(receivers.latencies.try_iter());
    drop(receivers);
    match first {
        Some(e) => Err(e),
        None => Ok(JobResult {
            cores,
            elapsed: start.elapsed(),
            metrics,
            restarts: 0,
            checkpoints_completed,
            checkpoints: checkpoint_stats,
            checkpoints_failed,
            restored: restore_stats
                .map(|r| RestoreStats { rebuild_ms: shared.build_time_max().as_millis() as u64, ..r }),
            latency,
        }),
    }
}

/// A checkpoint chosen for restore, loaded and verified.
struct Prepared {
    id: u64,
    finished: bool,
    restored: Restored,
    /// The log segments it refers to, and their bytes.
    segments: Vec<segments::SegmentFile>,
    segment_bytes: u64,
}

/// Resolves `restore`, verifies the checkpoint, checks it fits this job,
/// commits what it pre-committed, and returns it with the first free
/// checkpoint id.
#[allow(clippy::disallowed_methods)] // the control thread
fn prepare_restore(
    root: &std::path::Path,
    restore: Option<&RestoreFrom>,
    nodes: &[String],
    rc: &ResolvedConfig,
) -> Result<(Option<Prepared>, u64), JobError> {
    std::fs::create_dir_all(root)
        .map_err(|e| JobError::Config(format!("checkpoint_dir {}: cannot create it: {e}", root.display())))?;
    let highest = store::highest_id(root)
        .map_err(|e| JobError::Config(format!("checkpoint_dir {}: cannot list it: {e}", root.display())))?;
    let loaded = match restore {
        None => None,
        Some(RestoreFrom::Latest) => match store::choose_latest(root).map_err(JobError::Restore)? {
            None => {
                tracing::info!(
                    "restore = latest: no complete checkpoint in {}, starting fresh",
                    root.display()
                );
                None
            }
            Some(chosen) => {
                for (id, why) in &chosen.skipped {
                    tracing::warn!("checkpoint {id} skipped: {why}");
                }
                Some(chosen.loaded)
            }
        },
        Some(RestoreFrom::Path(p)) => Some(store::load(p).map_err(|e| JobError::Restore(e.to_string()))?),
    };
    let Some(loaded) = loaded else { return Ok((None, highest + 1)) };
    let m = &loaded.manifest;
    if m.nodes != nodes {
        return Err(JobError::Restore(format!(
            "{} was taken from a different job graph (operators {:?}, this job has {:?})",
            loaded.dir.display(),
            m.nodes,
            nodes
        )));
    }
    if m.max_parallelism != rc.max_parallelism.get() {
        return Err(JobError::Restore(format!(
            "{} has max_parallelism = {}, this job {}: key groups cannot be remapped",
            loaded.dir.display(),
            m.max_parallelism,
            rc.max_parallelism
        )));
    }
    // Phase two for what the restored checkpoint pre-committed (idempotent).
    store::commit(&m.commits).map_err(JobError::Restore)?;
    let mut by_node: Vec<Vec<Vec<u8>>> = vec![Vec::new(); nodes.len()];
    for (entry, payload) in loaded.payloads {
        if let Some(v) = by_node.get_mut(entry.node) {
            v.push(payload);
        }
    }
    tracing::info!("restoring checkpoint {} from {}", m.id, loaded.dir.display());
    let segment_root = loaded.dir.parent().unwrap_or(std::path::Path::new(".")).to_path_buf();
    let own_root = match (segment_root.canonicalize(), root.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let prepared = Prepared {
        id: m.id,
        finished: m.finished,
        restored: Restored { by_node, segment_root, own_root, cores: m.cores },
        segments: m.segments.clone(),
        segment_bytes: m.segment_bytes(),
    };
    Ok((Some(prepared), highest.max(m.id) + 1))
}

async fn run_core(
    index: usize,
    config: ResolvedConfig,
    shared: Arc<JobShared>,
    checkpoints: Option<Rc<CoreCheckpoints>>,
    metas: &[NodeMeta],
    factories: Vec<Box<dyn NodeFactory>>,
    ends: Vec<Vec<Box<dyn UnconnectedEnds>>>,
) -> CoreOutcome {
    let core = Core::new(index, config, shared, checkpoints);
    let result = build_and_run(&core, metas, factories, ends).await;
    if let Some(cp) = &core.checkpoints {
        if result.is_ok() {
            cp.wait_for_writes().await;
            cp.send(cp.ended());
        } else {
            // State files whose I/O started finish too (see
            // `wait_for_file_io`); ones still waiting for segments are
            // given up.
            cp.wait_for_file_io().await;
        }
    }
    // State segment writes always finish (with an error at worst): let them,
    // before the executor goes.
    core.segment_writes.idle().await;
    (result, core.take_counters())
}

async fn build_and_run(
    core: &Rc<Core>,
    metas: &[NodeMeta],
    factories: Vec<Box<dyn NodeFactory>>,
    ends: Vec<Vec<Box<dyn UnconnectedEnds>>>,
) -> Result<(), JobError> {
    // Every core connects edges in the same (node, exchange) order; within
    // one edge all ends connect concurrently (see exchange.rs).
    let mut connected: Vec<Vec<Box<dyn Any>>> = Vec::with_capacity(ends.len());
    for node_ends in ends {
        let mut v = Vec::with_capacity(node_ends.len());
        for e in node_ends {
            v.push(e.connect().await);
        }
        connected.push(v);
    }

    let mut builder = CoreBuilder::new(core.clone(), metas.iter().map(|m| m.name.clone()).collect());
    let build_started = Instant::now();
    for ((factory, meta), ends) in factories.into_iter().zip(metas).zip(connected).rev() {
        factory.instantiate(&mut builder, meta, ends)?;
    }
    core.shared.built(build_started.elapsed());
    if core.config.state_backend == crate::config::StateBackendKind::Log {
        // Before the monitor hears of the core's gauges.
        self::memory::BudgetWatch::register(core);
    }
    core.shared.monitor(|| {
        let (counters, gauges) = core.registered();
        MonitorMsg::Registered { counters, gauges }
    });

    // Run every task; the first failure wakes this future, which then drops
    // (cancels) the rest.
    let failed = Rc::new(Semaphore::new(0));
    let error: Rc<RefCell<Option<JobError>>> = Rc::default();
    let mut tasks = Vec::with_capacity(builder.tasks.len() + 1);
    let mut all_tasks: Vec<LocalFuture<'static, Result<(), JobError>>> = Vec::new();
    for (_what, task) in std::mem::take(&mut builder.tasks) {
        // Data tasks keep the processing-time service alive.
        let alive = core.timers.data_task_started();
        all_tasks.push(Box::pin(async move {
            let _alive = alive;
            task.await
        }));
    }
    if core.config.state_backend == crate::config::StateBackendKind::Log
        && tracing::enabled!(target: "brisk::memory", tracing::Level::DEBUG)
    {
        self::timers::MemoryReport::register(core);
    }
    if let Some(memory) = &core.shared.process_memory {
        self::memory::MemoryGuard::register(core, memory.clone());
    }
    if core.timers.has_tickers() {
        all_tasks.push(Box::pin(self::timers::run_processing_time(core.clone(), core.timers.clone())));
    }
    for task in all_tasks {
        let (failed, error, shared) = (failed.clone(), error.clone(), core.shared.clone());
        tasks.push(glommio::spawn_local(async move {
            if let Err(e) = task.await {
                shared.cancel();
                let mut slot = error.borrow_mut();
                if slot.as_ref().is_none_or(|f| f.is_cancellation() && !e.is_cancellation()) {
                    *slot = Some(e);
                }
                failed.signal(1);
            }
        }));
    }
    drop(builder);
    let all = async {
        for t in tasks {
            t.await;
        }
    };
    let first_failure = async {
        let _ = failed.acquire(1).await;
    };
    futures_lite::future::race(all, first_failure).await;
    match error.borrow_mut().take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
