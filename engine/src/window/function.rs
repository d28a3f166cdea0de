//! Window functions: incremental aggregation and full-window processing.

use crate::batch::Timestamp;
use crate::error::UserError;
use crate::operator::keyed_process::Collector;
use crate::window::assigner::Window;

/// An incremental aggregation (Flink's `AggregateFunction`); defined with
/// keyed state, which holds its accumulators in an `AggregatingState`.
pub use brisk_state::AggregateFunction;

/// What a window function knows about the window being emitted.
#[derive(Debug, Clone, Copy)]
pub struct WindowContext {
    /// The window.
    pub window: Window,
    /// The operator's current watermark.
    pub current_watermark: Timestamp,
    /// Processing time (epoch ms) from the job's clock.
    pub current_processing_time: i64,
}

/// Sees all of a window's elements (or the result of an incremental
/// aggregation) when it fires (Flink's `ProcessWindowFunction`).
pub trait ProcessWindowFunction<K, IN, OUT>: Clone + Send + 'static {
    /// Emits results for the window in `ctx`; output records get the window's
    /// max timestamp.
    fn process(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), UserError>;
}

impl<K, IN, OUT, F> ProcessWindowFunction<K, IN, OUT> for F
where
    F: FnMut(&K, &WindowContext, &[IN], &mut Collector<'_, OUT>) -> Result<(), UserError>
        + Clone
        + Send
        + 'static,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &WindowContext,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<(), UserError> {
        self(key, ctx, elements, out)
    }
}

/// Emits every element as it is (a plain reduce or aggregate).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThrough;

impl<K, T: Clone + 'static> ProcessWindowFunction<K, T, T> for PassThrough {
    fn process(
        &mut self,
        _key: &K,
        _ctx: &WindowContext,
        elements: &[T],
        out: &mut Collector<'_, T>,
    ) -> Result<(), UserError> {
        for e in elements {
            out.collect(e.clone());
        }
        Ok(())
    }
}
