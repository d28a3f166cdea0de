//! Window joins and interval joins equal naive references on seeded random
//! input. Both sides come from one ordered source (split by tag), so the two
//! inputs see the same watermarks and the results do not depend on timing.

use std::collections::BTreeMap;

use brisk::prelude::*;
use brisk::{Either, Timestamp};

mod common;
use common::seed;

/// `(key, timestamp, id)` on either side.
type Ev = (u8, Timestamp, u32);

fn input(seed: u64, n: u32, disorder: i64) -> Vec<Either<Ev, Ev>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|id| {
            let ev = (rng.u8(0..6), id as i64 * 3 + rng.i64(-disorder..=disorder), id);
            if rng.bool() { Either::Left(ev) } else { Either::Right(ev) }
        })
        .collect()
}

fn ts_of(e: &Either<Ev, Ev>) -> Timestamp {
    match e {
        Either::Left(x) | Either::Right(x) => x.1,
    }
}

/// Splits one stamped source into the two join inputs.
fn sides(env: &StreamEnv, data: Vec<Either<Ev, Ev>>) -> (DataStream<Ev>, DataStream<Ev>) {
    let src = env.from_collection(data).set_parallelism(1).assign_timestamps_and_watermarks(
        WatermarkStrategy::for_bounded_out_of_orderness(0)
            .with_timestamp_assigner(|e: &Either<Ev, Ev>, _| ts_of(e))
            .every_event(),
    );
    let left = src.flat_map(|e| if let Either::Left(x) = e { Some(x) } else { None });
    let right = src.flat_map(|e| if let Either::Right(x) = e { Some(x) } else { None });
    (left, right)
}

/// Emits `(left id, right id, timestamp of the joined record)`.
#[derive(Clone)]
struct Stamp;

impl KeyedProcessFunction<u8, (u32, u32), (u32, u32, Option<Timestamp>)> for Stamp {
    fn process_element(
        &mut self,
        (a, b): (u32, u32),
        ctx: &mut Context<'_, u8>,
        out: &mut Collector<'_, (u32, u32, Option<Timestamp>)>,
    ) -> Result<(), UserError> {
        out.collect((a, b, ctx.timestamp()));
        Ok(())
    }
}

