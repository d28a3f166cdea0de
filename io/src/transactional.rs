//! A file sink with exactly-once output through two-phase commit (Flink's
//! `FileSink` with its committer), or at-least-once output.
//!
//! Exactly-once, per core, in the output directory:
//!
//! ```text
//! .part-c0-3.inprogress        records since the last barrier (hidden)
//! .part-0000000007-c0.pending  pre-committed at barrier 7: durable, hidden
//! part-0000000007-c0           committed once checkpoint 7 is complete
//! part-final-c0                the end of input, committed by the job's last checkpoint
//! ```
//!
//! At a barrier the writer flushes, fsyncs and renames its in-progress file
//! to a pending name (phase one) and reports it; the coordinator renames it
//! to its committed name once the checkpoint's manifest is durable (phase
//! two), and again, idempotently, when restoring that checkpoint. A pending
//! file whose checkpoint failed is reported again at the next barrier until
//! a checkpoint that carries it completes. On start every leftover hidden
//! file of this writer's cores is deleted: it belongs to a checkpoint that
//! never completed, and its records will be produced again by the replay.
//! So `cat OUT/part-*` is exactly the committed output, each record once.
//!
//! At-least-once: records go straight to visible `part-c<core>-<n>` files,
//! flushed and fsynced at every barrier; after a restore, what was written
//! after the restored checkpoint appears again.
//!
//! Without checkpointing both modes write visible files, committed at the
//! end of input.

use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brisk_engine::checkpoint::store::Commit;
use brisk_engine::{Batch, CheckpointProgress, Counter, Sink, SinkContext, SinkError, SinkWriter};

use crate::sink::{DisplayLines, Encoder, FnLines, SINK_BUFFER_BYTES};

/// What a [`TransactionalFileSink`] promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Each record committed exactly once (two-phase commit).
    ExactlyOnce,
    /// Each record at least once: after a failure some appear twice.
    AtLeastOnce,
}

/// Writes records into part files of a directory, committed with checkpoints.
#[derive(Clone)]
pub struct TransactionalFileSink<E> {
    dir: Arc<PathBuf>,
    encoder: E,
    guarantee: DeliveryGuarantee,
}

impl TransactionalFileSink<DisplayLines> {
    /// One line per record (`Display`) into part files of `dir`, exactly once.
    pub fn lines(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: Arc::new(dir.as_ref().to_path_buf()),
            encoder: DisplayLines,
            guarantee: DeliveryGuarantee::ExactlyOnce,
        }
    }
}

impl<F> TransactionalFileSink<FnLines<F>> {
    /// Lines written by `f` into part files of `dir`, exactly once.
    pub fn lines_with(dir: impl AsRef<Path>, f: F) -> Self {
        Self {
            dir: Arc::new(dir.as_ref().to_path_buf()),
            encoder: FnLines(f),
            guarantee: DeliveryGuarantee::ExactlyOnce,
        }
    }
}

impl<E> TransactionalFileSink<E> {
    /// Chooses the delivery guarantee (default: exactly once).
    pub fn with_guarantee(mut self, guarantee: DeliveryGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }
}

impl<T: 'static, E: Encoder<T>> Sink<T> for TransactionalFileSink<E> {
    type Writer = TransactionalWriter<T, E>;

    fn name(&self) -> String {
        format!("transactional_file({})", self.dir.display())
    }

    fn create_writer(&self, ctx: &SinkContext) -> Result<Self::Writer, SinkError> {
        ctx.declare_output_dir(self.dir.as_ref().clone());
        Ok(TransactionalWriter {
            dir: self.dir.clone(),
            encoder: self.encoder.clone(),
            exactly_once: self.guarantee == DeliveryGuarantee::ExactlyOnce && ctx.checkpointing(),
            core: ctx.core(),
            cores: ctx.cores(),
            buf: Vec::new(),
            file: None,
            seq: 0,
            pending: Vec::new(),
            final_commits: Vec::new(),
            progress: ctx.checkpoint_progress(),
            started: false,
            records: ctx.counter("records_written"),
            _type: PhantomData,
        })
    }
}

/// The file being written.
struct Open {
    file: File,
    path: PathBuf,
}

/// One core's writer of a [`TransactionalFileSink`].
pub struct TransactionalWriter<T, E> {
    dir: Arc<PathBuf>,
    encoder: E,
    exactly_once: bool,
    core: usize,
    cores: usize,
    buf: Vec<u8>,
    file: Option<Open>,
    seq: u64,
    /// Pre-committed, not yet known committed.
    pending: Vec<Commit>,
    final_commits: Vec<Commit>,
    progress: CheckpointProgress,
    started: bool,
    records: Counter,
    _type: PhantomData<fn(T)>,
}

/// What a blocking job on the helper thread does to the writer's file.
enum Step {
    /// Append the buffer (opening a file first if none is open).
    Append,
    /// Append, fsync, close, and rename to `to` (nothing if no file).
    Seal { to: PathBuf },
}

