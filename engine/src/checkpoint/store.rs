//! Checkpoints on disk, from the control thread: manifests, completion
//! (write, fsync, rename, fsync the directory), retention, verification,
//! choosing what to restore, and committing sink output.
//!
//! Everything here runs on the control thread (the coordinator or the caller
//! of `execute`), never on an executor core, so it uses `std::fs`.
//!
//! Layout of `checkpoint_dir`:
//!
//! ```text
//! chk-7/                     checkpoint 7
//!   op-3-core-0.state        node 3's state on core 0 (see format.rs)
//!   src-0-core-1.state       ...
//!   _manifest                framed JSON; its presence completes chk-7
//! chk-8/                     in progress, or abandoned: no _manifest
//! ```
//!
//! A savepoint has the same contents in a directory of its own.
#![allow(clippy::disallowed_methods)] // the control thread may block on files

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::format::{self, CorruptFile};
use super::segments::{self, SegmentFile};

/// The name of the file that completes a checkpoint.
pub const MANIFEST: &str = "_manifest";
const MANIFEST_FORMAT: u32 = 1;

/// One state file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the checkpoint directory.
    pub name: String,
    /// The graph node whose state it holds.
    pub node: usize,
    /// The core that wrote it.
    pub core: usize,
    /// Its length in bytes (header included).
    pub bytes: u64,
}

/// Output a two-phase-commit sink pre-committed: made durable under a hidden
/// name, to be renamed into sight once the checkpoint is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The checkpoint whose barrier pre-committed it (0: end of input).
    pub checkpoint: u64,
    /// The pending (hidden) file.
    pub from: PathBuf,
    /// Its committed name.
    pub to: PathBuf,
}

/// What completes a checkpoint: which files it holds, what to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format.
    pub format: u32,
    /// Checkpoint id (increasing over the job's life, across restores).
    pub id: u64,
    /// Whether this is a savepoint (taken on demand).
    pub savepoint: bool,
    /// Whether the job had finished all its input: restoring it only commits.
    pub finished: bool,
    /// Cores of the run that wrote it.
    pub cores: usize,
    /// Key groups of the job.
    pub max_parallelism: u32,
    /// Node names by node id: restoring into a different graph is refused.
    pub nodes: Vec<String>,
    /// State files.
    pub files: Vec<FileEntry>,
    /// State log segments it refers to (incremental checkpoints of the log
    /// backend; see `segments.rs`).
    #[serde(default)]
    pub segments: Vec<SegmentFile>,
    /// Sink output to commit once this checkpoint is complete.
    pub commits: Vec<Commit>,
    /// Directories where transactional sinks commit output (for the
    /// fallback check on restore).
    pub sink_dirs: Vec<PathBuf>,
    /// When it was triggered (epoch ms).
    pub triggered_ms: i64,
    /// From trigger to manifest written (ms).
    pub duration_ms: u64,
}

impl Manifest {
    /// A manifest for checkpoint `id`, without files yet.
    pub(crate) fn new(id: u64, cores: usize, max_parallelism: u32, nodes: Vec<String>) -> Self {
        Self {
            format: MANIFEST_FORMAT,
            id,
            savepoint: false,
            finished: false,
            cores,
            max_parallelism,
            nodes,
            files: Vec::new(),
            segments: Vec::new(),
            commits: Vec::new(),
            sink_dirs: Vec::new(),
            triggered_ms: 0,
            duration_ms: 0,
        }
    }

    /// Total bytes of state files.
    pub fn state_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Total bytes of the distinct state log segments it refers to.
    pub fn segment_bytes(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.segments.iter().filter(|s| seen.insert(&s.path)).map(|s| s.len).sum()
    }
}

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A file is missing, unreadable or corrupt.
    #[error("{path}: {reason}")]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

