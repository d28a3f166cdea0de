//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): a plain
//! thread beside the cores. It triggers checkpoints every interval (one at a
//! time), collects the cores' acknowledgements, completes a checkpoint by
//! writing its manifest atomically, commits the sinks' pre-committed output,
//! abandons a checkpoint that failed or timed out without touching completed
//! ones, and fails the job after too many consecutive failures. Savepoints
//! are checkpoints taken on request and moved to the requested directory.
#![allow(clippy::disallowed_methods)] // a control thread, not a core: std::fs is fine

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded};

use super::segments::{SegmentFile, SharedSegments};
use super::store::{self, Commit, FileEntry, Manifest};
use super::{CheckpointShared, ToCoordinator};
use crate::runtime::core::JobShared;

/// A request to the coordinator of a running job.
pub(crate) enum Request {
    Savepoint { dir: PathBuf, stop: bool, reply: Sender<Result<PathBuf, String>> },
}

/// A handle to a running job: trigger a savepoint, or stop the job with one.
/// Take it from [`crate::StreamEnv::control`] before `execute`, and use it
/// from another thread. Needs checkpointing configured (`checkpoint_dir`).
#[derive(Clone)]
pub struct JobControl {
    pub(crate) tx: Sender<Request>,
    pub(crate) rx: Receiver<Request>,
    /// Where the job's REST API listens, once it does.
    pub(crate) web: std::sync::Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    /// How far bounded sources have read.
    pub(crate) progress: std::sync::Arc<crate::operator::source::ProgressBoard>,
}

impl Default for JobControl {
    fn default() -> Self {
        let (tx, rx) = bounded(16);
        Self { tx, rx, web: Default::default(), progress: Default::default() }
    }
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobControl")
    }
}

impl JobControl {
    /// Takes a savepoint into `dir` (which must not exist yet) and returns
    /// once it is complete. Blocks the calling thread (never call it on a core).
    pub fn savepoint(&self, dir: impl AsRef<Path>) -> Result<PathBuf, String> {
        self.request(dir.as_ref(), false)
    }

    /// Takes a savepoint into `dir`, then stops the job: sources stop right
    /// after the savepoint's barrier and nothing after it is committed.
    pub fn stop_with_savepoint(&self, dir: impl AsRef<Path>) -> Result<PathBuf, String> {
        self.request(dir.as_ref(), true)
    }

    /// Where the job's REST API and web UI listen (`JobConfig::web_ui`;
    /// with port 0, the port the system chose), once the job has started
    /// serving them.
    pub fn web_address(&self) -> Option<std::net::SocketAddr> {
        self.web.get().copied()
    }

    /// How far the job's bounded sources have read, summed over splits:
    /// `(done, total)` in their own units (records of a generator, bytes of
    /// a file); `None` before any reports or when no source knows its size.
    /// Readable from any thread while the job runs.
    pub fn progress(&self) -> Option<(u64, u64)> {
        self.progress.get()
    }

    fn request(&self, dir: &Path, stop: bool) -> Result<PathBuf, String> {
        if dir.exists() {
            return Err(format!("savepoint directory {} already exists", dir.display()));
        }
        let (reply, answer) = bounded(1);
        self.tx
            .send(Request::Savepoint { dir: dir.to_path_buf(), stop, reply })
            .map_err(|_| "the job is not running".to_string())?;
        answer.recv().map_err(|_| "the job ended before the savepoint completed".to_string())?
    }
}

/// The coordinator's settings.
#[derive(Clone)]
pub(crate) struct Settings {
    pub interval: Option<Duration>,
    pub timeout: Duration,
    pub tolerable_failures: u32,
    pub retained: usize,
    pub cores: usize,
    pub max_parallelism: u32,
    pub nodes: Vec<String>,
    pub first_id: u64,
    /// Segment paths of the checkpoint this run restored, if it is in this
    /// root (not new data for the first checkpoint; deleted once no
    /// retained checkpoint refers to them).
    pub restored_segments: Vec<String>,
}

struct InFlight {
    id: u64,
    started: Instant,
    triggered_ms: i64,
    acks: BTreeMap<usize, Ack>,
    savepoint: Option<(PathBuf, Sender<Result<PathBuf, String>>)>,
}

