//! Job configuration: how many cores, execution mode, exchange tuning, clock.

use std::path::PathBuf;
use std::sync::Arc;

use brisk_state::MaxParallelism;

use crate::checkpoint::RestoreFrom;
use crate::clock::{Clock, SystemClock};
use crate::error::JobError;

/// Upper bound on `cores`: far above any machine this runs on, it exists so a
/// typo (`--cores 20000`) is rejected instead of spawning threads.
pub const CORES_MAX: usize = 1024;
/// Batches an exchange channel holds before its sender is backpressured.
pub const EXCHANGE_QUEUE_BATCHES_DEFAULT: usize = 16;
/// Largest allowed exchange channel capacity in batches.
pub const EXCHANGE_QUEUE_BATCHES_MAX: usize = 1024;
/// Default deadline after which a partly filled exchange buffer is sent.
pub const FLUSH_INTERVAL_US_DEFAULT: u64 = 50;
/// How long an idle core spins before parking its thread.
pub const SPIN_BEFORE_PARK_US: u64 = 20;
/// io_uring registered-buffer memory per executor (glommio's default of
/// 10 MiB exceeds the memlock limit of unprivileged users).
pub const IO_MEMORY_BYTES: usize = 1 << 20;

/// Default for `checkpoint_timeout_ms` (Flink's is 10 minutes).
pub const CHECKPOINT_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Default for `tolerable_checkpoint_failures`.
pub const TOLERABLE_CHECKPOINT_FAILURES_DEFAULT: u32 = 3;
/// Fewest completed checkpoints kept (and the default).
pub const CHECKPOINTS_RETAINED_MIN: usize = 2;
/// Most checkpoints a core may leave unanswered (neither acknowledged nor
/// failed) before the coordinator triggers no more: a due checkpoint it
/// holds back counts as failed. A core answers each checkpoint at most
/// once, in order, so this also bounds what a core can have queued to the
/// coordinator at any time (these and its end), whatever the coordinator is
/// doing: the queue is [`coordinator_queue_len`] long.
pub const CHECKPOINTS_UNANSWERED_MAX: u64 = 8;

/// Length of the queue from `cores` cores to the checkpoint coordinator:
/// room for every answer a core may owe ([`CHECKPOINTS_UNANSWERED_MAX`])
/// and its end, so that a core never finds it full.
pub const fn coordinator_queue_len(cores: usize) -> usize {
    cores * (CHECKPOINTS_UNANSWERED_MAX as usize + 1)
}

/// Default for `state_memory_budget_bytes`: 1 GiB per core.
pub const STATE_MEMORY_BUDGET_DEFAULT: usize = 1 << 30;
/// Smallest allowed `state_memory_budget_bytes`.
pub const STATE_MEMORY_BUDGET_MIN: usize = 4 << 10;
/// Size at which a state log segment is sealed and written.
pub const STATE_SEGMENT_BYTES: usize = 4 << 20;

/// Where keyed state lives (Flink's `state.backend.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackendKind {
    /// All keyed state in memory (Flink's `hashmap`).
    #[default]
    Memory,
    /// Keyed state of process functions in memory up to the per-core budget
    /// (`state_memory_budget_bytes`), the rest in per-core append-only log
    /// segments under `state_dir` (the role of Flink's `rocksdb`).
    Log,
}

impl std::str::FromStr for StateBackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" | "hashmap" => Ok(Self::Memory),
            "log" => Ok(Self::Log),
            other => Err(format!("state backend '{other}': expected 'memory' or 'log'")),
        }
    }
}

/// Flink's `RuntimeExecutionMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// Continuous results: keyed aggregations emit every update.
    #[default]
    Streaming,
    /// Bounded inputs only: keyed aggregations emit one final result per key
    /// at the end of input.
    Batch,
    /// Batch if every source is bounded, otherwise streaming.
    Automatic,
}

