//! The REST API and web UI of a running job, served from a control thread
//! (`brisk-web`), never a core.
//!
//! | part | what it holds |
//! | --- | --- |
//! | [`Monitor`] (this file) | the control side's view of the job: graph, registered counters and gauges, sampled rates, checkpoint history, exceptions, state |
//! | `http.rs` | the server: routes, JSON and Prometheus output, the actions, and the R16 rules (token, body limit, fixed routes, no stack traces) |
//! | `assets/` | the web UI, embedded in the binary |
//!
//! Cores and the checkpoint coordinator tell the monitor what happens
//! through one bounded queue ([`MonitorMsg`], [`MonitorTx`]): a core sends
//! the handles of its counters and gauges once its operators are built
//! (they are shared atomics: the monitor reads them while the core updates
//! them), a sink its latency histogram about once a second, the coordinator
//! each checkpoint's outcome, the runtime each attempt's start and each
//! failure. Nobody waits on the queue: a sink sends no histogram while its
//! previous one is still queued, so what is queued at once is a few
//! messages per core and task plus the checkpoint outcomes and failures of
//! the moment ([`crate::config::monitor_queue_len`]). A message that finds
//! the queue full anyway (the web thread stalled for many checkpoints) is
//! dropped and counted (`monitor_messages_dropped` in `/api/overview` and the
//! metrics). The monitor keeps bounded histories.

mod http;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError};
use serde::Serialize;

use crate::batch::MIN_WATERMARK;
use crate::checkpoint::JobControl;
use crate::error::JobError;
use crate::graph::NodeMeta;
use crate::metrics::{CounterEntry, GaugeEntry};
use crate::runtime::core::JobShared;

/// Checkpoints kept in the history the API serves.
const CHECKPOINT_HISTORY_MAX: usize = 100;
/// Exceptions kept.
const EXCEPTIONS_MAX: usize = 50;
/// Rate samples kept per operator (one per [`SAMPLE_INTERVAL`]): five
/// minutes of charts.
const SAMPLES_MAX: usize = 300;
/// How often counters are sampled for rates.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// What the runtime, the cores and the coordinator tell the monitor.
pub(crate) enum MonitorMsg {
    /// A run (first or restart) begins: actions go to its `shared`.
    Attempt { shared: Arc<JobShared>, attempt: u32 },
    /// A core built its operators: handles of what it counts.
    Registered { counters: Vec<CounterEntry>, gauges: Vec<GaugeEntry> },
    /// A checkpoint completed or failed.
    Checkpoint(CheckpointEvent),
    /// The run failed (it may restart).
    Failure { message: String },
    /// The job ended: finished, failed or cancelled.
    Ended { state: JobState },
    /// A sink's latency histogram on one core so far (cumulative). The
    /// sink sets `queued` when it sends one and sends no other until the
    /// monitor (or a full queue) clears it.
    Latency { sink: String, core: usize, hist: hdrhistogram::Histogram<u64>, queued: Arc<AtomicBool> },
}

/// The sending end of the monitor's queue, cloned to whoever reports:
/// never waits; a message that finds the queue full is dropped and counted.
#[derive(Clone)]
pub(crate) struct MonitorTx {
    tx: Sender<MonitorMsg>,
    /// Messages dropped because the queue was full (shared with the monitor).
    dropped: Arc<AtomicU64>,
}

impl MonitorTx {
    /// Queues `msg` for the monitor, or drops and counts it if the queue is
    /// full (and lets a dropped histogram's sink send the next one).
    pub fn tell(&self, msg: MonitorMsg) {
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(msg)) => {
                if let MonitorMsg::Latency { queued, .. } = &msg {
                    queued.store(false, Ordering::Release);
                }
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("the web monitor's queue is full: dropping what it would show (counted)");
                }
            }
        }
    }
}

/// One checkpoint's outcome, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckpointEvent {
    pub id: u64,
    /// `COMPLETED` or `FAILED`.
    pub status: &'static str,
    /// Whether it was a savepoint.
    pub savepoint: bool,
    /// Epoch ms of the job's clock.
    pub triggered_ms: i64,
    pub duration_ms: u64,
    /// Bytes it added (incremental) and bytes it restores.
    pub bytes: u64,
    pub full_bytes: u64,
    /// The longest synchronous part on any core (µs): operators
    /// serializing their state while the barrier passed.
    pub sync_us: u64,
    /// The longest barrier alignment on any core (µs).
    pub alignment_us: u64,
    /// Why it failed.
    pub reason: Option<String>,
}

