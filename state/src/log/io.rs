//! How a log reaches storage: the [`SegmentIo`] trait, and [`SimDisk`], the
//! seeded storage twin tests use to tear writes, lose what was not fsynced
//! and fail with ENOSPC or EIO.
//!
//! A log never waits for storage. It hands a sealed segment to
//! [`SegmentIo::write`] and learns the outcome later from
//! [`SegmentIo::poll`]; until then it keeps the bytes and serves reads from
//! them. The engine's implementation writes through glommio DMA files
//! (io_uring) and maps written segments with `memmap2`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

/// The bytes of a written segment, for reading (a memory map of the file).
pub type SegmentBytes = Rc<dyn AsRef<[u8]>>;

/// Non-blocking storage for sealed segments.
pub trait SegmentIo {
    /// Starts writing segment `id` (all of `bytes`) and making it durable.
    /// Must not block: the outcome comes from [`poll`](Self::poll).
    fn write(&mut self, id: u64, bytes: Rc<Vec<u8>>);
    /// Appends the outcome of every write that finished since the last call.
    fn poll(&mut self, done: &mut Vec<(u64, io::Result<()>)>);
    /// The bytes of a written segment.
    fn open(&mut self, id: u64) -> io::Result<SegmentBytes>;
    /// Deletes segment `id` (best effort; a failure leaves a stray file behind).
    fn delete(&mut self, id: u64);
    /// Writes still in flight.
    fn in_flight(&self) -> usize;
}

/// Faults a [`SimDisk`] injects.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Bytes the disk holds; a write beyond fails with ENOSPC after writing
    /// what fits (not durably).
    pub capacity: Option<usize>,
    /// Probability that a write fails with EIO (after writing a random part,
    /// not durably).
    pub eio: f64,
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    data: Vec<u8>,
    /// Bytes that survive a crash.
    durable: usize,
}

enum Stage {
    /// Accepted, nothing on the disk yet.
    Queued(Rc<Vec<u8>>),
    /// Written to the (volatile) cache, not yet fsynced.
    Written,
}

/// The disk behind [`SimIo`]: files by segment id, what of each is durable,
/// and the faults to inject. Writes progress one stage per
/// [`SimIo::poll`] (queued → written → durable), so a crash can fall between
/// any two of them.
pub struct SimDisk {
    files: BTreeMap<u64, SimFile>,
    pending: Vec<(u64, Stage)>,
    rng: fastrand::Rng,
    /// Faults in force.
    pub faults: Faults,
    /// Writes failed with ENOSPC so far.
    pub enospc_count: u64,
    /// Writes failed with EIO so far.
    pub eio_count: u64,
    /// Crashes so far.
    pub crashes: u64,
}

impl SimDisk {
    /// An empty disk whose random choices follow `seed`.
    pub fn new(seed: u64) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            files: BTreeMap::new(),
            pending: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            faults: Faults::default(),
            enospc_count: 0,
            eio_count: 0,
            crashes: 0,
        }))
    }

    fn used(&self) -> usize {
        self.files.values().map(|f| f.data.len()).sum()
    }

    /// The power fails: every write in flight is lost, and every file keeps
    /// its durable bytes plus a random part of the rest, whose last bytes may
    /// be garbage (a torn sector).
    pub fn crash(&mut self) {
        self.crashes += 1;
        self.pending.clear();
        let rng = &mut self.rng;
        for f in self.files.values_mut() {
            let volatile = f.data.len() - f.durable;
            let keep = f.durable + if volatile == 0 { 0 } else { rng.usize(0..=volatile) };
            f.data.truncate(keep);
            if keep > f.durable && rng.bool() {
                let from = rng.usize(f.durable..keep);
                for b in &mut f.data[from..keep] {
                    *b = rng.u8(..);
                }
            }
        }
        self.files.retain(|_, f| !f.data.is_empty() || f.durable > 0);
    }

    /// The ids of the segments on the disk.
    pub fn segments(&self) -> Vec<u64> {
        self.files.keys().copied().collect()
    }

    /// A copy of segment `id`'s bytes as they are now.
    pub fn read(&self, id: u64) -> Option<Vec<u8>> {
        self.files.get(&id).map(|f| f.data.clone())
    }

    /// Segment `id`'s bytes, for a test to damage.
    pub fn bytes_mut(&mut self, id: u64) -> Option<&mut Vec<u8>> {
        self.files.get_mut(&id).map(|f| &mut f.data)
    }

    fn step(&mut self, done: &mut Vec<(u64, io::Result<()>)>) {
        let pending = std::mem::take(&mut self.pending);
        for (id, stage) in pending {
            match stage {
                Stage::Queued(bytes) => {
                    let free = self.faults.capacity.map(|c| c.saturating_sub(self.used()));
                    let fail_eio = self.faults.eio > 0.0 && self.rng.f64() < self.faults.eio;
                    let fits = free.is_none_or(|free| free >= bytes.len());
                    let written = if !fits {
                        free.unwrap_or(0)
                    } else if fail_eio {
                        self.rng.usize(0..=bytes.len())
                    } else {
                        bytes.len()
                    };
                    let file = self.files.entry(id).or_default();
                    file.data.clear();
                    file.durable = 0;
                    file.data.extend_from_slice(&bytes[..written]);
                    if !fits {
                        self.enospc_count += 1;
                        done.push((id, Err(io::Error::from_raw_os_error(28))));
                    } else if fail_eio {
                        self.eio_count += 1;
                        done.push((id, Err(io::Error::from_raw_os_error(5))));
                    } else {
                        self.pending.push((id, Stage::Written));
                    }
                }
                Stage::Written => {
                    if let Some(f) = self.files.get_mut(&id) {
                        f.durable = f.data.len();
                    }
                    done.push((id, Ok(())));
                }
            }
        }
    }
}

/// [`SegmentIo`] over a [`SimDisk`].
pub struct SimIo(pub Rc<RefCell<SimDisk>>);

impl SegmentIo for SimIo {
    fn write(&mut self, id: u64, bytes: Rc<Vec<u8>>) {
        self.0.borrow_mut().pending.push((id, Stage::Queued(bytes)));
    }

    fn poll(&mut self, done: &mut Vec<(u64, io::Result<()>)>) {
        self.0.borrow_mut().step(done);
    }

    fn open(&mut self, id: u64) -> io::Result<SegmentBytes> {
        match self.0.borrow().files.get(&id) {
            Some(f) => Ok(Rc::new(f.data.clone())),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn delete(&mut self, id: u64) {
        self.0.borrow_mut().files.remove(&id);
    }

    fn in_flight(&self) -> usize {
        self.0.borrow().pending.len()
    }
}
