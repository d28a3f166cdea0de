//! Triggers decide when a window's contents are emitted (Flink's `Trigger`).
//!
//! A trigger keeps no state of its own: per (key, window) state lives in
//! named slots of its [`TriggerContext`], and timers are registered through
//! it for the current window. The built-in triggers follow Flink's code.

use crate::batch::Timestamp;
use crate::window::assigner::Window;

/// What a trigger asks the window operator to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerResult {
    /// Nothing.
    Continue,
    /// Emit the window's contents, keep them.
    Fire,
    /// Drop the window's contents without emitting.
    Purge,
    /// Emit, then drop the contents.
    FireAndPurge,
}

impl TriggerResult {
    /// Whether the window is emitted.
    pub fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }
    /// Whether the window's contents are dropped.
    pub fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// Named integer state of one trigger for one (key, window). Boxed so that
/// a window whose trigger keeps no state pays one pointer (8 bytes) per row,
/// not a `Vec` (24 bytes): rows are the window operator's hot memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TriggerSlots(Option<Box<SlotList>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SlotList(Vec<(&'static str, i64)>);

impl TriggerSlots {
    fn get(&self, name: &str) -> Option<i64> {
        self.0.as_ref()?.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
    fn set(&mut self, name: &'static str, value: i64) {
        let slots = &mut self.0.get_or_insert_with(Default::default).0;
        match slots.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => slots.push((name, value)),
        }
    }
    fn clear(&mut self, name: &str) {
        if let Some(slots) = &mut self.0 {
            slots.0.retain(|(n, _)| *n != name);
            if slots.0.is_empty() {
                self.0 = None;
            }
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
    /// The slots as `(name, value)` pairs, for a snapshot.
    pub(crate) fn pairs(&self) -> &[(&'static str, i64)] {
        self.0.as_ref().map_or(&[], |s| s.0.as_slice())
    }
    /// Slots restored from a snapshot.
    pub(crate) fn from_pairs(pairs: Vec<(String, i64)>) -> Self {
        if pairs.is_empty() {
            return Self(None);
        }
        Self(Some(Box::new(SlotList(pairs.into_iter().map(|(n, v)| (intern(&n), v)).collect()))))
    }
}

impl serde::Serialize for TriggerSlots {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.pairs().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for TriggerSlots {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_pairs(Vec::<(String, i64)>::deserialize(d)?))
    }
}

thread_local! {
    static SLOT_NAMES: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A `'static` copy of a restored slot name. Triggers use a handful of
/// names, so each distinct one is leaked once per thread.
fn intern(name: &str) -> &'static str {
    SLOT_NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(n) = names.iter().find(|n| **n == name) {
            return *n;
        }
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        names.push(leaked);
        leaked
    })
}

/// Timer access for one (key, window), provided by the window operator.
pub(crate) trait TriggerTimers {
    fn register_event_time(&mut self, time: Timestamp);
    fn delete_event_time(&mut self, time: Timestamp);
    fn register_processing_time(&mut self, time: i64);
    fn delete_processing_time(&mut self, time: i64);
}

/// A trigger's view of one (key, window): time, timers and state.
pub struct TriggerContext<'a> {
    pub(crate) watermark: Timestamp,
    pub(crate) now_ms: i64,
    pub(crate) timers: &'a mut dyn TriggerTimers,
    pub(crate) slots: &'a mut TriggerSlots,
    pub(crate) merged: &'a [TriggerSlots],
}

impl TriggerContext<'_> {
    /// The operator's current watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    /// Processing time (epoch ms) from the job's clock.
    pub fn current_processing_time(&self) -> i64 {
        self.now_ms
    }
    /// Calls the trigger's `on_event_time` when the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: Timestamp) {
        self.timers.register_event_time(time);
    }
    /// Deletes an event-time timer of this window.
    pub fn delete_event_time_timer(&mut self, time: Timestamp) {
        self.timers.delete_event_time(time);
    }
    /// Calls the trigger's `on_processing_time` when processing time reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.timers.register_processing_time(time);
    }
    /// Deletes a processing-time timer of this window.
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.timers.delete_processing_time(time);
    }
    /// The trigger's state `name` for this window.
    pub fn state(&self, name: &str) -> Option<i64> {
        self.slots.get(name)
    }
    /// Sets the trigger's state `name` for this window.
    pub fn set_state(&mut self, name: &'static str, value: i64) {
        self.slots.set(name, value);
    }
    /// Clears the trigger's state `name` for this window.
    pub fn clear_state(&mut self, name: &str) {
        self.slots.clear(name);
    }
    /// In `on_merge`: folds state `name` of the merged windows into this
    /// window's with `combine` (Flink's `mergePartitionedState`).
    pub fn merge_state(&mut self, name: &'static str, combine: impl Fn(i64, i64) -> i64) {
        let mut acc = self.slots.get(name);
        for other in self.merged {
            if let Some(v) = other.get(name) {
                acc = Some(acc.map_or(v, |a| combine(a, v)));
            }
        }
        if let Some(v) = acc {
            self.slots.set(name, v);
        }
    }
}

