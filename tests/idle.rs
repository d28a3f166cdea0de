//! An idle core parks instead of spinning: a job that is mostly waiting (a
//! slow rate-limited source) uses a small fraction of the CPU time that
//! spinning cores would. This file holds one test so that the process's CPU
//! time is this job's alone.

use brisk::prelude::*;

/// User + system CPU time of this process, in seconds (from /proc).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn cores_park_while_a_slow_source_waits() {
    let cores = 2;
    let env = StreamEnv::new(JobConfig::with_cores(cores));
    // 100 records at 200 per second: about half a second, nearly all idle.
    env.from_source(GeneratorSource::new(100, |i| i).with_rate(200.0))
        .key_by(|i: &u64| i % 7)
        .reduce(|a, b| a + b)
        .sink_to(brisk::DiscardSink);
    let before = cpu_seconds();
    let result = env.execute().unwrap();
    let cpu = cpu_seconds() - before;
    let wall = result.elapsed.as_secs_f64();
    println!("wall {wall:.3} s, cpu {cpu:.3} s on {cores} cores");
    assert!(wall >= 0.45, "the rate limit held the job for about half a second (took {wall:.3} s)");
    // Spinning cores would burn about wall × cores seconds of CPU.
    assert!(cpu < 0.25 * wall * cores as f64, "idle cores used {cpu:.3} s of CPU in {wall:.3} s");
}
