//! How far a job's bounded sources have read (`JobControl::progress`, what
//! the progress bar of `JobArgs::execute` draws): records of a generator,
//! bytes of a file, summed over splits; complete at the end.

mod common;

use std::io::Write;

use brisk::prelude::*;

fn config(cores: usize) -> JobConfig {
    JobConfig { pin_cores: false, ..JobConfig::with_cores(cores) }
}

#[test]
fn a_generator_reports_records_and_ends_complete() {
    let n = 20_000u64;
    let (tx, rx) = std::sync::mpsc::channel();
    let job = std::thread::spawn(move || {
        let env = StreamEnv::new(config(2));
        tx.send(env.control()).unwrap();
        env.from_source(GeneratorSource::new(n, |i| i).with_rate(40_000.0)).sink_to(brisk::DiscardSink);
        env.execute()
    });
    let control = rx.recv().unwrap();
    // While it runs (0.5 s at this rate): part of the whole, growing.
    let mut seen = Vec::new();
    while !job.is_finished() {
        if let Some(p) = control.progress()
            && seen.last() != Some(&p)
        {
            seen.push(p);
        }
        std::thread::yield_now();
    }
    job.join().unwrap().unwrap();
    let partial: Vec<&(u64, u64)> = seen.iter().filter(|(d, t)| *t == n && *d > 0 && *d < n).collect();
    assert!(partial.len() >= 2, "progress seen mid-run against the whole total: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "never backwards: {seen:?}");
    assert_eq!(control.progress(), Some((n, n)), "complete at the end");
}

#[test]
fn files_report_bytes_over_splits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..50_000 {
        writeln!(f, "line {i}").unwrap();
    }
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    let env = StreamEnv::new(config(2));
    let control = env.control();
    assert_eq!(control.progress(), None, "nothing before the job runs");
    env.from_source(FileSource::lines(&path)).sink_to(brisk::DiscardSink);
    let result = env.execute().unwrap();
    assert_eq!(result.metrics.total("records_out"), 50_000);
    assert_eq!(control.progress(), Some((size, size)), "every byte of both splits");
}
