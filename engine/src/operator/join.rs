//! Joins of two streams: window joins and interval joins (Flink's
//! `DataStream.join(..).window(..)` and `KeyedStream.intervalJoin`).
//!
//! Both are built from operators that already exist, the way Flink builds its
//! window join: each input is tagged ([`Either`]), the two are unioned (so
//! their watermarks combine as the minimum, as at any two-input operator) and
//! keyed by their join keys. A window join is then a window whose function
//! pairs every left element with every right element of the window (output
//! timestamp: the window's max timestamp). An interval join is a keyed
//! process function following Flink's `IntervalJoinOperator`: per key, each
//! side's elements are buffered by timestamp; an element joins the other
//! side's buffered elements with `left.ts + lower <= right.ts <= left.ts +
//! upper`, the output carries `max(left.ts, right.ts)`, elements behind the
//! watermark are dropped, and a buffer bucket is dropped once the watermark
//! passes the last time it could still match.

use std::marker::PhantomData;

use crate::batch::{MIN_WATERMARK, Timestamp};
use crate::error::UserError;
use crate::operator::keyed_process::{Collector, Context, KeyedProcessFunction, OpenContext};
use brisk_state::MapState;

/// One of two inputs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Either<L, R> {
    /// From the left (first) input.
    Left(L),
    /// From the right (second) input.
    Right(R),
}

/// The timestamps of a joined pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinContext {
    /// The left element's timestamp.
    pub left_timestamp: Timestamp,
    /// The right element's timestamp.
    pub right_timestamp: Timestamp,
}

impl JoinContext {
    /// The joined record's timestamp: the later of the two.
    pub fn timestamp(&self) -> Timestamp {
        self.left_timestamp.max(self.right_timestamp)
    }
}

/// Turns a joined pair into output (Flink's `ProcessJoinFunction`).
pub trait ProcessJoinFunction<A, B, O>: Clone + Send + 'static {
    /// Emits results for one pair.
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        ctx: &JoinContext,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError>;
}

impl<A, B, O, F> ProcessJoinFunction<A, B, O> for F
where
    F: FnMut(&A, &B, &JoinContext, &mut Collector<'_, O>) -> Result<(), UserError> + Clone + Send + 'static,
{
    fn process_element(
        &mut self,
        left: &A,
        right: &B,
        ctx: &JoinContext,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        self(left, right, ctx, out)
    }
}

/// The keyed process function of an interval join.
pub(crate) struct IntervalJoinFn<A, B, O, F> {
    pub lower: i64,
    pub upper: i64,
    pub f: F,
    pub left: MapState<Timestamp, Vec<A>>,
    pub right: MapState<Timestamp, Vec<B>>,
    pub _out: PhantomData<fn() -> O>,
}

impl<A, B, O, F: Clone> Clone for IntervalJoinFn<A, B, O, F> {
    fn clone(&self) -> Self {
        Self {
            lower: self.lower,
            upper: self.upper,
            f: self.f.clone(),
            left: self.left,
            right: self.right,
            _out: PhantomData,
        }
    }
}

impl<K, A, B, O, F> KeyedProcessFunction<K, Either<A, B>, O> for IntervalJoinFn<A, B, O, F>
where
    K: Eq + std::hash::Hash + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    A: Clone + Send + brisk_state::StateValue,
    B: Clone + Send + brisk_state::StateValue,
    O: 'static,
    F: ProcessJoinFunction<A, B, O>,
{
    fn open(&mut self, ctx: &mut OpenContext<'_, K>) -> Result<(), UserError> {
        self.left = ctx.map_state("interval-join-left")?;
        self.right = ctx.map_state("interval-join-right")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        value: Either<A, B>,
        ctx: &mut Context<'_, K>,
        out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        let ts = ctx.timestamp().ok_or(
            "interval joins need record timestamps: assign_timestamps_and_watermarks on both inputs",
        )?;
        let wm = ctx.current_watermark();
        if wm != MIN_WATERMARK && ts < wm {
            // Behind the watermark: dropped, as Flink's IntervalJoinOperator does.
            return Ok(());
        }
        match value {
            Either::Left(a) => {
                let (lo, hi) = (ts.saturating_add(self.lower), ts.saturating_add(self.upper));
                let matches: Vec<(Timestamp, B)> = ctx
                    .map(&self.right)
                    .iter()
                    .filter(|(t, _)| (lo..=hi).contains(*t))
                    .flat_map(|(t, bs)| bs.iter().map(move |b| (*t, b.clone())))
                    .collect();
                for (rt, b) in &matches {
                    let jc = JoinContext { left_timestamp: ts, right_timestamp: *rt };
                    self.f.process_element(&a, b, &jc, &mut out.with_timestamp(jc.timestamp()))?;
                }
                let mut left = ctx.map(&self.left);
                match left.get_mut(&ts) {
                    Some(bucket) => bucket.push(a),
                    None => {
                        left.put(ts, vec![a]);
                    }
                }
                ctx.register_event_time_timer(if self.upper > 0 { ts + self.upper } else { ts });
            }
            Either::Right(b) => {
                // The right side sees the bounds mirrored.
                let (lo, hi) = (ts.saturating_sub(self.upper), ts.saturating_sub(self.lower));
                let matches: Vec<(Timestamp, A)> = ctx
                    .map(&self.left)
                    .iter()
                    .filter(|(t, _)| (lo..=hi).contains(*t))
                    .flat_map(|(t, as_)| as_.iter().map(move |a| (*t, a.clone())))
                    .collect();
                for (lt, a) in &matches {
                    let jc = JoinContext { left_timestamp: *lt, right_timestamp: ts };
                    self.f.process_element(a, &b, &jc, &mut out.with_timestamp(jc.timestamp()))?;
                }
                let mut right = ctx.map(&self.right);
                match right.get_mut(&ts) {
                    Some(bucket) => bucket.push(b),
                    None => {
                        right.put(ts, vec![b]);
                    }
                }
                ctx.register_event_time_timer(if -self.lower > 0 { ts - self.lower } else { ts });
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        t: Timestamp,
        ctx: &mut Context<'_, K>,
        _out: &mut Collector<'_, O>,
    ) -> Result<(), UserError> {
        // A bucket's cleanup time is a fixed function of its timestamp, so the
        // timer at `t` is due for exactly these two buckets (one per side).
        let left_bucket = if self.upper <= 0 { t } else { t - self.upper };
        let right_bucket = if self.lower <= 0 { t + self.lower } else { t };
        ctx.map(&self.left).remove(&left_bucket);
        ctx.map(&self.right).remove(&right_bucket);
        Ok(())
    }
}