/// Where the job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum JobState {
    Running,
    Restarting,
    Finished,
    Failed,
    Cancelled,
}

/// The graph as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct NodeView {
    id: usize,
    name: String,
    kind: &'static str,
    /// One instance per core (a single-writer sink writes on core 0 only).
    parallelism: usize,
    inputs: Vec<InputView>,
    /// Whether it runs in the same chain as its (single) input: a plain call
    /// on the same core, no exchange.
    chained: bool,
    is_source: bool,
    is_sink: bool,
    bounded: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
struct InputView {
    from: usize,
    partitioning: String,
}

/// The monitor: owned by the web thread.
pub(crate) struct Monitor {
    job_name: String,
    cores: usize,
    started: Instant,
    started_epoch_ms: i64,
    graph: Vec<NodeView>,
    state: JobState,
    attempt: u32,
    shared: Option<Arc<JobShared>>,
    /// A cancel that came before the first run had started: applied to it.
    cancel_pending: bool,
    control: JobControl,
    counters: Vec<CounterEntry>,
    gauges: Vec<GaugeEntry>,
    /// Per (operator, metric): the last sample's total and its rate
    /// history (per second).
    rates: BTreeMap<(String, String), Rate>,
    last_sample: Instant,
    checkpoints: VecDeque<CheckpointEvent>,
    checkpoints_completed: u64,
    checkpoints_failed: u64,
    exceptions: VecDeque<(i64, String)>,
    checkpoint_dir: Option<std::path::PathBuf>,
    /// Per (operator, time metric, core): where the task's time went.
    task_time: BTreeMap<(String, String, usize), Rate>,
    /// Batches each exchange channel holds at most.
    queue_capacity: usize,
    /// Per (sink, core): the newest cumulative histogram.
    latency: BTreeMap<(String, usize), hdrhistogram::Histogram<u64>>,
    /// Per sink: p99 at each sample, µs.
    latency_history: BTreeMap<String, VecDeque<u64>>,
    /// Messages dropped at a full queue ([`MonitorTx::tell`]).
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct Rate {
    last: u64,
    history: VecDeque<f64>,
}

/// Metrics whose rate per second is sampled.
const RATED: &[&str] = &["records_out", "records_in", "records_read", "records_written"];
/// Task time counters (ns): sampled per core into fractions of a second.
const TIMED: &[&str] = &["busy_ns", "backpressured_ns", "idle_ns"];

impl Monitor {
    fn new(
        name: String,
        metas: &[NodeMeta],
        cores: usize,
        control: JobControl,
        config: &crate::JobConfig,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        let graph = metas
            .iter()
            .map(|m| NodeView {
                id: m.id,
                name: m.name.clone(),
                kind: m.kind,
                parallelism: if m.inputs.iter().any(|(_, p)| *p == crate::Partitioning::Global) {
                    1
                } else {
                    cores
                },
                inputs: m
                    .inputs
                    .iter()
                    .map(|(f, p)| InputView { from: *f, partitioning: format!("{p:?}") })
                    .collect(),
                chained: m.inputs.len() == 1 && !m.inputs[0].1.is_exchange(),
                is_source: m.inputs.is_empty(),
                is_sink: m.is_sink,
                bounded: m.bounded,
            })
            .collect();
        Self {
            job_name: name,
            cores,
            started: Instant::now(),
            started_epoch_ms: epoch_ms(),
            graph,
            state: JobState::Running,
            attempt: 0,
            shared: None,
            cancel_pending: false,
            control,
            counters: Vec::new(),
            gauges: Vec::new(),
            rates: BTreeMap::new(),
            last_sample: Instant::now(),
            checkpoints: VecDeque::new(),
            checkpoints_completed: 0,
            checkpoints_failed: 0,
            exceptions: VecDeque::new(),
            checkpoint_dir: config.checkpoint_dir.clone(),
            latency: BTreeMap::new(),
            latency_history: BTreeMap::new(),
            task_time: BTreeMap::new(),
            queue_capacity: config.exchange_queue_batches,
            dropped,
        }
    }

