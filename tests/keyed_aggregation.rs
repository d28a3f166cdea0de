//! Keyed aggregations and keyed state at 1, 2 and 3 cores equal a sequential
//! reference on seeded random input.

use std::collections::{BTreeMap, HashMap};

use brisk::prelude::*;

mod common;
use common::seed;

const CORE_COUNTS: [usize; 3] = [1, 2, 3];

/// `(key, value)` pairs with distinct values (no ties for min_by/max_by).
fn random_input(seed: u64, n: usize, keys: u32) -> Vec<(u32, i64)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut values: Vec<i64> = (0..n as i64).map(|v| v * 7 - 1000).collect();
    rng.shuffle(&mut values);
    values.into_iter().map(|v| (rng.u32(0..keys), v)).collect()
}

fn batch_env(cores: usize) -> StreamEnv {
    StreamEnv::new(JobConfig { execution_mode: ExecutionMode::Batch, ..JobConfig::with_cores(cores) })
}

fn by_key(out: Vec<(u32, i64)>) -> BTreeMap<u32, i64> {
    let mut m = BTreeMap::new();
    for (k, v) in out {
        assert!(m.insert(k, v).is_none(), "batch mode emits one result per key, key {k} twice");
    }
    m
}

#[test]
fn batch_sum_min_max_equal_the_reference() {
    let seed = seed();
    let input = random_input(seed, 50_000, 700);
    let mut sum = BTreeMap::new();
    let mut min = BTreeMap::new();
    let mut max = BTreeMap::new();
    for &(k, v) in &input {
        *sum.entry(k).or_insert(0) += v;
        let e = min.entry(k).or_insert(v);
        *e = (*e).min(v);
        let e = max.entry(k).or_insert(v);
        *e = (*e).max(v);
    }
    for cores in CORE_COUNTS {
        let env = batch_env(cores);
        let keyed = env.from_collection(input.clone()).key_by(|r: &(u32, i64)| r.0);
        let s = keyed.sum(|r: &mut (u32, i64)| &mut r.1).collect();
        let lo = keyed.min(|r: &mut (u32, i64)| &mut r.1).collect();
        let hi = keyed.max_by(|r: &mut (u32, i64)| &mut r.1).collect();
        env.execute().unwrap();
        assert_eq!(by_key(s.take()), sum, "sum at {cores} cores, seed {seed}");
        assert_eq!(by_key(lo.take()), min, "min at {cores} cores, seed {seed}");
        assert_eq!(by_key(hi.take()), max, "max_by at {cores} cores, seed {seed}");
    }
}

#[test]
fn streaming_rolling_reduce_emits_the_reference_sequence_per_key() {
    let seed = seed();
    let input = random_input(seed, 20_000, 300);
    let mut running: HashMap<u32, i64> = HashMap::new();
    let mut expected: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for &(k, v) in &input {
        let s = running.entry(k).or_insert(0);
        *s += v;
        expected.entry(k).or_default().push(*s);
    }
    for cores in CORE_COUNTS {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        // One split keeps the input order, so each key's sequence is defined.
        let out = env
            .from_collection(input.clone())
            .set_parallelism(1)
            .key_by(|r: &(u32, i64)| r.0)
            .reduce(|a: (u32, i64), b: (u32, i64)| (a.0, a.1 + b.1))
            .collect();
        env.execute().unwrap();
        let mut got: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (k, s) in out.take() {
            got.entry(k).or_default().push(s);
        }
        assert_eq!(got, expected, "rolling sums at {cores} cores, seed {seed}");
    }
}

/// Per key: a count (value state), the last three values (list state) and a
/// histogram of `value mod 5` (map state); emits a digest per record.
#[derive(Clone, Default)]
struct Digest {
    count: ValueState<u64>,
    recent: ListState<i64>,
    buckets: MapState<i64, u32>,
}

type DigestOut = (u32, u64, i64, usize, u32);

impl KeyedProcessFunction<u32, (u32, i64), DigestOut> for Digest {
    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), UserError> {
        self.count = ctx.value_state("count")?;
        self.recent = ctx.list_state("recent")?;
        self.buckets = ctx.map_state("buckets")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, value): (u32, i64),
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, DigestOut>,
    ) -> Result<(), UserError> {
        assert_eq!(*ctx.current_key(), key);
        let count = {
            let mut c = ctx.value(&self.count);
            let n = c.get().copied().unwrap_or(0) + 1;
            c.set(n);
            n
        };
        let recent_sum = {
            let mut l = ctx.list(&self.recent);
            let mut items = l.get().to_vec();
            items.push(value);
            if items.len() > 3 {
                items.remove(0);
            }
            let s = items.iter().sum();
            l.update(items);
            s
        };
        let (distinct, in_bucket) = {
            let mut m = ctx.map(&self.buckets);
            let b = value.rem_euclid(5);
            let n = m.get(&b).copied().unwrap_or(0) + 1;
            m.put(b, n);
            (m.len(), n)
        };
        out.collect((key, count, recent_sum, distinct, in_bucket));
        Ok(())
    }
}

fn digest_reference(input: &[(u32, i64)]) -> BTreeMap<u32, Vec<DigestOut>> {
    let mut count: HashMap<u32, u64> = HashMap::new();
    let mut recent: HashMap<u32, Vec<i64>> = HashMap::new();
    let mut buckets: HashMap<u32, HashMap<i64, u32>> = HashMap::new();
    let mut out: BTreeMap<u32, Vec<DigestOut>> = BTreeMap::new();
    for &(k, v) in input {
        let c = count.entry(k).or_insert(0);
        *c += 1;
        let r = recent.entry(k).or_default();
        r.push(v);
        if r.len() > 3 {
            r.remove(0);
        }
        let b = buckets.entry(k).or_default();
        let n = {
            let n = b.entry(v.rem_euclid(5)).or_insert(0);
            *n += 1;
            *n
        };
        out.entry(k).or_default().push((k, *c, r.iter().sum(), b.len(), n));
    }
    out
}

#[test]
fn process_function_state_equals_the_reference() {
    let seed = seed();
    let input = random_input(seed, 20_000, 500);
    let expected = digest_reference(&input);
    for cores in CORE_COUNTS {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let out = env
            .from_collection(input.clone())
            .set_parallelism(1)
            .key_by(|r: &(u32, i64)| r.0)
            .process(Digest::default())
            .collect();
        env.execute().unwrap();
        let mut got: BTreeMap<u32, Vec<DigestOut>> = BTreeMap::new();
        for d in out.take() {
            got.entry(d.0).or_default().push(d);
        }
        assert_eq!(got, expected, "digests at {cores} cores, seed {seed}");
    }
}

#[test]
fn string_keys_partition_across_cores_and_count_exactly() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let words: Vec<String> = (0..30_000).map(|_| format!("w{}", rng.u32(0..2_000))).collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for w in &words {
        *expected.entry(w.clone()).or_insert(0) += 1;
    }
    let env = batch_env(2);
    let out = env
        .from_collection(words)
        .map(|w: String| (w, 1u64))
        .key_by(|r: &(String, u64)| r.0.clone())
        .sum(|r: &mut (String, u64)| &mut r.1)
        .collect();
    let result = env.execute().unwrap();
    assert_eq!(out.take().into_iter().collect::<BTreeMap<_, _>>(), expected, "seed {seed}");
    assert_eq!(result.cores, 2);
}
