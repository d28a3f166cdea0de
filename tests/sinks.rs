//! File sinks: one file fed by every core, one part file per core, CSV with a
//! header, empty output, and a clear error for a path that cannot be written.

use std::collections::BTreeSet;

use brisk::prelude::*;
use serde::Serialize;

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn one_file_gets_every_line_once_from_every_core() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/lines.txt");
    let env = StreamEnv::new(JobConfig::with_cores(2));
    env.from_collection((0..50_000u64).collect())
        .map(|i| format!("line {i}"))
        .sink_to(FileSink::lines(&path));
    env.execute().unwrap();
    let got: Vec<String> = lines_of(&path);
    assert_eq!(got.len(), 50_000, "no line lost or duplicated");
    let expected: BTreeSet<String> = (0..50_000).map(|i| format!("line {i}")).collect();
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected, "no line torn or mixed");
}

#[test]
fn per_core_sinks_write_one_part_file_per_core() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parts");
    let env = StreamEnv::new(JobConfig::with_cores(2));
    env.from_collection((0..1_000u64).collect()).sink_to(FileSink::lines(&path).per_core());
    env.execute().unwrap();
    let mut all: Vec<u64> = Vec::new();
    for core in 0..2 {
        let part = lines_of(&path.join(format!("part-{core}")));
        assert!(!part.is_empty(), "core {core} wrote its split");
        all.extend(part.iter().map(|l| l.parse::<u64>().unwrap()));
    }
    all.sort();
    assert_eq!(all, (0..1_000).collect::<Vec<_>>());
}

#[derive(Clone, Serialize)]
struct Row {
    user: String,
    total: f64,
}

#[test]
fn csv_sink_writes_a_header_then_rows_and_empty_output_is_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    let empty = dir.path().join("empty.txt");
    let env = StreamEnv::new(JobConfig::with_cores(2));
    let rows = vec![Row { user: "a,b".into(), total: 1.5 }, Row { user: "c".into(), total: -2.0 }];
    env.from_collection(rows).sink_to(FileSink::csv(&path));
    env.from_collection(Vec::<u64>::new()).sink_to(FileSink::lines(&empty));
    env.execute().unwrap();
    let got = lines_of(&path);
    assert_eq!(got[0], "user,total", "one header row");
    let mut rows = got[1..].to_vec();
    rows.sort();
    assert_eq!(rows, vec!["\"a,b\",1.5".to_string(), "c,-2.0".to_string()]);
    assert_eq!(std::fs::read(&empty).unwrap(), b"", "empty output still creates the file");
}

#[test]
fn an_unwritable_path_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("cannot/be/here.txt");
    let env = StreamEnv::new(JobConfig::with_cores(2));
    env.from_collection((0..10u64).collect()).sink_to(FileSink::lines(&path));
    let err = env.execute().unwrap_err();
    assert!(matches!(err, JobError::Sink { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}