    fn on_message(&mut self, msg: MonitorMsg) {
        match msg {
            MonitorMsg::Attempt { shared, attempt } => {
                if self.cancel_pending {
                    shared.cancel();
                }
                self.shared = Some(shared);
                self.attempt = attempt;
                self.state = JobState::Running;
                // A restart builds new operators: new counters.
                self.counters.clear();
                self.gauges.clear();
                self.latency.clear();
                for r in self.rates.values_mut() {
                    r.last = 0;
                }
                self.task_time.clear();
            }
            MonitorMsg::Registered { counters, gauges } => {
                self.counters.extend(counters);
                self.gauges.extend(gauges);
            }
            MonitorMsg::Checkpoint(c) => {
                if c.status == "COMPLETED" {
                    self.checkpoints_completed += 1;
                } else {
                    self.checkpoints_failed += 1;
                }
                if self.checkpoints.len() == CHECKPOINT_HISTORY_MAX {
                    self.checkpoints.pop_front();
                }
                self.checkpoints.push_back(c);
            }
            MonitorMsg::Failure { message } => {
                if self.exceptions.len() == EXCEPTIONS_MAX {
                    self.exceptions.pop_front();
                }
                self.exceptions.push_back((epoch_ms(), message));
                self.state = JobState::Restarting;
            }
            MonitorMsg::Ended { state } => self.state = state,
            MonitorMsg::Latency { sink, core, hist, queued } => {
                queued.store(false, Ordering::Release);
                self.latency.insert((sink, core), hist);
            }
        }
    }

    /// Samples rated counters if a sample is due.
    fn sample(&mut self) {
        let elapsed = self.last_sample.elapsed();
        if elapsed < SAMPLE_INTERVAL {
            return;
        }
        self.last_sample = Instant::now();
        let mut totals: BTreeMap<(String, String), u64> = BTreeMap::new();
        for e in self.counters.iter().filter(|e| RATED.contains(&e.metric.as_str())) {
            *totals.entry((e.operator.clone(), e.metric.clone())).or_default() += e.counter.get();
        }
        for e in self.counters.iter().filter(|e| TIMED.contains(&e.metric.as_str())) {
            let r = self.task_time.entry((e.operator.clone(), e.metric.clone(), e.core)).or_default();
            let v = e.counter.get();
            let rate = v.saturating_sub(r.last) as f64 / elapsed.as_secs_f64();
            r.last = v;
            r.history.clear();
            r.history.push_back(rate);
        }
        for s in self.sink_latencies() {
            let h = self.latency_history.entry(s.sink.clone()).or_default();
            if h.len() == SAMPLES_MAX {
                h.pop_front();
            }
            h.push_back(s.p99_us);
        }
        for (key, total) in totals {
            let r = self.rates.entry(key).or_default();
            let rate = total.saturating_sub(r.last) as f64 / elapsed.as_secs_f64();
            r.last = total;
            if r.history.len() == SAMPLES_MAX {
                r.history.pop_front();
            }
            r.history.push_back(rate);
        }
    }

    /// Cancels the current run, or the first one once it starts.
    fn cancel(&mut self) {
        match &self.shared {
            Some(s) => s.cancel(),
            None => self.cancel_pending = true,
        }
    }

    fn counter_total(&self, operator: &str, metric: &str) -> u64 {
        self.counters
            .iter()
            .filter(|e| e.operator == operator && e.metric == metric)
            .map(|e| e.counter.get())
            .sum()
    }

