//! Exchanges: moving batches between cores.
//!
//! # Design note
//!
//! One exchange edge of the job graph becomes a `cores × cores` matrix of
//! bounded single-producer/single-consumer channels (glommio's
//! `shared_channel`: a lock-free ring plus an eventfd that wakes a parked
//! receiving executor). Channel `(i, j)` carries [`Message`]s from core `i` to
//! core `j`, data and control in one FIFO, so a watermark or end-of-input can
//! never overtake the records sent before it. Beside each channel runs a
//! return path (a crossbeam `ArrayQueue`) on which the receiver hands emptied
//! batches back for reuse: no allocation per batch in steady state.
//!
//! The sending side is an [`Outlet`]: records are routed into one staging
//! batch per destination; a full staging batch is sent at once if the channel
//! has room and nothing is queued before it, otherwise it waits in that
//! destination's pending queue until the driving task drains it (which is
//! backpressure: the driver takes no more input meanwhile). A partial staging
//! batch goes out when the flush deadline passes or the driver runs out of
//! input, which bounds latency at low load.
//!
//! Invariants: per channel, messages are sent in the order they were staged
//! (the fast path is taken only when the pending queue is empty and no send is
//! in flight); every buffer is bounded (`BATCH_RECORDS_MAX` records per batch,
//! `exchange_queue_batches` per channel, pending ≤ what one input batch
//! produced).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use brisk_state::{MaxParallelism, key_hash};
use crossbeam::queue::ArrayQueue;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;
use glommio::{GlommioError, ResourceType};

use crate::batch::{BATCH_RECORDS_MAX, Batch, Control, Message, Timestamp};
use crate::error::{JobError, OperatorInfo};
use crate::metrics::Counter;
use crate::runtime::core::{Core, LocalFuture, Outlet, Owned, Push};

/// Emptied batches a receiver may hand back beyond the channel's capacity.
const RECYCLE_SLACK_BATCHES: usize = 4;

type Aux<P> = Arc<ChannelAux<P>>;
/// The receiving end of one channel, with what both ends share.
pub(crate) type InEnd<P> = (ConnectedReceiver<Message<P>>, Aux<P>);
/// The sending end of one channel, with what both ends share.
pub(crate) type OutEnd<P> = (ConnectedSender<Message<P>>, Aux<P>);

/// What the two ends of one channel share besides the channel itself.
pub(crate) struct ChannelAux<P> {
    /// Emptied batches the receiver hands back for reuse.
    recycle: ArrayQueue<Batch<P>>,
    /// Messages the sender has put in the channel (counted after each put).
    ///
    /// The receiver compares it with what it took to know that a message
    /// is waiting without polling the channel. That matters: glommio's
    /// shared channel keeps a clone of the task's waker at every poll that
    /// finds it empty, and wakes only as many as there are messages when
    /// some arrive. A receiver that polled once to look, then again to wait,
    /// left one waker behind per idle spell; after 32,767 of them glommio's
    /// task reference count overflowed and the core panicked inside its
    /// reactor, leaving the job hung (seen in R12 after 35 s at 1.1 M
    /// events/s). Now a receiver polls an empty channel only to wait.
    sent: AtomicU64,
}
type UnconnectedIn<P> = (SharedReceiver<Message<P>>, Aux<P>);

/// One core's unconnected ends of one exchange edge: a sender to every core
/// and a receiver from every core. Crosses threads once, at job start.
pub(crate) struct ExchangeEnds<P: Send + 'static> {
    senders: Vec<(SharedSender<Message<P>>, Aux<P>)>,
    receivers: Vec<UnconnectedIn<P>>,
}

