//! The seed story on a file: per-user moving average of feature values.
//!
//! Input lines look like `user_A,10.5`. Keyed by user, a `ValueState` keeps
//! the user's previous value; for each line the job emits
//! `user,value,average_of_previous_and_current` (a user's first line emits its
//! own value as the average). Malformed lines are skipped and counted; the
//! count is printed on stderr at the end.
//!
//! ```text
//! cargo run --release --example moving_average -- examples/data/features.txt [--cores N]
//! ```
//!
//! The file is read by one split so that each user's lines keep the file's
//! order (as a Kafka partition would); parsing, state and output are spread
//! over the cores by user.

use std::io::Write;
use std::path::PathBuf;

use brisk::prelude::*;
use clap::Parser;
use serde::Deserialize;

/// Per-user moving average of `user,value` lines.
#[derive(Parser)]
struct Cli {
    /// The input file (`user,value` per line).
    file: PathBuf,
    /// Cores to run on (default: all available).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    cores: Option<u16>,
}

/// One input line.
#[derive(Clone, Debug, Deserialize)]
struct Feature {
    user: String,
    value: f64,
}

/// Keeps each user's previous value.
#[derive(Clone, Default)]
struct MovingAverage {
    previous: ValueState<f64>,
}

impl KeyedProcessFunction<String, Feature, (String, f64, f64)> for MovingAverage {
    fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<(), UserError> {
        self.previous = ctx.value_state("previous")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        f: Feature,
        ctx: &mut Context<'_, String>,
        out: &mut Collector<'_, (String, f64, f64)>,
    ) -> Result<(), UserError> {
        let mut previous = ctx.value(&self.previous);
        let average = match previous.get() {
            Some(p) => (p + f.value) / 2.0,
            None => f.value,
        };
        previous.set(f.value);
        out.collect((f.user, f.value, average));
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    brisk::init_logging();
    let cli = Cli::parse();
    let env = StreamEnv::new(JobConfig { cores: cli.cores.map(usize::from), ..JobConfig::default() });
    env.from_source(FileSource::csv::<Feature>(&cli.file).trim(true).on_malformed(MalformedPolicy::Skip))
        .set_parallelism(1)
        .key_by(|f: &Feature| f.user.clone())
        .process(MovingAverage::default())
        .name("moving average")
        .sink_to(StdoutSink::lines_with(|(user, value, avg): &(String, f64, f64), out: &mut Vec<u8>| {
            let _ = write!(out, "{user},{value},{avg}");
        }));
    let result = env.execute()?;
    eprintln!("malformed lines skipped: {}", result.metrics.total("malformed_skipped"));
    Ok(())
}