    fn overview(&self) -> serde_json::Value {
        let sources: u64 = self
            .graph
            .iter()
            .filter(|n| n.is_source)
            .map(|n| self.counter_total(&n.name, "records_out"))
            .sum();
        let rate: f64 = self
            .graph
            .iter()
            .filter(|n| n.is_source)
            .filter_map(|n| self.rates.get(&(n.name.clone(), "records_out".into())))
            .filter_map(|r| r.history.back())
            .sum();
        serde_json::json!({
            "name": self.job_name,
            "state": self.state,
            "cores": self.cores,
            "started_ms": self.started_epoch_ms,
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "restarts": self.attempt,
            "records_from_sources": sources,
            "source_rate_per_s": rate,
            "checkpoints_completed": self.checkpoints_completed,
            "checkpoints_failed": self.checkpoints_failed,
            "exceptions": self.exceptions.len(),
            "monitor_messages_dropped": self.dropped.load(Ordering::Relaxed),
            "state_memory": self.state_memory(),
        })
    }

    /// Under the log backend, the cores' state memory summed (bytes held,
    /// budget, what eviction cannot free) and how many cores hold more that
    /// eviction cannot free than their budget; `null` on the heap backend.
    fn state_memory(&self) -> serde_json::Value {
        let per_core = |metric: &str| -> BTreeMap<usize, i64> {
            self.gauges
                .iter()
                .filter(|g| g.operator == "(core)" && g.metric == metric)
                .map(|g| (g.core, g.gauge.get()))
                .collect()
        };
        let budget = per_core("state_memory_budget_bytes");
        if budget.is_empty() {
            return serde_json::Value::Null;
        }
        let (used, unevictable) =
            (per_core("state_memory_used_bytes"), per_core("state_memory_unevictable_bytes"));
        let over = unevictable.iter().filter(|(core, u)| budget.get(core).is_some_and(|b| *u > b)).count();
        serde_json::json!({
            "used_bytes": used.values().sum::<i64>(),
            "budget_bytes": budget.values().sum::<i64>(),
            "unevictable_bytes": unevictable.values().sum::<i64>(),
            "cores_over_budget": over,
        })
    }

    fn graph_json(&self) -> serde_json::Value {
        serde_json::json!({ "cores": self.cores, "nodes": self.graph })
    }