#[derive(Clone, Default)]
struct Ack {
    sync_us: u64,
    align_us: u64,
    files: Vec<FileEntry>,
    segments: Vec<SegmentFile>,
    final_states: Vec<(usize, Vec<u8>)>,
    commits: Vec<Commit>,
    sink_dirs: Vec<PathBuf>,
}

impl Ack {
    /// Adds this core's commits and sink directories to `m`, each once.
    fn add_commits_to(&self, m: &mut Manifest) {
        for c in &self.commits {
            if !m.commits.iter().any(|x| x.from == c.from) {
                m.commits.push(c.clone());
            }
        }
        for d in &self.sink_dirs {
            if !m.sink_dirs.contains(d) {
                m.sink_dirs.push(d.clone());
            }
        }
    }
}

/// What a coordinator run produced.
pub(crate) struct Outcome {
    /// Why the job must fail (too many checkpoint failures, commit errors).
    pub error: Option<String>,
    /// Completed checkpoints.
    pub completed: u64,
    /// Each completed checkpoint.
    pub stats: Vec<super::CheckpointStats>,
    /// Checkpoints that failed (abandoned).
    pub failed: u64,
    /// The next free id.
    pub next_id: u64,
    /// Ended cores' data (for the final checkpoint).
    ended: BTreeMap<usize, Ack>,
}

/// Runs until `stop` is signalled (the job's cores have all ended).
pub(crate) fn run(
    settings: Settings,
    shared: Arc<CheckpointShared>,
    job: Arc<JobShared>,
    from_cores: Receiver<ToCoordinator>,
    requests: Receiver<Request>,
    stop: Receiver<()>,
) -> Outcome {
    let cores = settings.cores;
    let first_id = settings.first_id;
    let mut c = Coordinator {
        settings,
        shared,
        job,
        in_flight: None,
        ended: BTreeMap::new(),
        failures: 0,
        completed: 0,
        stats: Vec::new(),
        failed_total: 0,
        doomed: Default::default(),
        acked_upto: vec![0; cores],
        answered_upto: vec![first_id.saturating_sub(1); cores],
        writing_from: vec![0; cores],
        shared_segments: SharedSegments::default(),
        last_segments: Default::default(),
    };
    c.last_segments = c.settings.restored_segments.iter().cloned().collect();
    let restored: Vec<String> = c.settings.restored_segments.clone();
    c.shared_segments.saw_paths(restored);
    let mut next_id = c.settings.first_id;
    let mut next_trigger = c.settings.interval.map(|i| Instant::now() + i);
    let mut pending_requests: Vec<Request> = Vec::new();
    let mut stopping = false;
    let mut error = None;
    loop {
        // Trigger when due and nothing is in flight.
        if c.in_flight.is_none() && !stopping && !c.shared.is_stopping() && c.ended.len() < c.settings.cores {
            let savepoint = pending_requests.pop();
            let due = next_trigger.is_some_and(|t| Instant::now() >= t);
            if savepoint.is_some() || due {
                if let Some(core) = c.owing_core(next_id) {
                    // A core that answers none of the last checkpoints is
                    // stuck: more would only queue more answers from it. What
                    // is due fails instead (and so can fail the job); its id
                    // stays free for the next try.
                    let reason = format!(
                        "checkpoint {next_id} not triggered: core {core} has not answered the last {} checkpoints",
                        crate::config::CHECKPOINTS_UNANSWERED_MAX
                    );
                    tracing::warn!("{reason}");
                    if let Some(Request::Savepoint { reply, .. }) = savepoint {
                        let _ = reply.send(Err(reason.clone()));
                    }
                    if let Some(msg) = c.count_failure(&reason) {
                        error = Some(msg);
                        break;
                    }
                } else {
                    if let Err(e) = c.trigger(next_id, savepoint) {
                        tracing::warn!("checkpoint {next_id} not triggered: {e}");
                        if let Some(msg) = c.count_failure(&e) {
                            error = Some(msg);
                            break;
                        }
                    }
                    next_id += 1;
                }
                next_trigger = c.settings.interval.map(|i| Instant::now() + i);
            }
        }
        if let Some(f) = &c.in_flight
            && f.started.elapsed() > c.settings.timeout
        {
            let reason = format!("timed out after {} ms", c.settings.timeout.as_millis());
            c.abandon(&reason);
            if let Some(msg) = c.count_failure(&reason) {
                error = Some(msg);
                break;
            }
        }
        if stopping && c.in_flight.is_none() {
            break;
        }
        // Until the next trigger, but a trigger that is due waits for the
        // checkpoint in flight: then until a message or its timeout (waiting
        // for a due trigger would spin this thread, a core's worth of CPU,
        // for as long as a checkpoint outlasts the interval).
        let wait = match (&c.in_flight, next_trigger) {
            (Some(f), _) => c.settings.timeout.saturating_sub(f.started.elapsed()),
            (None, Some(t)) => t.saturating_duration_since(Instant::now()),
            (None, None) => Duration::from_millis(100),
        }
        .min(Duration::from_millis(100));
        // No `break` inside `select!` (it would leave the macro's own loop).
        let failed = crossbeam::channel::select! {
            recv(from_cores) -> msg => match msg {
                Ok(msg) => c.on_message(msg).err(),
                Err(_) => {
                    stopping = true;
                    None
                }
            },
            recv(requests) -> req => {
                if let Ok(req) = req {
                    pending_requests.push(req);
                }
                None
            },
            recv(stop) -> _ => {
                stopping = true;
                // Everything the cores sent before ending is queued: take it.
                let mut failed = None;
                while let Ok(msg) = from_cores.try_recv() {
                    if let Err(e) = c.on_message(msg) {
                        failed = Some(e);
                        break;
                    }
                }
                if failed.is_none() && c.in_flight.is_some() {
                    c.abandon("the job ended before it completed");
                }
                failed
            },
            default(wait) => None,
        };
        if let Some(e) = failed {
            error = Some(e);
            break;
        }
    }
    if let Some(f) = c.in_flight.take()
        && let Some((_, reply)) = f.savepoint
    {
        let _ = reply.send(Err("the job ended before the savepoint completed".into()));
    }
    for Request::Savepoint { reply, .. } in pending_requests.drain(..).chain(requests.try_iter()) {
        let _ = reply.send(Err("the job ended before the savepoint could be taken".into()));
    }
    // Stopping: every core has ended, so nothing writes into an abandoned
    // checkpoint any more. After an error the cores may still run: what is
    // left is cleaned up after the next completed checkpoint.
    c.sweep(stopping);
    Outcome { error, completed: c.completed, stats: c.stats, failed: c.failed_total, next_id, ended: c.ended }
}

