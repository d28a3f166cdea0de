//! Checkpoints: asynchronous barrier snapshots, their files, the coordinator
//! that completes them, restore, savepoints and two-phase-commit output.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`format`](mod@format) | the framed, checksummed state file and its key-group-tagged entries |
//! | [`store`] | checkpoints on disk: manifests, atomic completion, retention, verification, commits |
//! | [`segments`] | incremental checkpoints of the log backend: shared segments, their names and deletion |
//! | `incremental` | a core's side of them: state files that wait for their segments, restore by adoption |
//! | `timer_files` | incremental checkpoints of timers: a base and files of changes beside the segments |
//! | `tracker` | one core's side: barriers to inject, snapshot writes (glommio DMA), sink pre-commits, acks |
//! | `coordinator` | the control thread: triggers, completes, abandons, commits; savepoint requests |
//!
//! # How a checkpoint runs
//!
//! 1. The coordinator (a plain thread, never a core) creates `chk-n/` and
//!    publishes `n`. Every source task sees it between two batches, records
//!    its reader's position, and emits `Control::Barrier(n)` in-band.
//! 2. An operator with several input channels aligns: a channel that
//!    delivered barrier `n` is held back (its driving task waits) until every
//!    other live channel has delivered it too. Then the operator snapshots
//!    its state into memory, forwards the barrier, and processing resumes;
//!    the snapshot is written to `chk-n/` by a background task through
//!    io_uring while records keep flowing.
//! 3. A two-phase-commit sink, at the barrier, makes what it wrote since the
//!    last barrier durable under a hidden name (pre-commit).
//! 4. A core acknowledges `n` when all its sinks have the barrier and its
//!    writes are durable; when every core has, the coordinator writes the
//!    manifest atomically (the checkpoint is complete), renames the pending
//!    sink files into sight (commit) and deletes checkpoints beyond the
//!    retained number.

pub(crate) mod coordinator;
pub mod format;
pub(crate) mod incremental;
pub mod segments;
pub mod store;
pub(crate) mod timer_files;
pub(crate) mod tracker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use self::coordinator::JobControl;
use self::store::{Commit, FileEntry};

/// One completed checkpoint, as the job reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Its id.
    pub id: u64,
    /// From trigger to manifest durable, in ms.
    pub duration_ms: u64,
    /// Bytes this checkpoint added: its state files, plus the log segments
    /// no earlier checkpoint of the run referred to (incremental).
    pub bytes: u64,
    /// Bytes of the whole state it restores: state files plus every segment
    /// it refers to (equals `bytes` for a full checkpoint).
    pub full_bytes: u64,
    /// When it was triggered (epoch ms of the job's clock).
    pub triggered_ms: i64,
    /// The longest synchronous part on any core, in µs: the time operators
    /// spent serializing their state while the barrier passed (records on
    /// that core wait meanwhile; writing the files is asynchronous).
    pub sync_us: u64,
    /// The longest barrier alignment on any core, in µs: how long an
    /// operator with several input channels held the channels that had
    /// delivered the barrier while waiting for the rest.
    pub alignment_us: u64,
}

/// Where a job restores from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreFrom {
    /// The newest complete checkpoint under `checkpoint_dir` (a fresh start
    /// if there is none).
    Latest,
    /// A checkpoint or savepoint directory.
    Path(PathBuf),
}

impl std::str::FromStr for RestoreFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("restore: expected 'latest' or a checkpoint directory".into()),
            "latest" => Ok(RestoreFrom::Latest),
            p => Ok(RestoreFrom::Path(PathBuf::from(p))),
        }
    }
}

/// What the cores share with the coordinator (opaque outside the engine).
pub struct CheckpointShared {
    root: PathBuf,
    /// The newest triggered checkpoint id (0: none).
    pub(crate) triggered: AtomicU64,
    /// The newest completed checkpoint id.
    pub(crate) completed: AtomicU64,
    /// Sources stop after injecting this barrier (0: never).
    pub(crate) stop_at: AtomicU64,
    /// The newest checkpoint taken as a savepoint: self-contained, so
    /// operators snapshot in full rather than refer to shared segments.
    pub(crate) savepoint: AtomicU64,
}

