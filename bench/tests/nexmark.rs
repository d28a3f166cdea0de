//! Each Nexmark query's rows equal Flink SQL's on the same generated CSV
//! files (fixtures in tests/nexmark/, made by tests/nexmark/generate.sh with
//! the real Flink), at one and two cores; q12, on processing time, is
//! checked by invariants.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::assert_same_rows;
use std::path::{Path, PathBuf};
use std::process::Command;

const NEXMARK: &str = env!("CARGO_BIN_EXE_nexmark");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/nexmark")
}

fn nexmark(args: &[&str]) {
    let out = Command::new(NEXMARK).args(args).output().expect("run nexmark");
    assert!(
        out.status.success(),
        "nexmark {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixtures' inputs, written again by the generator (as generate.sh did).
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let (normal, slow) = (dir.join("input"), dir.join("input-slow"));
    for (path, rate) in [(&normal, "200"), (&slow, "1")] {
        nexmark(&["--generate-to", path.to_str().unwrap(), "--events", "10000", "--event-rate", rate]);
    }
    (normal, slow)
}

fn run_query(query: &str, input: &Path, out: &Path, cores: u32, extra: &[&str]) -> Vec<String> {
    let cores = cores.to_string();
    let mut args = vec![
        "--query",
        query,
        "--input-dir",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--cores",
        &cores,
    ];
    args.extend_from_slice(extra);
    nexmark(&args);
    let text = std::fs::read_to_string(out).expect("query output");
    text.lines().skip(1).map(String::from).collect()
}

fn expected(name: &str) -> Vec<String> {
    let path = fixtures().join("expected").join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(String::from).collect()
}

#[test]
fn every_query_matches_flink_sql_on_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let (input, slow) = inputs(dir.path());
    let cases: &[(&str, &str, &Path)] = &[
        ("q0", "q0", &input),
        ("q1", "q1", &input),
        ("q2", "q2", &input),
        ("q3", "q3", &input),
        ("q5", "q5", &input),
        ("q7", "q7", &input),
        ("q8", "q8", &input),
        ("q9", "q9", &input),
        ("q11", "q11", &input),
        ("q14", "q14", &input),
        ("q14", "q14-slow", &slow),
    ];
    for cores in [1, 2] {
        for &(query, fixture, input) in cases {
            let out = dir.path().join(format!("{fixture}-{cores}.csv"));
            let got = run_query(query, input, &out, cores, &[]);
            let want = expected(fixture);
            assert!(!want.is_empty(), "{fixture}: the fixture has rows");
            assert_same_rows(&format!("{fixture} at {cores} cores"), got, want);
        }
    }
}

/// q4 updates a category's average as auctions close: its last row per
/// category is the result Flink's updating query ends with.
#[test]
fn q4_ends_with_flink_sqls_averages() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = inputs(dir.path());
    for cores in [1, 2] {
        let rows = run_query("q4", &input, &dir.path().join(format!("q4-{cores}.csv")), cores, &[]);
        let mut last = BTreeMap::new();
        for r in rows {
            let (category, avg) = r.split_once(',').unwrap();
            last.insert(category.to_string(), avg.to_string());
        }
        let got = last.into_iter().map(|(c, a)| format!("{c},{a}")).collect();
        assert_same_rows(&format!("q4 at {cores} cores"), got, expected("q4"));
    }
}

/// q12 counts bids per bidder in 10 s windows of processing time, so its
/// rows depend on timing; in batch mode every window fires at the end, and
/// the rows must account for every bid exactly once.
#[test]
fn q12_counts_every_bid_once_in_aligned_processing_time_windows() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = inputs(dir.path());
    let bids_text = std::fs::read_to_string(input.join("bid.csv")).unwrap();
    let mut per_bidder: HashMap<u64, u64> = HashMap::new();
    for line in bids_text.lines().skip(1) {
        let bidder: u64 = line.split(',').nth(1).unwrap().parse().unwrap();
        *per_bidder.entry(bidder).or_default() += 1;
    }
    for cores in [1, 2] {
        let out = dir.path().join(format!("q12-{cores}.csv"));
        let rows = run_query("q12", &input, &out, cores, &["--execution-mode", "batch"]);
        let mut counted: HashMap<u64, u64> = HashMap::new();
        let mut windows = std::collections::HashSet::new();
        for r in &rows {
            let f: Vec<&str> = r.split(',').collect();
            let (bidder, count): (u64, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            let (start, end) = (parse(f[2]), parse(f[3]));
            assert_eq!(end - start, 10_000, "{r}: a 10 s window");
            assert_eq!(start % 10_000, 0, "{r}: aligned to 10 s");
            assert!(count > 0, "{r}");
            assert!(windows.insert((bidder, start)), "{r}: one row per bidder and window");
            *counted.entry(bidder).or_default() += count;
        }
        assert_eq!(counted, per_bidder, "at {cores} cores: every bid counted once, under its bidder");
    }
}

fn parse(ts: &str) -> i64 {
    brisk_bench::nexmark::csv::parse_ts(ts).unwrap()
}