impl std::str::FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "streaming" => Ok(Self::Streaming),
            "batch" => Ok(Self::Batch),
            "automatic" => Ok(Self::Automatic),
            _ => Err(format!("execution mode '{s}': expected 'streaming', 'batch' or 'automatic'")),
        }
    }
}

/// Configuration of one job run.
#[derive(Clone)]
pub struct JobConfig {
    /// Cores (one pinned executor each); `None` = every available CPU.
    pub cores: Option<usize>,
    /// Key groups; `None` = Flink's default for the core count.
    pub max_parallelism: Option<u32>,
    /// Streaming, batch or automatic.
    pub execution_mode: ExecutionMode,
    /// Capacity of each exchange channel, in batches.
    pub exchange_queue_batches: usize,
    /// Deadline for sending a partly filled exchange buffer, in microseconds.
    pub flush_interval_us: u64,
    /// Processing time between periodic watermarks, in milliseconds (Flink's
    /// `pipeline.auto-watermark-interval`; 0 turns periodic emission off).
    pub auto_watermark_interval_ms: i64,
    /// Processing time between latency markers a source emits (Flink's
    /// `metrics.latency.interval`), in milliseconds; 0 turns them off. Each
    /// sink records how long markers took to reach it (see
    /// [`JobResult::latency`](crate::JobResult::latency)).
    pub latency_interval_ms: u64,
    /// Pin executors to CPUs (`true` in production; tests running many jobs
    /// at once may turn it off).
    pub pin_cores: bool,
    /// Processing-time source.
    pub clock: Arc<dyn Clock>,
    /// Where checkpoints go (`chk-N/` directories); `None` = no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between periodic checkpoints, in milliseconds (0 = only
    /// savepoints on request). Needs `checkpoint_dir`.
    pub checkpoint_interval_ms: u64,
    /// A checkpoint not complete after this long is abandoned.
    pub checkpoint_timeout_ms: u64,
    /// Consecutive failed checkpoints tolerated before the job fails.
    pub tolerable_checkpoint_failures: u32,
    /// Completed checkpoints kept on disk (at least 2).
    pub checkpoints_retained: usize,
    /// Restore from a checkpoint or savepoint before starting.
    pub restore: Option<RestoreFrom>,
    /// Restart strategy: how many times a failed job restarts from its last
    /// checkpoint inside this process (0 = fail at once).
    pub restart_attempts: u32,
    /// Restart strategy: the delay before each restart, in milliseconds.
    pub restart_delay_ms: u64,
    /// Where keyed state lives.
    pub state_backend: StateBackendKind,
    /// Serve the REST API and web UI on this address while the job runs
    /// (`None`: no server). An address other than loopback needs
    /// `web_token`.
    pub web_ui: Option<std::net::SocketAddr>,
    /// The bearer token every mutating REST call must carry (required when
    /// `web_ui` is not a loopback address; optional on loopback).
    pub web_token: Option<String>,
    /// Log backend: bytes of keyed state each core keeps in memory (managed
    /// memory); beyond it, entries are evicted to the log. What eviction
    /// cannot free (the index of cold keys, timers, unwritten log segments)
    /// is a floor: a budget below it is exceeded, and each core logs a
    /// warning naming the parts (gauge `state_memory_unevictable_bytes`).
    pub state_memory_budget_bytes: usize,
    /// Log backend: the directory for state segments (a fresh subdirectory
    /// per run, removed when the run ends); `None` = the system's temporary
    /// directory.
    pub state_dir: Option<PathBuf>,
    /// Log backend with `checkpoint_dir`: checkpoints refer to the state
    /// log's immutable segments (kept in `<checkpoint_dir>/shared/`) and
    /// write only what changed since the previous one, instead of a full
    /// copy of the state. Savepoints are always full. Default on.
    pub incremental_checkpoints: bool,
    /// With glibc's allocator, before the first run in the process: fixes
    /// malloc's mmap threshold at 256 KiB and its arenas at cores + 2
    /// (`mallopt`). By default glibc raises the threshold to the largest
    /// block freed so far, so the state log's megabyte buffers come from
    /// the heap afterwards and fragment it: in a 10-minute KW run (1 M
    /// keys, log backend, 128 MiB/core) RSS sampled 184–270 MiB with this
    /// and 245–461 MiB without, at the same rate. Default on; turn it off
    /// when embedding brisk in a process that tunes its own allocator.
    pub tune_allocator: bool,
    /// Log backend: the cores' budgets are a soft limit for the process's
    /// resident set. Memory the process gains while the job runs outside
    /// any budget (exchange batches, allocator slack, mapped segment pages)
    /// lowers the state's limit by as much, down to a quarter of the budget
    /// (engine/src/runtime/memory.rs); what the process held before the job
    /// started does not count. Default on; turn it off when embedding brisk
    /// in a process whose own memory grows while the job runs.
    pub memory_guard: bool,
}

