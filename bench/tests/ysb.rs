//! YSB's views per campaign and window equal Flink SQL's on the same
//! generated JSON file (fixture in tests/ysb/, made by tests/ysb/generate.sh
//! with the real Flink), at one and two cores, over the JSON file, over the
//! in-process binary generator, and through Kafka (librdkafka's mock
//! cluster); a malformed event fails the job with its line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::assert_same_rows;

const YSB: &str = env!("CARGO_BIN_EXE_ysb");

/// The fixture's input: 30 000 events, 1 000 per second of event time.
const INPUT: [&str; 4] = ["--events", "30000", "--event-rate", "1000"];

fn ysb(args: &[&str]) -> Output {
    Command::new(YSB).args(args).output().expect("run ysb")
}

fn ysb_ok(args: &[&str]) {
    let out = ysb(args);
    assert!(
        out.status.success(),
        "ysb {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn expected() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ysb/expected/views.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(String::from).collect()
}

/// Runs the job with `args` plus `--output`; the rows without the header.
fn rows(dir: &Path, name: &str, args: &[&str]) -> Vec<String> {
    let out: PathBuf = dir.join(format!("{name}.csv"));
    let mut all = args.to_vec();
    all.extend(["--output", out.to_str().unwrap()]);
    ysb_ok(&all);
    read_rows(&out)
}

fn read_rows(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).expect("job output");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("campaign_id,window_start,window_end,views"));
    lines.map(String::from).collect()
}

#[test]
fn views_per_campaign_and_window_match_flink_sql() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let mut generate = vec!["--generate-to", input.to_str().unwrap()];
    generate.extend(INPUT);
    ysb_ok(&generate);
    let want = expected();
    assert_eq!(want.len(), 300, "100 campaigns × 3 windows");
    for cores in ["1", "2"] {
        let json = rows(
            dir.path(),
            &format!("json-{cores}"),
            &["--input-dir", input.to_str().unwrap(), "--cores", cores],
        );
        assert_same_rows(&format!("JSON input at {cores} cores"), json, want.clone());
        let mut args = INPUT.to_vec();
        args.extend(["--cores", cores]);
        let binary = rows(dir.path(), &format!("generator-{cores}"), &args);
        assert_same_rows(&format!("in-process generator at {cores} cores"), binary, want.clone());
    }
}

#[test]
fn a_malformed_event_fails_the_job_naming_its_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    ysb_ok(&["--generate-to", input.to_str().unwrap(), "--events", "100"]);
    let events = input.join("events.json");
    let text = std::fs::read_to_string(&events).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let bad = lines[41].replacen("\"ad_type\":\"", "\"ad_type\":\"billboard-", 1);
    lines[41] = &bad;
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let out = ysb(&["--input-dir", input.to_str().unwrap(), "--cores", "2"]);
    assert!(!out.status.success(), "the job must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("malformed line 42 of"), "{stderr}");
    assert!(stderr.contains("ad_type 'billboard-"), "{stderr}");
}

#[test]
fn events_through_kafka_give_flink_sqls_rows() {
    use brisk::prelude::*;
    use brisk_bench::nexmark::queries::Output as Rows;
    use brisk_bench::ysb::generator::{Generator, YsbConfig};
    use brisk_bench::ysb::job::{Input, build, build_producer};

    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("ads", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let config = || JobConfig { pin_cores: false, ..JobConfig::with_cores(2) };
    let generator = Generator::new(YsbConfig { rate_per_s: 1000, ..YsbConfig::default() });
    let env = StreamEnv::new(config());
    build_producer(&env, generator.clone(), 30_000, (&brokers, "ads", 2), &[]);
    env.execute().expect("produce");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kafka.csv");
    let env = StreamEnv::new(config());
    let input = Input::Kafka { brokers: brokers.clone(), topic: "ads".into(), properties: Vec::new() };
    build(&env, input, generator.ids().campaign_table(), &Rows::to(Some(out.clone())));
    let result = env.execute().expect("consume");
    assert_eq!(result.metrics.operator_total("ysb kafka", "records_out"), 30_000);
    assert_same_rows("through Kafka at 2 cores", read_rows(&out), expected());
}
