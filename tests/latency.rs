//! Latency markers: sources send them every `latency_interval_ms` behind
//! their records, through operators and exchanges, to every sink, which
//! records in an hdrhistogram how long they took from their origin. The
//! origin of a rate-limited generator's marker is its newest record's
//! scheduled time, so a source behind its schedule shows as latency (no
//! coordinated omission).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use brisk::prelude::*;

#[test]
fn every_sink_gets_markers_through_exchanges() {
    let result = common::run_guarded(60, || {
        let config = JobConfig { pin_cores: false, latency_interval_ms: 1, ..JobConfig::with_cores(2) };
        let env = StreamEnv::new(config);
        let counted = env
            .from_source(GeneratorSource::new(40_000, |i| (i % 50, 1u64)).with_rate(100_000.0))
            .key_by(|r: &(u64, u64)| r.0)
            .reduce(|a: (u64, u64), b: (u64, u64)| (a.0, a.1 + b.1))
            .name("count");
        counted.sink_to(brisk::DiscardSink);
        let _kept = counted.map(|r: (u64, u64)| r.1).collect();
        env.execute().unwrap()
    });
    let names: Vec<&str> = result.latency.iter().map(|l| l.sink.as_str()).collect();
    assert_eq!(result.latency.len(), 2, "one summary per sink: {names:?}");
    for l in &result.latency {
        println!("{l}");
        assert!(l.count > 10, "{l}");
        assert!(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us, "{l}");
        assert!(l.p50_us > 0, "{l}");
    }
}

#[test]
fn a_generator_behind_its_schedule_shows_as_latency() {
    // The schedule runs on a manual clock: one record is due at the start,
    // then the clock jumps 5 s, so everything (2,000 records at 1,000/s)
    // is due at once. The first batch after the jump ends with record
    // 1,024, scheduled 1.024 s after the start: its marker is ~4 s late.
    let clock = brisk::ManualClock::new(1_000_000);
    let emitted = Arc::new(AtomicU64::new(0));
    let (c, e) = (clock.clone(), emitted.clone());
    let job = std::thread::spawn(move || {
        let config =
            JobConfig { pin_cores: false, latency_interval_ms: 1, clock: c, ..JobConfig::with_cores(1) };
        let env = StreamEnv::new(config);
        env.from_source(GeneratorSource::new(2_000, |i| i).with_rate(1_000.0))
            .map(move |i: u64| {
                e.fetch_add(1, Ordering::SeqCst);
                i
            })
            .sink_to(brisk::DiscardSink);
        env.execute()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while emitted.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the first record never came");
        std::thread::yield_now();
    }
    clock.advance_ms(5_000);
    let result = job.join().unwrap().unwrap();
    let l = &result.latency[0];
    println!("{l}");
    assert!(l.max_us >= 3_000_000, "the lag behind the schedule is latency: {l}");
}