struct Coordinator {
    settings: Settings,
    shared: Arc<CheckpointShared>,
    job: Arc<JobShared>,
    in_flight: Option<InFlight>,
    ended: BTreeMap<usize, Ack>,
    failures: u32,
    completed: u64,
    stats: Vec<super::CheckpointStats>,
    failed_total: u64,
    /// Abandoned checkpoints whose directories wait to be deleted: a core
    /// may still be writing into one (deleting it under an open state file
    /// makes glommio panic), so it goes once every core has acknowledged a
    /// newer checkpoint (no write for it can start any more) and reported
    /// no write in flight for it.
    doomed: std::collections::BTreeSet<u64>,
    /// Per core: the newest checkpoint it acknowledged.
    acked_upto: Vec<u64>,
    /// Per core: the newest checkpoint it acknowledged or failed
    /// (`u64::MAX` once it ended). Cores answer in order, so the ones
    /// triggered after it are all it may still send answers for.
    answered_upto: Vec<u64>,
    /// Per core: the oldest checkpoint it still writes a file for.
    writing_from: Vec<u64>,
    /// Log segments acknowledged to it, deleted once no retained
    /// checkpoint refers to them.
    shared_segments: SharedSegments,
    /// The segments of the newest completed checkpoint (to tell what a
    /// checkpoint added).
    last_segments: std::collections::BTreeSet<String>,
}

impl Coordinator {
    /// Deletes the abandoned checkpoints no core can write into any more
    /// (all of them once `cores_gone`: every core has ended).
    fn sweep(&mut self, cores_gone: bool) {
        let (acked, writing) = (&self.acked_upto, &self.writing_from);
        let root = self.shared.clone();
        self.doomed.retain(|&id| {
            let safe = cores_gone || acked.iter().zip(writing).all(|(&a, &w)| a > id && w > id);
            if safe {
                let _ = std::fs::remove_dir_all(root.dir_of(id));
            }
            !safe
        });
    }

