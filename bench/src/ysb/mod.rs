//! The Yahoo streaming benchmark (YSB; Chintapalli et al., 2016): ad events,
//! of which the views are joined with their ad's campaign and counted per
//! campaign in 10 s event-time windows (shared/BENCHMARKS.md, workload 3).
//!
//! | module | what |
//! | --- | --- |
//! | [`model`] | `AdEvent`, `Id` (a UUID), ad and event types; the JSON line, read and written |
//! | [`generator`] | the campaign table and event `n` as a function of `n`; JSON input files |
//! | [`job`] | the pipeline, over the in-process generator, a JSON file or a Kafka topic |

pub mod generator;
pub mod job;
pub mod model;