impl CheckpointShared {
    pub(crate) fn new(root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            root,
            triggered: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            stop_at: AtomicU64::new(0),
            savepoint: AtomicU64::new(0),
        })
    }
    /// The directory of checkpoint `id`.
    pub(crate) fn dir_of(&self, id: u64) -> PathBuf {
        store::checkpoint_path(&self.root, id)
    }
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop_at.load(Ordering::Acquire) != 0
    }
    /// Whether the savepoint a stop waits for has completed.
    pub(crate) fn stop_completed(&self) -> bool {
        let at = self.stop_at.load(Ordering::Acquire);
        at != 0 && self.completed.load(Ordering::Acquire) >= at
    }
}

/// Messages from the cores to the coordinator.
#[derive(Debug)]
pub(crate) enum ToCoordinator {
    /// A core finished its part of checkpoint `id`.
    Ack {
        core: usize,
        id: u64,
        files: Vec<FileEntry>,
        /// Log segments its state files refer to.
        segments: Vec<segments::SegmentFile>,
        /// `(node, payload)` of sources that already ended on that core.
        final_states: Vec<(usize, Vec<u8>)>,
        commits: Vec<Commit>,
        sink_dirs: Vec<PathBuf>,
        /// Time this core's operators spent serializing their snapshots.
        sync_us: u64,
        /// The longest barrier alignment on this core (µs): from the first
        /// channel delivering the barrier to the last.
        align_us: u64,
        /// The oldest checkpoint this core still writes a state file for
        /// (`u64::MAX`: none).
        writing_from: u64,
    },
    /// A core could not take its part of checkpoint `id`.
    Failed { core: usize, id: u64, reason: String, writing_from: u64 },
    /// A core ended (all its tasks finished).
    CoreEnded {
        core: usize,
        final_states: Vec<(usize, Vec<u8>)>,
        commits: Vec<Commit>,
        sink_dirs: Vec<PathBuf>,
    },
}

/// The restored checkpoint, shared read-only by the cores: every state
/// file's payload by node.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// `[node] -> payloads of every core that wrote state for it`.
    pub by_node: Vec<Vec<Vec<u8>>>,
    /// The root of the checkpoint directory it came from: segment paths
    /// are relative to it.
    pub segment_root: PathBuf,
    /// Whether that root is this job's own `checkpoint_dir` (its segments
    /// are then this job's to delete).
    pub own_root: bool,
    /// How many cores the run that wrote it had.
    pub cores: usize,
}

impl Restored {
    /// The payloads of node `node` (empty if it had no state).
    pub fn payloads(&self, node: usize) -> &[Vec<u8>] {
        self.by_node.get(node).map_or(&[], |v| v.as_slice())
    }
}

/// Why a restored entry was not taken (decoding, or a mismatch with the
/// running operator); the caller says which operator it was.
pub(crate) type EntryError = Box<dyn std::error::Error>;