/// Default time between latency markers: 5 per second per source split.
pub const LATENCY_INTERVAL_MS_DEFAULT: u64 = 200;

/// The shortest accepted `web_token`.
pub const WEB_TOKEN_LEN_MIN: usize = 16;

/// Connections the REST API and web UI keep open at once; one more is
/// closed as soon as it is accepted (a browser keeps about six).
pub const WEB_CONNECTIONS_MAX: usize = 64;
/// Checkpoint outcomes and failures the web monitor's queue has room for
/// beyond what the cores send per run (see [`monitor_queue_len`]): at a
/// checkpoint a second, the web thread (which takes them every 100 ms)
/// would have to stall for minutes to fill it.
pub const MONITOR_QUEUE_EVENTS: usize = 256;

/// Length of the web monitor's queue for a job of `nodes` operators on
/// `cores` cores: per core, its handles and up to two latency histograms
/// per operator (a sink's periodic one, which it sends only once the
/// monitor took the previous, and its last); a run's start and end; and
/// [`MONITOR_QUEUE_EVENTS`].
pub const fn monitor_queue_len(cores: usize, nodes: usize) -> usize {
    cores * (1 + 2 * nodes) + 2 + MONITOR_QUEUE_EVENTS
}

impl std::fmt::Debug for JobConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConfig")
            .field("cores", &self.cores)
            .field("max_parallelism", &self.max_parallelism)
            .field("execution_mode", &self.execution_mode)
            .field("exchange_queue_batches", &self.exchange_queue_batches)
            .field("flush_interval_us", &self.flush_interval_us)
            .field("auto_watermark_interval_ms", &self.auto_watermark_interval_ms)
            .field("latency_interval_ms", &self.latency_interval_ms)
            .field("pin_cores", &self.pin_cores)
            .field("checkpoint_dir", &self.checkpoint_dir)
            .field("checkpoint_interval_ms", &self.checkpoint_interval_ms)
            .field("restore", &self.restore)
            .field("restart_attempts", &self.restart_attempts)
            .field("state_backend", &self.state_backend)
            .field("web_ui", &self.web_ui)
            .field("web_token", &self.web_token.as_ref().map(|_| "<set>"))
            .field("state_memory_budget_bytes", &self.state_memory_budget_bytes)
            .field("incremental_checkpoints", &self.incremental_checkpoints)
            .field("tune_allocator", &self.tune_allocator)
            .field("memory_guard", &self.memory_guard)
            .finish_non_exhaustive()
    }
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            cores: None,
            max_parallelism: None,
            execution_mode: ExecutionMode::Streaming,
            exchange_queue_batches: EXCHANGE_QUEUE_BATCHES_DEFAULT,
            flush_interval_us: FLUSH_INTERVAL_US_DEFAULT,
            auto_watermark_interval_ms: crate::operator::watermarks::AUTO_WATERMARK_INTERVAL_MS_DEFAULT,
            latency_interval_ms: LATENCY_INTERVAL_MS_DEFAULT,
            pin_cores: true,
            clock: Arc::new(SystemClock::default()),
            checkpoint_dir: None,
            checkpoint_interval_ms: 0,
            checkpoint_timeout_ms: CHECKPOINT_TIMEOUT_MS_DEFAULT,
            tolerable_checkpoint_failures: TOLERABLE_CHECKPOINT_FAILURES_DEFAULT,
            checkpoints_retained: CHECKPOINTS_RETAINED_MIN,
            restore: None,
            restart_attempts: 0,
            restart_delay_ms: 1000,
            state_backend: StateBackendKind::Memory,
            web_ui: None,
            web_token: None,
            state_memory_budget_bytes: STATE_MEMORY_BUDGET_DEFAULT,
            state_dir: None,
            incremental_checkpoints: true,
            tune_allocator: true,
            memory_guard: true,
        }
    }
}

