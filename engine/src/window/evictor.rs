//! Evictors remove elements from a window before and/or after its function
//! runs (Flink's `Evictor`). A window with an evictor keeps every element
//! (with its timestamp) instead of an incremental aggregate.

use crate::batch::Timestamp;
use crate::window::assigner::Window;

/// What an evictor may look at besides the elements.
#[derive(Debug, Clone, Copy)]
pub struct EvictorContext {
    /// The operator's current watermark.
    pub current_watermark: Timestamp,
    /// Processing time (epoch ms) from the job's clock.
    pub current_processing_time: i64,
}

/// Removes elements from a window's buffer.
pub trait Evictor<T>: EvictorClone<T> + Send + 'static {
    /// Before the window function; `elements` are `(element, timestamp)` in
    /// arrival order.
    fn evict_before(&self, elements: &mut Vec<(T, Option<Timestamp>)>, window: &Window, ctx: &EvictorContext);
    /// After the window function.
    fn evict_after(&self, elements: &mut Vec<(T, Option<Timestamp>)>, window: &Window, ctx: &EvictorContext);
}

/// Object-safe cloning for evictors.
pub trait EvictorClone<T> {
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn Evictor<T>>;
}

impl<T, X: Evictor<T> + Clone> EvictorClone<T> for X {
    fn clone_box(&self) -> Box<dyn Evictor<T>> {
        Box::new(self.clone())
    }
}

impl<T> Clone for Box<dyn Evictor<T>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Keeps the last `max` elements (Flink's `CountEvictor`).
#[derive(Debug, Clone, Copy)]
pub struct CountEvictor {
    max: usize,
    after: bool,
}

impl CountEvictor {
    /// Evicts before the function, keeping the last `max` elements.
    pub fn of(max: usize) -> Self {
        Self { max, after: false }
    }
    /// Evicts after the function instead.
    pub fn after(mut self) -> Self {
        self.after = true;
        self
    }
    fn evict<T>(&self, elements: &mut Vec<(T, Option<Timestamp>)>) {
        if elements.len() > self.max {
            let excess = elements.len() - self.max;
            elements.drain(..excess);
        }
    }
}

impl<T: 'static> Evictor<T> for CountEvictor {
    fn evict_before(&self, elements: &mut Vec<(T, Option<Timestamp>)>, _w: &Window, _ctx: &EvictorContext) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<(T, Option<Timestamp>)>, _w: &Window, _ctx: &EvictorContext) {
        if self.after {
            self.evict(elements);
        }
    }
}

/// Keeps elements within `window_size` of the newest element's timestamp
/// (Flink's `TimeEvictor`: evicts timestamps `<= max - size`).
#[derive(Debug, Clone, Copy)]
pub struct TimeEvictor {
    size: i64,
    after: bool,
}

impl TimeEvictor {
    /// Evicts before the function.
    pub fn of(window_size_ms: i64) -> Self {
        Self { size: window_size_ms, after: false }
    }
    /// Evicts after the function instead.
    pub fn after(mut self) -> Self {
        self.after = true;
        self
    }
    fn evict<T>(&self, elements: &mut Vec<(T, Option<Timestamp>)>) {
        // Flink looks at the first element to decide whether records carry timestamps.
        if elements.first().is_none_or(|e| e.1.is_none()) {
            return;
        }
        let newest = elements.iter().filter_map(|e| e.1).max().unwrap_or(i64::MIN);
        let cutoff = newest - self.size;
        elements.retain(|e| e.1.is_none_or(|ts| ts > cutoff));
    }
}

impl<T: 'static> Evictor<T> for TimeEvictor {
    fn evict_before(&self, elements: &mut Vec<(T, Option<Timestamp>)>, _w: &Window, _ctx: &EvictorContext) {
        if !self.after {
            self.evict(elements);
        }
    }
    fn evict_after(&self, elements: &mut Vec<(T, Option<Timestamp>)>, _w: &Window, _ctx: &EvictorContext) {
        if self.after {
            self.evict(elements);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: EvictorContext = EvictorContext { current_watermark: 0, current_processing_time: 0 };

    #[test]
    fn count_evictor_keeps_the_last_elements() {
        let mut v: Vec<(u8, Option<i64>)> = (0..5).map(|i| (i, Some(i as i64))).collect();
        CountEvictor::of(3).evict_before(&mut v, &Window::GLOBAL, &CTX);
        assert_eq!(v.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3, 4]);
        CountEvictor::of(1).after().evict_before(&mut v, &Window::GLOBAL, &CTX);
        assert_eq!(v.len(), 3, "an evict-after evictor does nothing before");
    }

    #[test]
    fn time_evictor_drops_timestamps_at_or_below_the_cutoff() {
        let mut v: Vec<(u8, Option<i64>)> = vec![(0, Some(10)), (1, Some(5)), (2, Some(20)), (3, Some(11))];
        TimeEvictor::of(10).evict_before(&mut v, &Window::GLOBAL, &CTX);
        assert_eq!(v.iter().map(|e| e.0).collect::<Vec<_>>(), vec![2, 3]);
    }
}
