//! The KW workload of shared/BENCHMARKS.md, exactly: event `i` has key
//! `fmix64(i) mod K`, timestamp `i / 1000` ms and value `i mod 100`;
//! watermarks with 100 ms bounded out-of-orderness (periodic, every 200 ms of
//! processing time, as Flink's default); 10 s tumbling event-time windows;
//! count and sum per key and window; results to a discarding sink.
//!
//! ```text
//! cargo run --release -p brisk-bench --bin keyed_window -- --events 20000000 --keys 10000 --cores 2
//! shared/flink/keyed_window.sh 20000000 2 10000      # Flink, same workload
//! ```
//!
//! Checkpoint measurements: `--checkpoint-dir DIR --checkpoint-interval-ms MS`
//! prints each checkpoint's duration, synchronous pause and size;
//! `--timeline-ms MS` samples the event rate every MS to show the dip while
//! checkpoints run; `--savepoint-at N --savepoint-dir DIR` stops the job with
//! a savepoint once event N is generated, and `--restore DIR` resumes from it
//! and prints how long restoring took.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use brisk::prelude::*;
use brisk::window::AggregateFunction;
use brisk_bench::kw_event;
use clap::Parser;

/// Keyed tumbling-window count and sum.
#[derive(Parser)]
struct Cli {
    /// Events to generate.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Stop with a savepoint once this event index has been generated.
    #[arg(long, requires_all = ["savepoint_dir", "checkpoint_dir"])]
    savepoint_at: Option<u64>,
    /// Where --savepoint-at writes the savepoint (must not exist).
    #[arg(long, requires = "savepoint_at")]
    savepoint_dir: Option<std::path::PathBuf>,
    /// Generator splits (default: one per core); fix it to restore a
    /// savepoint at another core count.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    splits: Option<u64>,
    /// Print the event rate sampled every this many ms.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..))]
    timeline_ms: Option<u64>,
    /// Generate at most this many events per second (over all cores), for
    /// sustained-load runs; unlimited by default.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Window size in ms of event time (1000 events per ms). Flink's script
    /// uses the default; larger windows hold more live state, for restore
    /// measurements at a given state size.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    window_ms: u64,
    /// Allowed lateness of the windows, in ms of event time (Flink's
    /// script uses none): each window's state is kept this much longer,
    /// under a cleanup timer of its own.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=(i64::MAX as u64)))]
    allowed_lateness_ms: u64,
    /// Deal the event indices to the generator's splits round-robin
    /// instead of in contiguous ranges (Flink's `fromSequence`, the
    /// default), so that every split's event time advances together: a
    /// steady stream whose live state does not grow with the run's length,
    /// for sustained-load runs.
    #[arg(long)]
    interleaved: bool,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

/// Events generated, summed over cores (updated every [`COUNT_BATCH`]).
static GENERATED: AtomicU64 = AtomicU64::new(0);
const COUNT_BATCH: u64 = 4096;
thread_local! {
    static LOCAL_COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Count and sum of values.
#[derive(Clone)]
struct CountSum;

impl AggregateFunction<(u64, i64, u64)> for CountSum {
    type Acc = (u64, u64);
    type Out = (u64, u64);
    fn create_accumulator(&mut self) -> (u64, u64) {
        (0, 0)
    }
    fn add(&mut self, e: (u64, i64, u64), acc: (u64, u64)) -> (u64, u64) {
        (acc.0 + 1, acc.1 + e.2)
    }
    fn get_result(&mut self, acc: &(u64, u64)) -> (u64, u64) {
        *acc
    }
    fn merge(&mut self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let (events, keys) = (cli.events, cli.keys);
    let config = cli.job.config();
    let env_budget = config.state_memory_budget_bytes;
    let env = StreamEnv::new(config);
    let counting = cli.timeline_ms.is_some();
    let (reached, reached_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let savepoint_at = cli.savepoint_at;
    let generator = GeneratorSource::new(events, move |i| {
        if counting {
            LOCAL_COUNT.with(|c| {
                c.set(c.get() + 1);
                if c.get() == COUNT_BATCH {
                    GENERATED.fetch_add(COUNT_BATCH, Ordering::Relaxed);
                    c.set(0);
                }
            });
        }
        if savepoint_at == Some(i) {
            let _ = reached.try_send(());
        }
        let e = kw_event(i, keys);
        (e.key, e.timestamp_ms, e.value)
    });
    let generator = match cli.splits {
        Some(n) => generator.with_splits(n as usize),
        None => generator,
    };
    let generator = if cli.interleaved { generator.interleaved() } else { generator };
    let generator = match cli.rate {
        Some(r) => generator.with_rate(r as f64),
        None => generator,
    };
    env.from_source(generator)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(100)
                .with_timestamp_assigner(|e: &(u64, i64, u64), _| e.1),
        )
        .key_by(|e: &(u64, i64, u64)| e.0)
        .window(WindowAssigner::tumbling(cli.window_ms as i64))
        .allowed_lateness(cli.allowed_lateness_ms as i64)
        .aggregate(CountSum)
        .name("window count and sum")
        .sink_to(brisk::DiscardSink);
    // The savepoint trigger and the rate sampler are plain threads.
    if let Some(dir) = cli.savepoint_dir.clone() {
        let control = env.control();
        std::thread::spawn(move || {
            if reached_rx.recv().is_ok() {
                match control.stop_with_savepoint(&dir) {
                    Ok(p) => println!("# savepoint={}", p.display()),
                    Err(e) => eprintln!("savepoint failed: {e}"),
                }
            }
        });
    }
    // The sampler takes a sample every interval until the job's end is
    // signalled (dropping `job_done`).
    let (job_done, done) = std::sync::mpsc::channel::<()>();
    let sampler = cli.timeline_ms.map(|ms| {
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let start = Instant::now();
            let epoch_start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let mut last = 0;
            while done.recv_timeout(Duration::from_millis(ms)) == Err(RecvTimeoutError::Timeout) {
                let now = GENERATED.load(Ordering::Relaxed);
                samples.push((start.elapsed().as_millis() as i64, now - last));
                last = now;
            }
            (epoch_start, samples)
        })
    });
    let result = cli.job.execute(env)?;
    drop(job_done);
    let secs = result.elapsed.as_secs_f64();
    if let Some(r) = &result.restored {
        println!(
            "# restored checkpoint={} bytes={} read_ms={} rebuild_ms={} restore_ms={}",
            r.checkpoint,
            r.bytes,
            r.read_ms,
            r.rebuild_ms,
            r.read_ms + r.rebuild_ms
        );
    }
    if let (Some(sampler), Some(ms)) = (sampler, cli.timeline_ms) {
        let (epoch_start, samples) = sampler.join().expect("sampler");
        print_timeline(epoch_start, ms, &samples, &result.checkpoints);
    }
    // Every (key, window) fires exactly once.
    let windows = events.div_ceil(cli.window_ms * 1000);
    println!("# results_emitted={} windows={windows}", result.metrics.total("records_in"));
    if !result.checkpoints.is_empty() {
        let mut ms: Vec<u64> = result.checkpoints.iter().map(|c| c.duration_ms).collect();
        ms.sort_unstable();
        let mut sync: Vec<u64> = result.checkpoints.iter().map(|c| c.sync_us).collect();
        sync.sort_unstable();
        let max_bytes = result.checkpoints.iter().map(|c| c.bytes).max().unwrap_or(0);
        let max_full = result.checkpoints.iter().map(|c| c.full_bytes).max().unwrap_or(0);
        let mut added: Vec<u64> = result.checkpoints.iter().map(|c| c.bytes).collect();
        added.sort_unstable();
        println!(
            "# checkpoint bytes: added p50={} max={max_bytes}, whole state referred to max={max_full}",
            added[added.len() / 2]
        );
        println!(
            "# checkpoints={} duration_ms p50={} max={} sync_pause_ms p50={:.1} max={:.1} largest_bytes={max_bytes}",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            sync[sync.len() / 2] as f64 / 1000.0,
            sync[sync.len() - 1] as f64 / 1000.0,
        );
    }
    if cli.job.state_backend == brisk::StateBackendKind::Log {
        println!(
            "# log backend: {} rows evicted, {} written, {} read back, {} segments compacted",
            result.metrics.total("state_evicted"),
            result.metrics.total("state_written"),
            result.metrics.total("state_read_back"),
            result.metrics.total("state_segments_compacted"),
        );
        println!(
            "# memory budget: {:.1} MiB/core, lowest limit {:.1} MiB/core, peak charged {:.1} MiB/core \
             (mean over cores), input held back {:.2} s/core waiting for state writes",
            env_budget as f64 / 1048576.0,
            result.metrics.total("state_memory_limit_lowest_bytes") as f64 / result.cores as f64 / 1048576.0,
            result.metrics.total("state_memory_peak_bytes") as f64 / result.cores as f64 / 1048576.0,
            result.metrics.total("state_write_stall_ns") as f64 / result.cores as f64 / 1e9,
        );
        let mib = |m: &str| result.metrics.total(m) as f64 / result.cores as f64 / 1048576.0;
        println!(
            "# at the peak: entries {:.1}, index {:.1}, timers {:.1}, unwritten segments {:.1}, \
             state files {:.1} MiB/core",
            mib("state_memory_peak_entries_bytes"),
            mib("state_memory_peak_index_bytes"),
            mib("state_memory_peak_timers_bytes"),
            mib("state_memory_peak_segments_bytes"),
            mib("state_memory_peak_state_files_bytes"),
        );
    }
    if let Some(peak) = peak_rss_kib() {
        println!("# peak_rss_mib={:.1}", peak as f64 / 1024.0);
    }
    println!(
        "keyed_window events={events} keys={keys} cores={} secs={secs:.3} events_per_s={:.0}",
        result.cores,
        events as f64 / secs
    );
    Ok(())
}

/// Prints the sampled rate per interval, marking intervals that overlap a
/// running checkpoint, and the median rate with and without one running.
fn print_timeline(epoch_start: i64, ms: u64, samples: &[(i64, u64)], checkpoints: &[brisk::CheckpointStats]) {
    let running: Vec<(i64, i64)> = checkpoints
        .iter()
        .map(|c| (c.triggered_ms - epoch_start, c.triggered_ms - epoch_start + c.duration_ms as i64))
        .collect();
    let (mut during, mut outside) = (Vec::new(), Vec::new());
    let mut line = String::new();
    for &(end, n) in samples {
        let rate = n as f64 * 1000.0 / ms as f64;
        let start = end - ms as i64;
        let busy = running.iter().any(|&(a, b)| a < end && b > start);
        if n > 0 {
            if busy { during.push(rate) } else { outside.push(rate) }
        }
        line.push_str(&format!(" {:.2}{}", rate / 1e6, if busy { "*" } else { "" }));
    }
    println!("# timeline M events/s every {ms} ms (* = a checkpoint running):{line}");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (d, o) = (median(&mut during), median(&mut outside));
    let dip = if during.is_empty() || o == 0.0 {
        "n/a".to_string()
    } else {
        format!("{:.1}%", (1.0 - d / o) * 100.0)
    };
    println!(
        "# rate median: {:.2} M/s with a checkpoint running ({} samples), {:.2} M/s without ({} samples): dip {dip}",
        d / 1e6,
        during.len(),
        o / 1e6,
        outside.len(),
    );
}

/// The process's peak resident set (VmHWM), in KiB, where /proc has it.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
