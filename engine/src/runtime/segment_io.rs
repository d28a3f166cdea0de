//! State log segments on real files: written through glommio buffered
//! files (io_uring, through the page cache) in a background task, read back
//! through `memmap2`.
//!
//! A core never waits here: [`GlommioSegmentIo::write`] spawns the write and
//! returns; the log learns the outcome from [`SegmentIo::poll`]. Reading a
//! record of a mapped segment is a memory access; if its page is not in the
//! page cache that access faults and reads from the disk on the core's
//! thread, the one blocking read the design accepts (as RocksDB's block
//! reads do), bounded by one page per cold record.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use brisk_state::log::{SegmentBytes, SegmentIo};

/// A core's segment writes in flight, and a wake-up whenever one finishes:
/// checkpoints wait on it for their segments to be durable, a core's
/// driving tasks wait on it before taking more input while too many bytes
/// are unwritten (see [`Owned::after_push`](super::core::Owned::after_push)),
/// and a core waits for it to drain before its executor ends (a write task
/// dropped with its executor leaves glommio's blocking thread nowhere to
/// answer).
#[derive(Default)]
pub(crate) struct WriteSignal {
    in_flight: Cell<usize>,
    bytes_in_flight: Cell<usize>,
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl WriteSignal {
    pub(super) fn started(&self, bytes: usize) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.bytes_in_flight.set(self.bytes_in_flight.get() + bytes);
    }

    pub(super) fn finished(&self, bytes: usize) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.bytes_in_flight.set(self.bytes_in_flight.get() - bytes);
        self.generation.set(self.generation.get() + 1);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Counts finished writes; compare with [`changed_since`](Self::changed_since).
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Resolves once a write has finished after [`generation`](Self::generation)
    /// returned `seen`.
    pub fn changed_since(&self, seen: u64) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Bytes of segments whose write has not finished.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight.get()
    }

    /// Resolves when no write is in flight.
    pub async fn idle(&self) {
        while self.in_flight.get() > 0 {
            let seen = self.generation();
            self.changed_since(seen).await;
        }
    }

    /// Resolves once at most `bound` bytes are in flight.
    pub async fn at_most(&self, bound: usize) {
        while self.bytes_in_flight.get() > bound {
            let seen = self.generation();
            self.changed_since(seen).await;
        }
    }
}

/// Finished writes and their outcomes.
type Done = Rc<RefCell<Vec<(u64, io::Result<()>)>>>;

/// [`SegmentIo`] over files named `<id as 16 hex digits>.seg` in one directory.
pub(crate) struct GlommioSegmentIo {
    dir: PathBuf,
    /// The run's deleter thread (`None`: compacted files stay until the
    /// run's directory is removed).
    deletions: Option<crossbeam::channel::Sender<PathBuf>>,
    done: Done,
    in_flight: Rc<Cell<usize>>,
    /// The core's count of segment writes.
    signal: Rc<WriteSignal>,
}

impl GlommioSegmentIo {
    pub fn new(
        dir: PathBuf,
        deletions: Option<crossbeam::channel::Sender<PathBuf>>,
        signal: Rc<WriteSignal>,
    ) -> Self {
        Self { dir, deletions, done: Rc::default(), in_flight: Rc::default(), signal }
    }

    fn path(dir: &Path, id: u64) -> PathBuf {
        dir.join(crate::checkpoint::segments::file_name(id))
    }
}

/// The largest single write of a segment (see [`write_through_page_cache`]).
///
/// It also sets how much a cold read maps: ext4 caches a buffered write as
/// one folio up to the write's size, and a fault on a mapped file maps the
/// whole folio into the process. Written in 512 KiB chunks, every cold read
/// added about 512 KiB to the resident set (R12's peaks of mapped pages);
/// at 64 KiB, a fault maps what the kernel's fault-around maps anyway.
const WRITE_CHUNK_BYTES: usize = 64 << 10;

/// Writes a segment file through the page cache (io_uring, buffered) and
/// makes it durable. Buffered, not O_DIRECT: cold rows are read back through
/// a map of the file, and a segment written around the page cache would
/// make every such read a disk read (measured: 16 µs per read-back on this
/// VM, 70 k events/s for KW at a budget of a fifth of the state).
async fn write_through_page_cache(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let err = |e: glommio::GlommioError<()>| io::Error::other(e.to_string());
    let file = glommio::io::BufferedFile::create(path).await.map_err(err)?;
    let mut at = 0;
    while at < bytes.len() {
        // The ring takes ownership of what it writes: a copy, made a chunk
        // at a time so that a segment in flight costs its size plus one
        // chunk, not twice its size.
        let end = bytes.len().min(at + WRITE_CHUNK_BYTES);
        let n = file.write_at(bytes[at..end].to_vec(), at as u64).await.map_err(err)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "segment write made no progress"));
        }
        at += n;
    }
    file.fdatasync().await.map_err(err)?;
    file.close().await.map_err(err)?;
    Ok(())
}

/// Maps the segment file at `path` (a restored checkpoint's).
pub(crate) fn map_file(path: &Path) -> io::Result<SegmentBytes> {
    // Opening and mapping are metadata calls; the data is read through the
    // map as the log replays it.
    #[allow(clippy::disallowed_methods)]
    let file = std::fs::File::open(path)?;
    // SAFETY: a checkpoint's segment files are immutable: written once,
    // before the checkpoint completed, and never modified (only deleted once
    // no checkpoint refers to them).
    let map = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Rc::new(Mapped(map)))
}

/// A memory-mapped segment file.
struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl SegmentIo for GlommioSegmentIo {
    fn write(&mut self, id: u64, bytes: Rc<Vec<u8>>) {
        let path = Self::path(&self.dir, id);
        let done = self.done.clone();
        let in_flight = self.in_flight.clone();
        let signal = self.signal.clone();
        let len = bytes.len();
        in_flight.set(in_flight.get() + 1);
        signal.started(len);
        glommio::spawn_local(async move {
            let r = write_through_page_cache(&path, &bytes).await;
            in_flight.set(in_flight.get() - 1);
            done.borrow_mut().push((id, r));
            signal.finished(len);
        })
        .detach();
    }

    fn poll(&mut self, done: &mut Vec<(u64, io::Result<()>)>) {
        done.append(&mut self.done.borrow_mut());
    }

    fn open(&mut self, id: u64) -> io::Result<SegmentBytes> {
        // Segment files are written once, before this map, and never
        // modified afterwards (the log is append-only and a sealed segment
        // is immutable).
        map_file(&Self::path(&self.dir, id))
    }

    fn delete(&mut self, id: u64) {
        // Queued for the run's deleter thread, never done on the core (and
        // never left in flight on an executor that may end first). With the
        // queue full the file stays until the run's directory is removed.
        if let Some(tx) = &self.deletions
            && tx.try_send(Self::path(&self.dir, id)).is_err()
        {
            tracing::debug!("state segment deletion queue full; segment {id:016x} stays until the run ends");
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}
