//! Incremental checkpoints of the log backend: the state log segments a
//! checkpoint refers to instead of copying them, where they live, how they
//! are named, and when they are deleted.
//!
//! With `state_backend = log` and incremental checkpoints, every keyed
//! operator writes its log segments straight into `<checkpoint_dir>/shared/`.
//! At a barrier the operator writes its dirty entries into the log, seals
//! it, and its checkpoint state file holds only the state directory, the
//! timers and the list of segments that make up its log; the core
//! acknowledges once those segments are durable. A segment is immutable
//! once written, so the next checkpoint refers to it again and writes only
//! what is new (Flink's incremental RocksDB checkpoints share SST files the
//! same way).
//!
//! # Names
//!
//! A segment's id is unique within a checkpoint directory across runs:
//!
//! ```text
//! bits 63..44  run epoch (1 + the highest epoch any complete checkpoint refers to)
//! bits 43..32  operator (graph node)
//! bits 31..22  core
//! bits 21..0   segment counter of that log in that run
//! ```
//!
//! and its file is `shared/<id as 16 hex digits>.seg`. A manifest names a
//! segment by a path relative to the checkpoint directory's root
//! (`shared/...`), or by an absolute path for a segment adopted from a
//! checkpoint in another directory (restore by path); such foreign files are
//! never deleted by this job.
//!
//! # Deletion
//!
//! The core deletes a segment it compacted away only if no checkpoint was
//! ever told about it. Every other segment is the coordinator's: after a
//! checkpoint completes (and older ones were dropped by retention) it deletes
//! every segment it has seen in an acknowledgement that no retained complete
//! checkpoint refers to. That is safe because the newest complete checkpoint
//! lists every segment any log still holds: a segment published once and
//! missing from it was compacted away for good. When a run ends (all cores
//! stopped) and when one starts, every file in `shared/` that no complete
//! checkpoint refers to is removed: spill segments never published and
//! leftovers of a crashed run.
#![allow(clippy::disallowed_methods)] // control-thread code: std::fs is fine

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store;

/// The directory under a checkpoint root that holds shared segments.
pub const SHARED_DIR: &str = "shared";

/// Highest operator number the log backend can name in a segment id.
pub const NODES_MAX: usize = 1 << 12;

/// Highest run epoch.
const EPOCH_MAX: u64 = (1 << 20) - 1;

/// A segment a checkpoint refers to, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    /// Relative to the checkpoint root (`shared/...`), or absolute for a
    /// segment of another checkpoint directory.
    pub path: String,
    /// The operator (graph node) whose log holds it.
    pub node: usize,
    /// The core whose log referred to it.
    pub core: usize,
    /// Its id (also in its header).
    pub id: u64,
    /// Its valid length in bytes.
    pub len: u64,
}

/// The first segment id of the log of operator `node` on core `core` in run
/// `epoch` (see the module docs).
pub(crate) fn id_base(epoch: u64, node: usize, core: usize) -> u64 {
    debug_assert!(epoch <= EPOCH_MAX && node < NODES_MAX && core < (1 << 10));
    (epoch << 44) | ((node as u64) << 32) | ((core as u64) << 22)
}

/// The run epoch of a segment id.
pub(crate) fn epoch_of(id: u64) -> u64 {
    id >> 44
}

/// The file name of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The manifest path of a segment of this root's `shared/` directory.
pub(crate) fn own_path(id: u64) -> String {
    format!("{SHARED_DIR}/{}", file_name(id))
}

/// Where a manifest path points, for a checkpoint under `root`.
pub fn resolve(root: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { root.join(p) }
}

/// Whether a manifest path names a file of the root's own `shared/`.
fn is_own(path: &str) -> bool {
    !Path::new(path).is_absolute()
}

/// Every segment path the complete checkpoints under `root` refer to, and
/// the highest run epoch among them.
pub(crate) fn referenced(root: &Path) -> std::io::Result<(BTreeSet<String>, u64)> {
    let mut paths = BTreeSet::new();
    let mut epoch = 0;
    for (_, dir, complete) in store::list(root)? {
        if !complete {
            continue;
        }
        // A manifest that cannot be read protects nothing; such a
        // checkpoint is skipped by restore as well.
        let Ok(m) = store::read_manifest(&dir) else { continue };
        for s in m.segments {
            epoch = epoch.max(epoch_of(s.id));
            paths.insert(s.path);
        }
    }
    Ok((paths, epoch))
}

