//! brisk: a stream processing engine with Apache Flink's programming model
//! and a thread-per-core runtime.
//!
//! This facade re-exports the workspace's crates:
//!
//! | path | crate | what it holds |
//! | --- | --- | --- |
//! | `brisk::*` | `brisk-engine` | the DataStream API, operators, runtime |
//! | [`brisk::io`](io) | `brisk-io` | connectors: generators, files, stdout, Kafka |
//! | [`brisk::state`](state) | `brisk-state` | keyed state and key groups |
//! | [`brisk::cli`](cli) | this crate | [`cli::JobArgs`]: the options every job accepts |
//!
//! # Example
//! ```
//! use brisk::prelude::*;
//!
//! let env = StreamEnv::new(JobConfig::with_cores(2));
//! let counts = env
//!     .from_collection(vec!["to be or not to be"])
//!     .flat_map(|line: &str| line.split(' ').map(|w| (w.to_string(), 1u64)).collect::<Vec<_>>())
//!     .key_by(|(word, _): &(String, u64)| word.clone())
//!     .sum(|(_, n): &mut (String, u64)| n)
//!     .collect();
//! env.execute().unwrap();
//! let to = counts.take().into_iter().filter(|(w, _)| w == "to").map(|(_, n)| n).max();
//! assert_eq!(to, Some(2));
//! ```

pub use brisk_engine::*;
pub use brisk_io as io;

pub mod cli;
pub use brisk_state as state;

/// The engine's prelude plus the connectors.
pub mod prelude {
    pub use brisk_engine::RestoreFrom;
    pub use brisk_engine::prelude::*;
    pub use brisk_io::{
        DeliveryGuarantee, FileSink, FileSource, GeneratorSource, KafkaDelivery, KafkaMalformed, KafkaSink,
        KafkaSource, MalformedPolicy, StartOffsets, StdoutSink, TransactionalFileSink,
    };
}

/// Installs a `tracing` subscriber on stderr, filtered by `RUST_LOG` (default
/// `warn`), that also receives the `log` records of dependencies (glommio
/// reports io_uring buffer-registration fallbacks that way). Safe to call
/// more than once.
///
/// The default leaves out `glommio::reactor`, whose only message is an
/// ERROR when a disk does not support polled I/O (most virtual disks): it
/// then falls back to interrupt-driven I/O, which is what brisk uses
/// anyway, and the message appeared once per state file opened. Set
/// `RUST_LOG` to see it.
pub fn init_logging() {
    init_logging_with(None);
}

/// [`init_logging`] with a filter of the job's configuration
/// (`--log-level`), used when `RUST_LOG` is not set. An invalid filter
/// falls back to the default (parsers validate it first: see
/// [`cli::JobArgs`]).
pub fn init_logging_with(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    const DEFAULT: &str = "warn,glommio::reactor=off";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter.unwrap_or(DEFAULT)))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The README's code, compiled and run as doctests so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
