//! brisk's windows give the real Flink's results: every case under
//! tests/conformance/cases was run through Flink (see its README); here the
//! `window_csv` example runs the same pipeline at 1 and 2 cores and must
//! produce the same rows.

use std::path::{Path, PathBuf};
use std::process::Command;

use brisk::batch::{Control, StreamStatus};
use brisk::watermark::WatermarkValve;

fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

/// Rows as sortable fields; the last field (a sum or value) compared numerically.
fn rows(path: &Path) -> Vec<(Vec<String>, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: Vec<(Vec<String>, f64)> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
            let last: f64 = fields.pop().unwrap().parse().unwrap_or_else(|e| panic!("{l}: {e}"));
            (fields, last)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    rows
}

fn same(got: &[(Vec<String>, f64)], want: &[(Vec<String>, f64)]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} rows, Flink has {}", got.len(), want.len()));
    }
    for (g, w) in got.iter().zip(want) {
        let close = (g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0);
        if g.0 != w.0 || !close {
            return Err(format!("row {:?},{} where Flink has {:?},{}", g.0, g.1, w.0, w.1));
        }
    }
    Ok(())
}

#[test]
fn window_results_equal_flinks_on_every_case() {
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 10, "conformance cases missing from {}", cases_dir.display());
    let out_dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let args = std::fs::read_to_string(case.join("args")).unwrap();
        let a: Vec<&str> = args.split_whitespace().collect();
        // The log backend with the smallest budget: rows are evicted and
        // read back all the time, and the output must not change.
        for (cores, backend) in [("1", "memory"), ("2", "memory"), ("2", "log")] {
            let (out, late) = (
                out_dir.path().join(format!("{name}-{cores}-{backend}.csv")),
                out_dir.path().join(format!("{name}-{cores}-{backend}-late.csv")),
            );
            let mut cmd = Command::new(example("window_csv"));
            cmd.arg("--input").arg(case.join("input.csv"));
            cmd.args([
                "--window",
                a[0],
                "--out-of-orderness",
                a[1],
                "--allowed-lateness",
                a[2],
                "--cores",
                cores,
                "--state-backend",
                backend,
                "--state-memory-budget",
                "4096",
            ]);
            if a[3] == "1" {
                cmd.arg("--watermark-every-event");
            }
            for extra in &a[4..] {
                let (name, value) = extra.split_once('=').expect("NAME=VALUE in args");
                cmd.arg(format!("--{name}"));
                match name {
                    "input" => cmd.arg(case.join(value)),
                    _ => cmd.arg(value),
                };
            }
            cmd.arg("--output").arg(&out).arg("--late-output").arg(&late);
            let status = cmd.output().unwrap();
            assert!(status.status.success(), "{name}: {}", String::from_utf8_lossy(&status.stderr));
            if let Err(e) = same(&rows(&out), &rows(&case.join("expected.csv"))) {
                failures.push(format!("{name} at {cores} cores, {backend} backend: {e}"));
            }
            if let Err(e) = same(&rows(&late), &rows(&case.join("expected_late.csv"))) {
                failures.push(format!("{name} late output at {cores} cores, {backend} backend: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "differences from Flink:\n{}", failures.join("\n"));
    println!(
        "{} cases × 3 configurations (1 and 2 cores; 2 cores on the log backend) equal Flink's output",
        cases.len()
    );
}

#[test]
fn window_csv_rejects_bad_specs_and_malformed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "a,1,1.0\nb,two,2.0\n").unwrap();
    let run_with = |window: &str, extra: &[&str]| {
        Command::new(example("window_csv"))
            .arg("--input")
            .arg(&input)
            .args(["--window", window, "--out-of-orderness", "0", "--output"])
            .arg(dir.path().join("out.csv"))
            .args(extra)
            .output()
            .unwrap()
    };
    let run = |window: &str| run_with(window, &[]);
    for (extra, message) in [
        (&["--trigger", "every:5"][..], "is not a trigger"),
        (&["--trigger", "continuous:0"][..], "must be a number of ms > 0"),
        (&["--evictor", "count:-1"][..], "is not an evictor"),
        (&["--idleness", "0"][..], "--idleness"),
    ] {
        let bad = run_with("tumble:10", extra);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && err.contains(message), "{extra:?}: {err}");
    }
    let bad = run_with("count:3", &["--evictor", "count:2"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("time windows only"));
    let bad = run("tumble:10:10");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("|OFFSET| must be < SIZE"));
    let bad = run("weekly:7");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a window"));
    let malformed = run("tumble:10");
    assert!(!malformed.status.success());
    let err = String::from_utf8_lossy(&malformed.stderr);
    assert!(err.contains("malformed line 2") && err.contains("in.csv"), "{err}");
}

/// Parses `w TS` / `s idle|active` into a control message.
fn control(kind: &str, value: &str) -> Control {
    match (kind, value) {
        ("w", ts) => Control::Watermark(ts.parse().unwrap()),
        ("s", "idle") => Control::Status(StreamStatus::Idle),
        ("s", "active") => Control::Status(StreamStatus::Active),
        other => panic!("bad trace item {other:?}"),
    }
}

#[test]
fn watermark_valve_equals_flinks_on_recorded_traces() {
    // Made by flink/ValveTraces.java with the real StatusWatermarkValve: channels
    // with different watermark progress, idle and reactivated channels,
    // backwards and repeated watermarks, the end-of-input maximum.
    let traces = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/valve_traces.txt"),
    )
    .unwrap();
    let (mut valve, mut trace, mut inputs) = (WatermarkValve::new(1), String::new(), 0);
    for line in traces.lines() {
        if let Some(header) = line.strip_prefix("trace ") {
            let (_, channels) = header.split_once(' ').unwrap();
            valve = WatermarkValve::new(channels.parse().unwrap());
            trace = header.to_string();
            continue;
        }
        let (input, want) = line.split_once(" ->").unwrap();
        let i: Vec<&str> = input.split(' ').collect();
        let want: Vec<Control> = want
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|o| {
                let (k, v) = o.split_once(' ').unwrap();
                control(k, v)
            })
            .collect();
        let mut got = Vec::new();
        valve.on_control(i[0].parse().unwrap(), control(i[1], i[2]), &mut got);
        assert_eq!(got, want, "trace {trace} (seed, channels), input '{input}'");
        inputs += 1;
    }
    assert!(inputs > 10_000, "valve traces missing");
    println!("{inputs} valve inputs equal Flink's StatusWatermarkValve");
}
