//! Event-time windows over a CSV file, to compare brisk with Flink on any data.
//!
//! ```text
//! cargo run --release --example window_csv -- --input IN.csv --window SPEC \
//!     --out-of-orderness MS [--allowed-lateness MS] [--watermark-every-event] [--cores N] \
//!     --output OUT.csv [--late-output LATE.csv] \
//!     [--trigger continuous:MS] [--evictor count:N|time:MS] [--idleness MS] \
//!     [--checkpoint-dir DIR --checkpoint-interval-ms MS [--restore latest|PATH]] [--rate EVENTS_PER_S]
//! ```
//!
//! SPEC is `tumble:SIZE[:OFFSET]`, `hop:SIZE:SLIDE[:OFFSET]`, `session:GAP` or
//! `count:N[:SLIDE]` (milliseconds). Input rows are `key,timestamp_ms,value`.
//! Output rows are `key,window_start,window_end,count,sum`, one per firing (count
//! windows: the smallest and largest element timestamp instead of start and end);
//! late rows (`--late-output`) are `key,timestamp_ms,value` as they came in.
//! `--watermark-every-event` emits a watermark after every record (largest
//! timestamp − out-of-orderness − 1), so the result does not depend on timing;
//! otherwise watermarks are periodic (every 200 ms of processing time).
//!
//! `--input` may be given more than once: each file is then its own source
//! with its own watermarks, and the inputs are unioned before `key_by` (the
//! window operator follows the slowest input's watermark). For time windows,
//! `--trigger continuous:MS` fires every MS of event time as well as at the
//! window's end (Flink's `ContinuousEventTimeTrigger`), `--evictor` keeps only
//! the last N elements or those within MS of the newest before the function
//! runs (`CountEvictor` / `TimeEvictor`), and `--idleness MS` marks an input
//! idle after MS of processing time without records.
//!
//! With `--checkpoint-dir` the job takes checkpoints every
//! `--checkpoint-interval-ms` and OUT (and LATE) become directories written
//! through the transactional file sink: `cat OUT/part-*` is exactly the
//! committed output, and a job killed at any moment and restarted with
//! `--restore latest` ends with the same output as a run without failure.
//! `--rate` replays the input at that many records per second. With
//! `--control-stdin`, typing `savepoint DIR` takes a savepoint and
//! `stop DIR` stops the job with one; restore it with `--restore DIR`, at
//! any `--cores`.
//!
//! Each file is read in order by one reader (as Flink does at parallelism 1);
//! keys are spread over the cores. tests/conformance holds the same pipeline in
//! Flink (flink/WindowCsv.java) and golden outputs made with it.

use std::io::Write;
use std::path::PathBuf;

use brisk::prelude::*;
use brisk::window::{AggregateFunction, ContinuousEventTimeTrigger, CountEvictor, TimeEvictor};
use clap::Parser;
use serde::Deserialize;

/// Windowed count and sum per key over a CSV file.
#[derive(Parser)]
struct Cli {
    /// Input CSV: key,timestamp_ms,value per line (repeat for several inputs).
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// tumble:SIZE[:OFFSET] | hop:SIZE:SLIDE[:OFFSET] | session:GAP | count:N[:SLIDE] (ms).
    #[arg(long, value_parser = parse_spec)]
    window: Spec,
    /// Bounded out-of-orderness of the watermarks, in ms.
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
    out_of_orderness: i64,
    /// How long windows accept late elements after they fire, in ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    allowed_lateness: i64,
    /// Emit a watermark after every record instead of periodically.
    #[arg(long)]
    watermark_every_event: bool,
    /// Where the window results go.
    #[arg(long)]
    output: PathBuf,
    /// Where elements too late for every window go.
    #[arg(long)]
    late_output: Option<PathBuf>,
    /// continuous:MS: also fire every MS of event time (time windows only).
    #[arg(long, value_parser = parse_trigger)]
    trigger: Option<i64>,
    /// count:N | time:MS: evict before the window function (time windows only).
    #[arg(long, value_parser = parse_evictor)]
    evictor: Option<Evict>,
    /// Mark an input idle after this many ms of processing time without records.
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    idleness: Option<i64>,
    /// Read commands from standard input while running: `savepoint DIR`
    /// takes a savepoint into DIR, `stop DIR` stops the job with one.
    #[arg(long, requires = "checkpoint_dir")]
    control_stdin: bool,
    /// Replay the input at this many records per second (per input file).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Standard job options (with --checkpoint-dir, OUT is a directory of
    /// committed part files).
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("'{s}' must be a positive number of records per second")),
    }
}

#[derive(Clone, Copy, Debug)]
enum Evict {
    Count(usize),
    Time(i64),
}