    /// A core that, were checkpoint `id` triggered, would owe answers to
    /// more than [`crate::config::CHECKPOINTS_UNANSWERED_MAX`] of them.
    fn owing_core(&self, id: u64) -> Option<usize> {
        let max = crate::config::CHECKPOINTS_UNANSWERED_MAX;
        self.answered_upto.iter().position(|&a| id.saturating_sub(a) > max)
    }

    fn trigger(&mut self, id: u64, savepoint: Option<Request>) -> Result<(), String> {
        let dir = self.shared.dir_of(id);
        let savepoint = savepoint.map(|Request::Savepoint { dir, stop, reply }| {
            if stop {
                self.shared.stop_at.store(id, Ordering::Release);
            }
            self.shared.savepoint.store(id, Ordering::Release);
            (dir, reply)
        });
        if let Err(e) = std::fs::create_dir_all(&dir) {
            if let Some((_, reply)) = savepoint {
                let _ = reply.send(Err(format!("cannot create {}: {e}", dir.display())));
            }
            return Err(format!("cannot create {}: {e}", dir.display()));
        }
        let triggered_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.in_flight =
            Some(InFlight { id, started: Instant::now(), triggered_ms, acks: BTreeMap::new(), savepoint });
        self.shared.triggered.store(id, Ordering::Release);
        tracing::debug!("checkpoint {id} triggered");
        Ok(())
    }

    /// Counts a failed checkpoint; `Some(message)` if the job must fail.
    fn count_failure(&mut self, reason: &str) -> Option<String> {
        self.failures += 1;
        self.failed_total += 1;
        (self.failures > self.settings.tolerable_failures).then(|| {
            self.job.cancel();
            format!(
                "{} consecutive checkpoints failed (tolerable_checkpoint_failures = {}); the last: {reason}",
                self.failures, self.settings.tolerable_failures
            )
        })
    }

    fn abandon(&mut self, reason: &str) {
        let Some(f) = self.in_flight.take() else { return };
        tracing::warn!("checkpoint {} abandoned: {reason}", f.id);
        let event = crate::web::CheckpointEvent {
            id: f.id,
            status: "FAILED",
            savepoint: f.savepoint.is_some(),
            triggered_ms: f.triggered_ms,
            duration_ms: f.started.elapsed().as_millis() as u64,
            bytes: 0,
            full_bytes: 0,
            sync_us: 0,
            alignment_us: 0,
            reason: Some(reason.to_string()),
        };
        self.job.monitor(|| crate::web::MonitorMsg::Checkpoint(event));
        self.doomed.insert(f.id);
        self.sweep(false);
        if let Some((_, reply)) = f.savepoint {
            let _ = reply.send(Err(format!("savepoint {} failed: {reason}", f.id)));
        }
    }