/// Creates the channel matrix of one exchange edge; element `c` belongs to core `c`.
pub(crate) fn exchange_matrix<P: Send + 'static>(cores: usize, queue_batches: usize) -> Vec<ExchangeEnds<P>> {
    let mut ends: Vec<ExchangeEnds<P>> =
        (0..cores).map(|_| ExchangeEnds { senders: Vec::new(), receivers: Vec::new() }).collect();
    let mut receivers: Vec<Vec<Option<UnconnectedIn<P>>>> =
        (0..cores).map(|_| (0..cores).map(|_| None).collect()).collect();
    for (from, from_ends) in ends.iter_mut().enumerate() {
        for to_receivers in receivers.iter_mut() {
            let (tx, rx) = shared_channel::new_bounded(queue_batches);
            let aux = Arc::new(ChannelAux {
                recycle: ArrayQueue::new(queue_batches + RECYCLE_SLACK_BATCHES),
                sent: AtomicU64::new(0),
            });
            from_ends.senders.push((tx, aux.clone()));
            to_receivers[from] = Some((rx, aux));
        }
    }
    for (to, row) in receivers.into_iter().enumerate() {
        ends[to].receivers = row.into_iter().map(|r| r.expect("every pair has a channel")).collect();
    }
    ends
}

/// Type-erased unconnected ends, so the runtime can connect every edge
/// without knowing its record type.
pub(crate) trait UnconnectedEnds: Send {
    fn connect(self: Box<Self>) -> LocalFuture<'static, Box<dyn Any>>;
}

/// Connected ends of one exchange edge on one core.
pub(crate) struct ConnectedEnds<P: Send + 'static> {
    pub senders: Vec<OutEnd<P>>,
    pub receivers: Vec<InEnd<P>>,
}

impl<P: Send + 'static> UnconnectedEnds for ExchangeEnds<P> {
    fn connect(self: Box<Self>) -> LocalFuture<'static, Box<dyn Any>> {
        Box::pin(async move {
            // Each connect is a rendezvous with the peer core (possibly this
            // one), so all of them must be in progress at once.
            let senders: Vec<_> =
                self.senders.into_iter().map(|(tx, r)| (glommio::spawn_local(tx.connect()), r)).collect();
            let receivers: Vec<_> =
                self.receivers.into_iter().map(|(rx, r)| (glommio::spawn_local(rx.connect()), r)).collect();
            let mut out = ConnectedEnds { senders: Vec::new(), receivers: Vec::new() };
            for (t, r) in senders {
                out.senders.push((t.await, r));
            }
            for (t, r) in receivers {
                out.receivers.push((t.await, r));
            }
            Box::new(out) as Box<dyn Any>
        })
    }
}

/// Where a routed record goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dest {
    One(usize),
    All,
}

/// Decides each record's destination core and what is sent for it.
pub(crate) trait Router<T>: 'static {
    type Out: Clone + Send + 'static;
    fn route(&mut self, record: T) -> (Dest, Self::Out);
}

/// Key-hash routing: the key group of the key's hash picks the core; the hash
/// travels with the record so the keyed operator does not hash again.
pub(crate) struct HashRouter<F> {
    pub key_of_hash: F,
    pub max_parallelism: MaxParallelism,
    pub cores: usize,
}

impl<T: Clone + Send + 'static, F: FnMut(&T) -> u64 + 'static> Router<T> for HashRouter<F> {
    type Out = (u64, T);
    #[inline]
    fn route(&mut self, record: T) -> (Dest, (u64, T)) {
        let hash = (self.key_of_hash)(&record);
        (Dest::One(self.max_parallelism.owner_of_hash(hash, self.cores)), (hash, record))
    }
}

/// Builds the hashing closure of a key selector.
pub(crate) fn hash_key_with<T, K: std::hash::Hash>(mut key_fn: impl FnMut(&T) -> K) -> impl FnMut(&T) -> u64 {
    move |r| key_hash(&key_fn(r))
}

/// Round-robin over all cores, record by record (Flink's `rebalance`).
pub(crate) struct RoundRobin {
    pub next: usize,
    pub cores: usize,
}

impl<T: Clone + Send + 'static> Router<T> for RoundRobin {
    type Out = T;
    #[inline]
    fn route(&mut self, record: T) -> (Dest, T) {
        let d = self.next;
        self.next = if d + 1 == self.cores { 0 } else { d + 1 };
        (Dest::One(d), record)
    }
}

