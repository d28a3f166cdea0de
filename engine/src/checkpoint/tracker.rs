//! A core's side of a checkpoint: which barriers its sources must inject,
//! the asynchronous writes of its operators' snapshots (glommio DMA files),
//! its sinks' pre-commits, and the acknowledgement to the coordinator once
//! all of that is done.
//!
//! A core acknowledges checkpoint `n` when every sink on it has either seen
//! barrier `n` (and finished pre-committing) or ended (each sink counted
//! once: a sink that saw `n` and then ended is one sink), and every state file
//! it started writing for `n` is durable. Every operator between a source and
//! a sink snapshots when the barrier passes it, before forwarding it, so by
//! then every snapshot of `n` on this core has been started.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam::channel::Sender;
use futures_lite::AsyncWriteExt;
use glommio::io::{DmaFile, DmaStreamWriterBuilder};

use super::format;
use super::segments::SegmentFile;
use super::store::{Commit, FileEntry};
use super::{CheckpointShared, Restored, ToCoordinator};
use crate::runtime::core::LocalFuture;

#[derive(Default)]
struct Progress {
    /// Sinks (by index on this core) that saw the barrier.
    sinks_seen: BTreeSet<usize>,
    writes: usize,
    files: Vec<FileEntry>,
    segments: Vec<SegmentFile>,
    commits: Vec<Commit>,
    failed: Option<String>,
    done: bool,
    /// Time spent serializing snapshots on this core (µs).
    sync_us: u64,
    /// The longest barrier alignment on this core (µs).
    align_us: u64,
}

/// One core's checkpoint bookkeeping (present only when checkpointing is on).
pub(crate) struct CoreCheckpoints {
    core: usize,
    shared: Arc<CheckpointShared>,
    to_coordinator: Sender<ToCoordinator>,
    sinks: Cell<usize>,
    /// Sinks (by index on this core) whose input ended.
    ended_sinks: RefCell<BTreeSet<usize>>,
    progress: RefCell<BTreeMap<u64, Progress>>,
    /// State of sources whose input ended, and sinks' end-of-input commits:
    /// part of every later checkpoint.
    final_states: RefCell<Vec<(usize, Vec<u8>)>>,
    final_commits: RefCell<Vec<Commit>>,
    sink_dirs: RefCell<Vec<PathBuf>>,
    pub restored: Option<Arc<Restored>>,
    /// State files being written, by checkpoint: the coordinator deletes an
    /// abandoned checkpoint's directory only once no core writes into it.
    writing_ids: RefCell<BTreeMap<u64, usize>>,
    /// State files being written, and a wake-up when that drops to zero.
    writing: Cell<usize>,
    idle: glommio::sync::Semaphore,
    /// Of those, the ones whose file I/O has started, and a wake-up when
    /// that drops to zero: a core's executor must not end while one is in
    /// flight, even when the run failed (closing a file truncates its
    /// padded tail through glommio's blocking thread, which panics when it
    /// finds the executor gone).
    io_in_flight: Cell<usize>,
    io_idle: glommio::sync::Semaphore,
    /// Under the log backend, the core's memory budget: a state file's
    /// bytes are charged to it until written.
    memory: RefCell<Option<Rc<brisk_state::log::MemoryBudget>>>,
    /// What this core's newest checkpoint so far held at once, what the
    /// one before held, and the newest's id (see
    /// [`burst_reserve`](Self::burst_reserve)).
    burst: Cell<Burst>,
}

/// What one checkpoint held at once on a core (see
/// [`CoreCheckpoints::burst_reserve`]).
#[derive(Clone, Copy, Default)]
struct BurstBytes {
    /// Its state files' bytes.
    files: usize,
    /// The most bytes of unwritten log segments after one of its flushes.
    segments: usize,
}

impl BurstBytes {
    fn total(self) -> usize {
        self.files + self.segments
    }
}

/// The newest checkpoint's [`BurstBytes`] (by id), the one before's, and
/// the most any held.
#[derive(Clone, Copy, Default)]
struct Burst {
    id: u64,
    newest: BurstBytes,
    before: BurstBytes,
    peak: usize,
}

