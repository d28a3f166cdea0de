//! The options every brisk job accepts, as one `clap` argument group.
//!
//! A job's own `clap` parser flattens [`JobArgs`] beside its own options,
//! then builds its [`JobConfig`] from it:
//!
//! ```no_run
//! use brisk::prelude::*;
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     /// Lines to read.
//!     #[arg(long)]
//!     input: std::path::PathBuf,
//!     #[command(flatten)]
//!     job: brisk::cli::JobArgs,
//! }
//!
//! let cli = Cli::parse();
//! cli.job.init_logging();
//! let env = StreamEnv::new(cli.job.config());
//! ```
//!
//! A bad value is rejected by clap before the job starts, with a message
//! naming the option (`invalid value 'x' for '--web-ui <HOST:PORT>'`).

use std::net::SocketAddr;
use std::path::PathBuf;

use brisk_engine::{JobConfig, RestoreFrom, StateBackendKind};

/// The standard options of a brisk job: cores, checkpoints, restore, state
/// backend, web UI and log level.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Job options")]
pub struct JobArgs {
    /// Cores to run on, one pinned executor each (default: all available).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub cores: Option<u16>,
    /// Take checkpoints into this directory (`chk-N/`).
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints in ms (default 1000 with --checkpoint-dir;
    /// 0: only savepoints and the final checkpoint).
    #[arg(long, value_name = "MS", requires = "checkpoint_dir")]
    pub checkpoint_interval_ms: Option<u64>,
    /// Restore from the newest checkpoint in --checkpoint-dir (`latest`) or
    /// from a checkpoint or savepoint directory.
    #[arg(long, value_name = "latest|DIR", requires = "checkpoint_dir")]
    pub restore: Option<RestoreFrom>,
    /// Where keyed state lives: `memory` (heap) or `log` (log-structured
    /// files, larger than memory).
    #[arg(long, default_value = "memory", value_name = "memory|log")]
    pub state_backend: StateBackendKind,
    /// Log backend: bytes of keyed state each core keeps in memory.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(4096..))]
    pub state_memory_budget: Option<u64>,
    /// Log backend: full checkpoints instead of incremental ones.
    #[arg(long)]
    pub full_checkpoints: bool,
    /// Flink's runtime mode: `streaming` (continuous results), `batch`
    /// (bounded inputs only: final results at the end of input, and
    /// processing-time timers fire then) or `automatic` (batch when every
    /// source is bounded).
    #[arg(long, default_value = "streaming", value_name = "streaming|batch|automatic")]
    pub execution_mode: brisk_engine::ExecutionMode,
    /// Processing time between periodic watermarks, in ms (Flink's
    /// `pipeline.auto-watermark-interval`; default 200; 0: none).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32))]
    pub auto_watermark_interval_ms: Option<u32>,
    /// Processing time between latency markers from each source, in ms
    /// (Flink's `metrics.latency.interval`; default 200; 0: none).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32))]
    pub latency_interval_ms: Option<u32>,
    /// Serve the REST API and web UI while the job runs, on this address
    /// (`--web-ui` alone: 127.0.0.1:8081). An address other than loopback
    /// needs --web-token.
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, default_missing_value = WEB_UI_DEFAULT)]
    pub web_ui: Option<SocketAddr>,
    /// The token every mutating REST call must carry (`Authorization:
    /// Bearer TOKEN`); read from BRISK_WEB_TOKEN when not given.
    #[arg(long, value_name = "TOKEN", env = "BRISK_WEB_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub web_token: Option<String>,
    /// Log filter, e.g. `info` or `warn,brisk=debug` (RUST_LOG's syntax);
    /// RUST_LOG wins when set. Default: warn.
    #[arg(long, value_name = "FILTER", value_parser = parse_log_filter)]
    pub log_level: Option<String>,
}

/// Where `--web-ui` without an address serves (Flink's port).
pub const WEB_UI_DEFAULT: &str = "127.0.0.1:8081";

/// Checkpoint interval when `--checkpoint-dir` is given without one.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 1000;