/// Every record to every core (Flink's `broadcast`).
pub(crate) struct Broadcast;

impl<T: Clone + Send + 'static> Router<T> for Broadcast {
    type Out = T;
    #[inline]
    fn route(&mut self, record: T) -> (Dest, T) {
        (Dest::All, record)
    }
}

/// Every record to core 0 (Flink's `global`; used by single-file sinks).
pub(crate) struct Global;

impl<T: Clone + Send + 'static> Router<T> for Global {
    type Out = T;
    #[inline]
    fn route(&mut self, record: T) -> (Dest, T) {
        (Dest::One(0), record)
    }
}

struct OutChannel<P> {
    aux: Aux<P>,
    staging: Batch<P>,
    pending: VecDeque<Message<P>>,
    in_flight: bool,
}

struct SenderState<T, R: Router<T>> {
    channels: Vec<OutChannel<R::Out>>,
    router: R,
    closed: bool,
    /// The channel the next latency marker goes to (round-robin).
    next_marker: usize,
    _record: std::marker::PhantomData<fn(T)>,
}

/// The sending side of one exchange edge on one core.
pub(crate) struct ExchangeSender<T, R: Router<T>> {
    state: RefCell<SenderState<T, R>>,
    senders: Vec<ConnectedSender<Message<R::Out>>>,
    drain_lock: FairLock,
    unsent: Cell<bool>,
    info: OperatorInfo,
    batches_allocated: Counter,
    pending_max: Counter,
    /// Messages handed to each destination's channel (the receiver counts
    /// what it took: the difference is what the channel holds).
    sent_to: Vec<Counter>,
}

impl<T: 'static, R: Router<T>> ExchangeSender<T, R> {
    pub fn new(core: &Core, info: OperatorInfo, router: R, ends: Vec<OutEnd<R::Out>>) -> Rc<Self> {
        let mut channels = Vec::with_capacity(ends.len());
        let mut senders = Vec::with_capacity(ends.len());
        for (tx, aux) in ends {
            senders.push(tx);
            channels.push(OutChannel {
                aux,
                staging: Batch::with_capacity(BATCH_RECORDS_MAX),
                pending: VecDeque::new(),
                in_flight: false,
            });
        }
        let senders_len = senders.len();
        let allocated = core.counter(&info.name, "exchange_batches_allocated");
        allocated.add(channels.len() as u64);
        Rc::new(Self {
            state: RefCell::new(SenderState {
                channels,
                router,
                closed: false,
                next_marker: 0,
                _record: Default::default(),
            }),
            senders,
            drain_lock: FairLock::default(),
            unsent: Cell::new(false),
            pending_max: core.counter(&info.name, "exchange_pending_batches_max"),
            sent_to: (0..senders_len)
                .map(|d| core.counter(&info.name, &format!("{SENT_TO_CORE}{d}")))
                .collect(),
            info,
            batches_allocated: allocated,
        })
    }

    fn enqueue(&self, st: &mut SenderState<T, R>, d: usize, msg: Message<R::Out>) {
        let ch = &mut st.channels[d];
        if ch.pending.is_empty() && !ch.in_flight {
            match self.senders[d].try_send(msg) {
                Ok(()) => {
                    ch.aux.sent.fetch_add(1, Ordering::Release);
                    self.sent_to[d].add(1);
                    return;
                }
                Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => ch.pending.push_back(m),
                Err(_) => {
                    st.closed = true;
                    return;
                }
            }
        } else {
            ch.pending.push_back(msg);
        }
        let len = st.channels[d].pending.len() as u64;
        if len > self.pending_max.get() {
            self.pending_max.add(len - self.pending_max.get());
        }
    }

    fn ship(&self, st: &mut SenderState<T, R>, d: usize) {
        let ch = &mut st.channels[d];
        let fresh = ch.aux.recycle.pop().unwrap_or_else(|| {
            self.batches_allocated.add(1);
            Batch::with_capacity(BATCH_RECORDS_MAX)
        });
        let full = std::mem::replace(&mut ch.staging, fresh);
        self.enqueue(st, d, Message::Data(full));
    }

    #[inline]
    fn stage(&self, st: &mut SenderState<T, R>, d: usize, record: R::Out, ts: Option<Timestamp>) {
        let ch = &mut st.channels[d];
        ch.staging.push_with(record, ts);
        if ch.staging.len() >= BATCH_RECORDS_MAX {
            self.ship(st, d);
        }
    }

    fn check_open(&self, st: &SenderState<T, R>) -> Result<(), JobError> {
        if st.closed { Err(JobError::Cancelled { core: self.info.core }) } else { Ok(()) }
    }
}