impl<T, E> TransactionalWriter<T, E> {
    fn in_progress_name(&self) -> PathBuf {
        if self.exactly_once {
            self.dir.join(format!(".part-c{}-{}.inprogress", self.core, self.seq))
        } else {
            self.dir.join(format!("part-c{}-{}-{}", self.core, std::process::id(), self.seq))
        }
    }

    /// Runs `step` on glommio's blocking pool (file I/O never runs on the core).
    async fn run(&mut self, step: Step) -> Result<bool, SinkError> {
        let cleanup =
            (!self.started && self.exactly_once).then(|| (self.dir.as_ref().clone(), self.core, self.cores));
        let create_dir = (!self.started).then(|| self.dir.as_ref().clone());
        self.started = true;
        let data = std::mem::take(&mut self.buf);
        let mut file = self.file.take();
        let next_path = self.in_progress_name();
        let (file, data, result) = glommio::executor()
            .spawn_blocking(move || {
                let r = (|| -> std::io::Result<bool> {
                    if let Some(dir) = create_dir {
                        std::fs::create_dir_all(&dir)?;
                    }
                    if let Some((dir, core, cores)) = cleanup {
                        remove_leftovers(&dir, core, cores)?;
                    }
                    if !data.is_empty() && file.is_none() {
                        file = Some(Open { file: File::create(&next_path)?, path: next_path });
                    }
                    if let Some(open) = file.as_mut()
                        && !data.is_empty()
                    {
                        open.file.write_all(&data)?;
                    }
                    match step {
                        Step::Append => Ok(false),
                        Step::Seal { to } => match file.take() {
                            None => Ok(false),
                            Some(open) => {
                                open.file.sync_all()?;
                                drop(open.file);
                                std::fs::rename(&open.path, &to)?;
                                File::open(to.parent().unwrap_or(Path::new(".")))?.sync_all()?;
                                Ok(true)
                            }
                        },
                    }
                })();
                (file, data, r)
            })
            .await;
        self.file = file;
        let mut data = data;
        data.clear();
        self.buf = data;
        result.map_err(|e| SinkError(format!("transactional file sink in '{}': {e}", self.dir.display())))
    }

    async fn seal(&mut self, checkpoint: Option<u64>) -> Result<Option<Commit>, SinkError> {
        let tag = checkpoint.map_or_else(|| "final".to_string(), |id| format!("{id:010}"));
        let (from, to) = if self.exactly_once {
            (
                self.dir.join(format!(".part-{tag}-c{}.pending", self.core)),
                self.dir.join(format!("part-{tag}-c{}", self.core)),
            )
        } else {
            let p = self.file.as_ref().map(|o| o.path.clone()).unwrap_or_default();
            (p.clone(), p)
        };
        let sealed = self.run(Step::Seal { to: from.clone() }).await?;
        self.seq += 1;
        Ok((sealed && self.exactly_once).then(|| Commit { checkpoint: checkpoint.unwrap_or(0), from, to }))
    }
}

/// Deletes hidden in-progress and pending files left by writers that map to
/// `core` now (old core index modulo the current core count).
fn remove_leftovers(dir: &Path, core: usize, cores: usize) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let hidden =
            name.starts_with(".part-") && (name.ends_with(".inprogress") || name.ends_with(".pending"));
        if !hidden {
            continue;
        }
        let owner = name
            .trim_end_matches(".inprogress")
            .trim_end_matches(".pending")
            .split('-')
            .find_map(|f| f.strip_prefix('c').and_then(|n| n.parse::<usize>().ok()));
        if owner.is_some_and(|o| o % cores == core) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl<T: 'static, E: Encoder<T>> SinkWriter<T> for TransactionalWriter<T, E> {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        self.records.add(batch.len() as u64);
        self.encoder.encode(&batch.records, &mut self.buf).map_err(SinkError)?;
        batch.clear();
        Ok(())
    }

    fn wants_flush(&self) -> bool {
        self.buf.len() >= SINK_BUFFER_BYTES
    }

    fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    async fn flush(&mut self, end_of_input: bool) -> Result<(), SinkError> {
        if !end_of_input {
            if !self.buf.is_empty() || !self.started {
                self.run(Step::Append).await?;
            }
            return Ok(());
        }
        // Without checkpoints (or at least once) the last file is simply
        // made durable where it is; exactly once, it is pre-committed for
        // the job's final checkpoint.
        let commit = self.seal(None).await?;
        let completed = self.progress.completed();
        self.pending.retain(|c| c.checkpoint > completed);
        self.final_commits = self.pending.clone();
        self.final_commits.extend(commit);
        Ok(())
    }

    async fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<Commit>, SinkError> {
        let commit = self.seal(Some(checkpoint)).await?;
        let completed = self.progress.completed();
        self.pending.retain(|c| c.checkpoint > completed);
        self.pending.extend(commit);
        Ok(self.pending.clone())
    }

    fn final_commits(&mut self) -> Vec<Commit> {
        std::mem::take(&mut self.final_commits)
    }
}
