//! Malformed lines follow the declared policy: `fail` stops the job naming the
//! file and line; `skip` drops exactly the bad lines and counts them.

use std::io::Write;

use brisk::prelude::*;
use serde::Deserialize;

mod common;
use common::seed;

#[derive(Clone, Debug, Deserialize, PartialEq, PartialOrd)]
struct Row {
    user: String,
    value: f64,
}

/// Writes `n` lines with about 1 % malformed; returns the file, the good rows
/// in order and the 1-based line numbers of the bad ones.
fn poisoned_csv(seed: u64, n: usize) -> (tempfile::NamedTempFile, Vec<Row>, Vec<usize>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for line in 1..=n {
        if rng.u32(0..100) == 0 {
            let poison: &[u8] = match rng.u8(0..4) {
                0 => b"user_x,not-a-number",
                1 => b"just one field",
                2 => b"user_y,\xff\xfe",
                _ => b",,,",
            };
            file.write_all(poison).unwrap();
            file.write_all(b"\n").unwrap();
            bad.push(line);
        } else {
            let row =
                Row { user: format!("user_{}", rng.u32(0..50)), value: rng.i32(-1000..1000) as f64 / 4.0 };
            writeln!(file, "{},{}", row.user, row.value).unwrap();
            good.push(row);
        }
    }
    file.flush().unwrap();
    (file, good, bad)
}

fn sorted(mut v: Vec<Row>) -> Vec<Row> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

#[test]
fn skip_drops_exactly_the_bad_lines_and_counts_them() {
    let seed = seed();
    let (file, good, bad) = poisoned_csv(seed, 20_000);
    assert!(!bad.is_empty(), "seed {seed} injected no bad line");
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let out = env
            .from_source(FileSource::csv::<Row>(file.path()).on_malformed(MalformedPolicy::Skip))
            .collect();
        let result = env.execute().unwrap();
        assert_eq!(result.metrics.total("malformed_skipped"), bad.len() as u64, "cores {cores}, seed {seed}");
        assert_eq!(sorted(out.take()), sorted(good.clone()), "cores {cores}, seed {seed}");
    }
}

#[test]
fn fail_names_the_file_and_the_line() {
    let seed = seed();
    let (file, _good, bad) = poisoned_csv(seed, 20_000);
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let _ = env.from_source(FileSource::csv::<Row>(file.path())).collect();
        let err = env.execute().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, JobError::Source { .. }), "{msg}");
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");
        // Each split fails at its first bad line; which split reports first
        // depends on timing, so the line must be one of the bad ones (and the
        // first one at one core).
        let line: usize =
            msg.split("malformed line ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(bad.contains(&line), "line {line} is not a bad line: {msg}");
        if cores == 1 {
            assert_eq!(line, bad[0], "{msg}");
        }
    }
}

#[test]
fn header_maps_fields_by_name_and_crlf_and_blank_lines_are_handled() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"value,user\r\n1.5,a\r\n\r\n2.5,b\r\n").unwrap();
    for cores in [1, 2] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let out = env.from_source(FileSource::csv::<Row>(file.path()).has_header(true)).collect();
        env.execute().unwrap();
        let expected = vec![Row { user: "a".into(), value: 1.5 }, Row { user: "b".into(), value: 2.5 }];
        assert_eq!(sorted(out.take()), expected, "cores {cores}");
    }
}

#[test]
fn lines_are_split_exactly_once_over_any_number_of_cores() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut lines = Vec::new();
    for i in 0..5_000 {
        // Lengths from empty to long, so split points fall everywhere.
        let line: String = std::iter::repeat_n('x', rng.usize(0..300)).collect::<String>() + &i.to_string();
        writeln!(file, "{line}").unwrap();
        lines.push(line);
    }
    write!(file, "last line without newline").unwrap();
    lines.push("last line without newline".into());
    file.flush().unwrap();
    lines.sort();
    for cores in [1, 2, 3, 5, 8] {
        let env = StreamEnv::new(JobConfig { pin_cores: cores <= 2, ..JobConfig::with_cores(cores) });
        let out = env.from_source(FileSource::lines(file.path())).collect();
        env.execute().unwrap();
        let mut got = out.take();
        got.sort();
        assert_eq!(got, lines, "cores {cores}, seed {seed}");
    }
}

#[test]
fn invalid_utf8_lines_are_malformed_and_a_missing_file_is_a_clear_error() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"fine\n\xc3\x28bad\nalso fine\n").unwrap();
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let out = env.from_source(FileSource::lines(file.path()).on_malformed(MalformedPolicy::Skip)).collect();
    let result = env.execute().unwrap();
    assert_eq!(out.take(), vec!["fine".to_string(), "also fine".to_string()]);
    assert_eq!(result.metrics.total("malformed_skipped"), 1);

    let env = StreamEnv::new(JobConfig::with_cores(1));
    let _ = env.from_source(FileSource::lines(file.path())).collect();
    let msg = env.execute().unwrap_err().to_string();
    assert!(msg.contains("malformed line 2") && msg.contains("invalid UTF-8"), "{msg}");

    let env = StreamEnv::new(JobConfig::with_cores(2));
    let _ = env.from_source(FileSource::lines("/nonexistent/brisk/input.txt")).collect();
    let msg = env.execute().unwrap_err().to_string();
    assert!(msg.contains("cannot open '/nonexistent/brisk/input.txt'"), "{msg}");
}
