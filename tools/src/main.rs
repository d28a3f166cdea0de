//! `brisk`: the command-line tool.
//!
//! Today it generates input data for the examples and benchmarks:
//!
//! ```text
//! brisk generate features --lines 1000000 --users 1000 [--malformed-every 100] [--seed 7] > features.txt
//! brisk generate words --lines 1000000 [--vocabulary 50000] [--seed 7] > words.txt
//! ```
//!
//! and feeds and reads Kafka topics (the feature pipeline's input, and the
//! broker's own rates for benchmarks):
//!
//! ```text
//! brisk kafka produce-features --brokers 127.0.0.1:19092 --topic raw-features --lines 100000 \
//!     [--partitions 4] [--rate 10000] [--users 100] [--malformed-every 0] [--seed 7]
//! brisk kafka consume --brokers 127.0.0.1:19092 --topic features --count 100000 [--print]
//! ```
//!
//! and operates jobs: a running one through its REST API (started with
//! `--web-ui`), checkpoint directories offline:
//!
//! ```text
//! brisk jobs list|show [--address 127.0.0.1:8081]
//! brisk jobs cancel [--token T]
//! brisk jobs savepoint [--dir DIR] [--stop] [--token T]
//! brisk checkpoints list DIR
//! brisk checkpoints verify DIR            # exit status 1 if any is corrupt
//! brisk checkpoints inspect DIR|CHK [--key-groups 10]
//! ```

use std::io::{BufWriter, Write};

use clap::{Parser, Subcommand};

mod checkpoints;
mod jobs;
mod kafka;

/// brisk's command-line tool.
#[derive(Parser)]
#[command(name = "brisk", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes generated input data to stdout.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Produces to and consumes from Kafka topics.
    Kafka {
        #[command(subcommand)]
        what: Kafka,
    },
    /// A running job, through its REST API (a job started with --web-ui).
    Jobs(jobs::Jobs),
    /// Checkpoint directories, offline: list, verify checksums, inspect.
    Checkpoints {
        #[command(subcommand)]
        what: checkpoints::Checkpoints,
    },
}

/// What `user_N,value` lines to make.
#[derive(clap::Args)]
struct FeatureArgs {
    /// Lines to make.
    #[arg(long)]
    lines: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Make every Nth line malformed (0: none).
    #[arg(long, default_value_t = 0)]
    malformed_every: u64,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Subcommand)]
enum Kafka {
    /// Produces `user_N,value` lines into a topic (creating it with
    /// --partitions if it does not exist), then prints the rate achieved.
    ProduceFeatures {
        /// Bootstrap brokers, `host:port[,host:port...]`.
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        /// The topic.
        #[arg(long, default_value = "raw-features")]
        topic: String,
        /// Partitions of the topic if it has to be created.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=10_000))]
        partitions: i32,
        /// At most this many lines per second (default: as fast as the broker takes them).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        #[command(flatten)]
        lines: FeatureArgs,
    },
    /// Reads COUNT records of a topic from its start, then prints the rate.
    Consume {
        /// Bootstrap brokers.
        #[arg(long, default_value = "127.0.0.1:19092")]
        brokers: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// Records to read before stopping.
        #[arg(long)]
        count: u64,
        /// Print each value on stdout.
        #[arg(long)]
        print: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("'{s}' must be a positive number per second")),
    }
}

#[derive(Subcommand)]
enum Generate {
    /// `user_N,value` lines for the moving-average example.
    Features(FeatureArgs),
    /// Lines of words drawn from a skewed vocabulary, for word count.
    Words {
        /// Lines to write.
        #[arg(long)]
        lines: u64,
        /// Distinct words.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
        vocabulary: u64,
        /// Random seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// A small, seeded, dependency-free generator (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        brisk::state::hash::fmix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One generated feature line (`user_N,value`, or a malformed one).
fn feature_line(
    rng: &mut SplitMix,
    n: u64,
    users: u64,
    malformed_every: u64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    if malformed_every > 0 && n.is_multiple_of(malformed_every) {
        write!(out, "user_{},not-a-number", rng.below(users))
    } else {
        let cents = rng.below(100_000);
        write!(out, "user_{},{}.{:02}", rng.below(users), cents / 100, cents % 100)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Kafka { what } => return kafka::run(what),
        Command::Jobs(jobs) => return jobs::run(jobs, &mut std::io::stdout().lock()),
        Command::Checkpoints { what } => {
            let clean = checkpoints::run(what, &mut std::io::stdout().lock())?;
            std::process::exit(if clean { 0 } else { 1 });
        }
        command => Cli { command },
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match cli.command {
        Command::Generate {
            what: Generate::Features(FeatureArgs { lines, users, malformed_every, seed }),
        } => {
            let mut rng = SplitMix(seed);
            (1..=lines).try_for_each(|n| {
                feature_line(&mut rng, n, users, malformed_every, &mut out)?;
                writeln!(out)
            })
        }
        Command::Kafka { .. } | Command::Jobs(_) | Command::Checkpoints { .. } => {
            unreachable!("handled above")
        }
        Command::Generate { what: Generate::Words { lines, vocabulary, seed } } => {
            let mut rng = SplitMix(seed);
            (0..lines).try_for_each(|_| {
                let words = 1 + rng.below(12);
                for w in 0..words {
                    // Skewed: the product of two uniforms favours small ids.
                    let id = rng.below(vocabulary) * rng.below(vocabulary) / vocabulary;
                    write!(out, "{}word{id}", if w == 0 { "" } else { " " })?;
                }
                writeln!(out)
            })
        }
    };
    match result.and_then(|_| out.flush()) {
        // A closed pipe (`| head`) is a normal way to stop reading.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