#[test]
fn window_join_pairs_every_left_and_right_of_a_key_and_window() {
    let seed = seed();
    let data = input(seed, 1_500, 0);
    let size = 100;
    let mut expected = Vec::new();
    for l in data.iter().filter_map(|e| if let Either::Left(x) = e { Some(x) } else { None }) {
        for r in data.iter().filter_map(|e| if let Either::Right(x) = e { Some(x) } else { None }) {
            let (wl, wr) = (l.1.div_euclid(size), r.1.div_euclid(size));
            if l.0 == r.0 && wl == wr {
                expected.push((l.2, r.2, Some(wl * size + size - 1)));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 100, "the input produces joins");
    for cores in [1, 2] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let (left, right) = sides(&env, data.clone());
        let out = left
            .join(&right)
            .where_key(|a: &Ev| a.0)
            .equal_to(|b: &Ev| b.0)
            .window(WindowAssigner::tumbling(size))
            .apply(|a: &Ev, b: &Ev| (a.2, b.2))
            .key_by(|_: &(u32, u32)| 0u8)
            .process(Stamp)
            .collect();
        env.execute().unwrap();
        let mut got = out.take();
        got.sort();
        assert_eq!(got, expected, "{cores} cores, seed {seed}");
    }
}

/// Flink's interval join, simulated on the single ordered input:
/// per-event watermarks (largest timestamp - 1), late elements dropped,
/// buckets cleaned when the watermark advances to their cleanup time.
fn simulate_interval(data: &[Either<Ev, Ev>], lower: i64, upper: i64) -> Vec<(u32, u32, Option<Timestamp>)> {
    let mut left: BTreeMap<(u8, Timestamp), Vec<u32>> = BTreeMap::new();
    let mut right: BTreeMap<(u8, Timestamp), Vec<u32>> = BTreeMap::new();
    let (mut wm, mut max) = (i64::MIN, i64::MIN);
    let mut out = Vec::new();
    for e in data {
        let (is_left, (k, ts, id)) = match e {
            Either::Left(x) => (true, *x),
            Either::Right(x) => (false, *x),
        };
        if !(wm != i64::MIN && ts < wm) {
            if is_left {
                for ((rk, rts), ids) in &right {
                    if *rk == k && ts + lower <= *rts && *rts <= ts + upper {
                        out.extend(ids.iter().map(|r| (id, *r, Some(ts.max(*rts)))));
                    }
                }
                left.entry((k, ts)).or_default().push(id);
            } else {
                for ((lk, lts), ids) in &left {
                    if *lk == k && *lts + lower <= ts && ts <= *lts + upper {
                        out.extend(ids.iter().map(|l| (*l, id, Some(ts.max(*lts)))));
                    }
                }
                right.entry((k, ts)).or_default().push(id);
            }
        }
        max = max.max(ts);
        // Timers fire only when the watermark advances (Flink's
        // advanceWatermark): a bucket whose cleanup time is already behind the
        // watermark lives until the next advance.
        if max - 1 > wm {
            wm = max - 1;
            left.retain(|(_, t), _| (if upper > 0 { t + upper } else { *t }) > wm);
            right.retain(|(_, t), _| (if lower < 0 { t - lower } else { *t }) > wm);
        }
    }
    out.sort();
    out
}

fn run_interval(
    cores: usize,
    data: Vec<Either<Ev, Ev>>,
    lower: i64,
    upper: i64,
    exclusive: bool,
) -> Vec<(u32, u32, Option<Timestamp>)> {
    let env = StreamEnv::new(JobConfig::with_cores(cores));
    let (left, right) = sides(&env, data);
    let mut joined =
        left.key_by(|a: &Ev| a.0).interval_join(&right.key_by(|b: &Ev| b.0)).between(lower, upper);
    if exclusive {
        joined = joined.lower_bound_exclusive().upper_bound_exclusive();
    }
    let out = joined
        .process(|a: &Ev, b: &Ev, ctx: &JoinContext, out: &mut Collector<'_, (u32, u32)>| {
            assert_eq!((ctx.left_timestamp, ctx.right_timestamp), (a.1, b.1));
            out.collect((a.2, b.2));
            Ok::<(), UserError>(())
        })
        .key_by(|_: &(u32, u32)| 0u8)
        .process(Stamp)
        .collect();
    env.execute().unwrap();
    let mut got = out.take();
    got.sort();
    got
}

#[test]
fn interval_join_equals_flinks_algorithm_on_ordered_and_disordered_input() {
    let seed = seed();
    for (disorder, lower, upper) in [(0, -20, 30), (0, -50, -10), (0, 5, 40), (12, -20, 30), (12, 0, 0)] {
        let data = input(seed ^ disorder as u64, 1_200, disorder);
        for exclusive in [false, true] {
            let (lo, hi) = if exclusive { (lower + 1, upper - 1) } else { (lower, upper) };
            if lo > hi {
                continue;
            }
            let expected = simulate_interval(&data, lo, hi);
            // Wide intervals always match something; (0, 0) needs equal timestamps.
            if hi - lo >= 10 {
                assert!(!expected.is_empty(), "bounds ({lo}, {hi}) produce joins, seed {seed}");
            }
            for cores in [1, 2] {
                let got = run_interval(cores, data.clone(), lower, upper, exclusive);
                assert_eq!(
                    got, expected,
                    "bounds ({lower}, {upper}) exclusive {exclusive} disorder {disorder} at {cores} cores, seed {seed}"
                );
            }
        }
    }
}

#[test]
fn inverted_bounds_are_rejected() {
    let env = StreamEnv::new(JobConfig::with_cores(1));
    let (left, right) = sides(&env, input(1, 10, 0));
    let _ = left
        .key_by(|a: &Ev| a.0)
        .interval_join(&right.key_by(|b: &Ev| b.0))
        .between(5, 5)
        .lower_bound_exclusive()
        .process(|_: &Ev, _: &Ev, _: &JoinContext, _: &mut Collector<'_, u8>| Ok::<(), UserError>(()))
        .collect();
    let err = env.execute().unwrap_err().to_string();
    assert!(err.contains("lower bound (6) must not be above the upper bound (5)"), "{err}");
}