impl CoreCheckpoints {
    pub fn new(
        core: usize,
        shared: Arc<CheckpointShared>,
        to_coordinator: Sender<ToCoordinator>,
        restored: Option<Arc<Restored>>,
    ) -> Rc<Self> {
        Rc::new(Self {
            core,
            shared,
            to_coordinator,
            sinks: Cell::new(0),
            ended_sinks: RefCell::default(),
            progress: RefCell::default(),
            final_states: RefCell::default(),
            final_commits: RefCell::default(),
            sink_dirs: RefCell::default(),
            restored,
            writing_ids: RefCell::default(),
            writing: Cell::new(0),
            idle: glommio::sync::Semaphore::new(0),
            io_in_flight: Cell::new(0),
            io_idle: glommio::sync::Semaphore::new(0),
            memory: RefCell::default(),
            burst: Cell::new(Burst::default()),
        })
    }

    /// What this core's next checkpoint will hold at once, by the last two:
    /// its state files while they are written, and the log segments its
    /// flush seals (with the open one) until they are. Memory the state
    /// must leave free: a snapshot builds both in one synchronous step,
    /// before anything can evict, and they are charged only as they grow.
    pub fn burst_reserve(&self) -> usize {
        let b = self.burst.get();
        b.newest.total().max(b.before.total())
    }

    /// Notes that a flush of the log for checkpoint `id` left `segments`
    /// bytes of unwritten segments charged.
    pub fn note_flushed_segments(&self, id: u64, segments: usize) {
        self.note_burst(id, |h| h.segments = h.segments.max(segments));
    }

    /// The most one checkpoint held at once on this core (see
    /// [`burst_reserve`](Self::burst_reserve)).
    pub fn burst_peak(&self) -> usize {
        self.burst.get().peak
    }

    fn note_burst(&self, id: u64, f: impl FnOnce(&mut BurstBytes)) {
        let mut b = self.burst.get();
        if id != b.id {
            b = Burst { id, newest: BurstBytes::default(), before: b.newest, peak: b.peak };
        }
        f(&mut b.newest);
        b.peak = b.peak.max(b.newest.total());
        self.burst.set(b);
    }

    /// The newest checkpoint the coordinator triggered (0: none yet).
    #[inline]
    pub fn triggered(&self) -> u64 {
        self.shared.triggered.load(Ordering::Acquire)
    }

    /// Whether a source that has injected barrier `id` must stop (stop with
    /// savepoint).
    pub fn stop_after(&self, id: u64) -> bool {
        let stop = self.shared.stop_at.load(Ordering::Acquire);
        stop != 0 && id >= stop
    }

    /// Whether checkpoint `id` is a savepoint (operators snapshot in full).
    pub fn is_savepoint(&self, id: u64) -> bool {
        self.shared.savepoint.load(Ordering::Acquire) == id
    }

    /// Whether sources stop at a savepoint's barrier.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// The shared progress (for sinks that track completion).
    pub fn shared(&self) -> Arc<CheckpointShared> {
        self.shared.clone()
    }

    /// Counts a sink instance on this core (at build time); returns its
    /// index, which names it in [`sink_barrier`](Self::sink_barrier) and
    /// [`sink_ended`](Self::sink_ended).
    pub fn register_sink(&self) -> usize {
        let index = self.sinks.get();
        self.sinks.set(index + 1);
        index
    }

    /// Declares a directory where a transactional sink commits output.
    pub fn declare_sink_dir(&self, dir: PathBuf) {
        let mut dirs = self.sink_dirs.borrow_mut();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }

    /// Starts writing `payload` as node `node`'s state for checkpoint `id`;
    /// the write runs in the background. `serializing_since` is when the
    /// operator started serializing it: the synchronous part of the
    /// snapshot, reported with the checkpoint.
    pub fn write_state(self: &Rc<Self>, id: u64, node: usize, payload: Vec<u8>, serializing_since: Instant) {
        self.write_state_after(id, node, payload, serializing_since, Vec::new(), None);
    }

    /// Charges state files, until written, to the core's memory `budget`.
    pub fn charge_state_files_to(&self, budget: Rc<brisk_state::log::MemoryBudget>) {
        *self.memory.borrow_mut() = Some(budget);
    }