impl<T: 'static, R: Router<T>> Outlet for ExchangeSender<T, R> {
    fn drain(self: Rc<Self>, flush_partial: bool) -> LocalFuture<'static, Result<(), JobError>> {
        Box::pin(async move {
            let _permit =
                self.drain_lock.lock().await.map_err(|_| JobError::Cancelled { core: self.info.core })?;
            if flush_partial {
                let mut st = self.state.borrow_mut();
                for d in 0..st.channels.len() {
                    if !st.channels[d].staging.is_empty() {
                        self.ship(&mut st, d);
                    }
                }
            }
            for d in 0..self.senders.len() {
                loop {
                    let msg = {
                        let mut st = self.state.borrow_mut();
                        let ch = &mut st.channels[d];
                        let msg = ch.pending.pop_front();
                        ch.in_flight = msg.is_some();
                        msg
                    };
                    let Some(msg) = msg else { break };
                    let sent = self.senders[d].send(msg).await;
                    let mut st = self.state.borrow_mut();
                    st.channels[d].in_flight = false;
                    if sent.is_err() {
                        return Err(JobError::Cancelled { core: self.info.core });
                    }
                    st.channels[d].aux.sent.fetch_add(1, Ordering::Release);
                    self.sent_to[d].add(1);
                }
            }
            let st = self.state.borrow();
            self.unsent.set(st.channels.iter().any(|c| !c.staging.is_empty() || !c.pending.is_empty()));
            self.check_open(&st)
        })
    }

    fn has_unsent(&self) -> bool {
        self.unsent.get()
    }
}

/// The `Push` handle an upstream operator holds for an exchange sender.
pub(crate) struct SenderHandle<T: 'static, R: Router<T>> {
    pub sender: Rc<ExchangeSender<T, R>>,
    pub core: Rc<Core>,
}

impl<T: 'static, R: Router<T>> Push<T> for SenderHandle<T, R> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let s = &*self.sender;
        {
            let mut st = s.state.borrow_mut();
            s.check_open(&st)?;
            let st = &mut *st;
            let cores = s.senders.len();
            s.info.guard(|| {
                for (record, ts) in batch.drain() {
                    match st.router.route(record) {
                        (Dest::One(d), out) => s.stage(st, d, out, ts),
                        (Dest::All, out) => {
                            for d in 0..cores - 1 {
                                s.stage(st, d, out.clone(), ts);
                            }
                            s.stage(st, cores - 1, out, ts);
                        }
                    }
                }
            })?;
        }
        s.unsent.set(true);
        self.core.touch(self.sender.clone());
        Ok(())
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let s = &*self.sender;
        {
            let mut st = s.state.borrow_mut();
            s.check_open(&st)?;
            // A latency marker samples one path: one channel, behind the
            // records staged for it (Flink sends it to a random channel).
            let channels = if let Control::Latency(_) = control {
                let d = st.next_marker % st.channels.len();
                st.next_marker = d + 1;
                d..d + 1
            } else {
                0..st.channels.len()
            };
            for d in channels {
                if !st.channels[d].staging.is_empty() {
                    s.ship(&mut st, d);
                }
                s.enqueue(&mut st, d, Message::Control(control));
            }
        }
        s.unsent.set(true);
        self.core.touch(self.sender.clone());
        Ok(())
    }
}

