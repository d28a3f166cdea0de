//! Where driving tasks spend their time (busy, backpressured, idle: the
//! `busy_ns`, `backpressured_ns` and `idle_ns` counters of each task's
//! first operator, per core), as the REST API and UI show it.

mod common;

use brisk::prelude::*;

/// A fast source into an exchange that holds one batch per channel, in
/// front of a slow operator: the source must wait for room.
#[test]
fn a_source_in_front_of_a_slow_operator_is_backpressured() {
    let result = common::run_guarded(120, || {
        let config = JobConfig { pin_cores: false, exchange_queue_batches: 1, ..JobConfig::with_cores(2) };
        let env = StreamEnv::new(config);
        env.from_source(GeneratorSource::new(100_000, |i| i))
            .name("fast")
            .rebalance()
            // The receiving task is named by its first operator.
            .name("slow")
            .map(|i: u64| {
                // Work, not waiting: a few thousand hash rounds per record.
                (0..2_000u64).fold(i, |h, k| brisk::state::hash::fmix64(h ^ k))
            })
            .sink_to(brisk::DiscardSink);
        env.execute().unwrap()
    });
    let m = &result.metrics;
    let (busy, bp) = (m.operator_total("fast", "busy_ns"), m.operator_total("fast", "backpressured_ns"));
    let slow_busy = m.operator_total("slow", "busy_ns");
    println!("fast: busy {busy} ns, backpressured {bp} ns; slow: busy {slow_busy} ns");
    assert!(bp > 0, "the source waited for room downstream");
    assert!(slow_busy > busy, "the slow side did the work");
}

/// A rate-limited source: the tasks downstream of its exchange mostly wait
/// for input.
#[test]
fn tasks_behind_a_slow_source_are_idle() {
    let result = common::run_guarded(120, || {
        let config = JobConfig { pin_cores: false, ..JobConfig::with_cores(2) };
        let env = StreamEnv::new(config);
        env.from_source(GeneratorSource::new(2_000, |i| i).with_rate(10_000.0))
            .name("trickle")
            .rebalance()
            .name("next")
            .map(|i: u64| i + 1)
            .sink_to(brisk::DiscardSink);
        env.execute().unwrap()
    });
    let m = &result.metrics;
    let (idle, busy) = (m.operator_total("next", "idle_ns"), m.operator_total("next", "busy_ns"));
    println!(
        "next: idle {idle} ns, busy {busy} ns; trickle: idle {} ns",
        m.operator_total("trickle", "idle_ns")
    );
    assert!(idle > busy, "waiting for input, mostly");
    assert!(m.operator_total("trickle", "idle_ns") > 0, "the source waited for its schedule");
}
