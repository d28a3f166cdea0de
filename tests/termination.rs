//! Bounded jobs of every graph shape end, with exactly the expected output,
//! at 1, 2 and 3 cores.

use brisk::prelude::*;

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn env(cores: usize) -> StreamEnv {
    StreamEnv::new(JobConfig::with_cores(cores))
}

#[test]
fn straight_chain_map_filter_flat_map() {
    for cores in [1, 2, 3] {
        let e = env(cores);
        let out = e
            .from_collection((0..10_000u64).collect())
            .map(|i| i * 3)
            .filter(|i| i % 2 == 0)
            .flat_map(|i| [i, i + 1])
            .collect();
        e.execute().unwrap();
        let expected: Vec<u64> =
            (0..10_000u64).map(|i| i * 3).filter(|i| i % 2 == 0).flat_map(|i| [i, i + 1]).collect();
        assert_eq!(sorted(out.take()), sorted(expected), "cores {cores}");
    }
}

#[test]
fn union_of_two_sources() {
    for cores in [1, 2, 3] {
        let e = env(cores);
        let a = e.from_collection((0..5_000u64).collect());
        let b = e.from_source(GeneratorSource::new(3_000, |i| 100_000 + i));
        let out = a.union(&[b]).collect();
        e.execute().unwrap();
        let expected: Vec<u64> = (0..5_000).chain(100_000..103_000).collect();
        assert_eq!(sorted(out.take()), expected, "cores {cores}");
    }
}

#[test]
fn rebalance_broadcast_and_global() {
    for cores in [1, 2, 3] {
        let e = env(cores);
        let src = e.from_collection((0..4_000u64).collect());
        let rebalanced = src.rebalance().collect();
        let broadcast = src.broadcast().collect();
        let global = src.global().collect();
        e.execute().unwrap();
        assert_eq!(sorted(rebalanced.take()), (0..4_000).collect::<Vec<_>>(), "rebalance, cores {cores}");
        let expected: Vec<u64> = sorted((0..4_000).flat_map(|i| std::iter::repeat_n(i, cores)).collect());
        assert_eq!(sorted(broadcast.take()), expected, "broadcast, cores {cores}");
        assert_eq!(sorted(global.take()), (0..4_000).collect::<Vec<_>>(), "global, cores {cores}");
    }
}

#[test]
fn two_exchanges_in_a_row_and_fan_out() {
    for cores in [1, 2, 3] {
        let e = StreamEnv::new(JobConfig {
            execution_mode: ExecutionMode::Batch,
            ..JobConfig::with_cores(cores)
        });
        let words = e.from_collection((0..20_000u64).map(|i| (i % 50, 1u64)).collect());
        // Count per key, then count how many keys share each count.
        let per_key = words.key_by(|r: &(u64, u64)| r.0).sum(|r: &mut (u64, u64)| &mut r.1);
        let histogram =
            per_key.map(|(_, n)| (n, 1u64)).key_by(|r: &(u64, u64)| r.0).sum(|r: &mut (u64, u64)| &mut r.1);
        let a = histogram.collect();
        let b = per_key.collect();
        e.execute().unwrap();
        assert_eq!(a.take(), vec![(400, 50)], "cores {cores}");
        assert_eq!(b.take().len(), 50, "cores {cores}");
    }
}

#[test]
fn empty_input_unused_branches_and_single_split_sources_end() {
    for cores in [1, 2, 3] {
        let e = env(cores);
        let empty = e.from_collection(Vec::<u64>::new()).key_by(|x: &u64| *x).reduce(|a, b| a + b).collect();
        let src = e.from_collection((0..1_000u64).collect()).set_parallelism(1);
        let _unused = src.map(|x| x + 1);
        let out = src.collect();
        e.execute().unwrap();
        assert!(empty.take().is_empty());
        // One split: the collection's order is kept.
        assert_eq!(out.take(), (0..1_000).collect::<Vec<_>>(), "cores {cores}");
    }
}

#[test]
fn invalid_graphs_and_configs_are_rejected_with_a_message() {
    let e = env(1);
    let _ = e.from_collection(vec![1u64]).map(|x| x);
    let err = e.execute().unwrap_err().to_string();
    assert!(err.contains("no sink"), "{err}");

    let e = StreamEnv::new(JobConfig { execution_mode: ExecutionMode::Batch, ..JobConfig::with_cores(1) });
    let _ = e.from_source(GeneratorSource::unbounded(|i| i)).collect();
    let err = e.execute().unwrap_err().to_string();
    assert!(err.contains("execution_mode = batch") && err.contains("generator"), "{err}");

    let e = env(1);
    let _ = e.from_collection(vec![1u64]).map(|x| x).set_parallelism(2).collect();
    let err = e.execute().unwrap_err().to_string();
    assert!(err.contains("only sources take a parallelism"), "{err}");

    let e = env(0);
    let _ = e.from_collection(vec![1u64]).collect();
    assert!(e.execute().unwrap_err().to_string().contains("cores = 0"));
}
