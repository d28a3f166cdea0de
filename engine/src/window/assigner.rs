//! Windows and window assigners.
//!
//! Times are milliseconds; windows are `[start, end)` with `max_timestamp =
//! end - 1`. Window starts use a floor modulo, so negative timestamps land in
//! the right window: `start(ts, offset, size) = ts - (ts - offset) mod size`.

use std::fmt;
use std::sync::Arc;

use crate::batch::Timestamp;

/// A window: a time interval `[start, end)`, or the single global window.
///
/// 16 bytes; the global window is the sentinel `[i64::MIN, i64::MAX)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Window {
    start: Timestamp,
    end: Timestamp,
}

impl Window {
    /// The one window of a global-window assigner.
    pub const GLOBAL: Window = Window { start: i64::MIN, end: i64::MAX };

    /// A time window `[start, end)`.
    pub fn time(start: Timestamp, end: Timestamp) -> Self {
        debug_assert!(start < end, "empty window [{start}, {end})");
        Window { start, end }
    }

    /// Whether this is the global window.
    pub fn is_global(&self) -> bool {
        *self == Self::GLOBAL
    }

    /// The largest timestamp in the window (`end - 1`; `i64::MAX` for global).
    pub fn max_timestamp(&self) -> Timestamp {
        if self.is_global() { i64::MAX } else { self.end - 1 }
    }

    /// First millisecond in the window (`i64::MIN` for global).
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// First millisecond after the window (`i64::MAX` for global).
    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// Whether two time windows overlap or touch (the session merge rule).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_global() {
            f.write_str("GlobalWindow")
        } else {
            write!(f, "[{}, {})", self.start, self.end)
        }
    }
}

/// The start of the window of size `size` (shifted by `offset`) holding `ts`.
pub fn window_start(ts: Timestamp, offset: i64, size: i64) -> Timestamp {
    ts - (ts - offset).rem_euclid(size)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumbling { size: i64, offset: i64 },
    Sliding { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
    DynamicSession,
    Global,
}

type GapFn<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// Assigns each element to zero or more windows.
pub struct WindowAssigner<T> {
    kind: Kind,
    processing_time: bool,
    gap_fn: Option<GapFn<T>>,
    /// The last tumbling window assigned: timestamps usually fall in it again,
    /// which saves a division per element. Per core (each core has a clone).
    last: std::cell::Cell<Window>,
}

impl<T> Clone for WindowAssigner<T> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            processing_time: self.processing_time,
            gap_fn: self.gap_fn.clone(),
            last: self.last.clone(),
        }
    }
}

impl<T> fmt::Debug for WindowAssigner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{}", self.kind, if self.processing_time { " (processing time)" } else { "" })
    }
}

impl<T> WindowAssigner<T> {
    fn new(kind: Kind) -> Self {
        Self { kind, processing_time: false, gap_fn: None, last: std::cell::Cell::new(Window::GLOBAL) }
    }

    /// Event-time tumbling windows of `size_ms` (Flink's `TumblingEventTimeWindows`).
    pub fn tumbling(size_ms: i64) -> Self {
        Self::new(Kind::Tumbling { size: size_ms, offset: 0 })
    }

    /// Event-time sliding windows of `size_ms` every `slide_ms`.
    pub fn sliding(size_ms: i64, slide_ms: i64) -> Self {
        Self::new(Kind::Sliding { size: size_ms, slide: slide_ms, offset: 0 })
    }

    /// Event-time session windows closing after `gap_ms` without elements.
    pub fn session(gap_ms: i64) -> Self {
        Self::new(Kind::Session { gap: gap_ms })
    }

    /// Event-time session windows whose gap is taken from each element.
    pub fn dynamic_session(gap: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        Self {
            kind: Kind::DynamicSession,
            processing_time: false,
            gap_fn: Some(Arc::new(gap)),
            last: std::cell::Cell::new(Window::GLOBAL),
        }
    }

    /// The single global window (never late; its default trigger never fires).
    pub fn global() -> Self {
        Self::new(Kind::Global)
    }

    /// Shifts tumbling or sliding windows by `offset_ms` (`|offset| < size` or `< slide`).
    pub fn with_offset(mut self, offset_ms: i64) -> Self {
        match &mut self.kind {
            Kind::Tumbling { offset, .. } | Kind::Sliding { offset, .. } => *offset = offset_ms,
            _ => {}
        }
        self
    }

    /// The same windows in processing time (elements are assigned by the
    /// clock at arrival).
    pub fn processing_time(mut self) -> Self {
        self.processing_time = true;
        self
    }

    /// Checks the parameters (Flink's rules).
    pub fn validate(&self) -> Result<(), String> {
        match self.kind {
            Kind::Tumbling { size, offset } if size <= 0 || offset.abs() >= size => Err(format!(
                "tumbling windows need size > 0 and |offset| < size (size {size}, offset {offset})"
            )),
            Kind::Sliding { size, slide, offset } if size <= 0 || slide <= 0 || offset.abs() >= slide => {
                Err(format!(
                    "sliding windows need size > 0, slide > 0 and |offset| < slide (size {size}, slide {slide}, offset {offset})"
                ))
            }
            Kind::Session { gap } if gap <= 0 => Err(format!("session windows need a gap > 0 (gap {gap})")),
            _ => Ok(()),
        }
    }