/// Drives one receiving channel: hands every batch and control message to
/// `downstream` (the operator's input port for this channel), returns emptied
/// batches, and waits for its own outlets before taking more.
pub(crate) async fn run_receiver<P: Send + 'static>(
    core: Rc<Core>,
    rx: ConnectedReceiver<Message<P>>,
    aux: Aux<P>,
    mut downstream: Box<dyn Push<P>>,
    time: TaskTime,
    received: Counter,
    records: Counter,
) -> Result<(), JobError> {
    let mut owned = Owned::new(core.clone());
    let mut taken = 0u64;
    loop {
        let mut parked = None;
        let (o, p, tm) = (&mut owned, &mut parked, &time);
        let msg = next_message(&rx, &aux, &mut taken, move || async move {
            // Nothing to do right now: send partial buffers downstream
            // before parking, so results do not wait for more input.
            let t = Instant::now();
            o.flush_all().await?;
            *p = Some(tm.backpressured(t));
            Ok(())
        })
        .await?;
        if let Some(parked) = parked {
            time.idle(parked);
        }
        let t = Instant::now();
        received.add(1);
        match msg {
            None => return Err(JobError::Cancelled { core: core.index() }),
            Some(Message::Data(mut batch)) => {
                records.add(batch.len() as u64);
                downstream.push(&mut batch)?;
                batch.clear();
                let _ = aux.recycle.push(batch);
            }
            Some(Message::Control(control)) => {
                downstream.control(control)?;
                if control == Control::EndOfInput {
                    owned.after_push().await?;
                    owned.flush_all().await?;
                    return Ok(());
                }
            }
        }
        let t = time.busy(t);
        owned.after_push().await?;
        time.backpressured(t);
        glommio::yield_if_needed().await;
    }
}

/// Takes the next message of one channel (`None`: the sender is gone). If
/// none is waiting (`taken`, the messages taken so far, has caught up with
/// [`ChannelAux::sent`]), runs `park` first, then waits: an empty channel
/// is polled once per message, never twice, so the wakers glommio keeps
/// for it do not pile up.
async fn next_message<P, F, Fut>(
    rx: &ConnectedReceiver<Message<P>>,
    aux: &ChannelAux<P>,
    taken: &mut u64,
    park: F,
) -> Result<Option<Message<P>>, JobError>
where
    P: Send,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), JobError>>,
{
    if aux.sent.load(Ordering::Acquire) <= *taken {
        park().await?;
    }
    let msg = rx.recv().await;
    *taken += 1;
    Ok(msg)
}

/// Metric prefix of the messages an exchange sender handed to core N's
/// channel (`exchange_sent_to_core_N`); the receiving side counts
/// `exchange_received`.
pub(crate) const SENT_TO_CORE: &str = "exchange_sent_to_core_";

/// Where a driving task's time goes (Flink's busy, backpressured and idle
/// time per task): nanoseconds counted per core under the task's head
/// operator, two clock reads per batch.
#[derive(Clone)]
pub(crate) struct TaskTime {
    busy: Counter,
    backpressured: Counter,
    idle: Counter,
}

impl TaskTime {
    /// The counters of the task whose first operator is `operator`.
    pub fn new(core: &Core, operator: &str) -> Self {
        Self {
            busy: core.counter(operator, "busy_ns"),
            backpressured: core.counter(operator, "backpressured_ns"),
            idle: core.counter(operator, "idle_ns"),
        }
    }
    fn add(counter: &Counter, since: Instant) -> Instant {
        let now = Instant::now();
        counter.add(now.saturating_duration_since(since).as_nanos() as u64);
        now
    }
    /// Time since `since` was work; returns now.
    pub fn busy(&self, since: Instant) -> Instant {
        Self::add(&self.busy, since)
    }
    /// Time since `since` was spent waiting for room downstream.
    pub fn backpressured(&self, since: Instant) -> Instant {
        Self::add(&self.backpressured, since)
    }
    /// Time since `since` was spent waiting for input.
    pub fn idle(&self, since: Instant) -> Instant {
        Self::add(&self.idle, since)
    }
}