fn file_error(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The directory of checkpoint `id` under `root`.
pub fn checkpoint_path(root: &Path, id: u64) -> PathBuf {
    root.join(format!("chk-{id}"))
}

/// Writes `bytes` to `dir/name` durably and atomically: a temporary file is
/// written and fsynced, renamed over the name, and the directory fsynced.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// fsyncs a directory, making renames and creations in it durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes a state file durably (used for state the control thread holds).
pub(crate) fn write_state_file(dir: &Path, name: &str, payload: &[u8]) -> std::io::Result<u64> {
    let framed = format::frame(payload);
    let mut f = fs::File::create(dir.join(name))?;
    f.write_all(&framed)?;
    f.sync_all()?;
    Ok(framed.len() as u64)
}

/// Makes checkpoint `dir` complete by writing its manifest atomically.
pub(crate) fn complete(dir: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(manifest).expect("manifests serialize");
    sync_dir(dir)?; // the state files' directory entries first
    write_atomic(dir, MANIFEST, &format::frame(&json))
}

/// Reads and checks a checkpoint's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, StoreError> {
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).map_err(|e| file_error(&path, e))?;
    let json = format::unframe(&bytes).map_err(|e| file_error(&path, e))?;
    let m: Manifest = serde_json::from_slice(json).map_err(|e| file_error(&path, e))?;
    if m.format != MANIFEST_FORMAT {
        return Err(file_error(&path, format!("manifest format {}, expected {MANIFEST_FORMAT}", m.format)));
    }
    Ok(m)
}

/// A checkpoint read back and verified: its manifest and every state file's
/// payload (checksums checked).
#[derive(Debug)]
pub struct Loaded {
    /// Where it was read from.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// `(entry, payload)` for every state file.
    pub payloads: Vec<(FileEntry, Vec<u8>)>,
}

/// Reads checkpoint `dir` and verifies every file it lists.
pub fn load(dir: &Path) -> Result<Loaded, StoreError> {
    let manifest = read_manifest(dir)?;
    let mut payloads = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let path = dir.join(&f.name);
        let bytes = fs::read(&path).map_err(|e| file_error(&path, e))?;
        if bytes.len() as u64 != f.bytes {
            return Err(file_error(
                &path,
                CorruptFile::Truncated { got: bytes.len(), want: f.bytes as usize }.to_string()
                    + " (size recorded in the manifest)",
            ));
        }
        let payload = format::unframe(&bytes).map_err(|e| file_error(&path, e))?.to_vec();
        payloads.push((f.clone(), payload));
    }
    // Segments are checked here for presence, length and identity; their
    // records' checksums are verified as the operators replay them.
    let root = dir.parent().unwrap_or(Path::new("."));
    for s in &manifest.segments {
        check_segment(&segments::resolve(root, &s.path), s)?;
    }
    Ok(Loaded { dir: dir.to_path_buf(), manifest, payloads })
}

/// Checks that a segment file exists, is as long as the manifest says and
/// names the segment in its (checksummed) header.
fn check_segment(path: &Path, s: &SegmentFile) -> Result<(), StoreError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(|e| file_error(path, e))?;
    let len = f.metadata().map_err(|e| file_error(path, e))?.len();
    if len < s.len {
        return Err(file_error(path, format!("{len} bytes, the manifest records {}", s.len)));
    }
    let mut header = [0u8; brisk_state::log::format::SEGMENT_HEADER_BYTES];
    f.read_exact(&mut header).map_err(|e| file_error(path, e))?;
    if brisk_state::log::index::is_base(&header) {
        // An index base: its header is longer.
        let mut rest = [0u8; brisk_state::log::index::INDEX_HEADER_BYTES
            - brisk_state::log::format::SEGMENT_HEADER_BYTES];
        f.read_exact(&mut rest).map_err(|e| file_error(path, e))?;
        let header = [&header[..], &rest[..]].concat();
        return match brisk_state::log::index::base_id(&header) {
            Ok(id) if id == s.id => Ok(()),
            Ok(id) => Err(file_error(
                path,
                format!("holds index base {id:016x}, the manifest expects {:016x}", s.id),
            )),
            Err(e) => Err(file_error(path, e)),
        };
    }
    if super::timer_files::is_timer_file(&header) {
        let mut rest =
            [0u8; super::timer_files::TIMER_HEADER_BYTES - brisk_state::log::format::SEGMENT_HEADER_BYTES];
        f.read_exact(&mut rest).map_err(|e| file_error(path, e))?;
        let header = [&header[..], &rest[..]].concat();
        return match super::timer_files::timer_file_id(&header) {
            Ok(id) if id == s.id => Ok(()),
            Ok(id) => Err(file_error(
                path,
                format!("holds timer file {id:016x}, the manifest expects {:016x}", s.id),
            )),
            Err(e) => Err(file_error(path, e)),
        };
    }
    match brisk_state::log::format::read_segment_header(&header) {
        Ok(id) if id == s.id => Ok(()),
        Ok(id) => {
            Err(file_error(path, format!("holds segment {id:016x}, the manifest expects {:016x}", s.id)))
        }
        Err(e) => Err(file_error(path, e)),
    }
}