/// Hands `take` every entry of node `node`'s restored state that this core
/// keeps: operator-wide entries ([`format::NO_KEY_GROUP`]) and the entries
/// of the key groups it owns, file by file in entry order. Does nothing if
/// the job did not restore. An error names the operator and the core.
pub(crate) fn restore_owned(
    core: &crate::runtime::core::Core,
    node: usize,
    info: &crate::error::OperatorInfo,
    owner: &crate::operator::keyed_process::KeyOwner,
    mut take: impl FnMut(format::RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(), crate::error::JobError> {
    let Some(restored) = core.checkpoints.as_ref().and_then(|c| c.restored.clone()) else {
        return Ok(());
    };
    let range = owner.max_parallelism.range_for(owner.core, owner.cores);
    let bad = |e: EntryError| {
        crate::error::JobError::Restore(format!("operator '{}' state on core {}: {e}", info.name, info.core))
    };
    for payload in restored.payloads(node) {
        for entry in format::entries(payload) {
            let entry = entry.map_err(|e| bad(e.into()))?;
            if entry.key_group == format::NO_KEY_GROUP || range.contains(entry.key_group) {
                take(entry).map_err(bad)?;
            }
        }
    }
    Ok(())
}

/// Reads ahead, on a thread of its own, the files an operator's restore is
/// about to read through memory maps, in the order it reads them: first
/// its timer files (entries of kind `timer_files`), read whole, then the
/// log segments (kind `segments`) that hold records of `owner`'s key
/// groups, by advice (`posix_fadvise` `WILLNEED`). After the page cache
/// lost them (a reboot, another machine), the disk then reads the
/// segments while the restore rebuilds its timers, instead of a page fault
/// at a time afterwards; the timer files come first so that the segments
/// do not slow down the timers' reads. Advice only: a file that cannot be
/// read is left to the restore, which reports it. Returns how many files it
/// reads ahead.
pub(crate) fn prefetch_restore(
    core: &crate::runtime::core::Core,
    node: usize,
    info: &crate::error::OperatorInfo,
    owner: &crate::operator::keyed_process::KeyOwner,
    [timer_files, segments]: [u8; 2],
) -> Result<usize, crate::error::JobError> {
    let Some(restored) = core.checkpoints.as_ref().and_then(|c| c.restored.clone()) else {
        return Ok(0);
    };
    let owned = owner.max_parallelism.range_for(owner.core, owner.cores);
    let (mut timers, mut logs) = (Vec::new(), Vec::new());
    restore_owned(core, node, info, owner, |entry| {
        if entry.kind == timer_files {
            let chain: Vec<(String, u64, u64)> = entry.decode()?;
            timers.extend(chain.into_iter().map(|(path, _, _)| path));
        } else if entry.kind == segments {
            let refs: Vec<(String, u64, u64, u32, u32)> = entry.decode()?;
            logs.extend(
                refs.into_iter()
                    .filter(|r| {
                        !brisk_state::KeyGroupRange { start: r.3, end: r.4 }.intersect(&owned).is_empty()
                    })
                    .map(|(path, _, len, _, _)| (path, len)),
            );
        }
        Ok(())
    })?;
    let root = restored.segment_root.clone();
    let timers: Vec<PathBuf> = timers.iter().map(|p| segments::resolve(&root, p)).collect();
    let logs: Vec<(PathBuf, u64)> = logs.iter().map(|(p, len)| (segments::resolve(&root, p), *len)).collect();
    let n = timers.len() + logs.len();
    if n > 0 {
        // A thread: reads block, and so does the advice while the device's
        // queue is full.
        let _ = std::thread::Builder::new().name("brisk-prefetch".into()).spawn(move || {
            #[allow(clippy::disallowed_methods)] // a thread of its own, not a core
            for path in timers {
                if let Ok(mut file) = std::fs::File::open(&path) {
                    let _ = std::io::copy(&mut file, &mut std::io::sink());
                }
            }
            for (path, len) in logs {
                #[allow(clippy::disallowed_methods)] // a thread of its own, not a core
                let Ok(file) = std::fs::File::open(&path) else { continue };
                let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
                // SAFETY: a valid descriptor, owned by `file` for the call.
                unsafe {
                    libc::posix_fadvise(
                        std::os::fd::AsRawFd::as_raw_fd(&file),
                        0,
                        len,
                        libc::POSIX_FADV_WILLNEED,
                    );
                }
            }
        });
    }
    Ok(n)
}

/// Entry kinds shared by several operators.
pub(crate) mod kinds {
    /// A source reader's position.
    pub const SOURCE_POSITION: u8 = 0;
}