    /// Like [`write_state`](Self::write_state), for a state file that refers
    /// to log `segments`: the file is written once `durable` says they are
    /// on storage (or the checkpoint fails with its error), and the
    /// acknowledgement lists them.
    pub fn write_state_after(
        self: &Rc<Self>,
        id: u64,
        node: usize,
        payload: Vec<u8>,
        serializing_since: Instant,
        segments: Vec<SegmentFile>,
        durable: Option<LocalFuture<'static, Result<(), String>>>,
    ) {
        let name = format!("op-{node}-core-{}.state", self.core);
        self.note_burst(id, |h| h.files += payload.capacity());
        {
            let mut progress = self.progress.borrow_mut();
            let p = progress.entry(id).or_default();
            p.writes += 1;
            p.sync_us += serializing_since.elapsed().as_micros() as u64;
        }
        *self.writing_ids.borrow_mut().entry(id).or_default() += 1;
        let dir = self.shared.dir_of(id);
        let this = self.clone();
        self.writing.set(self.writing.get() + 1);
        let charge = self.memory.borrow().clone().map(|budget| {
            let mut c = brisk_state::log::Charge::new(budget, brisk_state::log::MemoryUse::StateFiles);
            c.set(payload.capacity());
            c
        });
        glommio::spawn_local(async move {
            let header = format::header(&payload);
            let bytes = (header.len() + payload.len()) as u64;
            let path = dir.join(&name);
            let result = match durable {
                Some(durable) => durable.await.map_err(|e| format!("state log segments: {e}")),
                None => Ok(()),
            };
            let result = match result {
                Ok(()) => {
                    this.io_in_flight.set(this.io_in_flight.get() + 1);
                    let written = write_durably(&path, &header, &payload).await;
                    this.io_in_flight.set(this.io_in_flight.get() - 1);
                    if this.io_in_flight.get() == 0 {
                        this.io_idle.signal(1);
                    }
                    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
                }
                Err(e) => Err(e),
            };
            drop(payload);
            drop(charge);
            let mut progress = this.progress.borrow_mut();
            // Absent: a newer checkpoint was acknowledged first and this one
            // was abandoned.
            if let Some(p) = progress.get_mut(&id) {
                p.writes -= 1;
                match result {
                    Ok(()) => {
                        p.files.push(FileEntry { name, node, core: this.core, bytes });
                        p.segments.extend(segments);
                    }
                    Err(e) => {
                        p.failed.get_or_insert(e);
                    }
                }
            }
            drop(progress);
            {
                let mut ids = this.writing_ids.borrow_mut();
                if let Some(n) = ids.get_mut(&id) {
                    *n -= 1;
                    if *n == 0 {
                        ids.remove(&id);
                    }
                }
            }
            this.maybe_ack(id);
            this.writing.set(this.writing.get() - 1);
            if this.writing.get() == 0 {
                this.idle.signal(1);
            }
        })
        .detach();
    }

    /// Waits until every state file started has been written (and its
    /// checkpoint acknowledged): a core ends only after that.
    pub async fn wait_for_writes(&self) {
        while self.writing.get() > 0 {
            let _ = self.idle.acquire(1).await;
        }
    }

    /// Waits until no state file's I/O is in flight. Unlike
    /// [`wait_for_writes`](Self::wait_for_writes) it does not wait for files
    /// still waiting for their log segments (which a failed run may never
    /// make durable), only for I/O that has started and always finishes,
    /// with an error at worst: what a failed core waits for before its
    /// executor ends.
    pub async fn wait_for_file_io(&self) {
        while self.io_in_flight.get() > 0 {
            let _ = self.io_idle.acquire(1).await;
        }
    }

    /// An operator of this core aligned barrier `id` in `us` microseconds.
    pub fn aligned(&self, id: u64, us: u64) {
        let mut progress = self.progress.borrow_mut();
        let p = progress.entry(id).or_default();
        p.align_us = p.align_us.max(us);
    }

    /// A source's state at the end of its input: carried into every later
    /// checkpoint (the coordinator writes it).
    pub fn source_ended(&self, node: usize, payload: Vec<u8>) {
        self.final_states.borrow_mut().push((node, payload));
    }

    /// Sink `sink` saw barrier `id` and starts pre-committing.
    pub fn sink_barrier(&self, sink: usize, id: u64) {
        let mut progress = self.progress.borrow_mut();
        let p = progress.entry(id).or_default();
        p.sinks_seen.insert(sink);
        p.writes += 1;
    }

