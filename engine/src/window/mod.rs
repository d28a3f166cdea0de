//! Windows with Flink's exact semantics (shared/SEMANTICS.md).
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`assigner`] | [`Window`] and [`WindowAssigner`]: tumbling, sliding, session (static and dynamic gap), global; event or processing time |
//! | [`trigger`] | [`Trigger`] and the built-in triggers (event time, processing time, count, continuous, purging, never) |
//! | [`evictor`] | [`Evictor`], [`CountEvictor`], [`TimeEvictor`] |
//! | [`function`] | [`AggregateFunction`], [`ProcessWindowFunction`], [`WindowContext`] |
//! | `operator` | the window operator: per (key, window) contents, triggers, timers, lateness, merging |

pub mod assigner;
pub mod evictor;
pub mod function;
pub(crate) mod operator;
pub(crate) mod rows;
pub mod trigger;

pub use assigner::{Window, WindowAssigner};
pub use evictor::{CountEvictor, Evictor, EvictorContext, TimeEvictor};
pub use function::{AggregateFunction, ProcessWindowFunction, WindowContext};
pub use trigger::{
    ContinuousEventTimeTrigger, ContinuousProcessingTimeTrigger, CountTrigger, EventTimeTrigger,
    NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger, TriggerContext, TriggerResult,
};
