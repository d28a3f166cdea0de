//! The Kafka source and sink against librdkafka's in-process mock cluster:
//! partitions spread over cores with per-key order kept, the malformed-
//! record policies, offsets restored after a failure with at-least-once
//! output and no gap, group commits, and the exactly-once protocol (which
//! the mock accepts but does not enforce: see `brisk::io::kafka`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use brisk::io::kafka::{DisplayValue, Lines};
use brisk::prelude::*;
use rdkafka::mocking::MockCluster;

use common::kafka::{
    Forward, assert_both_cores_read, committed, end_offsets, produce, read_all, read_values,
};

fn cluster(
    topics: &[(&str, i32)],
) -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    let mock = MockCluster::new(1).unwrap();
    for (t, p) in topics {
        mock.create_topic(t, *p, 1).unwrap();
    }
    let brokers = mock.bootstrap_servers();
    (mock, brokers)
}

/// `user_<k>,<i>` lines keyed by user: user `k` gets every `i ≡ k (mod users)`.
fn lines(n: usize, users: usize) -> Vec<(Option<String>, String)> {
    (0..n).map(|i| (Some(format!("user_{}", i % users)), format!("user_{},{i}", i % users))).collect()
}

fn config(cores: usize) -> JobConfig {
    JobConfig { pin_cores: false, ..JobConfig::with_cores(cores) }
}

fn parse(line: &str) -> (String, u64) {
    let (u, i) = line.split_once(',').unwrap();
    (u.to_string(), i.parse().unwrap())
}

#[test]
fn partitions_are_spread_over_cores_and_each_key_stays_in_order() {
    let (_mock, brokers) = cluster(&[("in", 4)]);
    let (n, users) = (20_000, 50);
    produce(&brokers, "in", &lines(n, users));
    let b = brokers.clone();
    let (result, got) = common::run_guarded(60, move || {
        let env = StreamEnv::new(config(2));
        let out = env
            .from_source(KafkaSource::new(&b, &["in"], Lines).bounded())
            .map(|l: String| parse(&l))
            .key_by(|r: &(String, u64)| r.0.clone())
            .process(Forward)
            .collect();
        (env.execute().unwrap(), out.take())
    });
    assert_eq!(got.len(), n, "every record once");
    let mut per_user: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (u, i) in got {
        per_user.entry(u).or_default().push(i);
    }
    for (u, seq) in &per_user {
        let k: u64 = u.strip_prefix("user_").unwrap().parse().unwrap();
        let want: Vec<u64> = (0..n as u64).filter(|i| i % users as u64 == k).collect();
        assert_eq!(seq, &want, "{u}'s records in their produced order");
    }
    assert_both_cores_read(&result.metrics);
}

#[test]
fn malformed_records_fail_with_coordinates_skip_or_go_to_a_dead_letter_topic() {
    let (_mock, brokers) = cluster(&[("in", 1), ("dlq", 1)]);
    let mut records: Vec<(Option<String>, String)> = (0..100).map(|i| (None, format!("{i}"))).collect();
    records[37].1 = "not a number".into();
    records[80].1 = "x80".into();
    produce(&brokers, "in", &records);
    let b = brokers.clone();
    let source = move |policy: KafkaMalformed| {
        KafkaSource::new(
            &b,
            &["in"],
            brisk::io::kafka::FnDeserializer(|r: &brisk::io::kafka::KafkaRecord<'_>| {
                let v = std::str::from_utf8(r.value.unwrap_or_default()).map_err(|e| e.to_string())?;
                v.parse::<u64>().map(Some).map_err(|e| format!("'{v}': {e}"))
            }),
        )
        .bounded()
        .on_malformed(policy)
    };
    // fail: the error names topic, partition and offset.
    let run = move |policy: KafkaMalformed| {
        let source = source.clone();
        common::run_guarded(60, move || {
            let env = StreamEnv::new(config(1));
            let out = env.from_source(source(policy)).collect();
            env.execute().map(|r| (r, out.take()))
        })
    };
    let err = run(KafkaMalformed::Fail).unwrap_err().to_string();
    assert!(err.contains("topic 'in' partition 0 offset 37"), "{err}");
    assert!(err.contains("'not a number'"), "{err}");
    // skip: counted, the rest delivered.
    let (result, out) = run(KafkaMalformed::Skip).unwrap();
    assert_eq!(out.len(), 98);
    assert_eq!(result.metrics.total("malformed_skipped"), 2);
    // dead letter: raw bytes and coordinates in the DLQ topic.
    let (result, out) = run(KafkaMalformed::DeadLetter("dlq".into())).unwrap();
    assert_eq!(out.len(), 98);
    assert_eq!(result.metrics.total("malformed_dead_lettered"), 2);
    let dead = read_all(&brokers, "dlq");
    assert_eq!(dead.len(), 2);
    let header = |r: &common::kafka::Consumed, k: &str| {
        String::from_utf8(r.headers.iter().find(|(n, _)| n == k).unwrap().1.clone()).unwrap()
    };
    assert_eq!(dead[0].value.as_deref(), Some(&b"not a number"[..]));
    assert_eq!(
        (
            header(&dead[0], "brisk.topic"),
            header(&dead[0], "brisk.partition"),
            header(&dead[0], "brisk.offset")
        ),
        ("in".to_string(), "0".to_string(), "37".to_string())
    );
    assert!(header(&dead[0], "brisk.error").contains("invalid digit"), "{:?}", dead[0].headers);
    assert_eq!(dead[1].value.as_deref(), Some(&b"x80"[..]));
    assert_eq!(header(&dead[1], "brisk.offset"), "80");
}