fn parse_trigger(s: &str) -> Result<i64, String> {
    match s.split_once(':') {
        Some(("continuous", ms)) => match ms.parse::<i64>() {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(format!("'{ms}' in '{s}' must be a number of ms > 0")),
        },
        _ => Err(format!("'{s}' is not a trigger: use continuous:MS")),
    }
}

fn parse_evictor(s: &str) -> Result<Evict, String> {
    let bad = || format!("'{s}' is not an evictor: use count:N or time:MS (N, MS > 0)");
    let (kind, n) = s.split_once(':').ok_or_else(bad)?;
    let n = n.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    match kind {
        "count" => Ok(Evict::Count(n as usize)),
        "time" => Ok(Evict::Time(n)),
        _ => Err(bad()),
    }
}

#[derive(Clone, Copy, Debug)]
enum Spec {
    Tumble { size: i64, offset: i64 },
    Hop { size: i64, slide: i64, offset: i64 },
    Session { gap: i64 },
    Count { n: u64, slide: Option<u64> },
}

fn parse_spec(s: &str) -> Result<Spec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize| -> Result<i64, String> {
        parts
            .get(i)
            .ok_or_else(|| format!("'{s}' is missing a number"))?
            .parse::<i64>()
            .map_err(|e| format!("'{}' in '{s}': {e}", parts[i]))
    };
    let positive =
        |v: i64, what: &str| if v > 0 { Ok(v) } else { Err(format!("{what} must be > 0 in '{s}'")) };
    let spec = match (parts[0], parts.len()) {
        ("tumble", 2 | 3) => {
            let size = positive(num(1)?, "SIZE")?;
            let offset = if parts.len() == 3 { num(2)? } else { 0 };
            if offset.abs() >= size {
                return Err(format!("|OFFSET| must be < SIZE in '{s}'"));
            }
            Spec::Tumble { size, offset }
        }
        ("hop", 3 | 4) => {
            let (size, slide) = (positive(num(1)?, "SIZE")?, positive(num(2)?, "SLIDE")?);
            let offset = if parts.len() == 4 { num(3)? } else { 0 };
            if offset.abs() >= slide {
                return Err(format!("|OFFSET| must be < SLIDE in '{s}'"));
            }
            Spec::Hop { size, slide, offset }
        }
        ("session", 2) => Spec::Session { gap: positive(num(1)?, "GAP")? },
        ("count", 2 | 3) => {
            let n = positive(num(1)?, "N")? as u64;
            let slide = if parts.len() == 3 { Some(positive(num(2)?, "SLIDE")? as u64) } else { None };
            Spec::Count { n, slide }
        }
        _ => {
            return Err(format!(
                "'{s}' is not a window: use tumble:SIZE[:OFFSET], hop:SIZE:SLIDE[:OFFSET], session:GAP or count:N[:SLIDE]"
            ));
        }
    };
    Ok(spec)
}

/// One input row.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
struct Row {
    key: String,
    timestamp_ms: i64,
    value: f64,
}

/// Count, sum, and the smallest and largest element timestamp.
#[derive(Clone)]
struct CountSum;

impl AggregateFunction<Row> for CountSum {
    type Acc = (u64, f64, i64, i64);
    type Out = (u64, f64, i64, i64);
    fn create_accumulator(&mut self) -> Self::Acc {
        (0, 0.0, i64::MAX, i64::MIN)
    }
    fn add(&mut self, r: Row, a: Self::Acc) -> Self::Acc {
        (a.0 + 1, a.1 + r.value, a.2.min(r.timestamp_ms), a.3.max(r.timestamp_ms))
    }
    fn get_result(&mut self, a: &Self::Acc) -> Self::Out {
        *a
    }
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        (a.0 + b.0, a.1 + b.1, a.2.min(b.2), a.3.max(b.3))
    }
}