    /// Whether windows follow event time (global windows do not: they are never late).
    pub fn is_event_time(&self) -> bool {
        !self.processing_time && self.kind != Kind::Global
    }

    /// Whether windows merge (sessions).
    pub fn is_merging(&self) -> bool {
        matches!(self.kind, Kind::Session { .. } | Kind::DynamicSession)
    }

    /// Whether this is the global-window assigner.
    pub fn is_global(&self) -> bool {
        self.kind == Kind::Global
    }

    /// Appends the windows of an element at `timestamp` (event time, or the
    /// processing time for processing-time assigners).
    pub fn assign(&self, element: &T, timestamp: Timestamp, out: &mut Vec<Window>) -> Result<(), String> {
        match self.kind {
            Kind::Tumbling { size, offset } => {
                let last = self.last.get();
                if !last.is_global() && last.start <= timestamp && timestamp < last.end {
                    out.push(last);
                } else {
                    let start = window_start(timestamp, offset, size);
                    let w = Window::time(start, start + size);
                    self.last.set(w);
                    out.push(w);
                }
            }
            Kind::Sliding { size, slide, offset } => {
                let mut start = window_start(timestamp, offset, slide);
                while start > timestamp - size {
                    out.push(Window::time(start, start + size));
                    start -= slide;
                }
            }
            Kind::Session { gap } => out.push(Window::time(timestamp, timestamp + gap)),
            Kind::DynamicSession => {
                let gap = (self.gap_fn.as_ref().expect("dynamic session has a gap function"))(element);
                if gap <= 0 {
                    return Err(format!("dynamic session gap must be > 0, got {gap}"));
                }
                out.push(Window::time(timestamp, timestamp + gap));
            }
            Kind::Global => out.push(Window::GLOBAL),
        }
        Ok(())
    }
}

/// Flink's `TimeWindow.mergeWindows`: sorts by start and groups windows that
/// overlap or touch; calls `merge(group, cover)` for every group of two or more.
pub(crate) fn merge_windows(windows: &mut [Window], mut merge: impl FnMut(Vec<Window>, Window)) {
    windows.sort_by_key(|w| w.start());
    let mut current: Option<(Window, Vec<Window>)> = None;
    for w in windows.iter() {
        match &mut current {
            Some((cover, group)) if cover.intersects(w) => {
                *cover = cover.cover(w);
                group.push(*w);
            }
            _ => {
                if let Some((cover, group)) = current.take()
                    && group.len() > 1
                {
                    merge(group, cover);
                }
                current = Some((*w, vec![*w]));
            }
        }
    }
    if let Some((cover, group)) = current
        && group.len() > 1
    {
        merge(group, cover);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(a: &WindowAssigner<()>, ts: i64) -> Vec<Window> {
        let mut v = Vec::new();
        a.assign(&(), ts, &mut v).unwrap();
        v
    }

    #[test]
    fn tumbling_with_offsets_and_negative_timestamps() {
        let a = WindowAssigner::<()>::tumbling(5_000);
        assert_eq!(assign(&a, 0), vec![Window::time(0, 5_000)]);
        assert_eq!(assign(&a, 4_999), vec![Window::time(0, 5_000)]);
        assert_eq!(assign(&a, -1), vec![Window::time(-5_000, 0)]);
        assert_eq!(assign(&a, -5_000), vec![Window::time(-5_000, 0)]);
        let o = WindowAssigner::<()>::tumbling(5_000).with_offset(1_000);
        assert_eq!(assign(&o, 500), vec![Window::time(-4_000, 1_000)]);
        assert_eq!(assign(&o, 1_000), vec![Window::time(1_000, 6_000)]);
        let neg = WindowAssigner::<()>::tumbling(5_000).with_offset(-1_000);
        assert_eq!(assign(&neg, 4_000), vec![Window::time(4_000, 9_000)]);
    }

    #[test]
    fn sliding_windows_when_slide_does_not_divide_size() {
        let a = WindowAssigner::<()>::sliding(10, 3);
        // last start = floor(14/3)*3 = 12; starts 12, 9, 6 (> 14 - 10 = 4).
        assert_eq!(assign(&a, 14), vec![Window::time(12, 22), Window::time(9, 19), Window::time(6, 16)]);
        assert_eq!(assign(&a, -1), vec![Window::time(-3, 7), Window::time(-6, 4), Window::time(-9, 1)]);
    }

    #[test]
    fn validation_follows_flink() {
        assert!(WindowAssigner::<()>::tumbling(0).validate().is_err());
        assert!(WindowAssigner::<()>::tumbling(10).with_offset(10).validate().is_err());
        assert!(WindowAssigner::<()>::tumbling(10).with_offset(-9).validate().is_ok());
        assert!(WindowAssigner::<()>::sliding(10, 3).with_offset(3).validate().is_err());
        assert!(WindowAssigner::<()>::session(0).validate().is_err());
    }

    #[test]
    fn touching_sessions_merge() {
        let mut ws =
            vec![Window::time(10, 20), Window::time(0, 10), Window::time(25, 30), Window::time(30, 31)];
        let mut merges = Vec::new();
        merge_windows(&mut ws, |group, cover| merges.push((group, cover)));
        assert_eq!(
            merges,
            vec![
                (vec![Window::time(0, 10), Window::time(10, 20)], Window::time(0, 20)),
                (vec![Window::time(25, 30), Window::time(30, 31)], Window::time(25, 31)),
            ]
        );
    }
}