/// Decides when windows fire. Implement it for a custom trigger; it must be
/// `Clone` (one copy per core) and keep per-window state in the context.
pub trait Trigger<T>: TriggerClone<T> + Send + 'static {
    /// An element was added to `window`.
    fn on_element(
        &self,
        element: &T,
        timestamp: Timestamp,
        window: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult;
    /// An event-time timer of `window` fired.
    fn on_event_time(&self, time: Timestamp, window: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult;
    /// A processing-time timer of `window` fired.
    fn on_processing_time(&self, time: i64, window: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult;
    /// Whether the trigger supports merging windows (sessions).
    fn can_merge(&self) -> bool {
        false
    }
    /// Windows were merged into `window`; merge state and re-register timers.
    fn on_merge(&self, window: &Window, ctx: &mut TriggerContext<'_>) {
        let _ = (window, ctx);
    }
    /// The window is being dropped: delete its timers and state.
    fn clear(&self, window: &Window, ctx: &mut TriggerContext<'_>);
}

/// Object-safe cloning for triggers (implemented for every `Clone` trigger).
pub trait TriggerClone<T> {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Trigger<T>>;
    /// The trigger's type: the window operator keeps the timers of the
    /// built-in [`EventTimeTrigger`] without looking them up.
    fn trigger_type(&self) -> std::any::TypeId;
}

impl<T, X: Trigger<T> + Clone> TriggerClone<T> for X {
    fn clone_box(&self) -> Box<dyn Trigger<T>> {
        Box::new(self.clone())
    }
    fn trigger_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<X>()
    }
}

impl<T> Clone for Box<dyn Trigger<T>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Fires when the watermark passes the window's end (the default for
/// event-time windows); late elements fire the window again at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventTimeTrigger;

impl<T> Trigger<T> for EventTimeTrigger {
    fn on_element(
        &self,
        _e: &T,
        _ts: Timestamp,
        window: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark() {
            TriggerResult::Fire
        } else {
            ctx.register_event_time_timer(window.max_timestamp());
            TriggerResult::Continue
        }
    }
    fn on_event_time(
        &self,
        time: Timestamp,
        window: &Window,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if time == window.max_timestamp() { TriggerResult::Fire } else { TriggerResult::Continue }
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &Window, ctx: &mut TriggerContext<'_>) {
        if window.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(window.max_timestamp());
        }
    }
    fn clear(&self, window: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }
}

/// Fires when processing time passes the window's end (the default for
/// processing-time windows).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessingTimeTrigger;

impl<T> Trigger<T> for ProcessingTimeTrigger {
    fn on_element(
        &self,
        _e: &T,
        _ts: Timestamp,
        window: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        ctx.register_processing_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }
    fn on_event_time(&self, _t: Timestamp, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Fire
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, window: &Window, ctx: &mut TriggerContext<'_>) {
        if window.max_timestamp() > ctx.current_processing_time() {
            ctx.register_processing_time_timer(window.max_timestamp());
        }
    }
    fn clear(&self, window: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.delete_processing_time_timer(window.max_timestamp());
    }
}

/// Fires every `max` elements per window (Flink's `CountTrigger`).
#[derive(Debug, Clone, Copy)]
pub struct CountTrigger {
    max: i64,
}

impl CountTrigger {
    const COUNT: &'static str = "count";

    /// Fires when a window has received `max` elements since its last firing.
    pub fn of(max: u64) -> Self {
        Self { max: max as i64 }
    }
}

impl<T> Trigger<T> for CountTrigger {
    fn on_element(&self, _e: &T, _ts: Timestamp, _w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        let count = ctx.state(Self::COUNT).unwrap_or(0) + 1;
        if count >= self.max {
            ctx.clear_state(Self::COUNT);
            TriggerResult::Fire
        } else {
            ctx.set_state(Self::COUNT, count);
            TriggerResult::Continue
        }
    }
    fn on_event_time(&self, _t: Timestamp, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.merge_state(Self::COUNT, |a, b| a + b);
    }
    fn clear(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.clear_state(Self::COUNT);
    }
}

/// Fires at the window's end and every `interval` of event time before it
/// (Flink's `ContinuousEventTimeTrigger`).
#[derive(Debug, Clone, Copy)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    const FIRE_AT: &'static str = "fire-time";

    /// Fires every `interval_ms` of event time.
    pub fn of(interval_ms: i64) -> Self {
        Self { interval: interval_ms }
    }

    fn register_next(&self, time: Timestamp, window: &Window, ctx: &mut TriggerContext<'_>) {
        let next = time.saturating_add(self.interval).min(window.max_timestamp());
        let merged = ctx.state(Self::FIRE_AT).map_or(next, |v| v.min(next));
        ctx.set_state(Self::FIRE_AT, merged);
        ctx.register_event_time_timer(next);
    }
}