/// A job that fails once mid-stream restarts from its last checkpoint: the
/// restored offsets replay what came after it, so the at-least-once output
/// reflects every input record (duplicates allowed, no gap); the group's
/// committed offsets follow completed checkpoints.
#[test]
fn a_failure_restores_offsets_and_at_least_once_output_has_no_gap() {
    for cores in [1, 2] {
        let (_mock, brokers) = cluster(&[("in", 3), ("out", 2)]);
        let n = 200_000;
        produce(&brokers, "in", &lines(n, 97));
        let dir = tempfile::tempdir().unwrap();
        let config = JobConfig {
            checkpoint_dir: Some(dir.path().join("chk")),
            checkpoint_interval_ms: 10,
            restart_attempts: 2,
            restart_delay_ms: 10,
            ..config(cores)
        };
        let armed = Arc::new(AtomicBool::new(true));
        let (b, fail) = (brokers.clone(), armed.clone());
        let chk = dir.path().join("chk");
        let first_seen = std::sync::OnceLock::new();
        let result = common::run_guarded(120, move || {
            let env = StreamEnv::new(config);
            env.from_source(KafkaSource::new(&b, &["in"], Lines).bounded().with_group_id("g"))
                .map(move |l: String| {
                    let (u, i) = parse(&l);
                    // Once a checkpoint triggered after records flowed is
                    // complete (two past the newest one at the first
                    // check), so that the restart restores offsets past 0.
                    if i % 64 == 0 && fail.load(Ordering::SeqCst) {
                        let newest = newest_complete(&chk);
                        let base = *first_seen.get_or_init(|| newest);
                        if newest >= base + 2 && fail.swap(false, Ordering::SeqCst) {
                            panic!("injected failure at {i}");
                        }
                    }
                    format!("{u},{i}")
                })
                .key_by(|l: &String| l.split(',').next().unwrap().to_string())
                .process(Forward)
                .sink_to(KafkaSink::new(&b, "out", DisplayValue));
            env.execute()
        })
        .unwrap();
        assert!(!armed.load(Ordering::SeqCst), "the failure was injected");
        assert_eq!(result.restarts, 1, "{cores} cores");
        let out = read_values(&brokers, "out");
        let distinct: std::collections::BTreeSet<&String> = out.iter().collect();
        assert_eq!(distinct.len(), n, "{cores} cores: every input reflected ({} written)", out.len());
        let reread = result.metrics.total("records_read");
        println!(
            "{cores} cores: {} records written for {n} inputs after one restart; {reread} read after it",
            out.len()
        );
        assert!(
            reread < n as u64,
            "{cores} cores: the restart resumed from checkpointed offsets ({reread} read)"
        );
        let ends: BTreeMap<i32, i64> = end_offsets(&brokers, "in").into_iter().collect();
        let commits = committed(&brokers, "g", "in");
        let total: i64 = commits.iter().filter_map(|(_, o)| *o).sum();
        assert!(total > 0, "{cores} cores: offsets committed: {commits:?}");
        for (p, o) in commits {
            assert!(o.unwrap_or(0) <= ends[&p], "partition {p}: committed {o:?} beyond the end {}", ends[&p]);
        }
    }
}

/// The id of the newest complete checkpoint (with a manifest) in `chk`.
fn newest_complete(chk: &std::path::Path) -> u64 {
    std::fs::read_dir(chk)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_manifest").exists())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn exactly_once_runs_kafka_transactions_with_checkpoints() {
    let (_mock, brokers) = cluster(&[("in", 2), ("out", 2)]);
    let n = 30_000;
    produce(&brokers, "in", &lines(n, 13));
    let dir = tempfile::tempdir().unwrap();
    let config =
        JobConfig { checkpoint_dir: Some(dir.path().join("chk")), checkpoint_interval_ms: 5, ..config(2) };
    let b = brokers.clone();
    let result = common::run_guarded(120, move || {
        let env = StreamEnv::new(config);
        env.from_source(KafkaSource::new(&b, &["in"], Lines).bounded())
            .key_by(|l: &String| l.split(',').next().unwrap().to_string())
            .process(Forward)
            .sink_to(
                KafkaSink::new(&b, "out", DisplayValue)
                    .with_delivery(KafkaDelivery::ExactlyOnce { transactional_id_prefix: "eos-test".into() }),
            );
        env.execute()
    })
    .unwrap();
    let mut out = read_values(&brokers, "out");
    out.sort();
    let mut want: Vec<String> = lines(n, 13).into_iter().map(|(_, v)| v).collect();
    want.sort();
    assert_eq!(out, want, "every record once");
    let m = &result.metrics;
    assert_eq!(m.total("transactions_aborted_at_start"), 2 * brisk::io::kafka::sink::TRANSACTION_POOL as u64);
    let checkpoints = result.checkpoints_completed;
    let commits = m.total("transactions_committed");
    println!("{checkpoints} checkpoints completed, {commits} transactions committed");
    // One transaction per core per checkpoint that saw its barrier, plus
    // each core's last one at the end of input.
    assert!(commits >= 2, "{commits}");
    assert!(commits <= 2 * (checkpoints + 1), "{commits} commits for {checkpoints} checkpoints");
}