    fn on_message(&mut self, msg: ToCoordinator) -> Result<(), String> {
        match msg {
            ToCoordinator::Ack {
                core,
                id,
                files,
                segments,
                final_states,
                commits,
                sink_dirs,
                sync_us,
                align_us,
                writing_from,
            } => {
                self.acked_upto[core] = self.acked_upto[core].max(id);
                self.answered_upto[core] = self.answered_upto[core].max(id);
                self.writing_from[core] = writing_from;
                self.sweep(false);
                self.shared_segments.saw(&segments);
                if let Some(f) = self.in_flight.as_mut().filter(|f| f.id == id) {
                    f.acks.insert(
                        core,
                        Ack { sync_us, align_us, files, segments, final_states, commits, sink_dirs },
                    );
                }
            }
            ToCoordinator::Failed { core, id, reason, writing_from } => {
                self.answered_upto[core] = self.answered_upto[core].max(id);
                self.writing_from[core] = writing_from;
                if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
                    let reason = format!("core {core}: {reason}");
                    self.abandon(&reason);
                    if let Some(msg) = self.count_failure(&reason) {
                        return Err(msg);
                    }
                }
            }
            ToCoordinator::CoreEnded { core, final_states, commits, sink_dirs } => {
                // Its writes are all done, and it starts no more.
                self.acked_upto[core] = u64::MAX;
                self.answered_upto[core] = u64::MAX;
                self.writing_from[core] = u64::MAX;
                self.sweep(false);
                self.ended.insert(
                    core,
                    Ack {
                        sync_us: 0,
                        align_us: 0,
                        files: Vec::new(),
                        segments: Vec::new(),
                        final_states,
                        commits,
                        sink_dirs,
                    },
                );
            }
        }
        self.maybe_complete()
    }

    fn maybe_complete(&mut self) -> Result<(), String> {
        let Some(f) = &self.in_flight else { return Ok(()) };
        let all = (0..self.settings.cores).all(|c| f.acks.contains_key(&c) || self.ended.contains_key(&c));
        if !all {
            return Ok(());
        }
        let f = self.in_flight.take().expect("in flight");
        let id = f.id;
        let mut parts: Vec<Ack> = Vec::new();
        for c in 0..self.settings.cores {
            parts.push(f.acks.get(&c).or_else(|| self.ended.get(&c)).cloned().expect("every core answered"));
        }
        let dir = self.shared.dir_of(id);
        let mut manifest = self.manifest(id, &parts, &dir, false).map_err(|e| e.to_string());
        if let Ok(m) = manifest.as_mut() {
            m.savepoint = f.savepoint.is_some();
            m.triggered_ms = f.triggered_ms;
            m.duration_ms = f.started.elapsed().as_millis() as u64;
        }
        let written = manifest.and_then(|m| store::complete(&dir, &m).map(|()| m).map_err(|e| e.to_string()));
        let manifest = match written {
            Ok(m) => m,
            Err(e) => {
                self.in_flight = Some(f);
                let reason = format!("cannot complete: {e}");
                self.abandon(&reason);
                return match self.count_failure(&reason) {
                    Some(msg) => Err(msg),
                    None => Ok(()),
                };
            }
        };
        // Complete: from here on the checkpoint is the restore point.
        self.failures = 0;
        self.completed += 1;
        let segments: std::collections::BTreeSet<String> =
            manifest.segments.iter().map(|s| s.path.clone()).collect();
        let mut seen = std::collections::BTreeSet::new();
        let new_segment_bytes: u64 = manifest
            .segments
            .iter()
            .filter(|s| !self.last_segments.contains(&s.path) && seen.insert(&s.path))
            .map(|s| s.len)
            .sum();
        self.last_segments = segments;
        self.stats.push(super::CheckpointStats {
            id,
            duration_ms: manifest.duration_ms,
            bytes: manifest.state_bytes() + new_segment_bytes,
            full_bytes: manifest.state_bytes() + manifest.segment_bytes(),
            triggered_ms: manifest.triggered_ms,
            sync_us: parts.iter().map(|p| p.sync_us).max().unwrap_or(0),
            alignment_us: parts.iter().map(|p| p.align_us).max().unwrap_or(0),
        });
        self.shared.completed.store(id, Ordering::Release);
        if let Some(s) = self.stats.last() {
            let event = crate::web::CheckpointEvent {
                id,
                status: "COMPLETED",
                savepoint: f.savepoint.is_some(),
                triggered_ms: s.triggered_ms,
                duration_ms: s.duration_ms,
                bytes: s.bytes,
                full_bytes: s.full_bytes,
                sync_us: s.sync_us,
                alignment_us: s.alignment_us,
                reason: None,
            };
            self.job.monitor(|| crate::web::MonitorMsg::Checkpoint(event));
        }
        tracing::info!(
            "checkpoint {id} complete: {} files, {} bytes, {} segments of {} bytes, {} ms",
            manifest.files.len(),
            manifest.state_bytes(),
            manifest.segments.len(),
            manifest.segment_bytes(),
            manifest.duration_ms
        );
        // A commit that fails would lose committed output: fail the job
        // (restore commits again, idempotently).
        if let Err(e) = store::commit(&manifest.commits) {
            self.job.cancel();
            return Err(format!("checkpoint {id}: {e}"));
        }
        tracing::debug!("checkpoint {id}: output committed ({} files)", manifest.commits.len());
        if let Some((target, reply)) = f.savepoint {
            let moved = move_dir(&dir, &target);
            let _ = reply.send(moved.map(|()| target).map_err(|e| format!("savepoint {id}: {e}")));
        }
        if let Err(e) = store::retain(self.shared.root(), self.settings.retained, self.settings.first_id) {
            tracing::warn!("cannot delete old checkpoints: {e}");
        }
        self.shared_segments.collect(self.shared.root());
        Ok(())
    }

    /// A manifest of `parts` (one per core), writing ended sources' states.
    fn manifest(&self, id: u64, parts: &[Ack], dir: &Path, finished: bool) -> std::io::Result<Manifest> {
        let mut m = Manifest::new(
            id,
            self.settings.cores,
            self.settings.max_parallelism,
            self.settings.nodes.clone(),
        );
        m.finished = finished;
        for (core, part) in parts.iter().enumerate() {
            m.files.extend(part.files.iter().cloned());
            m.segments.extend(part.segments.iter().cloned());
            for (i, (node, payload)) in part.final_states.iter().enumerate() {
                let name = format!("op-{node}-core-{core}-final-{i}.state");
                let bytes = store::write_state_file(dir, &name, payload)?;
                m.files.push(FileEntry { name, node: *node, core, bytes });
            }
            part.add_commits_to(&mut m);
        }
        Ok(m)
    }
}