impl<T> Trigger<T> for ContinuousEventTimeTrigger {
    fn on_element(
        &self,
        _e: &T,
        timestamp: Timestamp,
        window: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark() {
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(window.max_timestamp());
        if ctx.state(Self::FIRE_AT).is_none() {
            // Java's `%` truncates toward zero, as Rust's does.
            self.register_next(timestamp - (timestamp % self.interval), window, ctx);
        }
        TriggerResult::Continue
    }
    fn on_event_time(&self, time: Timestamp, window: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if time == window.max_timestamp() {
            return TriggerResult::Fire;
        }
        if ctx.state(Self::FIRE_AT) == Some(time) {
            ctx.clear_state(Self::FIRE_AT);
            self.register_next(time, window, ctx);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.merge_state(Self::FIRE_AT, i64::min);
        if let Some(next) = ctx.state(Self::FIRE_AT) {
            ctx.register_event_time_timer(next);
        }
    }
    fn clear(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        if let Some(at) = ctx.state(Self::FIRE_AT) {
            ctx.delete_event_time_timer(at);
            ctx.clear_state(Self::FIRE_AT);
        }
    }
}

/// Fires every `interval` of processing time, and at the window's end
/// (Flink's `ContinuousProcessingTimeTrigger`).
#[derive(Debug, Clone, Copy)]
pub struct ContinuousProcessingTimeTrigger {
    interval: i64,
}

impl ContinuousProcessingTimeTrigger {
    const FIRE_AT: &'static str = "fire-time";

    /// Fires every `interval_ms` of processing time.
    pub fn of(interval_ms: i64) -> Self {
        Self { interval: interval_ms }
    }

    fn register_next(&self, time: i64, window: &Window, ctx: &mut TriggerContext<'_>) {
        let next = time.saturating_add(self.interval).min(window.max_timestamp());
        ctx.set_state(Self::FIRE_AT, next);
        ctx.register_processing_time_timer(next);
    }
}

impl<T> Trigger<T> for ContinuousProcessingTimeTrigger {
    fn on_element(
        &self,
        _e: &T,
        _ts: Timestamp,
        window: &Window,
        ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        let now = ctx.current_processing_time();
        if ctx.state(Self::FIRE_AT).is_none() {
            self.register_next(now - (now % self.interval), window, ctx);
        }
        TriggerResult::Continue
    }
    fn on_event_time(&self, _t: Timestamp, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&self, time: i64, window: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        if ctx.state(Self::FIRE_AT) == Some(time) {
            ctx.clear_state(Self::FIRE_AT);
            self.register_next(time, window, ctx);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        ctx.merge_state(Self::FIRE_AT, i64::min);
        if let Some(next) = ctx.state(Self::FIRE_AT) {
            ctx.register_processing_time_timer(next);
        }
    }
    fn clear(&self, _w: &Window, ctx: &mut TriggerContext<'_>) {
        if let Some(at) = ctx.state(Self::FIRE_AT) {
            ctx.delete_processing_time_timer(at);
            ctx.clear_state(Self::FIRE_AT);
        }
    }
}

/// Turns every firing of the inner trigger into fire-and-purge.
pub struct PurgingTrigger<T> {
    inner: Box<dyn Trigger<T>>,
}

impl<T> Clone for PurgingTrigger<T> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<T: 'static> PurgingTrigger<T> {
    /// Purges whenever `inner` fires.
    pub fn of(inner: impl Trigger<T>) -> Self {
        Self { inner: Box::new(inner) }
    }
}

fn purging(r: TriggerResult) -> TriggerResult {
    if r.is_fire() { TriggerResult::FireAndPurge } else { r }
}

impl<T: 'static> Trigger<T> for PurgingTrigger<T> {
    fn on_element(&self, e: &T, ts: Timestamp, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purging(self.inner.on_element(e, ts, w, ctx))
    }
    fn on_event_time(&self, t: Timestamp, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purging(self.inner.on_event_time(t, w, ctx))
    }
    fn on_processing_time(&self, t: i64, w: &Window, ctx: &mut TriggerContext<'_>) -> TriggerResult {
        purging(self.inner.on_processing_time(t, w, ctx))
    }
    fn can_merge(&self) -> bool {
        self.inner.can_merge()
    }
    fn on_merge(&self, w: &Window, ctx: &mut TriggerContext<'_>) {
        self.inner.on_merge(w, ctx);
    }
    fn clear(&self, w: &Window, ctx: &mut TriggerContext<'_>) {
        self.inner.clear(w, ctx);
    }
}

/// Never fires (the default of global windows).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverTrigger;

impl<T> Trigger<T> for NeverTrigger {
    fn on_element(
        &self,
        _e: &T,
        _ts: Timestamp,
        _w: &Window,
        _ctx: &mut TriggerContext<'_>,
    ) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_event_time(&self, _t: Timestamp, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn on_processing_time(&self, _t: i64, _w: &Window, _ctx: &mut TriggerContext<'_>) -> TriggerResult {
        TriggerResult::Continue
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn clear(&self, _w: &Window, _ctx: &mut TriggerContext<'_>) {}
}