impl JobConfig {
    /// Default configuration with `cores` cores.
    pub fn with_cores(cores: usize) -> Self {
        Self { cores: Some(cores), ..Self::default() }
    }

    /// The CPUs available to this process.
    pub fn available_cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Checks every field and resolves defaults.
    pub(crate) fn resolve(&self) -> Result<ResolvedConfig, JobError> {
        let cores = self.cores.unwrap_or_else(Self::available_cores);
        if cores == 0 || cores > CORES_MAX {
            return Err(JobError::Config(format!("cores = {cores}: must be between 1 and {CORES_MAX}")));
        }
        let max_parallelism = match self.max_parallelism {
            None => MaxParallelism::default_for(cores),
            Some(m) => MaxParallelism::new(m).ok_or_else(|| {
                JobError::Config(format!(
                    "max_parallelism = {m}: must be between {} and {}",
                    MaxParallelism::MIN,
                    MaxParallelism::MAX
                ))
            })?,
        };
        if (max_parallelism.get() as usize) < cores {
            return Err(JobError::Config(format!(
                "max_parallelism = {max_parallelism} is below cores = {cores}: some cores would own no key group"
            )));
        }
        if self.exchange_queue_batches == 0 || self.exchange_queue_batches > EXCHANGE_QUEUE_BATCHES_MAX {
            return Err(JobError::Config(format!(
                "exchange_queue_batches = {}: must be between 1 and {EXCHANGE_QUEUE_BATCHES_MAX}",
                self.exchange_queue_batches
            )));
        }
        if self.auto_watermark_interval_ms < 0 {
            return Err(JobError::Config(format!(
                "auto_watermark_interval_ms = {}: must be 0 (off) or a positive number of milliseconds",
                self.auto_watermark_interval_ms
            )));
        }
        if self.checkpoint_dir.is_none() {
            if self.checkpoint_interval_ms > 0 {
                return Err(JobError::Config(format!(
                    "checkpoint_interval_ms = {} needs checkpoint_dir",
                    self.checkpoint_interval_ms
                )));
            }
            if self.restore == Some(RestoreFrom::Latest) {
                return Err(JobError::Config("restore = latest needs checkpoint_dir".into()));
            }
        }
        if self.checkpoints_retained < CHECKPOINTS_RETAINED_MIN {
            return Err(JobError::Config(format!(
                "checkpoints_retained = {}: must be at least {CHECKPOINTS_RETAINED_MIN}",
                self.checkpoints_retained
            )));
        }
        if self.state_memory_budget_bytes < STATE_MEMORY_BUDGET_MIN {
            return Err(JobError::Config(format!(
                "state_memory_budget_bytes = {}: must be at least {STATE_MEMORY_BUDGET_MIN}",
                self.state_memory_budget_bytes
            )));
        }
        if self.checkpoint_timeout_ms == 0 {
            return Err(JobError::Config("checkpoint_timeout_ms = 0: must be positive".into()));
        }
        if let Some(addr) = self.web_ui {
            // R16: a server reachable from elsewhere takes no action without
            // a token.
            let token = self.web_token.as_deref().unwrap_or("");
            if !addr.ip().is_loopback() && token.is_empty() {
                return Err(JobError::Config(format!(
                    "web_ui = {addr} is not a loopback address: set web_token (--web-token or \
                     BRISK_WEB_TOKEN) so that only holders of it can cancel or savepoint the job"
                )));
            }
        }
        if self.web_token.as_deref().is_some_and(|t| t.len() < WEB_TOKEN_LEN_MIN) {
            return Err(JobError::Config(format!(
                "web_token: must be at least {WEB_TOKEN_LEN_MIN} characters"
            )));
        }
        Ok(ResolvedConfig {
            cores,
            max_parallelism,
            batch_mode: false,
            exchange_queue_batches: self.exchange_queue_batches,
            flush_interval_ns: self.flush_interval_us.saturating_mul(1000),
            auto_watermark_interval_ms: self.auto_watermark_interval_ms,
            latency_interval_ns: self.latency_interval_ms.saturating_mul(1_000_000),
            pin_cores: self.pin_cores,
            clock: self.clock.clone(),
            state_backend: self.state_backend,
            state_memory_budget_bytes: self.state_memory_budget_bytes,
            state_dir: None,
            state_deletions: None,
            incremental_checkpoints: self.incremental_checkpoints
                && self.state_backend == StateBackendKind::Log
                && self.checkpoint_dir.is_some(),
            state_epoch: 0,
        })
    }
}

