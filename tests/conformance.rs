//! brisk's windows give the real Flink's results: every case under
//! tests/conformance/cases was run through Flink (see its README); here the
//! `window_csv` example runs the same pipeline at 1 and 2 cores and must
//! produce the same rows.

use std::path::{Path, PathBuf};
use std::process::Command;

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
        for cores in ["1", "2"] {
            let (out, late) = (
                out_dir.path().join(format!("{name}-{cores}.csv")),
                out_dir.path().join(format!("{name}-{cores}-late.csv")),
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
            ]);
            if a[3] == "1" {
                cmd.arg("--watermark-every-event");
            }
            cmd.arg("--output").arg(&out).arg("--late-output").arg(&late);
            let status = cmd.output().unwrap();
            assert!(status.status.success(), "{name}: {}", String::from_utf8_lossy(&status.stderr));
            if let Err(e) = same(&rows(&out), &rows(&case.join("expected.csv"))) {
                failures.push(format!("{name} at {cores} cores: {e}"));
            }
            if let Err(e) = same(&rows(&late), &rows(&case.join("expected_late.csv"))) {
                failures.push(format!("{name} late output at {cores} cores: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "differences from Flink:\n{}", failures.join("\n"));
    println!("{} cases × 2 core counts equal Flink's output", cases.len());
}

#[test]
fn window_csv_rejects_bad_specs_and_malformed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "a,1,1.0\nb,two,2.0\n").unwrap();
    let run = |window: &str| {
        Command::new(example("window_csv"))
            .arg("--input")
            .arg(&input)
            .args(["--window", window, "--out-of-orderness", "0", "--output"])
            .arg(dir.path().join("out.csv"))
            .output()
            .unwrap()
    };
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