    /// Per operator and core: every counter and gauge, with rates.
    fn operators(&self) -> serde_json::Value {
        let mut ops = Vec::new();
        for n in &self.graph {
            let mut per_core: BTreeMap<usize, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
            for e in self.counters.iter().filter(|e| e.operator == n.name) {
                let m = per_core.entry(e.core).or_default();
                let v = m.get(&e.metric).and_then(|v| v.as_u64()).unwrap_or(0) + e.counter.get();
                m.insert(e.metric.clone(), v.into());
            }
            // Where each core's task time went over the last sample, as
            // fractions of wall time; and what its input channels hold.
            for ((op, metric, core), r) in &self.task_time {
                if *op == n.name
                    && let Some(rate) = r.history.back()
                {
                    let key = metric.trim_end_matches("_ns").to_string() + "_ratio";
                    per_core.entry(*core).or_default().insert(key, (rate / 1e9).min(1.0).into());
                }
            }
            for core in 0..self.cores {
                let prefix = format!("{}{core}", crate::runtime::exchange::SENT_TO_CORE);
                let sent: u64 = self
                    .counters
                    .iter()
                    .filter(|e| e.operator == n.name && e.metric == prefix)
                    .map(|e| e.counter.get())
                    .sum();
                let receivers: Vec<&CounterEntry> = self
                    .counters
                    .iter()
                    .filter(|e| e.operator == n.name && e.core == core && e.metric == "exchange_received")
                    .collect();
                if receivers.is_empty() {
                    continue;
                }
                let received: u64 = receivers.iter().map(|e| e.counter.get()).sum();
                let m = per_core.entry(core).or_default();
                m.insert("input_queue_batches".into(), sent.saturating_sub(received).into());
                m.insert("input_queue_capacity".into(), (receivers.len() * self.queue_capacity).into());
            }
            // Records in per core: received from exchanges, or what the
            // chained (same-core) input sent out; a sink counts its own.
            if !n.is_sink && !n.is_source {
                for core in 0..self.cores {
                    let mut total = 0;
                    for i in &n.inputs {
                        let Some(from) = self.graph.iter().find(|g| g.id == i.from) else { continue };
                        let (op, metric) = if i.partitioning == "Forward" {
                            (&from.name, "records_out")
                        } else {
                            (&n.name, "records_received")
                        };
                        total += self
                            .counters
                            .iter()
                            .filter(|e| e.operator == *op && e.metric == metric && e.core == core)
                            .map(|e| e.counter.get())
                            .sum::<u64>();
                    }
                    per_core.entry(core).or_default().insert("records_in".into(), total.into());
                }
            }
            for g in self.gauges.iter().filter(|g| g.operator == n.name) {
                let v = g.gauge.get();
                let shown = if g.metric == "watermark" && v == MIN_WATERMARK {
                    serde_json::Value::Null
                } else {
                    v.into()
                };
                per_core.entry(g.core).or_default().insert(g.metric.clone(), shown);
            }
            let watermark = self
                .gauges
                .iter()
                .filter(|g| g.operator == n.name && g.metric == "watermark")
                .map(|g| g.gauge.get())
                .min()
                .filter(|&w| w != MIN_WATERMARK);
            // What came in: everything its inputs sent out (a sink counts
            // its own), over all cores.
            let records_in: u64 = if n.is_sink {
                self.counter_total(&n.name, "records_in")
            } else {
                n.inputs
                    .iter()
                    .filter_map(|i| self.graph.iter().find(|g| g.id == i.from))
                    .map(|f| self.counter_total(&f.name, "records_out"))
                    .sum()
            };
            let rates: serde_json::Map<String, serde_json::Value> = self
                .rates
                .iter()
                .filter(|((op, _), _)| *op == n.name)
                .map(|((_, metric), r)| (metric.clone(), r.history.back().copied().unwrap_or(0.0).into()))
                .collect();
            let history: serde_json::Map<String, serde_json::Value> = self
                .rates
                .iter()
                .filter(|((op, _), _)| *op == n.name)
                .map(|((_, metric), r)| {
                    (metric.clone(), r.history.iter().copied().collect::<Vec<f64>>().into())
                })
                .collect();
            ops.push(serde_json::json!({
                "id": n.id,
                "name": n.name,
                "watermark": watermark,
                "records_in": records_in,
                "records_out": self.counter_total(&n.name, "records_out"),
                "rates_per_s": rates,
                "rate_history": history,
                "per_core": per_core
                    .into_iter()
                    .map(|(core, mut m)| {
                        m.insert("core".into(), core.into());
                        serde_json::Value::Object(m)
                    })
                    .collect::<Vec<_>>(),
            }));
        }
        serde_json::json!({ "sample_interval_ms": SAMPLE_INTERVAL.as_millis() as u64, "operators": ops })
    }

    /// Per sink, merged over cores.
    fn sink_latencies(&self) -> Vec<crate::metrics::SinkLatency> {
        crate::metrics::SinkLatency::merge(self.latency.iter().map(|((s, _), h)| (s.clone(), h.clone())))
    }

    fn latency_json(&self) -> serde_json::Value {
        let sinks: Vec<serde_json::Value> = self
            .sink_latencies()
            .into_iter()
            .map(|s| {
                let history: Vec<u64> = self
                    .latency_history
                    .get(&s.sink)
                    .map(|h| h.iter().copied().collect())
                    .unwrap_or_default();
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["p99_history_us"] = history.into();
                v
            })
            .collect();
        serde_json::json!({ "sample_interval_ms": SAMPLE_INTERVAL.as_millis() as u64, "sinks": sinks })
    }

    fn checkpoints_json(&self) -> serde_json::Value {
        serde_json::json!({
            "completed": self.checkpoints_completed,
            "failed": self.checkpoints_failed,
            "history": self.checkpoints.iter().rev().collect::<Vec<_>>(),
        })
    }

    fn exceptions_json(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .exceptions
            .iter()
            .rev()
            .map(|(t, m)| serde_json::json!({ "time_ms": t, "message": m }))
            .collect();
        serde_json::json!({ "exceptions": list })
    }