fn move_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(from, to)?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        store::sync_dir(parent)?;
    }
    Ok(())
}

/// After a job's input has all been processed: a last checkpoint marked
/// finished, holding every core's end-of-input commits, then those commits.
pub(crate) fn finish(
    settings: &Settings,
    shared: &CheckpointShared,
    outcome: &Outcome,
) -> Result<u64, String> {
    let id = outcome.next_id;
    let dir = shared.dir_of(id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut m = Manifest::new(id, settings.cores, settings.max_parallelism, settings.nodes.clone());
    m.finished = true;
    for part in outcome.ended.values() {
        part.add_commits_to(&mut m);
    }
    store::complete(&dir, &m).map_err(|e| format!("cannot complete the final checkpoint {id}: {e}"))?;
    shared.completed.store(id, Ordering::Release);
    store::commit(&m.commits).map_err(|e| format!("final checkpoint {id}: {e}"))?;
    // Every core has ended: incomplete checkpoints of this run are safe to
    // delete too.
    if let Err(e) = store::retain(shared.root(), settings.retained, u64::MAX) {
        tracing::warn!("cannot delete old checkpoints: {e}");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CHECKPOINTS_UNANSWERED_MAX, coordinator_queue_len};

    /// A core that answers none of the checkpoints gets no more than
    /// `CHECKPOINTS_UNANSWERED_MAX` of them: later ones are held back and
    /// count as failed, so the job fails as it would by timeouts, and the
    /// queue from the cores never has to hold more than they may owe.
    #[test]
    fn a_core_that_answers_nothing_gets_no_more_checkpoints_than_it_may_owe() {
        let dir = tempfile::tempdir().unwrap();
        let shared = CheckpointShared::new(dir.path().to_path_buf());
        let (job, _receivers) = JobShared::new(None, Default::default(), None, 1);
        let cores = 2;
        let (to_coordinator, from_cores) = bounded(coordinator_queue_len(cores));
        // Core 1 has ended; core 0 never answers (each checkpoint times out).
        to_coordinator
            .try_send(ToCoordinator::CoreEnded {
                core: 1,
                final_states: Vec::new(),
                commits: Vec::new(),
                sink_dirs: Vec::new(),
            })
            .unwrap();
        let tolerable = CHECKPOINTS_UNANSWERED_MAX as u32 + 4;
        let first_id = 5;
        let settings = Settings {
            interval: Some(Duration::from_millis(1)),
            timeout: Duration::from_millis(1),
            tolerable_failures: tolerable,
            retained: 2,
            cores,
            max_parallelism: 128,
            nodes: Vec::new(),
            first_id,
            restored_segments: Vec::new(),
        };
        let (_request_tx, requests) = bounded(1);
        let (_stop_tx, stop) = bounded::<()>(1);
        let outcome = run(settings, shared.clone(), job, from_cores, requests, stop);
        let error = outcome.error.expect("the job fails once too many checkpoints failed");
        assert!(
            error.contains(&format!(
                "core 0 has not answered the last {CHECKPOINTS_UNANSWERED_MAX} checkpoints"
            )),
            "{error}"
        );
        assert_eq!(
            shared.triggered.load(Ordering::Acquire),
            first_id + CHECKPOINTS_UNANSWERED_MAX - 1,
            "the checkpoints triggered"
        );
        // Every failure counted: the timed-out ones, then the held-back ones.
        assert_eq!(outcome.failed, u64::from(tolerable) + 1);
        assert_eq!(outcome.completed, 0);
    }
}
