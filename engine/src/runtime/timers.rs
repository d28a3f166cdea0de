//! The per-core processing-time service.
//!
//! # Design note
//!
//! Some operators must act when no record arrives: periodic watermark
//! emission, idleness detection, processing-time timers. They register a
//! [`Ticker`] with their core's [`ProcessingTimeService`]. One task per core
//! (the service's) asks every ticker when it is next due, in processing time
//! read from the job's injected clock, and calls [`Ticker::fire`] once that
//! time is reached. Firing happens on the core's thread between other tasks'
//! synchronous pushes, so it never interleaves with element processing; what
//! a ticker pushes downstream is drained like any driving task's output.
//!
//! The service reads the injected clock, so a test with a manual clock
//! controls when things fire. Between checks it sleeps on a glommio timer
//! for at most [`PROCESSING_TIME_POLL_MS_MAX`] of real time (a manual clock
//! can jump at any moment, so the service cannot sleep until the due time).
//! It ends once every data-driving task of its core has ended.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::error::JobError;
use crate::runtime::core::{Core, Owned};

/// Longest real-time sleep between two looks at the injected clock.
pub const PROCESSING_TIME_POLL_MS_MAX: u64 = 10;

/// Something that acts at processing times (owned by one core).
pub(crate) trait Ticker {
    /// The next processing time (epoch ms) at which to fire, if any.
    fn next_due_ms(&self) -> Option<i64>;
    /// Acts for processing time `now_ms` (≥ the due time).
    fn fire(&self, now_ms: i64) -> Result<(), JobError>;
}

/// One core's registry of tickers and the count of its live data tasks.
#[derive(Default)]
pub(crate) struct ProcessingTimeService {
    tickers: RefCell<Vec<Rc<dyn Ticker>>>,
    live_data_tasks: Cell<usize>,
}

impl ProcessingTimeService {
    pub fn register(&self, ticker: Rc<dyn Ticker>) {
        self.tickers.borrow_mut().push(ticker);
    }

    pub fn has_tickers(&self) -> bool {
        !self.tickers.borrow().is_empty()
    }

    /// A data-driving task started; the returned guard marks its end.
    pub fn data_task_started(self: &Rc<Self>) -> DataTaskGuard {
        self.live_data_tasks.set(self.live_data_tasks.get() + 1);
        DataTaskGuard(self.clone())
    }
}

/// Marks the end of a data-driving task when dropped.
pub(crate) struct DataTaskGuard(Rc<ProcessingTimeService>);

impl Drop for DataTaskGuard {
    fn drop(&mut self) {
        self.0.live_data_tasks.set(self.0.live_data_tasks.get() - 1);
    }
}

/// The service task: fires due tickers until the core's data tasks are done.
pub(crate) async fn run_processing_time(
    core: Rc<Core>,
    service: Rc<ProcessingTimeService>,
) -> Result<(), JobError> {
    let mut owned = Owned::new(core.clone());
    loop {
        if service.live_data_tasks.get() == 0 {
            return Ok(());
        }
        if core.is_cancelled() {
            return Err(JobError::Cancelled { core: core.index() });
        }
        let now = core.now_ms();
        let tickers: Vec<Rc<dyn Ticker>> = service.tickers.borrow().clone();
        let mut next: Option<i64> = None;
        for t in &tickers {
            let due = match t.next_due_ms() {
                Some(due) if due <= now => {
                    t.fire(now)?;
                    owned.after_push().await?;
                    // Its next due time counts for the wait below.
                    t.next_due_ms()
                }
                due => due,
            };
            if let Some(due) = due {
                next = Some(next.map_or(due, |n: i64| n.min(due)));
            }
        }
        owned.flush_all().await?;
        let wait_ms = next.map_or(PROCESSING_TIME_POLL_MS_MAX, |due| {
            (due.saturating_sub(core.now_ms())).clamp(0, PROCESSING_TIME_POLL_MS_MAX as i64) as u64
        });
        glommio::timer::sleep(Duration::from_millis(wait_ms.max(1))).await;
    }
}

/// Every [`MEMORY_REPORT_MS`] of processing time, logs the core's state
/// memory ([`Core::log_memory`]). Registered on each core under the log
/// backend when the `brisk::memory` target is enabled at debug level.
pub(crate) struct MemoryReport {
    core: Rc<Core>,
    next_ms: Cell<i64>,
}

/// Processing time between two memory reports.
pub(crate) const MEMORY_REPORT_MS: i64 = 10_000;

impl MemoryReport {
    pub fn register(core: &Rc<Core>) {
        let next_ms = Cell::new(core.now_ms().saturating_add(MEMORY_REPORT_MS));
        core.timers.register(Rc::new(Self { core: core.clone(), next_ms }));
    }
}

impl Ticker for MemoryReport {
    fn next_due_ms(&self) -> Option<i64> {
        Some(self.next_ms.get())
    }

    fn fire(&self, now_ms: i64) -> Result<(), JobError> {
        if now_ms >= self.next_ms.get() {
            self.core.log_memory();
            self.next_ms.set(now_ms.saturating_add(MEMORY_REPORT_MS));
        }
        Ok(())
    }
}
