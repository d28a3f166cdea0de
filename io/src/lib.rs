//! brisk's connectors: generators, files (lines and CSV), stdout, Kafka.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`generator`] | [`GeneratorSource`]: records from an index, split in index ranges, optionally rate-limited |
//! | [`file`](mod@file) | [`FileSource`]: lines or CSV rows of a file split in byte ranges, with a [`MalformedPolicy`] |
//! | [`transactional`] | [`TransactionalFileSink`]: part files committed with checkpoints (two-phase commit), exactly or at least once |
//! | [`kafka`] | [`KafkaSource`] and [`KafkaSink`] (rdkafka): offsets in checkpoints, transactions, malformed-record policies |
//! | [`shared`] | [`SharedStr`]: text fields sliced from a file source's read buffer without a copy |
//! | [`sink`] | [`FileSink`] (lines or CSV, one file or one per core) and [`StdoutSink`] |
//!
//! Every connector does its I/O without blocking the core it runs on: files
//! through glommio's io_uring-backed `BufferedFile`, stdout on glommio's
//! blocking-thread pool.
//!
//! # Example
//! ```
//! use brisk_engine::prelude::*;
//! use brisk_io::GeneratorSource;
//!
//! let env = StreamEnv::new(JobConfig::with_cores(2));
//! let out = env.from_source(GeneratorSource::new(1000, |i| i * 2)).collect();
//! env.execute().unwrap();
//! assert_eq!(out.take().len(), 1000);
//! ```

pub mod file;
pub mod generator;
pub mod kafka;
pub mod shared;
pub mod sink;
pub mod transactional;

pub use file::{Csv, FileSource, LineParser, Lines, MalformedPolicy};
pub use generator::GeneratorSource;
pub use kafka::{KafkaDelivery, KafkaMalformed, KafkaSink, KafkaSource, StartOffsets};
pub use shared::{SharedLine, SharedStr};
pub use sink::{FileSink, StdoutSink};
pub use transactional::{DeliveryGuarantee, TransactionalFileSink};
