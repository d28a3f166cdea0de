//! Helpers shared by the bench crate's tests.

use std::collections::HashMap;

/// Compares rows as multisets (brisk's against a fixture from Flink); on a
/// difference, shows a few rows of each side.
pub fn assert_same_rows(what: &str, mut got: Vec<String>, mut want: Vec<String>) {
    got.sort();
    want.sort();
    if got == want {
        return;
    }
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        let mut counts: HashMap<&String, i64> = HashMap::new();
        for r in b {
            *counts.entry(r).or_default() += 1;
        }
        a.iter()
            .filter(|r| {
                let c = counts.entry(r).or_default();
                *c -= 1;
                *c < 0
            })
            .take(5)
            .cloned()
            .collect()
    };
    panic!(
        "{what}: {} rows, Flink {} rows\nonly in brisk: {:#?}\nonly in Flink: {:#?}",
        got.len(),
        want.len(),
        only(&got, &want),
        only(&want, &got)
    );
}
