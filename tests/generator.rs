//! The generator: index ranges split over cores, unbounded striding, and a
//! rate limit that is never exceeded.

use brisk::prelude::*;

#[test]
fn bounded_generator_emits_each_index_once_at_any_core_count() {
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig { pin_cores: cores <= 2, ..JobConfig::with_cores(cores) });
        let out = env.from_source(GeneratorSource::new(10_007, |i| i)).collect();
        env.execute().unwrap();
        let mut got = out.take();
        got.sort();
        assert_eq!(got, (0..10_007).collect::<Vec<_>>(), "cores {cores}");
    }
}

#[test]
fn interleaved_splits_emit_each_index_once_and_advance_together() {
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig { pin_cores: cores <= 2, ..JobConfig::with_cores(cores) });
        let out = env
            .from_source(GeneratorSource::new(10_007, |i| i).with_splits(4).interleaved())
            .map(|i| (i % 4, i))
            .collect();
        env.execute().unwrap();
        let got = out.take();
        let mut all: Vec<u64> = got.iter().map(|r| r.1).collect();
        all.sort();
        assert_eq!(all, (0..10_007).collect::<Vec<_>>(), "cores {cores}");
        // Split s holds the indices ≡ s (mod 4), in order: each split
        // starts at the beginning instead of at its quarter of the range.
        for s in 0..4 {
            let split: Vec<u64> = got.iter().filter(|r| r.0 == s).map(|r| r.1).collect();
            assert_eq!(split.first(), Some(&s), "cores {cores}, split {s}");
            assert!(split.windows(2).all(|w| w[1] == w[0] + 4), "cores {cores}, split {s} in order");
        }
    }
}

#[test]
fn the_rate_limit_is_never_exceeded() {
    // At most `rate` records per second in total: 1 000 records at 10 000/s
    // take at least 0.1 s whatever the core count (a slower machine only
    // takes longer, so this bound cannot fail spuriously).
    for cores in [1, 2] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let out = env.from_source(GeneratorSource::new(1_000, |i| i).with_rate(10_000.0)).collect();
        let result = env.execute().unwrap();
        assert_eq!(out.take().len(), 1_000);
        let secs = result.elapsed.as_secs_f64();
        // Each split's first record is due at once: (1000/cores - 1) / (10000/cores).
        let floor = (1_000.0 / cores as f64 - 1.0) / (10_000.0 / cores as f64);
        assert!(
            secs >= floor,
            "{cores} cores: 1000 records in {secs:.4} s beats the rate (floor {floor:.4} s)"
        );
    }
}

#[test]
fn an_invalid_rate_is_rejected() {
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let _ = env.from_source(GeneratorSource::new(10, |i| i).with_rate(0.0)).collect();
    let msg = env.execute().unwrap_err().to_string();
    assert!(msg.contains("generator rate = 0"), "{msg}");
}

#[test]
fn an_anchored_rate_catches_up_from_its_start() {
    // The clock stands still, 2 s after the schedule's anchor: at 1 000/s
    // records 0..=2000 are due (record j at j ms), so all 2 001 come out at
    // once. A schedule that started at the first batch would let one record
    // out and wait for the clock forever; the job runs on another thread so
    // that this shows as a failure, not a hung test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let clock = brisk::ManualClock::new(10_000);
        let env = StreamEnv::new(JobConfig { pin_cores: false, clock, ..JobConfig::with_cores(1) });
        let out =
            env.from_source(GeneratorSource::new(2_001, |i| i).with_rate_from(1_000.0, 8_000_000)).collect();
        let result = env.execute().map(|_| out.take()).map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(result) => assert_eq!(result.unwrap(), (0..2_001).collect::<Vec<_>>()),
        Err(_) => panic!("the job did not finish within 60 s: the schedule did not start at its anchor"),
    }
}

#[test]
fn a_future_anchor_holds_records_until_it_comes() {
    // At 1 000/s from an anchor 1 s ahead of the clock, record j is due at
    // 11 000 + j ms. The source starts polling at once, while the clock
    // stands at 10 000; the test then moves the clock a millisecond at a
    // time. Each record notes the clock when it passes: none may be early.
    let clock = brisk::ManualClock::new(10_000);
    let (control_tx, control_rx) = std::sync::mpsc::channel();
    let job_clock = clock.clone();
    let job = std::thread::spawn(move || {
        let config = JobConfig { pin_cores: false, clock: job_clock.clone(), ..JobConfig::with_cores(1) };
        let env = StreamEnv::new(config);
        control_tx.send(env.control()).unwrap();
        let out = env
            .from_source(GeneratorSource::new(50, |i| i).with_rate_from(1_000.0, 11_000_000))
            .map(move |i| (i, brisk::Clock::now_ms(&*job_clock)))
            .collect();
        env.execute().map(|_| out.take()).map_err(|e| e.to_string())
    });
    let control = control_rx.recv().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The source has reported its size: it is about to read.
    while control.progress().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job did not start within 60 s");
        std::thread::yield_now();
    }
    while !job.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the job did not finish within 60 s");
        clock.advance_ms(1);
        std::thread::yield_now();
    }
    let got = job.join().unwrap().unwrap();
    assert_eq!(got.iter().map(|&(i, _)| i).collect::<Vec<_>>(), (0..50).collect::<Vec<_>>());
    for (i, at) in got {
        assert!(at >= 11_000 + i as i64, "record {i} passed at clock {at}, before it was due");
    }
}