/// Checkpoint directories under `root` as `(id, path, has_manifest)`, newest first.
pub fn list(root: &Path) -> std::io::Result<Vec<(u64, PathBuf, bool)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("chk-")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let has_manifest = path.join(MANIFEST).exists();
        out.push((id, path, has_manifest));
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// The highest checkpoint id under `root` (complete or not), or 0.
pub fn highest_id(root: &Path) -> std::io::Result<u64> {
    Ok(list(root)?.first().map_or(0, |c| c.0))
}

/// Which checkpoint a restore uses, and what was skipped on the way.
#[derive(Debug)]
pub struct Chosen {
    /// The verified checkpoint.
    pub loaded: Loaded,
    /// Newer complete checkpoints that failed verification, with why.
    pub skipped: Vec<(u64, StoreError)>,
}

/// The newest complete checkpoint under `root` that verifies.
///
/// A newer complete checkpoint that fails verification is skipped only if
/// that cannot duplicate committed output: its commits may already have
/// been made visible, so falling back is refused when any transactional
/// sink directory holds output committed by a checkpoint newer than the one
/// chosen. `Ok(None)`: no complete checkpoint exists.
pub fn choose_latest(root: &Path) -> Result<Option<Chosen>, String> {
    let all = list(root).map_err(|e| format!("cannot list checkpoints in {}: {e}", root.display()))?;
    let mut skipped: Vec<(u64, StoreError)> = Vec::new();
    for (id, dir, has_manifest) in all {
        if !has_manifest {
            continue; // never completed: not a checkpoint
        }
        match load(&dir) {
            Ok(loaded) => {
                if let Some((newer, why)) = skipped.first() {
                    let committed = committed_after(&loaded.manifest.sink_dirs, id)
                        .map_err(|e| format!("cannot check committed output: {e}"))?;
                    if let Some(file) = committed {
                        return Err(format!(
                            "checkpoint {newer} is corrupt ({why}); the previous complete checkpoint {id} \
                             cannot be used because output committed after it ({}) would be written \
                             again. Repair or remove the corrupt files, or restore from a checkpoint by path \
                             after moving that output away.",
                            file.display()
                        ));
                    }
                }
                return Ok(Some(Chosen { loaded, skipped }));
            }
            Err(e) => skipped.push((id, e)),
        }
    }
    match skipped.first() {
        None => Ok(None),
        Some((id, e)) => {
            Err(format!("no usable checkpoint in {}: checkpoint {id} is corrupt: {e}", root.display()))
        }
    }
}

/// The checkpoint id encoded in a committed output file's name
/// (`part-<checkpoint>-...`), if it is one.
pub fn committed_checkpoint_of(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

fn committed_after(dirs: &[PathBuf], id: u64) -> std::io::Result<Option<PathBuf>> {
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if let Some(n) = entry.file_name().to_str().and_then(committed_checkpoint_of)
                && n > id
            {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

/// Performs `commits` (idempotently: a file already renamed is done) and
/// makes the renames durable.
pub fn commit(commits: &[Commit]) -> Result<(), String> {
    let mut dirs: Vec<&Path> = Vec::new();
    for c in commits {
        match fs::rename(&c.from, &c.to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && c.to.exists() => {}
            Err(e) => return Err(format!("cannot commit {} as {}: {e}", c.from.display(), c.to.display())),
        }
        if let Some(d) = c.to.parent()
            && !dirs.contains(&d)
        {
            dirs.push(d);
        }
    }
    for d in dirs {
        sync_dir(d).map_err(|e| format!("cannot sync {}: {e}", d.display()))?;
    }
    Ok(())
}

/// Deletes all but the newest `retain` complete checkpoints, and incomplete
/// ones older than the newest complete one and than `keep_incomplete_from`
/// (the running job's first id: its own incomplete checkpoints may still be
/// written into).
pub fn retain(root: &Path, retain: usize, keep_incomplete_from: u64) -> std::io::Result<()> {
    let all = list(root)?;
    let newest_complete = all.iter().find(|c| c.2).map(|c| c.0);
    let mut kept = 0;
    for (id, dir, complete) in all {
        let drop = if complete {
            kept += 1;
            kept > retain
        } else {
            // An incomplete checkpoint of the running job may still be
            // written into: the coordinator deletes those itself.
            id < keep_incomplete_from && newest_complete.is_some_and(|n| id < n)
        };
        if drop {
            fs::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}