    /// Prometheus text exposition (version 0.0.4) of every counter and gauge.
    fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut by_metric: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for e in &self.counters {
            by_metric.entry(&e.metric).or_default().push(format!(
                "brisk_{}{{operator=\"{}\",core=\"{}\"}} {}",
                sanitize(&e.metric),
                escape_label(&e.operator),
                e.core,
                e.counter.get()
            ));
        }
        let mut out = String::new();
        for (metric, lines) in &by_metric {
            let _ = writeln!(out, "# TYPE brisk_{} counter", sanitize(metric));
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        let mut gauges: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for g in &self.gauges {
            let v = g.gauge.get();
            if g.metric == "watermark" && v == MIN_WATERMARK {
                continue;
            }
            gauges.entry(&g.metric).or_default().push(format!(
                "brisk_{}{{operator=\"{}\",core=\"{}\"}} {}",
                sanitize(&g.metric),
                escape_label(&g.operator),
                g.core,
                v
            ));
        }
        for (metric, lines) in &gauges {
            let _ = writeln!(out, "# TYPE brisk_{} gauge", sanitize(metric));
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
        let latencies = self.sink_latencies();
        if !latencies.is_empty() {
            let _ = writeln!(out, "# TYPE brisk_sink_latency_microseconds summary");
            for s in &latencies {
                let sink = escape_label(&s.sink);
                for (q, v) in [("0.5", s.p50_us), ("0.99", s.p99_us), ("0.999", s.p999_us), ("1", s.max_us)] {
                    let _ = writeln!(
                        out,
                        "brisk_sink_latency_microseconds{{sink=\"{sink}\",quantile=\"{q}\"}} {v}"
                    );
                }
                let _ = writeln!(out, "brisk_sink_latency_microseconds_count{{sink=\"{sink}\"}} {}", s.count);
            }
        }
        let _ = writeln!(out, "# TYPE brisk_checkpoints_completed counter");
        let _ = writeln!(out, "brisk_checkpoints_completed {}", self.checkpoints_completed);
        let _ = writeln!(out, "# TYPE brisk_checkpoints_failed counter");
        let _ = writeln!(out, "brisk_checkpoints_failed {}", self.checkpoints_failed);
        let _ = writeln!(out, "# TYPE brisk_restarts counter");
        let _ = writeln!(out, "brisk_restarts {}", self.attempt);
        let _ = writeln!(out, "# TYPE brisk_monitor_messages_dropped counter");
        let _ = writeln!(out, "brisk_monitor_messages_dropped {}", self.dropped.load(Ordering::Relaxed));
        out
    }
}

/// A metric name as Prometheus allows it (`[a-zA-Z0-9_]`).
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// A label value with `\`, `"` and newlines escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn epoch_ms() -> i64 {
    crate::clock::wall_us() / 1000
}

/// The running server: stops (and joins its thread) when dropped.
pub(crate) struct WebServer {
    tx: MonitorTx,
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where it listens (the port the OS chose, for port 0).
    pub addr: SocketAddr,
}

impl WebServer {
    /// Binds `addr` and starts the `brisk-web` thread.
    pub fn start(
        addr: SocketAddr,
        token: Option<String>,
        metas: &[NodeMeta],
        cores: usize,
        control: JobControl,
        config: &crate::JobConfig,
    ) -> Result<Self, JobError> {
        let cannot_listen =
            |e: std::io::Error| JobError::Config(format!("web_ui = {addr}: cannot listen: {e}"));
        let listener = std::net::TcpListener::bind(addr).map_err(cannot_listen)?;
        listener.set_nonblocking(true).map_err(cannot_listen)?;
        let bound = listener.local_addr().map_err(cannot_listen)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().map_err(|e| {
                JobError::Runtime { core: 0, message: format!("cannot start the web server's runtime: {e}") }
            })?;
        let (tx, rx) = crossbeam::channel::bounded(crate::config::monitor_queue_len(cores, metas.len()));
        let tx = MonitorTx { tx, dropped: Arc::default() };
        let (stop_tx, stop_rx) = crossbeam::channel::bounded(1);
        let name =
            metas.iter().find(|m| m.inputs.is_empty()).map_or("job".into(), |m| format!("{} job", m.name));
        let monitor = Monitor::new(name, metas, cores, control, config, tx.dropped.clone());
        let thread = std::thread::Builder::new()
            .name("brisk-web".into())
            .spawn(move || http::serve(runtime, listener, monitor, rx, stop_rx, token, bound))
            .map_err(|e| JobError::Runtime {
                core: 0,
                message: format!("cannot start the web server: {e}"),
            })?;
        tracing::info!("REST API and web UI on http://{bound}/");
        Ok(Self { tx, stop: Some(stop_tx), thread: Some(thread), addr: bound })
    }