/// A lock taken in arrival order by the tasks of one core.
///
/// glommio's semaphore lets a running task take a permit that was released
/// to a woken waiter before the waiter runs. Under load a data task that
/// drains an outlet after every batch could so keep it to itself while
/// another task waited: the processing-time service waited seconds to hand
/// on a periodic watermark, windows fired that much late, and state for up
/// to three windows piled up. Here a newcomer first yields to a woken
/// waiter.
pub(crate) struct FairLock {
    permit: Semaphore,
    /// Tasks inside [`lock`](Self::lock), past the newcomers' check.
    waiting: Cell<usize>,
}

impl Default for FairLock {
    fn default() -> Self {
        Self { permit: Semaphore::new(1), waiting: Cell::new(0) }
    }
}

/// Yields a newcomer makes at most before queueing anyway (a woken waiter
/// runs at the first).
const FAIR_LOCK_YIELDS_MAX: usize = 64;

/// Counts a task as waiting for a [`FairLock`] while alive.
struct Waiting<'a>(&'a Cell<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl FairLock {
    /// Waits for the lock, after any task that was already waiting.
    pub async fn lock(&self) -> Result<glommio::sync::Permit<'_>, GlommioError<()>> {
        let mut yields = 0;
        while self.waiting.get() > 0 && self.permit.available() > 0 && yields < FAIR_LOCK_YIELDS_MAX {
            // A waiter was woken with the permit free: let it take it.
            futures_lite::future::yield_now().await;
            yields += 1;
        }
        self.waiting.set(self.waiting.get() + 1);
        let _waiting = Waiting(&self.waiting);
        self.permit.acquire_permit(1).await
    }
}

/// A `key_by` edge on a single core: every key group is local, so records
/// are paired with their key hash and handed on by a plain call, as a
/// forward edge would be: no staging, channel or receiving task.
pub(crate) struct LocalKeyed<T, H> {
    key_of_hash: H,
    hashed: Batch<(u64, T)>,
    next: Box<dyn Push<(u64, T)>>,
}

impl<T, H: FnMut(&T) -> u64> LocalKeyed<T, H> {
    pub fn new(key_of_hash: H, next: Box<dyn Push<(u64, T)>>) -> Self {
        Self { key_of_hash, hashed: Batch::with_capacity(BATCH_RECORDS_MAX), next }
    }
}