/// Draws the progress of `control`'s job until `stop` (on its own thread,
/// never a core).
fn draw_progress(control: &brisk_engine::JobControl, stop: &std::sync::atomic::AtomicBool) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bar:40.cyan/blue} {percent:>3}%  {human_pos}/{human_len}  {rate}  ETA {eta}",
    )
    .map(|s| {
        s.with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = match state.per_sec() {
                r if r >= 1e6 => write!(w, "{:.1} M/s", r / 1e6),
                r if r >= 1e3 => write!(w, "{:.1} k/s", r / 1e3),
                r => write!(w, "{r:.0}/s"),
            };
        })
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        if let Some((done, total)) = control.progress() {
            bar.set_length(total);
            bar.set_position(done);
        }
        // A drawing thread, not a core: it may sleep.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(PROGRESS_REDRAW);
    }
    bar.finish_and_clear();
}

/// How often the progress bar is redrawn.
const PROGRESS_REDRAW: std::time::Duration = std::time::Duration::from_millis(200);

fn parse_token(s: &str) -> Result<String, String> {
    let min = brisk_engine::config::WEB_TOKEN_LEN_MIN;
    if s.len() < min {
        return Err(format!("must be at least {min} characters"));
    }
    Ok(s.to_string())
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("not a log filter: {e}"))?;
    Ok(s.to_string())
}

impl JobArgs {
    /// The job configuration these options describe (the rest defaults).
    pub fn config(&self) -> JobConfig {
        let defaults = JobConfig::default();
        JobConfig {
            cores: self.cores.map(usize::from),
            checkpoint_dir: self.checkpoint_dir.clone(),
            checkpoint_interval_ms: match &self.checkpoint_dir {
                Some(_) => self.checkpoint_interval_ms.unwrap_or(CHECKPOINT_INTERVAL_MS_DEFAULT),
                None => 0,
            },
            restore: self.restore.clone(),
            state_backend: self.state_backend,
            state_memory_budget_bytes: self
                .state_memory_budget
                .map_or(defaults.state_memory_budget_bytes, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            incremental_checkpoints: !self.full_checkpoints,
            execution_mode: self.execution_mode,
            auto_watermark_interval_ms: self
                .auto_watermark_interval_ms
                .map_or(defaults.auto_watermark_interval_ms, i64::from),
            latency_interval_ms: self.latency_interval_ms.map_or(defaults.latency_interval_ms, u64::from),
            web_ui: self.web_ui,
            web_token: self.web_token.clone(),
            ..defaults
        }
    }

    /// Runs the job: while it runs, a progress bar with rate and ETA on
    /// stderr when stderr is a terminal and its bounded sources know their
    /// size (records of a generator, bytes of files); at the end,
    /// [`report`](Self::report).
    pub fn execute(
        &self,
        env: brisk_engine::StreamEnv,
    ) -> Result<brisk_engine::JobResult, brisk_engine::JobError> {
        use std::io::IsTerminal;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let bar = std::io::stderr().is_terminal().then(|| {
            let (control, stop) = (env.control(), stop.clone());
            std::thread::Builder::new()
                .name("brisk-progress".into())
                .spawn(move || draw_progress(&control, &stop))
        });
        let result = env.execute();
        stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(Ok(t)) = bar {
            let _ = t.join();
        }
        if let Ok(r) = &result {
            self.report(r);
        }
        result
    }

    /// Prints what a job that ended reports to operators on stderr: each
    /// sink's latency percentiles (stdout stays the job's output).
    pub fn report(&self, result: &brisk_engine::JobResult) {
        for l in &result.latency {
            eprintln!("{l}");
        }
    }

    /// Installs the log subscriber with `--log-level` (see
    /// [`init_logging_with`](crate::init_logging_with)).
    pub fn init_logging(&self) {
        crate::init_logging_with(self.log_level.as_deref());
    }
}

/// Parses a connector property given as `KEY=VALUE` (e.g. a job's
/// `--kafka-property linger.ms=5`): the key, trimmed, must not be empty;
/// the value is everything after the first `=`.
pub fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_are_key_value_pairs() {
        assert_eq!(parse_property("linger.ms=5"), Ok(("linger.ms".into(), "5".into())));
        assert_eq!(parse_property("sasl.password=a=b"), Ok(("sasl.password".into(), "a=b".into())));
        assert!(parse_property("novalue").unwrap_err().contains("'novalue' is not KEY=VALUE"));
        assert!(parse_property("=5").is_err());
    }
}
