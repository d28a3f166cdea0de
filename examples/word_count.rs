//! Word count over a text file: one `word<TAB>count` line per distinct word
//! (lowercased; words are runs of alphanumeric characters), in any order.
//!
//! ```text
//! cargo run --release --example word_count -- examples/data/sample.txt [--cores N]
//! ```
//!
//! The file is read in byte-range splits by every core, words are counted per
//! key after a `key_by` exchange, and, the input being bounded, the job runs
//! in batch mode: each word's count is emitted once, at the end.

use std::io::Write;
use std::path::PathBuf;

use brisk::prelude::*;
use clap::Parser;

/// Counts the words of a text file.
#[derive(Parser)]
struct Cli {
    /// The text file to read.
    file: PathBuf,
    #[command(flatten)]
    job: brisk::cli::JobArgs,
}

fn words(line: String) -> Vec<(String, u64)> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| (w.to_lowercase(), 1))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli.job.init_logging();
    let config = JobConfig { execution_mode: ExecutionMode::Batch, ..cli.job.config() };
    let env = StreamEnv::new(config);
    env.from_source(FileSource::lines(&cli.file))
        .flat_map(words)
        .name("split words")
        .key_by(|(word, _): &(String, u64)| word.clone())
        .sum(|(_, count): &mut (String, u64)| count)
        .name("count")
        .sink_to(StdoutSink::lines_with(|(word, count): &(String, u64), out: &mut Vec<u8>| {
            let _ = write!(out, "{word}\t{count}");
        }));
    cli.job.execute(env)?;
    Ok(())
}
