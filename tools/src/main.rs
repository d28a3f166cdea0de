//! `brisk`: the command-line tool.
//!
//! Today it generates input data for the examples and benchmarks:
//!
//! ```text
//! brisk generate features --lines 1000000 --users 1000 [--malformed-every 100] [--seed 7] > features.txt
//! brisk generate words --lines 1000000 [--vocabulary 50000] [--seed 7] > words.txt
//! ```
//!
//! Job operations (`brisk jobs ...`, `brisk checkpoints ...`) join it with the
//! REST API.

use std::io::{BufWriter, Write};

use clap::{Parser, Subcommand};

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
}

#[derive(Subcommand)]
enum Generate {
    /// `user_N,value` lines for the moving-average example.
    Features {
        /// Lines to write.
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
    },
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = match cli.command {
        Command::Generate { what: Generate::Features { lines, users, malformed_every, seed } } => {
            let mut rng = SplitMix(seed);
            (1..=lines).try_for_each(|n| {
                if malformed_every > 0 && n % malformed_every == 0 {
                    writeln!(out, "user_{},not-a-number", rng.below(users))
                } else {
                    let cents = rng.below(100_000);
                    writeln!(out, "user_{},{}.{:02}", rng.below(users), cents / 100, cents % 100)
                }
            })
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