/// A validated configuration as the runtime uses it (shared read-only by all
/// cores).
#[derive(Clone)]
pub(crate) struct ResolvedConfig {
    pub cores: usize,
    pub max_parallelism: MaxParallelism,
    pub batch_mode: bool,
    pub exchange_queue_batches: usize,
    pub flush_interval_ns: u64,
    pub auto_watermark_interval_ms: i64,
    /// Between latency markers (0: none).
    pub latency_interval_ns: u64,
    pub pin_cores: bool,
    pub clock: Arc<dyn Clock>,
    pub state_backend: StateBackendKind,
    pub state_memory_budget_bytes: usize,
    /// The run's own state directory (log backend), made by `execute_once`.
    pub state_dir: Option<PathBuf>,
    /// Where cores queue compacted segment files for deletion.
    pub state_deletions: Option<crossbeam::channel::Sender<PathBuf>>,
    /// Checkpoints of the log backend refer to shared segments (then
    /// `state_dir` is `<checkpoint_dir>/shared`).
    pub incremental_checkpoints: bool,
    /// This run's epoch in segment ids (see checkpoint/segments.rs).
    pub state_epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let e = JobConfig::with_cores(0).resolve().err().unwrap().to_string();
        assert!(e.contains("cores = 0"), "{e}");
        let c = JobConfig { max_parallelism: Some(0), ..JobConfig::with_cores(1) };
        assert!(c.resolve().err().unwrap().to_string().contains("max_parallelism = 0"));
        let c = JobConfig { max_parallelism: Some(2), ..JobConfig::with_cores(4) };
        assert!(c.resolve().err().unwrap().to_string().contains("below cores = 4"));
        let c = JobConfig { exchange_queue_batches: 0, ..JobConfig::with_cores(1) };
        assert!(c.resolve().err().unwrap().to_string().contains("exchange_queue_batches = 0"));
        let c = JobConfig { state_memory_budget_bytes: 100, ..JobConfig::with_cores(1) };
        assert!(c.resolve().err().unwrap().to_string().contains("state_memory_budget_bytes = 100"));
        assert_eq!("log".parse::<StateBackendKind>(), Ok(StateBackendKind::Log));
        assert!("rocks".parse::<StateBackendKind>().unwrap_err().contains("'rocks'"));
        assert_eq!(JobConfig::with_cores(3).resolve().unwrap().cores, 3);
    }
}