/// Prepares `<root>/shared/` for a run: creates it, deletes every segment
/// file no complete checkpoint refers to, and returns the run's epoch
/// (above every epoch a complete checkpoint, or `restored`, refers to).
pub(crate) fn prepare(root: &Path, restored: &[SegmentFile]) -> Result<u64, String> {
    let dir = root.join(SHARED_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (refs, mut epoch) =
        referenced(root).map_err(|e| format!("cannot list checkpoints in {}: {e}", root.display()))?;
    for s in restored {
        epoch = epoch.max(epoch_of(s.id));
    }
    sweep_unreferenced(root, &refs);
    if epoch >= EPOCH_MAX {
        return Err(format!(
            "{}: the segments' run counter is exhausted ({EPOCH_MAX} runs); take a savepoint and \
             restore it into a fresh checkpoint directory",
            root.display()
        ));
    }
    Ok(epoch + 1)
}

/// Deletes every `*.seg` file in `<root>/shared/` not in `refs`.
pub(crate) fn sweep_unreferenced(root: &Path, refs: &BTreeSet<String>) {
    let dir = root.join(SHARED_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.ends_with(".seg")) else { continue };
        if !refs.contains(&format!("{SHARED_DIR}/{name}")) {
            remove(&entry.path());
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot delete the state segment {}: {e}", path.display());
    }
}

/// The coordinator's side: segments it was told about, deleted once no
/// retained checkpoint refers to them (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SharedSegments {
    known: BTreeSet<String>,
}

impl SharedSegments {
    /// Notes the segments of an acknowledgement.
    pub fn saw(&mut self, segments: &[SegmentFile]) {
        for s in segments {
            if is_own(&s.path) {
                self.known.insert(s.path.clone());
            }
        }
    }

    /// Notes segments of this root by manifest path (a restored checkpoint's).
    pub fn saw_paths(&mut self, paths: impl IntoIterator<Item = String>) {
        self.known.extend(paths.into_iter().filter(|p| is_own(p)));
    }

    /// After a checkpoint completed and retention ran: deletes every known
    /// segment the remaining complete checkpoints do not refer to. Returns
    /// how many files went.
    pub fn collect(&mut self, root: &Path) -> usize {
        if self.known.is_empty() {
            return 0;
        }
        let refs = match referenced(root) {
            Ok((refs, _)) => refs,
            Err(e) => {
                tracing::warn!("cannot list checkpoints to delete unused segments: {e}");
                return 0;
            }
        };
        let gone: Vec<String> = self.known.difference(&refs).cloned().collect();
        for path in &gone {
            remove(&resolve(root, path));
            self.known.remove(path);
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::{Manifest, complete};

    fn seg(id: u64) -> SegmentFile {
        SegmentFile { path: own_path(id), node: 0, core: 0, id, len: 24 }
    }

    /// Only segments the coordinator was told about and no complete
    /// checkpoint refers to are deleted; unknown files (a core's unpublished
    /// spill) and foreign paths are left alone until the run ends.
    #[test]
    fn collect_deletes_known_unreferenced_segments_only() {
        let root = std::env::temp_dir().join(format!("brisk-segments-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(SHARED_DIR)).unwrap();
        let ids = [1u64, 2, 3, 4, 5];
        for id in ids {
            std::fs::write(root.join(own_path(id)), b"x").unwrap();
        }
        // chk-7 refers to 2 and 3; chk-8 is incomplete and would refer to 4.
        let dir = root.join("chk-7");
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Manifest::new(7, 1, 128, Vec::new());
        m.segments = vec![seg(2), seg(3)];
        complete(&dir, &m).unwrap();
        std::fs::create_dir_all(root.join("chk-8")).unwrap();
        let mut shared = SharedSegments::default();
        shared.saw(&[seg(1), seg(2), seg(4)]);
        shared.saw(&[SegmentFile { path: "/elsewhere/shared/x.seg".into(), ..seg(9) }]);
        assert_eq!(shared.collect(&root), 2, "1 and 4 are known and unreferenced");
        let left: BTreeSet<String> = std::fs::read_dir(root.join(SHARED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = [2, 3, 5].map(file_name).into_iter().collect();
        assert_eq!(left, want);
        // A run's start (or end) removes what no complete checkpoint names.
        assert_eq!(prepare(&root, &[]).unwrap(), epoch_of(3) + 1);
        let left = std::fs::read_dir(root.join(SHARED_DIR)).unwrap().count();
        assert_eq!(left, 2, "5 was swept");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ids_keep_epoch_node_and_core_apart() {
        let a = id_base(3, 4095, 1023);
        assert_eq!(epoch_of(a), 3);
        assert_eq!(epoch_of(a + (1 << 22) - 1), 3, "the counter stays below the core bits");
        assert_ne!(id_base(3, 1, 0), id_base(3, 0, 1));
        assert_ne!(id_base(4, 0, 0), id_base(3, 4095, 1023));
        assert_eq!(file_name(0x1234), "0000000000001234.seg");
        assert_eq!(resolve(Path::new("/r"), "shared/x.seg"), PathBuf::from("/r/shared/x.seg"));
        assert_eq!(resolve(Path::new("/r"), "/o/shared/x.seg"), PathBuf::from("/o/shared/x.seg"));
    }
}
