//! The process's resident set against its cores' state budgets: a soft
//! limit for the whole process.
//!
//! # Design note
//!
//! Under the log backend each core's state charges a
//! [`MemoryBudget`](brisk_state::log::MemoryBudget) and evicts when over it.
//! But the process holds memory no budget sees: exchange batches, sink
//! buffers, the allocator's slack, the executors' own memory, and the pages
//! of segment files that cold reads map. R12 of shared/RELIABILITY.md asks
//! that the process as a whole stay within `cores × budget`. So state gives
//! way to what nothing else bounds, as a garbage collector works harder
//! near a soft memory limit (Go's `GOMEMLIMIT`):
//!
//! - one thread ([`Sampler`]) reads the process's resident set from
//!   `/proc/self/statm` every [`SAMPLE_EVERY`] and publishes it;
//! - every [`GUARD_EVERY_MS`] of processing time each core publishes what
//!   its budget holds, then sets its limit to the configured budget less
//!   its share of the rest (resident − what the process held when the job
//!   started − all cores' charges) and a margin for what grows between
//!   two looks, never below half the budget; then it also keeps free what
//!   its next checkpoint will hold at once (by the last two): its state
//!   files and the log segments its flush seals, which a snapshot builds
//!   in one synchronous step, before anything can evict, never going below
//!   a quarter of the budget. State that was in memory goes to the log, and
//!   the resident set comes back.
//!
//! A core never reads `/proc` itself: the sampler does, on its own thread,
//! and a core reads two atomics.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use brisk_state::log::MemoryUse;

use crate::error::JobError;
use crate::metrics::human_bytes;
use crate::runtime::core::Core;
use crate::runtime::timers::Ticker;

/// How often the sampler reads the process's resident set.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Processing time between two adjustments of a core's state limit.
pub(crate) const GUARD_EVERY_MS: i64 = 20;

/// The margin kept below the budget, as a fraction (1/N) of it: what may
/// grow between two looks (a shard of a hot table resizing, a segment
/// sealing) without taking the resident set past the budget.
const MARGIN_DIVISOR: usize = 32;

/// What the sampler and the cores share.
pub(crate) struct ProcessMemory {
    /// The process's resident set in bytes at the last sample (0: none yet).
    resident: AtomicUsize,
    /// The resident set when sampling began: what the process held before
    /// the job (its program, an embedding service's own memory) is not the
    /// job's to give way to.
    baseline: AtomicUsize,
    /// What each core's budget held when it last looked.
    charged: Box<[AtomicUsize]>,
    /// The configured budget of one core.
    per_core: usize,
}

impl ProcessMemory {
    fn new(cores: usize, per_core: usize) -> Self {
        Self {
            resident: AtomicUsize::new(0),
            baseline: AtomicUsize::new(0),
            charged: (0..cores).map(|_| AtomicUsize::new(0)).collect(),
            per_core,
        }
    }

    /// Core `core`, whose budget holds `used` bytes now: publishes it and
    /// returns the limit its state should keep to.
    pub(crate) fn limit_for(&self, core: usize, used: usize) -> usize {
        self.charged[core].store(used, Ordering::Relaxed);
        let resident = self.resident.load(Ordering::Relaxed);
        if resident == 0 {
            return self.per_core;
        }
        let charged: usize = self.charged.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        let baseline = self.baseline.load(Ordering::Relaxed);
        let others = resident.saturating_sub(baseline + charged) / self.charged.len();
        self.per_core
            .saturating_sub(others + self.per_core / MARGIN_DIVISOR)
            .clamp(self.per_core / 2, self.per_core)
    }

    /// Core `core`, whose budget holds `used` bytes now and must also keep
    /// `reserve` bytes free (its next checkpoint's burst): publishes `used`
    /// and returns its state's limit. The reserve is not resident yet, so
    /// it is not published as charged: that would hide as much of what
    /// the budgets do not hold, and the limit would keep free the larger
    /// of the two instead of both.
    pub(crate) fn limit_with_reserve(&self, core: usize, used: usize, reserve: usize) -> usize {
        self.limit_for(core, used).saturating_sub(reserve).max(self.per_core / 4)
    }

