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

/// Per-user moving average of `user,value` lines.
#[derive(Parser)]
struct Cli {
    /// The input file (`user,value` per line).
    file: PathBuf,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

#[path = "common/features.rs"]
mod features;

use features::{Feature, MovingAverage};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let env = StreamEnv::new(cli.job.config());
    env.from_source(FileSource::csv::<Feature>(&cli.file).trim(true).on_malformed(MalformedPolicy::Skip))
        .set_parallelism(1)
        .key_by(|f: &Feature| f.user.clone())
        .process(MovingAverage::default())
        .name("moving average")
        .sink_to(StdoutSink::lines_with(|(user, value, avg): &(String, f64, f64), out: &mut Vec<u8>| {
            let _ = write!(out, "{user},{value},{avg}");
        }));
    let result = cli.job.execute(env)?;
    eprintln!("malformed lines skipped: {}", result.metrics.total("malformed_skipped"));
    Ok(())
}