    /// Where cores and the coordinator send what happens.
    pub fn sender(&self) -> MonitorTx {
        self.tx.clone()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Receives monitor messages until the channel is empty.
fn drain(monitor: &mut Monitor, rx: &Receiver<MonitorMsg>) {
    while let Ok(msg) = rx.try_recv() {
        monitor.on_message(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(queued: &Arc<AtomicBool>) -> MonitorMsg {
        queued.store(true, Ordering::Release);
        MonitorMsg::Latency {
            sink: "sink".into(),
            core: 0,
            hist: crate::metrics::latency_histogram(),
            queued: queued.clone(),
        }
    }

    /// A full queue drops and counts what finds it full; a dropped
    /// histogram's sink may send the next one; a gone monitor counts nothing.
    #[test]
    fn a_full_monitor_queue_drops_and_counts_and_frees_the_sink() {
        let (tx, rx) = crossbeam::channel::bounded(1);
        let tx = MonitorTx { tx, dropped: Arc::default() };
        tx.tell(MonitorMsg::Ended { state: JobState::Running });
        let queued = Arc::new(AtomicBool::new(false));
        tx.tell(latency(&queued));
        assert_eq!(tx.dropped.load(Ordering::Relaxed), 1);
        assert!(!queued.load(Ordering::Acquire), "a dropped histogram does not hold up the next");
        assert!(matches!(rx.try_recv(), Ok(MonitorMsg::Ended { .. })));
        tx.tell(latency(&queued));
        assert_eq!(tx.dropped.load(Ordering::Relaxed), 1, "room again: queued");
        assert!(queued.load(Ordering::Acquire), "queued until the monitor takes it");
        drop(rx);
        tx.tell(MonitorMsg::Ended { state: JobState::Finished });
        assert_eq!(tx.dropped.load(Ordering::Relaxed), 1, "nobody listens any more: nothing lost to count");
    }

    /// The overview's state memory sums the cores' gauges and counts the
    /// cores whose unevictable part is over their own budget; without the
    /// gauges (heap backend) it is null.
    #[test]
    fn state_memory_sums_the_cores_and_counts_those_over_their_budget() {
        let config = crate::JobConfig::with_cores(2);
        let mut monitor = Monitor::new("job".into(), &[], 2, JobControl::default(), &config, Arc::default());
        assert!(monitor.state_memory().is_null());
        let gauge = |core: usize, metric: &str, v: i64| GaugeEntry {
            operator: "(core)".into(),
            metric: metric.into(),
            core,
            gauge: crate::metrics::Gauge::new(v),
        };
        monitor.on_message(MonitorMsg::Registered {
            counters: Vec::new(),
            gauges: vec![
                gauge(0, "state_memory_budget_bytes", 100),
                gauge(0, "state_memory_used_bytes", 160),
                gauge(0, "state_memory_unevictable_bytes", 150),
                gauge(1, "state_memory_budget_bytes", 100),
                gauge(1, "state_memory_used_bytes", 90),
                gauge(1, "state_memory_unevictable_bytes", 100),
                gauge(1, "watermark", 7),
            ],
        });
        assert_eq!(
            monitor.state_memory(),
            serde_json::json!({
                "used_bytes": 250,
                "budget_bytes": 200,
                "unevictable_bytes": 250,
                "cores_over_budget": 1,
            })
        );
    }

    /// The monitor clears a histogram's flag when it takes it, so the sink
    /// sends the next.
    #[test]
    fn the_monitor_frees_the_sink_of_a_histogram_it_took() {
        let metas: Vec<NodeMeta> = Vec::new();
        let config = crate::JobConfig::with_cores(1);
        let mut monitor =
            Monitor::new("job".into(), &metas, 1, JobControl::default(), &config, Arc::default());
        let queued = Arc::new(AtomicBool::new(false));
        monitor.on_message(latency(&queued));
        assert!(!queued.load(Ordering::Acquire));
        assert_eq!(monitor.latency.len(), 1);
    }
}
