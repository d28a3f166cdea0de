//! brisk's engine: the DataStream API, operators, exchanges and the
//! thread-per-core runtime.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`stream`] | the API: [`StreamEnv`], [`DataStream`], [`KeyedStream`] |
//! | [`operator`] | sources, sinks, keyed process functions and the built-in operators |
//! | `graph` | the logical graph and its per-core instantiation |
//! | `runtime` | executors per core, the push/outlet contract, exchanges |
//! | [`watermark`] | combining watermarks over input channels ([`WatermarkValve`]) |
//! | [`window`] | window assigners, triggers, evictors, window functions and the window operator |
//! | [`checkpoint`] | barrier checkpoints: state files, coordinator, restore, savepoints, two-phase commit |
//! | [`batch`] | [`Batch`] and the in-band [`Control`] messages |
//! | [`config`], [`clock`], [`metrics`], [`error`] | job configuration, injected time, counters, errors |
//!
//! # Example
//! ```
//! use brisk_engine::prelude::*;
//!
//! let env = StreamEnv::new(JobConfig::with_cores(2));
//! let sums = env
//!     .from_collection((0..1000u64).collect())
//!     .map(|i| (i % 10, i))
//!     .key_by(|r: &(u64, u64)| r.0)
//!     .sum(|r: &mut (u64, u64)| &mut r.1)
//!     .collect();
//! env.execute().unwrap();
//! // A rolling sum emits every update; the last (largest) per key is the total.
//! let mut last = std::collections::BTreeMap::new();
//! for (key, sum) in sums.take() {
//!     let e = last.entry(key).or_insert(0);
//!     *e = sum.max(*e);
//! }
//! assert_eq!(last.values().sum::<u64>(), (0..1000).sum::<u64>());
//! assert_eq!(last[&9], (0..100).map(|k| 10 * k + 9).sum::<u64>());
//! ```

pub mod batch;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod error;
pub(crate) mod graph;
pub mod metrics;
pub mod operator;
pub(crate) mod runtime;
pub mod stream;
pub mod watermark;
pub(crate) mod web;
pub mod window;

pub use batch::{BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK, MIN_WATERMARK, StreamStatus, Timestamp};
pub use checkpoint::{CheckpointStats, JobControl, RestoreFrom};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ExecutionMode, JobConfig, StateBackendKind};
pub use error::{JobError, UserError};
pub use graph::Partitioning;
pub use metrics::{Counter, Gauge, Metrics};
pub use operator::Finisher;
pub use operator::join::{Either, JoinContext, ProcessJoinFunction};
pub use operator::keyed_process::{Collector, Context, KeyedProcessFunction, OpenContext, TimeDomain};
pub use operator::sink::{
    CheckpointProgress, CollectSink, Collected, DiscardSink, Sink, SinkContext, SinkError, SinkParallelism,
    SinkWriter,
};
pub use operator::source::{
    CollectionSource, RestoredPosition, Source, SourceContext, SourceError, SourceOutput, SourceReader,
    SourceStatus,
};
pub use operator::watermarks::{
    BoundedOutOfOrderness, WatermarkGenerator, WatermarkOutput, WatermarkStrategy,
};
pub use runtime::{JobResult, RestoreStats};
pub use stream::{
    Data, DataStream, IntervalJoin, IntervalJoined, JoinEqual, JoinWhere, JoinedStreams, Key, KeyedStream,
    OutputTag, StateData, StreamEnv, WindowJoin, WindowedStream,
};
pub use watermark::WatermarkValve;

/// Everything a job definition usually needs.
pub mod prelude {
    pub use crate::window::{
        AggregateFunction, ProcessWindowFunction, Window, WindowAssigner, WindowContext,
    };
    pub use crate::{
        Collector, Context, DataStream, ExecutionMode, JobConfig, JobError, KeyedProcessFunction,
        KeyedStream, OpenContext, OutputTag, StreamEnv, TimeDomain, UserError, WatermarkStrategy,
    };
    pub use crate::{Either, JoinContext};
    pub use brisk_state::{
        AggregatingState, ListState, MapState, ReducingState, Rkyv, StateTtlConfig, TtlUpdate, TtlVisibility,
        ValueState,
    };
}