impl<T, H: FnMut(&T) -> u64> Push<T> for LocalKeyed<T, H> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        // The batch is at most BATCH_RECORDS_MAX records, and so is `hashed`.
        for (record, ts) in batch.drain() {
            let hash = (self.key_of_hash)(&record);
            self.hashed.push_with((hash, record), ts);
        }
        let result = self.next.push(&mut self.hashed);
        self.hashed.clear();
        result
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::sync::Permit;

    /// A lock the test can take: [`FairLock`], or glommio's semaphore.
    trait Take: 'static {
        async fn take(&self) -> Permit<'_>;
    }

    impl Take for FairLock {
        async fn take(&self) -> Permit<'_> {
            self.lock().await.unwrap()
        }
    }

    impl Take for Semaphore {
        async fn take(&self) -> Permit<'_> {
            self.acquire_permit(1).await.unwrap()
        }
    }

    /// Task A takes the lock, holds it across an await, lets go and takes
    /// it again at once, `rounds` times; task B asks once while A holds it.
    /// Returns how many rounds A had begun when B got the lock.
    async fn rounds_before_the_second_task<L: Take>(lock: L, rounds: usize) -> usize {
        let lock = Rc::new(lock);
        let begun = Rc::new(Cell::new(0));
        let a = glommio::spawn_local({
            let (lock, begun) = (lock.clone(), begun.clone());
            async move {
                for _ in 0..rounds {
                    let held = lock.take().await;
                    begun.set(begun.get() + 1);
                    futures_lite::future::yield_now().await;
                    drop(held);
                }
            }
        })
        .detach();
        futures_lite::future::yield_now().await;
        let held = lock.take().await;
        let at = begun.get();
        drop(held);
        a.await;
        at
    }

    /// Clones of [`counting_waker`] made so far.
    static WAKER_CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A waker that does nothing but count its clones.
    fn counting_waker() -> std::task::Waker {
        use std::task::{RawWaker, RawWakerVTable};
        fn clone(_: *const ()) -> RawWaker {
            WAKER_CLONES.fetch_add(1, Ordering::Relaxed);
            RawWaker::new(std::ptr::null(), &VTABLE)
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        // SAFETY: every function of the vtable ignores the data pointer.
        unsafe { std::task::Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
    }

    /// A receiver that finds its channel empty, parks and then gets one
    /// message leaves one waker with glommio, which that message's arrival
    /// wakes; one that finds a message waiting leaves none. Polling an empty
    /// channel twice per message left a waker behind every time, until
    /// glommio's task reference count overflowed (R12, after 35 s).
    #[test]
    fn a_receiver_leaves_at_most_one_waker_per_message() {
        use std::task::{Context, Poll};
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let (tx, rx) = shared_channel::new_bounded::<Message<u64>>(4);
                let (tx, rx) = futures_lite::future::zip(tx.connect(), rx.connect()).await;
                let aux = ChannelAux { recycle: ArrayQueue::new(4), sent: AtomicU64::new(0) };
                let waker = counting_waker();
                let mut cx = Context::from_waker(&waker);
                let send = || {
                    assert!(tx.try_send(Message::Data(Batch::with_capacity(1))).is_ok());
                    aux.sent.fetch_add(1, Ordering::Release);
                };
                let (mut taken, rounds) = (0u64, 1000);
                let parks = Cell::new(0);
                let clones = WAKER_CLONES.load(Ordering::Relaxed);
                for _ in 0..rounds {
                    let mut next = std::pin::pin!(next_message(&rx, &aux, &mut taken, || {
                        parks.set(parks.get() + 1);
                        async { Ok(()) }
                    }));
                    assert!(next.as_mut().poll(&mut cx).is_pending(), "the channel is empty");
                    send();
                    assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(Some(_)))));
                }
                assert_eq!(parks.get(), rounds, "an empty channel parks");
                assert_eq!(WAKER_CLONES.load(Ordering::Relaxed) - clones, rounds, "one waker per message");

                // A message waiting: taken at once, no park, no waker.
                let clones = WAKER_CLONES.load(Ordering::Relaxed);
                send();
                let mut next = std::pin::pin!(next_message(&rx, &aux, &mut taken, || {
                    parks.set(parks.get() + 1);
                    async { Ok(()) }
                }));
                assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(Some(_)))));
                assert_eq!(parks.get(), rounds);
                assert_eq!(
                    WAKER_CLONES.load(Ordering::Relaxed),
                    clones,
                    "no waker left for a waiting message"
                );

                // The control: glommio keeps a waker at every poll of an
                // empty channel, so looking before waiting leaves two.
                let clones = WAKER_CLONES.load(Ordering::Relaxed);
                let mut recv = std::pin::pin!(rx.recv());
                assert!(recv.as_mut().poll(&mut cx).is_pending());
                assert!(recv.as_mut().poll(&mut cx).is_pending());
                assert_eq!(
                    WAKER_CLONES.load(Ordering::Relaxed) - clones,
                    2,
                    "glommio now keeps one waker per task"
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_waiting_task_gets_the_lock_before_a_busy_one_takes_it_again() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let fair = rounds_before_the_second_task(FairLock::default(), 1000).await;
                assert!(fair <= 2, "the waiting task got the fair lock after {fair} rounds");
                // The control: glommio's semaphore alone lets the busy task
                // keep the permit until it is done.
                let raw = rounds_before_the_second_task(Semaphore::new(1), 1000).await;
                assert_eq!(raw, 1000, "glommio's semaphore was fair after all: FairLock is not needed");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