/// Formats a double as Java's `Double.toString` does for ordinary magnitudes
/// (`7.0`, `0.25`; scientific notation outside [1e-3, 1e7)).
fn java_double(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if x == 0.0 || (1e-3..1e7).contains(&x.abs()) {
        let s = format!("{x}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').expect("scientific notation");
        let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
        format!("{mantissa}E{exp}")
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let checkpointing = cli.job.checkpoint_dir.is_some();
    let env = StreamEnv::new(cli.job.config());
    let is_count = matches!(cli.window, Spec::Count { .. });
    if is_count && (cli.trigger.is_some() || cli.evictor.is_some()) {
        anyhow::bail!("--trigger and --evictor apply to time windows only, not to --window count:...");
    }
    let mut strategy = WatermarkStrategy::for_bounded_out_of_orderness(cli.out_of_orderness)
        .with_timestamp_assigner(|r: &Row, _| r.timestamp_ms);
    if cli.watermark_every_event {
        strategy = strategy.every_event();
    }
    if let Some(ms) = cli.idleness {
        strategy = strategy.with_idleness(ms);
    }
    let inputs: Vec<DataStream<Row>> = cli
        .input
        .iter()
        .map(|path| {
            let mut source = FileSource::csv::<Row>(path).trim(true);
            if let Some(rate) = cli.rate {
                source = source.with_rate(rate);
            }
            env.from_source(source).set_parallelism(1).assign_timestamps_and_watermarks(strategy.clone())
        })
        .collect();
    let all = match inputs.split_first() {
        Some((one, [])) => one.clone(),
        Some((first, rest)) => first.union(rest),
        None => anyhow::bail!("--input is required"),
    };
    let keyed = all.key_by(|r: &Row| r.key.clone());
    let late_tag = OutputTag::<Row>::new("late");
    let windowed = match cli.window {
        Spec::Count { n, slide: None } => keyed.count_window(n),
        Spec::Count { n, slide: Some(s) } => keyed.count_window_sliding(n, s),
        time => {
            let assigner = match time {
                Spec::Tumble { size, offset } => WindowAssigner::tumbling(size).with_offset(offset),
                Spec::Hop { size, slide, offset } => WindowAssigner::sliding(size, slide).with_offset(offset),
                Spec::Session { gap } => WindowAssigner::session(gap),
                Spec::Count { .. } => unreachable!("handled above"),
            };
            let mut w = keyed
                .window(assigner)
                .allowed_lateness(cli.allowed_lateness)
                .side_output_late_data(&late_tag);
            if let Some(ms) = cli.trigger {
                w = w.trigger(ContinuousEventTimeTrigger::of(ms));
            }
            match cli.evictor {
                Some(Evict::Count(n)) => w = w.evictor(CountEvictor::of(n)),
                Some(Evict::Time(ms)) => w = w.evictor(TimeEvictor::of(ms)),
                None => {}
            }
            w
        }
    };
    let results = windowed.aggregate_with(
        CountSum,
        move |key: &String,
              ctx: &WindowContext,
              r: &[(u64, f64, i64, i64)],
              out: &mut Collector<'_, String>| {
            let (count, sum, min_ts, max_ts) = r[0];
            let (start, end) =
                if is_count { (min_ts, max_ts) } else { (ctx.window.start(), ctx.window.end()) };
            out.collect(format!("{key},{start},{end},{count},{}", java_double(sum)));
            Ok::<(), UserError>(())
        },
    );
    if checkpointing {
        results.sink_to(TransactionalFileSink::lines(&cli.output));
    } else {
        results.sink_to(FileSink::lines(&cli.output));
    }
    if let Some(late) = &cli.late_output {
        if is_count {
            // Count windows are never late; the file is still created.
            if checkpointing {
                std::fs::create_dir_all(late)?;
            } else {
                std::fs::File::create(late)?;
            }
        } else {
            let late_rows = results
                .side_output(&late_tag)
                .map(|r: Row| format!("{},{},{}", r.key, r.timestamp_ms, java_double(r.value)));
            if checkpointing {
                late_rows.sink_to(TransactionalFileSink::lines(late));
            } else {
                late_rows.sink_to(FileSink::lines(late));
            }
        }
    }
    if cli.control_stdin {
        let control = env.control();
        // A plain thread: reading stdin blocks, which is fine off the cores.
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                let answer = match line.trim().split_once(' ') {
                    Some(("savepoint", dir)) => control.savepoint(dir.trim()),
                    Some(("stop", dir)) => control.stop_with_savepoint(dir.trim()),
                    _ => Err(format!("unknown command '{line}': use 'savepoint DIR' or 'stop DIR'")),
                };
                match answer {
                    Ok(dir) => eprintln!("window_csv: savepoint {}", dir.display()),
                    Err(e) => eprintln!("window_csv: {e}"),
                }
            }
        });
    }
    let result = cli.job.execute(env)?;
    let dropped = result.metrics.total("late_records_dropped");
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "window_csv: {} results, {dropped} late records dropped, {} checkpoints",
        result.metrics.total("records_written"),
        result.checkpoints_completed
    )?;
    if cli.job.state_backend == brisk::StateBackendKind::Log {
        writeln!(
            err,
            "window_csv: log backend: {} window rows evicted, {} read back",
            result.metrics.total("state_evicted"),
            result.metrics.total("state_read_back")
        )?;
    }
    Ok(())
}