    /// A sink finished pre-committing for `id` (or failed to).
    pub fn sink_pre_committed(&self, id: u64, result: Result<Vec<Commit>, String>) {
        {
            let mut progress = self.progress.borrow_mut();
            // Absent only if abandoned; the sink carries its pending
            // commits into its next pre-commit anyway.
            let Some(p) = progress.get_mut(&id) else { return };
            p.writes -= 1;
            match result {
                Ok(c) => p.commits.extend(c),
                Err(e) => {
                    p.failed.get_or_insert(e);
                }
            }
        }
        self.maybe_ack(id);
    }

    /// Sink `sink` reached the end of its input, having pre-committed
    /// `commits`.
    pub fn sink_ended(&self, sink: usize, commits: Vec<Commit>) {
        self.final_commits.borrow_mut().extend(commits);
        self.ended_sinks.borrow_mut().insert(sink);
        let ids: Vec<u64> = self.progress.borrow().keys().copied().collect();
        for id in ids {
            self.maybe_ack(id);
        }
    }

    fn maybe_ack(&self, id: u64) {
        let mut progress = self.progress.borrow_mut();
        let Some(p) = progress.get_mut(&id) else { return };
        if p.done || p.writes > 0 {
            return;
        }
        let writing_from = self.writing_ids.borrow().keys().next().copied().unwrap_or(u64::MAX);
        let msg = if let Some(reason) = p.failed.take() {
            ToCoordinator::Failed { core: self.core, id, reason, writing_from }
        } else if p.sinks_seen.union(&self.ended_sinks.borrow()).count() >= self.sinks.get() {
            let mut commits = std::mem::take(&mut p.commits);
            commits.extend(self.final_commits.borrow().iter().cloned());
            ToCoordinator::Ack {
                core: self.core,
                id,
                files: std::mem::take(&mut p.files),
                segments: std::mem::take(&mut p.segments),
                final_states: self.final_states.borrow().clone(),
                commits,
                sink_dirs: self.sink_dirs.borrow().clone(),
                sync_us: p.sync_us,
                align_us: p.align_us,
                writing_from,
            }
        } else {
            return;
        };
        p.done = true;
        // Older checkpoints this core never finished are abandoned.
        progress.retain(|&k, _| k > id);
        self.send(msg);
    }

    /// What this core leaves behind when it ends: its sources' final states
    /// and its sinks' end-of-input commits.
    pub fn ended(&self) -> ToCoordinator {
        ToCoordinator::CoreEnded {
            core: self.core,
            final_states: self.final_states.borrow().clone(),
            commits: self.final_commits.borrow().clone(),
            sink_dirs: self.sink_dirs.borrow().clone(),
        }
    }

    /// Sends `msg` to the coordinator, without waiting. The queue has room
    /// for everything a core can owe it: the coordinator triggers no
    /// checkpoint while a core leaves [`CHECKPOINTS_UNANSWERED_MAX`]
    /// unanswered, and a core answers each at most once, in order, then
    /// ends once. A coordinator that has gone (the run failed) takes nothing.
    ///
    /// [`CHECKPOINTS_UNANSWERED_MAX`]: crate::config::CHECKPOINTS_UNANSWERED_MAX
    pub fn send(&self, msg: ToCoordinator) {
        if let Err(crossbeam::channel::TrySendError::Full(_)) = self.to_coordinator.try_send(msg) {
            // Dropping an answer could let a checkpoint complete without
            // this core's state: fail the run instead (it restarts from the
            // last completed checkpoint).
            panic!(
                "core {}: the checkpoint coordinator's queue is full, which the trigger rule rules out (a bug)",
                self.core
            );
        }
    }
}

/// Writes `bytes` to a new file at `path` through io_uring (O_DIRECT) and
/// makes it durable.
pub(crate) async fn write_durably(
    path: &std::path::Path,
    header: &[u8],
    payload: &[u8],
) -> std::io::Result<()> {
    let file = DmaFile::create(path).await.map_err(io)?;
    let mut w = DmaStreamWriterBuilder::new(file).with_buffer_size(512 << 10).with_write_behind(4).build();
    w.write_all(header).await?;
    w.write_all(payload).await?;
    w.close().await?;
    // close() truncates the padded tail after its data sync; sync the final
    // length too.
    let file = DmaFile::open(path).await.map_err(io)?;
    file.fdatasync().await.map_err(io)?;
    file.close().await.map_err(io)?;
    Ok(())
}

