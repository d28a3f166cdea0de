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
//! A second group weighs [`brisk::state::Rkyv`] for a large value (a
//! profile of 256 features): read back from its record as the log does,
//! then one feature read, plain postcard against the archive (copied and
//! validated, then read in place); and written, the value encoded into its
//! record either way.
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

/// A large value, as a per-user feature store keeps one.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
struct Profile {
    user: String,
    updated_ms: i64,
    count: u64,
    features: Vec<f32>,
}

const PROFILES: usize = 1024;
const FEATURES: usize = 256;

/// Reads each profile's record back as `Spill::fault_in` does (the key,
/// then the value if the key matches, through `value`); sums what `value`
/// returns.
fn read_back(
    profiles: &[(u64, Profile)],
    log: &[u8],
    at: &[std::ops::Range<usize>],
    value: impl Fn(&[u8]) -> f32,
) -> f32 {
    let mut sum = 0f32;
    for ((k, _), at) in profiles.iter().zip(at) {
        let (key, rest) = postcard::take_from_bytes::<u64>(&log[at.clone()]).unwrap();
        if key == *k {
            sum += value(rest);
        }
    }
    sum
}

fn large_value(c: &mut Criterion) {
    use brisk::state::Rkyv;
    let mut rng = fastrand::Rng::with_seed(7);
    let profiles: Vec<(u64, Profile)> = (0..PROFILES as u64)
        .map(|k| {
            let p = Profile {
                user: format!("user_{k}"),
                updated_ms: 1_700_000_000_000 + rng.i64(0..1_000_000),
                count: rng.u64(0..10_000),
                features: (0..FEATURES).map(|_| rng.f32()).collect(),
            };
            (k, p)
        })
        .collect();
    // Both kinds of record as the log holds them: postcard of (key, value),
    // back to back at any alignment.
    let records = |encode: &dyn Fn(&u64, &Profile, &mut Vec<u8>)| {
        let mut log = Vec::new();
        let mut at = Vec::new();
        for (k, p) in &profiles {
            let start = log.len();
            encode(k, p, &mut log);
            at.push(start..log.len());
        }
        (log, at)
    };
    let (plain_log, plain_at) = records(&|k, p, o| {
        postcard::to_io(&(k, p), o).unwrap();
    });
    let (rkyv_log, rkyv_at) = records(&|k, p, o| {
        postcard::to_io(&(k, &Rkyv::new(p)), o).unwrap();
    });
    println!(
        "bytes per profile record ({FEATURES} features): postcard {:.1}, Rkyv {:.1}",
        plain_log.len() as f64 / PROFILES as f64,
        rkyv_log.len() as f64 / PROFILES as f64,
    );

    let mut g = c.benchmark_group("large_value");
    g.throughput(Throughput::Elements(PROFILES as u64));
    g.bench_function("read_back_postcard_then_one_feature", |b| {
        b.iter(|| {
            read_back(&profiles, &plain_log, &plain_at, |v| {
                postcard::from_bytes::<Profile>(v).unwrap().features[17]
            })
        })
    });
    g.bench_function("read_back_rkyv_validated_then_one_feature", |b| {
        b.iter(|| {
            read_back(&profiles, &rkyv_log, &rkyv_at, |v| {
                postcard::from_bytes::<Rkyv<Profile>>(v).unwrap().get().features[17].to_native()
            })
        })
    });
    g.bench_function("read_back_rkyv_validated_then_decoded", |b| {
        b.iter(|| {
            read_back(&profiles, &rkyv_log, &rkyv_at, |v| {
                postcard::from_bytes::<Rkyv<Profile>>(v).unwrap().to_value().features[17]
            })
        })
    });
    let mut out = Vec::with_capacity(plain_log.len().max(rkyv_log.len()));
    g.bench_function("write_postcard", |b| {
        b.iter(|| {
            out.clear();
            for (k, p) in &profiles {
                postcard::to_io(&(k, p), &mut out).unwrap();
            }
            out.len()
        })
    });
    g.bench_function("write_rkyv", |b| {
        b.iter(|| {
            out.clear();
            for (k, p) in &profiles {
                postcard::to_io(&(k, &Rkyv::new(p)), &mut out).unwrap();
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, row_decode, large_value);
criterion_main!(benches);