    fn sample(&self, page_bytes: usize) {
        if let Some(pages) = resident_pages() {
            self.resident.store(pages * page_bytes, Ordering::Relaxed);
        }
    }
}

/// The process's resident pages (`/proc/self/statm`'s second field).
// Runs on the sampler thread, never on a core.
#[allow(clippy::disallowed_methods)]
fn resident_pages() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// The sampling thread; dropping it stops the thread and waits for it.
pub(crate) struct Sampler {
    stop: Option<crossbeam::channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling for `cores` cores of `per_core` budget bytes each.
    pub(crate) fn start(cores: usize, per_core: usize) -> Result<(Self, Arc<ProcessMemory>), JobError> {
        let memory = Arc::new(ProcessMemory::new(cores, per_core));
        // SAFETY: sysconf has no preconditions.
        let page_bytes = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        memory.sample(page_bytes);
        memory.baseline.store(memory.resident.load(Ordering::Relaxed), Ordering::Relaxed);
        let (stop, stopped) = crossbeam::channel::bounded::<()>(1);
        let m = memory.clone();
        let thread = std::thread::Builder::new()
            .name("brisk-memory".into())
            .spawn(move || {
                // A timed wait on the stop channel paces the samples; it
                // ends when the sender is dropped.
                while let Err(crossbeam::channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(SAMPLE_EVERY)
                {
                    m.sample(page_bytes);
                }
            })
            .map_err(|e| JobError::Runtime {
                core: 0,
                message: format!("cannot start the memory sampler: {e}"),
            })?;
        Ok((Self { stop: Some(stop), thread: Some(thread) }, memory))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every [`GUARD_EVERY_MS`], sets its core's state limit from the
/// process's resident set ([`ProcessMemory::limit_for`]).
pub(crate) struct MemoryGuard {
    core: Rc<Core>,
    memory: Arc<ProcessMemory>,
    next_ms: Cell<i64>,
}

impl MemoryGuard {
    /// Registers a guard on `core`'s processing-time service.
    pub(crate) fn register(core: &Rc<Core>, memory: Arc<ProcessMemory>) {
        let next_ms = Cell::new(core.now_ms().saturating_add(GUARD_EVERY_MS));
        core.timers.register(Rc::new(Self { core: core.clone(), memory, next_ms }));
    }
}

impl Ticker for MemoryGuard {
    fn next_due_ms(&self) -> Option<i64> {
        Some(self.next_ms.get())
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        if now_ms >= self.next_ms.get() {
            let budget = self.core.memory_budget();
            // The next checkpoint's burst (state files and the segments its
            // flush seals), less what is charged for them already (files
            // and segments in flight, the open segment): built in one
            // synchronous step, charged only as they grow, so the state
            // keeps that room free meanwhile.
            let reserve = self.core.checkpoints.as_ref().map_or(0, |cp| cp.burst_reserve());
            let in_flight = budget.used_by(MemoryUse::StateFiles) + budget.used_by(MemoryUse::Segments);
            let reserve = reserve.saturating_sub(in_flight);
            budget.set_limit(self.memory.limit_with_reserve(self.core.index(), budget.used(), reserve));
            self.next_ms.set(now_ms.saturating_add(GUARD_EVERY_MS));
        }
        Ok(())
    }
}

/// Processing time between two looks of a [`BudgetWatch`].
pub(crate) const WATCH_EVERY_MS: i64 = 100;

/// Under the log backend, every [`WATCH_EVERY_MS`]: publishes what the
/// core's state memory holds (gauges `state_memory_used_bytes`,
/// `state_memory_limit_bytes`, `state_memory_unevictable_bytes`, beside
/// `state_memory_budget_bytes`), and warns
/// when what eviction cannot free (the indexes of cold keys, timers,
/// unwritten segments, checkpoint state files) exceeds the configured
/// budget: the core then stays over its budget whatever it evicts, and
/// the user learns why and what to change instead of watching the
/// process outgrow its budget unexplained. Once, and again each time that
/// part has doubled since; the warnings are counted
/// (`state_memory_over_budget_warnings`).
pub(crate) struct BudgetWatch {
    core: Rc<Core>,
    used: crate::metrics::Gauge,
    limit: crate::metrics::Gauge,
    unevictable: crate::metrics::Gauge,
    /// The configured budget, as a gauge beside them (set once).
    _budget: crate::metrics::Gauge,
    warnings: crate::metrics::Counter,
    /// What eviction could not free at the last warning (0: none yet).
    warned_at: Cell<usize>,
    next_ms: Cell<i64>,
}

impl BudgetWatch {
    /// Registers a watch on `core`'s processing-time service, and its
    /// gauges and counter on the core.
    pub(crate) fn register(core: &Rc<Core>) {
        let watch = Self {
            core: core.clone(),
            used: core.gauge("(core)", "state_memory_used_bytes", 0),
            limit: core.gauge("(core)", "state_memory_limit_bytes", core.memory_budget().limit() as i64),
            unevictable: core.gauge("(core)", "state_memory_unevictable_bytes", 0),
            _budget: core.gauge(
                "(core)",
                "state_memory_budget_bytes",
                core.config.state_memory_budget_bytes as i64,
            ),
            warnings: core.counter("(core)", "state_memory_over_budget_warnings"),
            warned_at: Cell::new(0),
            next_ms: Cell::new(core.now_ms().saturating_add(WATCH_EVERY_MS)),
        };
        core.timers.register(Rc::new(watch));
    }
}

impl Ticker for BudgetWatch {
    fn next_due_ms(&self) -> Option<i64> {
        Some(self.next_ms.get())
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        if now_ms >= self.next_ms.get() {
            let budget = self.core.memory_budget();
            let by_use = MemoryUse::ALL.map(|what| budget.used_by(what));
            let unevictable = unevictable_bytes(&by_use);
            self.used.set(budget.used() as i64);
            self.limit.set(budget.limit() as i64);
            self.unevictable.set(unevictable as i64);
            let configured = self.core.config.state_memory_budget_bytes;
            if let Some(message) = over_budget(self.core.index(), configured, &by_use, self.warned_at.get()) {
                tracing::warn!("{message}");
                self.warned_at.set(unevictable);
                self.warnings.add(1);
            }
            self.next_ms.set(now_ms.saturating_add(WATCH_EVERY_MS));
        }
        Ok(())
    }
}

/// Of what each use holds (in [`MemoryUse::ALL`]'s order), what eviction
/// cannot free: all but the hot entries.
fn unevictable_bytes(by_use: &[usize; 5]) -> usize {
    MemoryUse::ALL.iter().zip(by_use).filter(|(what, _)| **what != MemoryUse::Entries).map(|(_, b)| b).sum()
}

/// The warning for core `core`, whose budget is `budget` bytes and whose
/// uses hold `by_use`, when what eviction cannot free exceeds the budget
/// and has at least doubled since the last warning (`warned_at` bytes; 0:
/// none yet).
fn over_budget(core: usize, budget: usize, by_use: &[usize; 5], warned_at: usize) -> Option<String> {
    let unevictable = unevictable_bytes(by_use);
    if unevictable <= budget || (warned_at > 0 && unevictable < warned_at.saturating_mul(2)) {
        return None;
    }
    let parts: Vec<String> = MemoryUse::ALL
        .iter()
        .zip(by_use)
        .filter(|(what, b)| **what != MemoryUse::Entries && **b > 0)
        .map(|(what, b)| format!("{} {}", what.description(), human_bytes(*b as u64)))
        .collect();
    Some(format!(
        "core {core}: state memory that eviction cannot free ({}: {}) exceeds the core's budget \
         (state_memory_budget_bytes = {budget}, {}), so the core stays over its budget; \
         raise the budget or spread the keys over more cores",
        human_bytes(unevictable as u64),
        parts.join(", "),
        human_bytes(budget as u64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// What eviction cannot free is compared with the configured budget;
    /// a warning names each part, and comes again only once that has
    /// doubled.
    #[test]
    fn state_that_cannot_be_evicted_past_the_budget_is_reported_once_per_doubling() {
        // entries, index, timers, segments, state files
        let within = [100 * MIB, 10 * MIB, 5 * MIB, MIB, 0];
        assert_eq!(unevictable_bytes(&within), 16 * MIB);
        assert_eq!(over_budget(0, 16 * MIB, &within, 0), None, "at the budget, hot entries aside");
        let over = [0, 30 * MIB, 20 * MIB, 0, 2 * MIB];
        let message = over_budget(1, 16 * MIB, &over, 0).expect("52 MiB cannot be evicted");
        assert!(
            message.starts_with("core 1: state memory that eviction cannot free (52.0 MiB: "),
            "{message}"
        );
        for part in ["index of cold keys 30.0 MiB", "timers 20.0 MiB", "checkpoint state files 2.0 MiB"] {
            assert!(message.contains(part), "{part} in {message}");
        }
        assert!(!message.contains("unwritten"), "parts holding nothing are left out: {message}");
        assert!(message.contains("state_memory_budget_bytes = 16777216"), "{message}");
        assert_eq!(over_budget(1, 16 * MIB, &over, 27 * MIB), None, "less than twice the last warning");
        assert!(over_budget(1, 16 * MIB, &over, 26 * MIB).is_some(), "twice the last warning");
        // A small budget reads in KiB and B.
        let small = over_budget(0, 4096, &[0, 0, 900, 5 << 10, 0], 0).expect("over 4 KiB");
        assert!(small.contains("(5.9 KiB: timers 900 B, unwritten log segments 5.0 KiB)"), "{small}");
        assert!(small.contains("state_memory_budget_bytes = 4096, 4.0 KiB)"), "{small}");
    }

    #[test]
    fn a_core_gives_way_by_its_share_of_what_the_budgets_do_not_hold() {
        let m = ProcessMemory::new(2, 128 * MIB);
        // No sample yet: the configured budget.
        assert_eq!(m.limit_for(0, 100 * MIB), 128 * MIB);
        m.resident.store(260 * MIB, Ordering::Relaxed);
        m.charged[1].store(120 * MIB, Ordering::Relaxed);
        // 260 resident, 100 + 120 charged: 40 elsewhere, 20 per core, and
        // a margin of 4.
        assert_eq!(m.limit_for(0, 100 * MIB), 104 * MIB);
        // Never below half the budget.
        m.resident.store(600 * MIB, Ordering::Relaxed);
        assert_eq!(m.limit_for(0, 100 * MIB), 64 * MIB);
        // Charges above the resident set (reserved, untouched pages): the
        // budget less the margin.
        m.resident.store(150 * MIB, Ordering::Relaxed);
        assert_eq!(m.limit_for(0, 100 * MIB), 124 * MIB);
        // What the process held before the job does not count.
        m.baseline.store(40 * MIB, Ordering::Relaxed);
        m.resident.store(300 * MIB, Ordering::Relaxed);
        assert_eq!(m.limit_for(0, 100 * MIB), 104 * MIB);
    }

    /// A core keeps free both its share of what the budgets do not hold
    /// and its next checkpoint's burst, not the larger of the two.
    #[test]
    fn a_core_keeps_free_both_the_rest_and_its_next_burst() {
        let m = ProcessMemory::new(2, 128 * MIB);
        m.resident.store(240 * MIB, Ordering::Relaxed);
        m.charged[1].store(110 * MIB, Ordering::Relaxed);
        // 240 resident, 110 + 110 charged: 10 per core elsewhere, a margin
        // of 4, and a reserve of 12.
        assert_eq!(m.limit_with_reserve(0, 110 * MIB, 12 * MIB), 102 * MIB);
        // Never below a quarter of the budget.
        assert_eq!(m.limit_with_reserve(0, 110 * MIB, 120 * MIB), 32 * MIB);
    }

    #[test]
    fn the_sampler_reads_this_process() {
        let (sampler, m) = Sampler::start(1, 64 * MIB).unwrap();
        let resident = m.resident.load(Ordering::Relaxed);
        assert!(resident > MIB, "resident set {resident} bytes");
        drop(sampler);
    }
}