fn io(e: glommio::GlommioError<()>) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::channel::unbounded;

    fn commit(id: u64, name: &str) -> Commit {
        Commit { checkpoint: id, from: PathBuf::from(format!(".{name}")), to: PathBuf::from(name) }
    }

    /// A failed core's end waits for a state file whose I/O has started:
    /// once `wait_for_file_io` returns, the file is complete (its padded
    /// tail truncated), so no blocking file operation is left for
    /// glommio's thread to answer after the executor is gone.
    #[test]
    // The directory is made on the test's thread, before the core starts.
    #[allow(clippy::disallowed_methods)]
    fn a_core_can_wait_for_the_state_file_io_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let shared = CheckpointShared::new(dir.path().to_path_buf());
        std::fs::create_dir_all(shared.dir_of(1)).unwrap();
        let file = shared.dir_of(1).join("op-0-core-0.state");
        let (want, len) = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let (tx, _rx) = unbounded();
                let cp = CoreCheckpoints::new(0, shared, tx, None);
                // Not a multiple of the DMA alignment: closing truncates.
                let payload = vec![7u8; (1 << 20) + 123];
                let want = (format::header(&payload).len() + payload.len()) as u64;
                cp.write_state(1, 0, payload, Instant::now());
                while cp.io_in_flight.get() == 0 {
                    futures_lite::future::yield_now().await;
                }
                cp.wait_for_file_io().await;
                assert_eq!(cp.io_in_flight.get(), 0);
                // Read before the executor ends (it would finish the write).
                let len = glommio::io::DmaFile::open(&file).await.unwrap().file_size().await.unwrap();
                (want, len)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(len, want, "the file is whole, its padding truncated");
    }

    /// The reserve for the next checkpoint is the larger of the last two
    /// bursts, each its state files plus the most segments one of its
    /// flushes left unwritten.
    #[test]
    fn the_burst_reserve_is_the_larger_of_the_last_two_checkpoints() {
        let (tx, _rx) = unbounded();
        let cp = CoreCheckpoints::new(0, CheckpointShared::new(PathBuf::from("/nowhere")), tx, None);
        assert_eq!(cp.burst_reserve(), 0, "no checkpoint yet");
        cp.note_flushed_segments(1, 10);
        cp.note_burst(1, |h| h.files += 5);
        cp.note_flushed_segments(1, 7);
        cp.note_burst(1, |h| h.files += 2);
        assert_eq!(cp.burst_reserve(), 17, "flushes of one checkpoint: the most; files: their sum");
        cp.note_flushed_segments(2, 3);
        assert_eq!(cp.burst_reserve(), 17, "the one before still counts");
        cp.note_flushed_segments(3, 4);
        assert_eq!(cp.burst_reserve(), 4, "two checkpoints later it no longer does");
        assert_eq!(cp.burst_peak(), 17);
    }

    /// A sink that saw the barrier and then ended is one sink, not two: the
    /// core waits for the sink that has not seen the barrier yet, and its
    /// pre-commit is part of the acknowledgement.
    #[test]
    fn a_sink_that_saw_the_barrier_and_ended_is_counted_once() {
        let (tx, rx) = unbounded();
        let cp = CoreCheckpoints::new(0, CheckpointShared::new(PathBuf::from("/nowhere")), tx, None);
        let sinks: Vec<usize> = (0..3).map(|_| cp.register_sink()).collect();
        for &sink in &sinks[..2] {
            cp.sink_barrier(sink, 5);
            cp.sink_pre_committed(5, Ok(vec![commit(5, &format!("s{sink}"))]));
            cp.sink_ended(sink, Vec::new());
        }
        assert!(rx.try_recv().is_err(), "acknowledged before sink 2 saw barrier 5");
        cp.sink_barrier(sinks[2], 5);
        assert!(rx.try_recv().is_err(), "acknowledged before sink 2 pre-committed");
        cp.sink_pre_committed(5, Ok(vec![commit(5, "s2")]));
        match rx.try_recv() {
            Ok(ToCoordinator::Ack { id: 5, commits, .. }) => {
                let mut names: Vec<_> = commits.iter().map(|c| c.to.display().to_string()).collect();
                names.sort();
                assert_eq!(names, ["s0", "s1", "s2"]);
            }
            other => panic!("expected the ack of 5, got {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "one ack per checkpoint");
        // A late completion of an abandoned checkpoint is ignored.
        cp.sink_pre_committed(4, Ok(Vec::new()));
        assert!(rx.try_recv().is_err());
    }
}
