//! The examples, run as a user runs them, print what their docs promise.
//! `cargo test` builds the examples before running tests; this file finds
//! their binaries beside its own.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output};

use common::example;

fn run(name: &str, args: &[&str]) -> Output {
    let out = Command::new(example(name)).args(args).output().unwrap();
    assert!(out.status.success(), "{name} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn reference_word_count(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        *m.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    m
}

fn parse_word_count(stdout: &[u8]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in String::from_utf8(stdout.to_vec()).unwrap().lines() {
        let (w, n) = line.split_once('\t').unwrap_or_else(|| panic!("not word<TAB>count: {line:?}"));
        assert!(m.insert(w.to_string(), n.parse().unwrap()).is_none(), "{w} printed twice");
    }
    m
}

#[test]
fn word_count_counts_every_distinct_word_once() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/sample.txt");
    let text = std::fs::read_to_string(sample).unwrap();
    for cores in ["1", "2"] {
        let out = run("word_count", &[sample, "--cores", cores]);
        assert_eq!(parse_word_count(&out.stdout), reference_word_count(&text), "cores {cores}");
    }
    // Unicode, punctuation and case.
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all("Ünïcode ünïcode! don't\tDON'T 42 42x — x\n\nlast".as_bytes()).unwrap();
    let path = f.path().to_str().unwrap();
    let out = run("word_count", &[path, "--cores", "2"]);
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(parse_word_count(&out.stdout), reference_word_count(&text));
}

#[test]
fn moving_average_emits_previous_and_current_average_and_counts_bad_lines() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let mut expected = Vec::new();
    let mut previous: BTreeMap<String, f64> = BTreeMap::new();
    let mut bad = 0;
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..3_000 {
        if i % 97 == 0 {
            writeln!(f, "user_{},oops", i % 5).unwrap();
            bad += 1;
            continue;
        }
        let user = format!("user_{}", rng.u8(0..20));
        let value = rng.i32(-400..400) as f64 / 8.0;
        writeln!(f, "{user},{value}").unwrap();
        let avg = previous.get(&user).map_or(value, |p| (p + value) / 2.0);
        previous.insert(user.clone(), value);
        expected.push(format!("{user},{value},{avg}"));
    }
    f.flush().unwrap();
    for cores in ["1", "2"] {
        let out = run("moving_average", &[f.path().to_str().unwrap(), "--cores", cores]);
        let stdout = String::from_utf8(out.stdout).unwrap();
        // Per user, lines come out in input order; users interleave freely.
        let per_user = |lines: Vec<&str>| {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for l in lines {
                m.entry(l.split(',').next().unwrap().to_string()).or_default().push(l.to_string());
            }
            m
        };
        assert_eq!(
            per_user(stdout.lines().collect()),
            per_user(expected.iter().map(String::as_str).collect()),
            "cores {cores}"
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(&format!("malformed lines skipped: {bad}")), "{stderr}");
    }
}

#[test]
fn bad_arguments_are_rejected_with_a_message_naming_them() {
    let out = Command::new(example("word_count")).args(["x.txt", "--cores", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cores"), "{stderr}");

    let out = Command::new(example("word_count")).arg("/nonexistent/brisk.txt").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open '/nonexistent/brisk.txt'"), "{stderr}");
}
