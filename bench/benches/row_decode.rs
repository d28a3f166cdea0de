//! Criterion benchmark for the open question of issue 5 (user values
//! archived with `rkyv` instead of postcard): reading back an evicted KW
//! window row, as `Spill::fault_in` does, from postcard (what the log holds)
//! against rkyv (validated access, or unchecked, then the copy into a hot
//! row), and how many bytes each record takes.
//!
//! The row is the KW workload's: `((key, window), (acc, trigger slots, end
//! timer, cleanup timer))` with a `(count, sum)` accumulator and no trigger
//! slots, 4096 rows laid out one after another as in a segment (rkyv's at
//! its alignment).
//!
//! ```text
//! cargo bench -p brisk-bench --bench row_decode
//! ```

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

const ROWS: usize = 4096;

/// A window row's value, as its record holds it.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
struct RowValue {
    acc: Option<(u64, u64)>,
    slots: Option<Vec<(String, i64)>>,
    end_timer: bool,
    cleanup_registered: bool,
}

/// A window row's record: key and window, then the value.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
struct RowImage {
    key: u64,
    window: (i64, i64),
    value: RowValue,
}

/// An archived row, validated.
fn validated(bytes: &[u8]) -> &ArchivedRowImage {
    rkyv::access::<ArchivedRowImage, rkyv::rancor::Error>(bytes).unwrap()
}

/// An archived row, not validated.
fn unchecked(bytes: &[u8]) -> &ArchivedRowImage {
    // SAFETY: the bench passes only the archives `rkyv::to_bytes` made, at
    // their alignment (what a record that passed its checksum would hold).
    unsafe { rkyv::access_unchecked::<ArchivedRowImage>(bytes) }
}

fn rows() -> Vec<RowImage> {
    let mut rng = fastrand::Rng::with_seed(5);
    (0..ROWS)
        .map(|_| {
            let start = 1_700_000_000_000 + rng.i64(0..3) * 10_000;
            RowImage {
                key: rng.u64(0..1_000_000),
                window: (start, start + 10_000),
                value: RowValue {
                    acc: Some((rng.u64(1..20), rng.u64(0..2_000_000))),
                    slots: None,
                    end_timer: true,
                    cleanup_registered: false,
                },
            }
        })
        .collect()
}

fn row_decode(c: &mut Criterion) {
    let rows = rows();
    // Postcard: records back to back, at any alignment.
    let mut postcard_log = Vec::new();
    let mut postcard_at = Vec::new();
    for r in &rows {
        let start = postcard_log.len();
        postcard::to_io(&((r.key, r.window), &r.value), &mut postcard_log).unwrap();
        postcard_at.push(start..postcard_log.len());
    }
    // rkyv: each archive at its alignment (16 bytes).
    let mut rkyv_log = rkyv::util::AlignedVec::<16>::new();
    let mut rkyv_at = Vec::new();
    for r in &rows {
        while rkyv_log.len() % 16 != 0 {
            rkyv_log.push(0);
        }
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(r).unwrap();
        let start = rkyv_log.len();
        rkyv_log.extend_from_slice(&bytes);
        rkyv_at.push(start..rkyv_log.len());
    }
    println!(
        "bytes per row record: postcard {:.1}, rkyv {:.1} ({:.1} with its alignment)",
        postcard_log.len() as f64 / ROWS as f64,
        rkyv_at.iter().map(|r| r.len()).sum::<usize>() as f64 / ROWS as f64,
        rkyv_log.len() as f64 / ROWS as f64,
    );

    let mut g = c.benchmark_group("row_decode");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("postcard_key_then_value", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for (r, at) in rows.iter().zip(&postcard_at) {
                let (k, rest) =
                    postcard::take_from_bytes::<(u64, (i64, i64))>(&postcard_log[at.clone()]).unwrap();
                if k == (r.key, r.window) {
                    let v = postcard::from_bytes::<RowValue>(rest).unwrap();
                    sum += v.acc.map_or(0, |a| a.1);
                }
            }
            sum
        })
    });
    let read_back = |access: fn(&[u8]) -> &ArchivedRowImage| {
        let mut sum = 0u64;
        for (r, at) in rows.iter().zip(&rkyv_at) {
            let a = access(&rkyv_log[at.clone()]);
            if a.key == r.key && a.window.0 == r.window.0 && a.window.1 == r.window.1 {
                let v = rkyv::deserialize::<RowValue, rkyv::rancor::Error>(&a.value).unwrap();
                sum += v.acc.map_or(0, |a| a.1);
            }
        }
        sum
    };
    g.bench_function("rkyv_validated_access_then_deserialize", |b| b.iter(|| read_back(validated)));
    g.bench_function("rkyv_unchecked_access_then_deserialize", |b| b.iter(|| read_back(unchecked)));
    g.finish();
}

criterion_group!(benches, row_decode);
criterion_main!(benches);
