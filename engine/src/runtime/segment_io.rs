//! State log segments on real files: written through glommio DMA files
//! (io_uring, O_DIRECT) in a background task, read back through `memmap2`.
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

use brisk_state::log::{SegmentBytes, SegmentIo};

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
}

impl GlommioSegmentIo {
    pub fn new(dir: PathBuf, deletions: Option<crossbeam::channel::Sender<PathBuf>>) -> Self {
        Self { dir, deletions, done: Rc::default(), in_flight: Rc::default() }
    }

    fn path(dir: &Path, id: u64) -> PathBuf {
        dir.join(format!("{id:016x}.seg"))
    }
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
        in_flight.set(in_flight.get() + 1);
        glommio::spawn_local(async move {
            let r = crate::checkpoint::tracker::write_durably(&path, &[], &bytes).await;
            in_flight.set(in_flight.get() - 1);
            done.borrow_mut().push((id, r));
        })
        .detach();
    }

    fn poll(&mut self, done: &mut Vec<(u64, io::Result<()>)>) {
        done.append(&mut self.done.borrow_mut());
    }

    fn open(&mut self, id: u64) -> io::Result<SegmentBytes> {
        let path = Self::path(&self.dir, id);
        // Opening and mapping are metadata calls (no data is read); the
        // design reads state through the map.
        #[allow(clippy::disallowed_methods)]
        let file = std::fs::File::open(&path)?;
        // SAFETY: segment files are written once, before this map, and never
        // modified afterwards (the log is append-only and a sealed segment is
        // immutable); only this process writes into the run's directory.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Rc::new(Mapped(map)))
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
