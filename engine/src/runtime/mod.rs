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
use crate::config::{ExecutionMode, IO_MEMORY_BYTES, JobConfig, ResolvedConfig, SPIN_BEFORE_PARK_US};
use crate::error::JobError;
use crate::graph::{CoreBuilder, NodeFactory, NodeMeta, NodeSpec};
use crate::metrics::{CounterEntry, Metrics};

/// What a finished job reports.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// Cores the job ran on.
    pub cores: usize,
    /// Wall time from start to the last core finishing.
    pub elapsed: Duration,
    /// Every counter of every operator on every core.
    pub metrics: Metrics,
}

type CoreOutcome = (Result<(), JobError>, Vec<CounterEntry>);

/// Runs `nodes` under `config` (see the module docs).
pub(crate) fn execute(nodes: Vec<NodeSpec>, config: &JobConfig) -> Result<JobResult, JobError> {
    let mut rc = config.resolve()?;
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

    let shared = JobShared::new();
    let mut metas: Vec<NodeMeta> = nodes.iter().map(|n| n.meta.clone()).collect();
    crate::graph::fill_active_cores(&mut metas, cores);
    let metas: Arc<Vec<NodeMeta>> = Arc::new(metas);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(cores);
    for (c, ends) in per_core.into_iter().enumerate() {
        let factories: Vec<Box<dyn NodeFactory>> = nodes.iter().map(|n| n.factory.clone_box()).collect();
        let placement =
            if rc.pin_cores { Placement::Fixed(cpus[c % cpus.len()]) } else { Placement::Unbound };
        let (rc, shared_c, metas) = (rc.clone(), shared.clone(), metas.clone());
        let spawned = LocalExecutorBuilder::new(placement)
            .name(&format!("brisk-core-{c}"))
            .io_memory(IO_MEMORY_BYTES)
            .spin_before_park(Duration::from_micros(SPIN_BEFORE_PARK_US))
            // Blocking I/O (stdout, plain files) runs on one helper thread per
            // core, not pinned, so it does not compete with its executor's CPU.
            .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
            .spawn(move || async move {
                let _unwind = CancelOnUnwind(shared_c.clone());
                let outcome = run_core(c, rc, shared_c.clone(), &metas, factories, ends).await;
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
    match first {
        Some(e) => Err(e),
        None => Ok(JobResult { cores, elapsed: start.elapsed(), metrics }),
    }
}

async fn run_core(
    index: usize,
    config: ResolvedConfig,
    shared: Arc<JobShared>,
    metas: &[NodeMeta],
    factories: Vec<Box<dyn NodeFactory>>,
    ends: Vec<Vec<Box<dyn UnconnectedEnds>>>,
) -> CoreOutcome {
    let core = Core::new(index, config, shared);
    let result = build_and_run(&core, metas, factories, ends).await;
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

    let mut builder = CoreBuilder::new(core.clone(), metas.len());
    for ((factory, meta), ends) in factories.into_iter().zip(metas).zip(connected).rev() {
        factory.instantiate(&mut builder, meta, ends)?;
    }

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
