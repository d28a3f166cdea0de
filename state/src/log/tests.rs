//! The log backend against a model, on the storage twin: eviction and
//! read-back, compaction, crash recovery (R5) and a full disk (R11).

use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use crate::{
    CurrentKey, KeyGroupRange, KeyedStateBackend, ListState, MapState, MaxParallelism, ValueState, key_hash,
};

type Model = (BTreeMap<u32, i64>, BTreeMap<u32, Vec<u32>>, BTreeMap<u32, BTreeMap<u32, u32>>);

struct Job {
    backend: KeyedStateBackend<u32>,
    v: ValueState<i64>,
    l: ListState<u32>,
    m: MapState<u32, u32>,
}

fn job(disk: &Rc<std::cell::RefCell<SimDisk>>, id_base: u64, budget: usize, segment: usize) -> Job {
    let log = LogStore::new(Box::new(SimIo(disk.clone())), id_base, segment);
    let mut backend = KeyedStateBackend::with_log(log, MemoryBudget::new(budget));
    let v = backend.value_state::<i64>("v").unwrap();
    let l = backend.list_state::<u32>("l").unwrap();
    let m = backend.map_state::<u32, u32>("m").unwrap();
    Job { backend, v, l, m }
}

fn at(k: &u32) -> CurrentKey<'_, u32> {
    CurrentKey::new(k, key_hash(k))
}

/// One random operation on both the backend and the model.
fn step(j: &mut Job, model: &mut Model, rng: &mut fastrand::Rng, keys: u32) {
    let k = rng.u32(0..keys);
    match rng.u32(0..10) {
        0..=3 => {
            let add = rng.i64(-5..50);
            *j.backend.value(&j.v, at(&k)).get_or_insert_with(|| 0) += add;
            *model.0.entry(k).or_insert(0) += add;
        }
        4 => {
            assert_eq!(j.backend.value(&j.v, at(&k)).clear(), model.0.remove(&k), "clear of {k}");
        }
        5 | 6 => {
            let x = rng.u32(..);
            j.backend.list(&j.l, at(&k)).add(x);
            model.1.entry(k).or_default().push(x);
        }
        7 => {
            assert_eq!(j.backend.list(&j.l, at(&k)).clear(), model.1.remove(&k).unwrap_or_default());
        }
        8 => {
            let (uk, uv) = (rng.u32(0..4), rng.u32(..));
            let want = model.2.entry(k).or_default().insert(uk, uv);
            assert_eq!(j.backend.map(&j.m, at(&k)).put(uk, uv), want);
        }
        _ => {
            let uk = rng.u32(0..4);
            let want = model.2.get_mut(&k).and_then(|m| m.remove(&uk));
            if model.2.get(&k).is_some_and(|m| m.is_empty()) {
                model.2.remove(&k);
            }
            assert_eq!(j.backend.map(&j.m, at(&k)).remove(&uk), want);
        }
    }
}

/// Reads every key through the backend and compares with the model.
fn check(j: &mut Job, model: &Model, keys: u32, what: &str) {
    for k in 0..keys {
        assert_eq!(j.backend.value(&j.v, at(&k)).get(), model.0.get(&k), "{what}: value of {k}");
        let list = model.1.get(&k).cloned().unwrap_or_default();
        assert_eq!(j.backend.list(&j.l, at(&k)).get(), list.as_slice(), "{what}: list of {k}");
        let map: BTreeMap<u32, u32> = j.backend.map(&j.m, at(&k)).iter().map(|(a, b)| (*a, *b)).collect();
        assert_eq!(map, model.2.get(&k).cloned().unwrap_or_default(), "{what}: map of {k}");
    }
}

/// Snapshot entries of every state, decoded, as sets (order-free).
fn snapshot(j: &Job) -> Vec<Vec<Vec<u8>>> {
    (0..3)
        .map(|id| {
            let mut out = Vec::new();
            j.backend.snapshot_state(id, &mut |_, bytes| out.push(bytes.to_vec()));
            out.sort();
            out
        })
        .collect()
}

/// The seed of a randomized test: `BRISK_SEED` or a random one, printed.
pub(super) fn seed() -> u64 {
    let seed =
        std::env::var("BRISK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!("seed = {seed} (rerun with BRISK_SEED={seed})");
    seed
}

/// Drives the sim disk until the log's writes are durable or have failed.
fn settle(j: &mut Job) {
    for _ in 0..8 {
        j.backend.maintain_log();
    }
}

#[test]
fn a_small_budget_spills_reads_back_and_compacts_without_changing_state() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    // About 40 entries fit in memory; 600 keys do not.
    let mut j = job(&disk, 0, 4 << 10, 16 << 10);
    let mut heap = KeyedStateBackend::<u32>::new();
    let mut model = Model::default();
    let keys = 600;
    for i in 0..60_000 {
        step(&mut j, &mut model, &mut rng, keys);
        if i % 5000 == 0 {
            check(&mut j, &model, keys, &format!("after {i} steps"));
        }
    }
    check(&mut j, &model, keys, "at the end");
    let stats = j.backend.log_stats().unwrap();
    println!("{stats:?}");
    assert!(stats.spill.evicted > 10_000 && stats.spill.faulted_in > 10_000, "the budget forced spilling");
    assert!(stats.spill.tombstones > 0);
    assert!(stats.log.compacted > 0, "segments were compacted");
    assert!(stats.hot < 200, "at most a few budgets' worth in memory: {}", stats.hot);
    assert!(stats.dead_bytes < stats.log_bytes, "compaction keeps dead bytes bounded");

    // A full snapshot of the log backend equals the heap backend's holding
    // the same data.
    let hv = heap.value_state::<i64>("v").unwrap();
    let hl = heap.list_state::<u32>("l").unwrap();
    let hm = heap.map_state::<u32, u32>("m").unwrap();
    for (k, v) in &model.0 {
        heap.value(&hv, at(k)).set(*v);
    }
    for (k, l) in &model.1 {
        heap.list(&hl, at(k)).update(l.clone());
    }
    for (k, m) in &model.2 {
        for (a, b) in m {
            heap.map(&hm, at(k)).put(*a, *b);
        }
    }
    let mut want = Vec::new();
    for id in 0..3 {
        let mut out = Vec::new();
        heap.snapshot_state(id, &mut |_, bytes| out.push(bytes.to_vec()));
        out.sort();
        want.push(out);
    }
    // Map entries encode their HashMap in iteration order: compare maps by
    // decoding instead of bytes.
    let got = snapshot(&j);
    assert_eq!(got[0], want[0]);
    assert_eq!(got[1], want[1]);
    let decode = |v: &Vec<Vec<u8>>| -> BTreeMap<u32, BTreeMap<u32, u32>> {
        v.iter()
            .map(|b| {
                let (k, m): (u32, std::collections::HashMap<u32, u32>) = postcard::from_bytes(b).unwrap();
                (k, m.into_iter().collect())
            })
            .collect()
    };
    assert_eq!(decode(&got[2]), decode(&want[2]));
}

/// Recovers a backend from `segments` (a checkpoint's list) on `disk`.
fn recover(
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    segments: &[SegmentRef],
    id_base: u64,
    budget: usize,
) -> Job {
    let mut j = job(disk, id_base, budget, 16 << 10);
    for s in segments {
        let no = adopt_from(&j.backend, disk, s, s.scope);
        j.backend.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
    }
    j
}

#[test]
fn a_crash_at_any_point_recovers_the_last_acknowledged_state() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys = 300;
    let mut torn_tails = 0;
    for round in 0..20 {
        let disk = SimDisk::new(rng.u64(..));
        // A small budget keeps almost everything cold; a larger one keeps
        // many keys hot while their older records and tombstones are
        // compacted (a removed, re-inserted, removed-again hot key).
        let budget = if round % 2 == 0 { 4 << 10 } else { 24 << 10 };
        let mut j = job(&disk, 0, budget, 8 << 10);
        let mut model = Model::default();
        let mut acked: (Vec<SegmentRef>, Option<IndexCheckpoint>, Model) =
            (Vec::new(), None, Model::default());
        let crash_at = rng.usize(2_000..12_000);
        for i in 0..crash_at {
            step(&mut j, &mut model, &mut rng, keys);
            if i % 97 == 0 {
                j.backend.maintain_log();
            }
            if i % 1500 == 1499 {
                // A checkpoint: flush, index, wait until durable, publish.
                let list = j.backend.flush_log().unwrap();
                let ix = j.backend.checkpoint_index(&list).unwrap();
                settle(&mut j);
                let log = j.backend.log().unwrap().borrow();
                let all: Vec<SegmentRef> = list.iter().chain([&ix.base]).cloned().collect();
                assert!(log.all_durable(&all), "no faults injected, so the flush is durable");
                acked = (list, Some(ix), model.clone());
            }
        }
        // Power fails mid-flight: writes in flight vanish, unsynced tails tear.
        j.backend.flush_log();
        j.backend.log().unwrap().borrow_mut().poll();
        disk.borrow_mut().crash();
        drop(j);
        for id in disk.borrow().segments() {
            let bytes = disk.borrow().read(id).unwrap();
            if format::read_segment_header(&bytes).is_ok() {
                let valid = format::scan(&bytes, |_, _| {});
                torn_tails += usize::from(valid < bytes.len());
            }
        }
        if let Some(ix) = &acked.1 {
            let (mut r, _) = recover_indexed(&disk, &acked.0, ix, budget);
            check(&mut r, &acked.2, keys, &format!("round {round}, through the index after step {crash_at}"));
        }
        let mut r = recover(&disk, &acked.0, 1 << 32, budget);
        check(&mut r, &acked.2, keys, &format!("round {round}, recovered after step {crash_at}"));
        // And the recovered state keeps working: a later crash-free run on it.
        let mut model = acked.2.clone();
        for _ in 0..2000 {
            step(&mut r, &mut model, &mut rng, keys);
        }
        check(&mut r, &model, keys, "after recovery");
    }
    println!("torn tails detected: {torn_tails}");
    assert!(torn_tails > 0, "the twin tore some unacknowledged tail");
}

#[test]
fn a_full_disk_fails_the_checkpoint_not_the_data() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    disk.borrow_mut().faults.capacity = Some(24 << 10);
    let mut j = job(&disk, 0, 4 << 10, 8 << 10);
    let mut model = Model::default();
    let keys = 400;
    let mut failed_checkpoints = 0;
    let mut base_writes = 0;
    let mut acked = None;
    for i in 0..20_000 {
        step(&mut j, &mut model, &mut rng, keys);
        if i % 2000 == 1999 {
            let list = j.backend.flush_log().unwrap();
            let ix = j.backend.checkpoint_index(&list).unwrap();
            base_writes += usize::from(ix.written);
            settle(&mut j);
            let log = j.backend.log().unwrap().borrow();
            let all: Vec<SegmentRef> = list.iter().chain([&ix.base]).cloned().collect();
            if log.all_durable(&all) {
                acked = Some((list, model.clone()));
            } else {
                assert!(log.has_failed_writes());
                assert!(log.last_error().unwrap().contains("No space left"), "{:?}", log.last_error());
                failed_checkpoints += 1;
            }
        }
    }
    assert!(disk.borrow().enospc_count > 0 && failed_checkpoints > 0, "the disk filled up");
    // Nothing was lost while the disk was full.
    check(&mut j, &model, keys, "disk full");
    // Space frees up: the next checkpoint retries the failed writes and succeeds.
    disk.borrow_mut().faults.capacity = None;
    let segments = j.backend.flush_log().unwrap();
    let ix = j.backend.checkpoint_index(&segments).unwrap();
    settle(&mut j);
    let log = j.backend.log().unwrap().borrow();
    let all: Vec<SegmentRef> = segments.iter().chain([&ix.base]).cloned().collect();
    assert!(log.all_durable(&all), "{:?}", log.last_error());
    drop(log);
    let mut r = recover(&disk, &segments, 1 << 32, 4 << 10);
    check(&mut r, &model, keys, "recovered after space freed");
    let (mut r, _) = recover_indexed(&disk, &segments, &ix, 4 << 10);
    check(&mut r, &model, keys, "recovered through the index after space freed");
    println!(
        "failed checkpoints: {failed_checkpoints}, earlier ack: {}, bases written: {base_writes}",
        acked.is_some()
    );
}

#[test]
fn eio_fails_writes_that_are_retried() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    disk.borrow_mut().faults.eio = 0.3;
    let mut j = job(&disk, 0, 4 << 10, 8 << 10);
    let mut model = Model::default();
    for i in 0..20_000 {
        step(&mut j, &mut model, &mut rng, 300);
        if i % 500 == 0 {
            j.backend.maintain_log();
        }
    }
    check(&mut j, &model, 300, "under EIO");
    disk.borrow_mut().faults.eio = 0.0;
    let segments = j.backend.flush_log().unwrap();
    settle(&mut j);
    let log = j.backend.log().unwrap().borrow();
    assert!(log.all_durable(&segments));
    assert!(log.stats().write_failures > 0 && disk.borrow().eio_count > 0, "EIO was injected");
    drop(log);
    let mut r = recover(&disk, &segments, 1 << 32, 4 << 10);
    check(&mut r, &model, 300, "recovered");
}

/// 5 000 random steps on 300 keys, then a checkpoint's flush: the disk, the
/// durable segment list, the model it holds, and the test's generator.
fn flushed() -> (Rc<std::cell::RefCell<SimDisk>>, Vec<SegmentRef>, Model, fastrand::Rng) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    let mut j = job(&disk, 0, 4 << 10, 8 << 10);
    let mut model = Model::default();
    for _ in 0..5_000 {
        step(&mut j, &mut model, &mut rng, 300);
    }
    let list = j.backend.flush_log().unwrap();
    settle(&mut j);
    assert_eq!(j.backend.log().unwrap().borrow().durability(&list), Durability::Durable);
    (disk, list, model, rng)
}

/// A checkpoint's segment that was damaged after the checkpoint completed
/// is refused on restore (never silently cut back like a torn tail), as is
/// a file holding another segment.
#[test]
fn a_damaged_checkpoint_segment_is_refused() {
    let (disk, list, _, mut rng) = flushed();
    let s = &list[rng.usize(..list.len())];
    let good = disk.borrow().read(s.id).unwrap();
    let fresh = || job(&disk, 1 << 32, 4 << 10, 8 << 10);
    // Any flipped byte past the header, or a cut, or another segment's file.
    let mut flipped = good.clone();
    let at = rng.usize(format::SEGMENT_HEADER_BYTES..s.len as usize);
    flipped[at] ^= 1 << rng.u32(0..8);
    let cut = good[..s.len as usize - 1].to_vec();
    let other = list.iter().find(|o| o.id != s.id).map(|o| disk.borrow().read(o.id).unwrap());
    for (what, bytes) in [("flipped", Some(flipped)), ("cut", Some(cut)), ("swapped", other)] {
        let Some(bytes) = bytes else { continue };
        let j2 = fresh();
        let r = j2.backend.log().unwrap().borrow_mut().adopt_verified(
            s.id,
            Rc::new(bytes),
            s.len as usize,
            s.scope,
        );
        assert!(r.is_err(), "{what} segment {:016x} was accepted", s.id);
        println!("{what}: {}", r.unwrap_err());
    }
    let j2 = fresh();
    assert!(
        j2.backend
            .log()
            .unwrap()
            .borrow_mut()
            .adopt_verified(s.id, Rc::new(good), s.len as usize, s.scope)
            .is_ok()
    );
}

/// Adopts segment `s` from `disk` into `backend`'s log, for key groups
/// `scope`; it must verify.
fn adopt_from(
    backend: &KeyedStateBackend<u32>,
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    s: &SegmentRef,
    scope: KeyGroupRange,
) -> u32 {
    let bytes = disk.borrow().read(s.id).expect("a listed segment exists");
    let adopted =
        backend.log().unwrap().borrow_mut().adopt_verified(s.id, Rc::new(bytes), s.len as usize, scope);
    adopted.unwrap_or_else(|e| panic!("acknowledged segment {:016x} does not verify: {e}", s.id))
}

/// A backend registering m, v, l (in that order) restored from `list`,
/// with old state `i` mapped to new state `map[i]`.
fn restore_as_mvl(
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    list: &[SegmentRef],
    id_base: u64,
    map: [usize; 3],
) -> Job {
    let log = LogStore::new(Box::new(SimIo(disk.clone())), id_base, 8 << 10);
    let mut backend = KeyedStateBackend::with_log(log, MemoryBudget::new(4 << 10));
    let m = backend.map_state::<u32, u32>("m").unwrap();
    let v = backend.value_state::<i64>("v").unwrap();
    let l = backend.list_state::<u32>("l").unwrap();
    for s in list {
        let no = adopt_from(&backend, disk, s, s.scope);
        backend.replay_segment(no, |_| true, |old| map.get(old as usize).copied()).unwrap();
    }
    Job { backend, v, l, m }
}

/// A restore whose function registers its states in another order maps
/// the log's records by the checkpoint's directory.
#[test]
fn replay_follows_a_changed_registration_order() {
    let (disk, list, model, _) = flushed();
    // The new function registers m, v, l: old state i is new state map[i].
    let mut r = restore_as_mvl(&disk, &list, 1 << 32, [1, 2, 0]);
    check(&mut r, &model, 300, "remapped");
    // The remapped records were copied and the old segments dropped: a
    // checkpoint of the restored backend restores again under the new
    // order, with no record left under an old number.
    let again = r.backend.flush_log().unwrap();
    settle(&mut r);
    assert!(again.iter().all(|s| list.iter().all(|o| o.id != s.id)), "the old segments were dropped");
    let mut r = restore_as_mvl(&disk, &again, 3 << 32, [0, 1, 2]);
    check(&mut r, &model, 300, "remapped, checkpointed and restored again");
    // A record of a state the directory does not name is an error.
    let log = LogStore::new(Box::new(SimIo(disk.clone())), 2 << 32, 8 << 10);
    let mut backend = KeyedStateBackend::<u32>::with_log(log, MemoryBudget::new(4 << 10));
    backend.value_state::<i64>("v").unwrap();
    let no = adopt_from(&backend, &disk, &list[0], list[0].scope);
    assert!(backend.replay_segment(no, |_| true, |old| (old == 0).then_some(0)).is_err());
}

/// Adopts the segments of `list` into `j`, which owns key groups `owned`,
/// as a restore does: each segment only for the key groups in both its
/// scope and `owned`, and skipped if there are none.
fn adopt_scoped(
    j: &mut Job,
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    list: &[SegmentRef],
    owned: KeyGroupRange,
    mp: MaxParallelism,
) {
    for s in list {
        let scope = s.scope.intersect(&owned);
        if scope.is_empty() {
            continue;
        }
        let no = adopt_from(&j.backend, disk, s, scope);
        j.backend
            .replay_segment(no, |hash| scope.contains(mp.key_group(hash)), |s| Some(s as usize))
            .unwrap();
    }
}

/// Keys of the rescale tests.
const RESCALE_KEYS: u32 = 300;

/// Sets every key of the rescale tests that `owned` holds to `value`.
fn set_owned(j: &mut Job, mp: MaxParallelism, owned: KeyGroupRange, value: i64) {
    for k in (0..RESCALE_KEYS).filter(|k| owned.contains(mp.key_group(key_hash(k)))) {
        j.backend.value(&j.v, at(&k)).set(value);
    }
}

/// Checkpoints `j` (flushes and seals its log) and waits until the
/// segments are durable, without compacting; returns them.
fn checkpoint(j: &mut Job) -> Vec<SegmentRef> {
    let list = j.backend.flush_log().unwrap();
    settle_without_compaction(j);
    assert_eq!(j.backend.log().unwrap().borrow().durability(&list), Durability::Durable);
    list
}

/// The first run of the rescale tests: one core sets every key to 1 and
/// checkpoints; returns its segments.
fn first_run_on_one_core(disk: &Rc<std::cell::RefCell<SimDisk>>, mp: MaxParallelism) -> Vec<SegmentRef> {
    let mut first = job(disk, 0, 4 << 10, 8 << 10);
    first.backend.log().unwrap().borrow_mut().set_scope(mp.range_for(0, 1));
    set_owned(&mut first, mp, mp.range_for(0, 1), 1);
    checkpoint(&mut first)
}

/// Core `core` of the rescale tests' middle run (2 cores), restored from
/// the first run's segments `list`.
fn middle_run_core(
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    list: &[SegmentRef],
    mp: MaxParallelism,
    core: usize,
) -> Job {
    let owned = mp.range_for(core, 2);
    let mut j = job(disk, (2 + core as u64) << 32, 4 << 10, 8 << 10);
    j.backend.log().unwrap().borrow_mut().set_scope(owned);
    adopt_scoped(&mut j, disk, list, owned, mp);
    j
}

/// 1 core → 2 cores → 1 core, with no compaction in between: both cores of
/// the middle run adopt the first run's segments and still list them in
/// their checkpoints. The last restore replays each listed segment only
/// for the key groups its lister owned; replaying a shared segment for
/// every group would bring back, after one core's newer records, the
/// values the other core's copy still holds.
#[test]
fn a_segment_shared_after_a_rescale_counts_only_for_its_scope() {
    let disk = SimDisk::new(seed());
    let mp = MaxParallelism::new(128).unwrap();
    let keys = RESCALE_KEYS;
    let set_all = |j: &mut Job, owned: KeyGroupRange, value: i64| set_owned(j, mp, owned, value);
    let list = first_run_on_one_core(&disk, mp);

    let mut lists = Vec::new();
    for core in 0..2 {
        let owned = mp.range_for(core, 2);
        let mut j = middle_run_core(&disk, &list, mp, core);
        set_all(&mut j, owned, 2 + core as i64);
        let listed = checkpoint(&mut j);
        assert!(
            listed.iter().any(|s| list.iter().any(|o| o.id == s.id)),
            "the first run's segments are shared"
        );
        lists.push(listed);
    }

    let owned = mp.range_for(0, 1);
    let mut last = job(&disk, 9 << 32, 4 << 10, 8 << 10);
    for l in &lists {
        adopt_scoped(&mut last, &disk, l, owned, mp);
    }
    for k in 0..keys {
        let core = mp.owner(mp.key_group(key_hash(&k)), 2);
        assert_eq!(
            last.backend.value(&last.v, at(&k)).get(),
            Some(&(2 + core as i64)),
            "key {k} (core {core})"
        );
    }
}

/// 1 core → 2 cores → 1 core through index bases: both cores of the middle
/// run adopt the first run's segments, and each writes an index base that
/// covers them for its own key groups. The last restore adopts such a
/// shared segment twice (once per file, each time for that file's groups)
/// and loads each file's base right after adopting its segments, so the
/// segment's records are indexed under both adoptions. Its next checkpoint
/// used to panic writing a base (an indexed record outside the segments it
/// mapped by id); it now writes none, and restores of it on 1 and 2 cores
/// hold every key's latest value and only their own keys.
#[test]
fn a_segment_shared_after_a_rescale_restores_through_both_index_bases() {
    let disk = SimDisk::new(seed());
    let mp = MaxParallelism::new(128).unwrap();
    let keys = RESCALE_KEYS;
    let list = first_run_on_one_core(&disk, mp);

    let mut files = Vec::new();
    for core in 0..2 {
        let owned = mp.range_for(core, 2);
        let mut j = middle_run_core(&disk, &list, mp, core);
        // Half of this core's keys change: the others stay in the shared
        // segments, which the base must cover.
        for k in (0..keys).filter(|k| k.is_multiple_of(2) && owned.contains(mp.key_group(key_hash(k)))) {
            j.backend.value(&j.v, at(&k)).set(2 + core as i64);
        }
        let listed = j.backend.flush_log().unwrap();
        let ix = j.backend.checkpoint_index(&listed).unwrap();
        settle_without_compaction(&mut j);
        assert!(ix.written, "the first checkpoint of a log writes a base");
        assert!(
            listed.iter().any(|s| list.iter().any(|o| o.id == s.id)),
            "the first run's segments are shared"
        );
        files.push((listed, ix));
    }
    let want = |k: u32| {
        let core = mp.owner(mp.key_group(key_hash(&k)), 2);
        if k.is_multiple_of(2) { 2 + core as i64 } else { 1 }
    };

    // One core restores both files, each through its base.
    let mut last = job(&disk, 9 << 32, 4 << 10, 8 << 10);
    for (listed, ix) in &files {
        let adopted: Vec<(u32, u64)> =
            listed.iter().map(|s| (adopt_from(&last.backend, &disk, s, s.scope), s.id)).collect();
        let bytes = disk.borrow().read(ix.base.id).expect("the base was written");
        let base = index::BaseFile::open(Rc::new(bytes), ix.base.len as usize, ix.base.id).unwrap();
        let covered: Vec<u64> = base.base().segments.iter().map(|s| s.id.to_native()).collect();
        last.backend.load_index(&base).unwrap();
        for (no, id) in adopted {
            if !covered.contains(&id) {
                last.backend.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
            }
        }
        last.backend.finish_index(&ix.forgotten);
    }
    for k in 0..keys {
        assert_eq!(last.backend.value(&last.v, at(&k)).get(), Some(&want(k)), "key {k}, restored");
    }
    // The next checkpoint lists that segment twice, each time with its own
    // key groups. It writes no base (a base names segments by id, and a
    // restore on 2 cores would index the other core's records under its
    // one adoption of the segment): restores replay, keeping each listed
    // segment's key groups.
    let again = checkpoint(&mut last);
    let shared = again.iter().filter(|s| list.iter().any(|o| o.id == s.id)).count();
    assert!(shared >= 2, "a first-run segment is adopted twice: {again:?}");
    assert_eq!(last.backend.checkpoint_index(&again), None, "no base while a segment is adopted twice");
    for cores in [1, 2] {
        for core in 0..cores {
            let owned = mp.range_for(core, cores);
            let mut back = job(&disk, (10 + core as u64) << 32, 4 << 10, 8 << 10);
            adopt_scoped(&mut back, &disk, &again, owned, mp);
            let mine: Vec<u32> = (0..keys).filter(|k| owned.contains(mp.key_group(key_hash(k)))).collect();
            assert_eq!(
                back.backend.log_stats().unwrap().cold,
                mine.len(),
                "core {core} of {cores} indexes its keys"
            );
            for k in mine {
                let got = back.backend.value(&back.v, at(&k)).get().copied();
                assert_eq!(got, Some(want(k)), "key {k}, restored again on core {core} of {cores}");
            }
        }
    }
}

/// Drives the sim disk's writes to completion without a compaction step.
fn settle_without_compaction(j: &mut Job) {
    let log = j.backend.log().unwrap().clone();
    for _ in 0..8 {
        log.borrow_mut().poll();
    }
}

/// Every key filed under the same 64-bit hash: the index must tell keys
/// apart by reading their records (eviction, read-back, removal,
/// compaction and replay all meet the collision).
#[test]
fn keys_sharing_a_hash_stay_apart() {
    fn same(k: &u32) -> CurrentKey<'_, u32> {
        CurrentKey::new(k, 7)
    }
    keys_stay_apart(same);
}

/// Every key's hash differs, but only above the 32 bits an index slot
/// keeps of it (its tag): the index must not take one key's record for
/// another's.
#[test]
fn keys_sharing_an_index_tag_stay_apart() {
    fn same_tag(k: &u32) -> CurrentKey<'_, u32> {
        CurrentKey::new(k, (u64::from(*k) << 32) | 7)
    }
    keys_stay_apart(same_tag);
}

fn keys_stay_apart(same: for<'a> fn(&'a u32) -> CurrentKey<'a, u32>) {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    let mut j = job(&disk, 0, 1 << 10, 8 << 10);
    let mut model = BTreeMap::new();
    for i in 0..20_000 {
        let k = rng.u32(0..80);
        if rng.u32(0..5) == 0 {
            assert_eq!(j.backend.value(&j.v, same(&k)).clear(), model.remove(&k), "clear of {k} at {i}");
        } else {
            let add = rng.i64(1..10);
            *j.backend.value(&j.v, same(&k)).get_or_insert_with(|| 0) += add;
            *model.entry(k).or_insert(0) += add;
        }
        if i % 500 == 0 {
            j.backend.maintain_log();
        }
    }
    let stats = j.backend.log_stats().unwrap();
    assert!(stats.spill.evicted > 1000 && stats.spill.faulted_in > 1000, "{stats:?}");
    let list = j.backend.flush_log().unwrap();
    settle(&mut j);
    let mut r = job(&disk, 1 << 32, 2 << 10, 8 << 10);
    for s in &list {
        let no = adopt_from(&r.backend, &disk, s, s.scope);
        r.backend.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
    }
    for k in 0..80 {
        assert_eq!(j.backend.value(&j.v, same(&k)).get(), model.get(&k), "key {k}");
        assert_eq!(r.backend.value(&r.v, same(&k)).get(), model.get(&k), "key {k} restored");
    }
}

/// Mean of the values added: the accumulator is `(sum, count)`.
#[derive(Clone)]
struct Mean;

impl crate::AggregateFunction<i64> for Mean {
    type Acc = (i64, u32);
    type Out = f64;
    fn create_accumulator(&mut self) -> (i64, u32) {
        (0, 0)
    }
    fn add(&mut self, v: i64, acc: (i64, u32)) -> (i64, u32) {
        (acc.0 + v, acc.1 + 1)
    }
    fn get_result(&mut self, acc: &(i64, u32)) -> f64 {
        acc.0 as f64 / f64::from(acc.1)
    }
    fn merge(&mut self, a: (i64, u32), b: (i64, u32)) -> (i64, u32) {
        (a.0 + b.0, a.1 + b.1)
    }
}

/// A reducing (max) and an aggregating (mean) state against a model, on
/// the heap backend and on the log backend with a budget that spills; then
/// restored from a heap snapshot and from the log.
#[test]
fn reducing_and_aggregating_state_on_both_backends() {
    let seed = seed();
    let disk = SimDisk::new(seed);
    let heap = KeyedStateBackend::<u32>::new();
    let log = KeyedStateBackend::with_log(
        LogStore::new(Box::new(SimIo(disk.clone())), 0, 8 << 10),
        MemoryBudget::new(2 << 10),
    );
    let mut restored_heap = None;
    for (name, mut b) in [("heap", heap), ("log", log)] {
        let mut rng = fastrand::Rng::with_seed(seed);
        let max = b.reducing_state::<i64>("max", |a, b| a.max(b)).unwrap();
        let mean = b.aggregating_state("mean", Mean).unwrap();
        let mut model: BTreeMap<u32, (i64, i64, u32)> = BTreeMap::new();
        for _ in 0..20_000 {
            let k = rng.u32(0..300);
            if rng.u32(0..20) == 0 {
                let had = model.remove(&k).map(|m| m.0);
                assert_eq!(b.reducing(&max, at(&k)).clear(), had, "{name} seed {seed}");
                b.aggregating(&mean, at(&k)).clear();
            } else {
                let v = rng.i64(-1000..1000);
                b.reducing(&max, at(&k)).add(v);
                b.aggregating(&mean, at(&k)).add(v);
                let m = model.entry(k).or_insert((v, 0, 0));
                *m = (m.0.max(v), m.1 + v, m.2 + 1);
            }
        }
        let check = |b: &mut KeyedStateBackend<u32>, what: &str| {
            for k in 0..300 {
                let want = model.get(&k);
                assert_eq!(b.reducing(&max, at(&k)).get(), want.map(|m| &m.0), "{what} key {k} seed {seed}");
                assert_eq!(
                    b.aggregating(&mean, at(&k)).get(),
                    want.map(|m| m.1 as f64 / f64::from(m.2)),
                    "{what} key {k} seed {seed}"
                );
            }
        };
        check(&mut b, name);
        if name == "heap" {
            // A snapshot restores into a backend that registered the same
            // states (functions are the code's, not the snapshot's).
            let mut r = KeyedStateBackend::<u32>::new();
            r.reducing_state::<i64>("max", |a, b| a.max(b)).unwrap();
            r.aggregating_state("mean", Mean).unwrap();
            for id in 0..2 {
                b.snapshot_state(id, &mut |_, bytes| r.restore_entry(id, bytes).unwrap());
            }
            check(&mut r, "heap restored");
            restored_heap = Some(r);
        } else {
            let stats = b.log_stats().unwrap();
            assert!(stats.spill.evicted > 100 && stats.spill.faulted_in > 100, "{stats:?}");
            let list = b.flush_log().unwrap();
            let written = b.log().unwrap().clone();
            for _ in 0..8 {
                written.borrow_mut().poll();
            }
            let mut r = KeyedStateBackend::<u32>::with_log(
                LogStore::new(Box::new(SimIo(disk.clone())), 1 << 32, 8 << 10),
                MemoryBudget::new(2 << 10),
            );
            r.reducing_state::<i64>("max", |a, b| a.max(b)).unwrap();
            r.aggregating_state("mean", Mean).unwrap();
            for s in &list {
                let no = adopt_from(&r, &disk, s, s.scope);
                r.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
            }
            check(&mut r, "log restored");
        }
    }
    let r = restored_heap.unwrap();
    let kinds: Vec<_> = r.descriptors().map(|(_, k)| k.to_string()).collect();
    assert_eq!(kinds, ["ReducingState<i64>", "AggregatingState<i64, (i64, u32), f64>"]);
}

/// A hot entry for driving a [`Spill`] directly.
struct TestEntry {
    hash: u64,
    key: u32,
    value: u64,
    flags: u8,
}

impl spill::HotEntry<u32, u64> for TestEntry {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn key(&self) -> std::borrow::Cow<'_, u32> {
        std::borrow::Cow::Borrowed(&self.key)
    }
    fn encode(&self, out: &mut Vec<u8>) -> usize {
        spill::encode_entry(&self.key, &self.value, out)
    }
    fn flags(&mut self) -> &mut u8 {
        &mut self.flags
    }
}

/// A table is charged for its buckets, and while a shard doubles, its old
/// and new bucket arrays are both allocated: a shard grows only when the
/// core's charge plus both arrays fits in the budget, so a resize never
/// takes the process past it. And since shards grow one at a time, the
/// table fills the budget instead of stopping at a power of two.
#[test]
fn a_hot_table_grows_a_shard_only_when_old_and_new_arrays_fit() {
    use crate::hot::HotTable;
    let disk = SimDisk::new(11);
    let limit = 3 << 20;
    let budget = MemoryBudget::new(limit);
    let log = Rc::new(std::cell::RefCell::new(LogStore::new(Box::new(SimIo(disk.clone())), 0, 1 << 20)));
    let entry_size = std::mem::size_of::<TestEntry>();
    let mut spill = spill::Spill::<u32, u64>::new(log, 0, budget.clone(), entry_size);
    let mut hot = HotTable::<TestEntry>::new();
    let (mut growths, mut most, mut widest) = (0, 0, 0);
    // 100 k keys need 3.2 MB of buckets: some spill, and their index fits.
    for k in 0..100_000u32 {
        let hash = key_hash(&k);
        spill.maintain(&mut hot, hash);
        let shard = hot.shard(hot.shard_index(hash));
        if shard.len() == shard.capacity() && !shard.is_empty() {
            // This insert doubles the shard.
            let transient = budget.used() + 2 * shard.num_buckets() * (entry_size + 1);
            most = most.max(transient);
            assert!(transient <= limit, "key {k}: the resize holds {transient} bytes, over {limit}");
            growths += 1;
        }
        hot.insert_unique(hash, TestEntry { hash, key: k, value: u64::from(k), flags: spill::DIRTY }, |e| {
            e.hash
        });
        widest = widest.max(hot.num_buckets());
    }
    println!(
        "{growths} shard growths, most held during one {most} of {limit}; at most {widest} buckets; \
         hot {} cold {}, {} buckets at the end",
        hot.len(),
        spill.cold_len(),
        hot.num_buckets()
    );
    assert!(growths >= 2 * 16, "the shards grew {growths} times");
    assert!(spill.cold_len() > 10_000, "the state spilled: {} cold", spill.cold_len());
    // A table that doubles whole stops at a power of two: here 64 Ki
    // buckets (1.6 MB) with their doubling (3.2 MB more) would not fit.
    // Sharded, it grows past 64 Ki a shard at a time.
    assert!(widest > 64 << 10, "at most {widest} buckets");
}

/// A checkpoint's flush over the budget evicts what it writes; an evicted
/// entry frees only what it owns, so the flush shrinks the shards it
/// emptied: the buckets go back, and the charge is what is still held.
#[test]
fn a_flush_over_the_budget_gives_the_evicted_entries_buckets_back() {
    use crate::hot::HotTable;
    let disk = SimDisk::new(12);
    let budget = MemoryBudget::new(64 << 20);
    let log = Rc::new(std::cell::RefCell::new(LogStore::new(Box::new(SimIo(disk.clone())), 0, 1 << 20)));
    let entry_size = std::mem::size_of::<TestEntry>();
    let mut spill = spill::Spill::<u32, u64>::new(log, 0, budget.clone(), entry_size);
    let mut hot = HotTable::<TestEntry>::new();
    for k in 0..200_000u32 {
        let hash = key_hash(&k);
        spill.maintain(&mut hot, hash);
        hot.insert_unique(hash, TestEntry { hash, key: k, value: u64::from(k), flags: spill::DIRTY }, |e| {
            e.hash
        });
    }
    spill.maintain(&mut hot, 0);
    let before = hot.num_buckets();
    assert_eq!((hot.len(), spill.stats.evicted), (200_000, 0), "all hot under the first budget");
    // The guard lowers the limit below what the table holds: the flush
    // evicts what it writes from then on.
    budget.set_limit(budget.used() * 3 / 4);
    spill.flush(&mut hot);
    assert!((100_000..200_000).contains(&spill.stats.evicted), "evicted {}", spill.stats.evicted);
    for i in 0..crate::hot::SHARDS {
        let shard = hot.shard(i);
        assert!(
            shard.capacity() <= 2 * shard.len() + 64,
            "shard {i} left sparse: {} entries in room for {}",
            shard.len(),
            shard.capacity()
        );
    }
    let after = hot.num_buckets();
    println!("buckets {before} -> {after}, {} hot", hot.len());
    assert!(after <= before / 2, "buckets {before} -> {after}");
}

/// Compaction leaves segments alone until they are nearly dead, as long as
/// the log holds less dead than live data: under churn they die whole and
/// are dropped without copying; and the log stays within about twice its
/// live data while some keys never change.
#[test]
fn compaction_waits_for_segments_to_die_and_bounds_the_log() {
    let disk = SimDisk::new(5);
    let mut j = job(&disk, 0, 4 << 10, 8 << 10);
    let segment = 8 << 10;
    // 3 000 keys (about eight segments) rewritten 20 times: every record
    // dies within a round. The log is looked at often, while segments are
    // still partly live.
    for round in 0..20i64 {
        for k in 0..3_000u32 {
            j.backend.value(&j.v, at(&k)).set(round);
            if k % 100 == 99 {
                j.backend.maintain_log();
            }
        }
    }
    settle(&mut j);
    let st = j.backend.log_stats().unwrap();
    println!("churn: {st:?}");
    assert!(st.log.compacted + 12 >= st.log.sealed, "dead segments were dropped: {st:?}");
    assert!(
        st.log.compacted_bytes * 10 < st.log.appended_bytes,
        "segments that die whole are dropped, not copied: {} of {} bytes copied",
        st.log.compacted_bytes,
        st.log.appended_bytes
    );
    // Now keys 0..1500 never change and 1500..3000 keep changing: the older
    // segments stay about half dead. The log still stays within about
    // twice its live data (plus a few segments in flight).
    for round in 0..60i64 {
        for k in 1_500..3_000u32 {
            j.backend.value(&j.v, at(&k)).set(round);
        }
        settle(&mut j);
        let st = j.backend.log_stats().unwrap();
        let live = st.log_bytes - st.dead_bytes;
        assert!(
            st.dead_bytes <= live + 4 * segment,
            "round {round}: {} dead bytes against {live} live",
            st.dead_bytes
        );
    }
    for k in 0..3_000u32 {
        let want = if k < 1_500 { 19 } else { 59 };
        assert_eq!(j.backend.value(&j.v, at(&k)).get(), Some(&want), "key {k}");
    }
}

/// Keys that are written once and removed later (sessions, expired TTL
/// state) leave tombstones. A tombstone must outlive the older records of
/// its key, but not forever: behind a segment of keys that never change
/// (never dead enough to be compacted, and always the oldest), tombstones
/// used to be copied forward at every compaction and piled up without bound.
#[test]
fn tombstones_do_not_pile_up_behind_a_segment_that_never_dies() {
    let disk = SimDisk::new(7);
    let segment = 8 << 10;
    let mut j = job(&disk, 0, 4 << 10, segment);
    for k in 0..500u32 {
        j.backend.value(&j.v, at(&k)).set(-1);
    }
    settle(&mut j);
    let mut peak = 0;
    for round in 0..300u32 {
        let fresh = 100_000 + round * 200;
        for k in fresh..fresh + 200 {
            j.backend.value(&j.v, at(&k)).set(i64::from(round));
        }
        settle(&mut j);
        if round > 0 {
            for k in fresh - 200..fresh {
                assert_eq!(j.backend.value(&j.v, at(&k)).clear(), Some(i64::from(round - 1)));
            }
        }
        settle(&mut j);
        let st = j.backend.log_stats().unwrap();
        let live = st.log_bytes - st.dead_bytes;
        peak = peak.max(st.log_bytes);
        assert!(
            st.log_bytes <= 4 * live + 8 * segment,
            "round {round}: the log holds {} bytes for {live} live ({} tombstones written)",
            st.log_bytes,
            st.spill.tombstones
        );
        if round % 60 == 59 {
            // A replay of the log must not bring a removed key back: the
            // tombstones dropped were the ones no older record needed.
            let list = j.backend.flush_log().unwrap();
            settle(&mut j);
            assert!(j.backend.log().unwrap().borrow().all_durable(&list));
            let mut r = recover(&disk, &list, u64::from(round + 1) << 40, 4 << 10);
            for k in (0..500u32).chain(100_000..fresh + 200) {
                let want = match k {
                    0..500 => Some(-1),
                    k if k >= fresh => Some(i64::from(round)),
                    _ => None,
                };
                assert_eq!(r.backend.value(&r.v, at(&k)).get().copied(), want, "round {round}: key {k}");
                assert_eq!(j.backend.value(&j.v, at(&k)).get().copied(), want, "round {round}: key {k}");
            }
        }
    }
    let st = j.backend.log_stats().unwrap();
    println!("peak log {peak} bytes; {st:?}");
    assert!(st.spill.tombstones >= 299 * 200 / 2, "the keys were removed from the log: {st:?}");
    // A sweep copies about the live bytes once per sweep; it must not
    // turn into compacting the oldest segment at every step.
    let written = st.log.appended_bytes - st.log.compacted_bytes;
    assert!(
        st.log.compacted_bytes < 3 * written,
        "{} bytes copied for {written} written",
        st.log.compacted_bytes
    );
}

/// A restore through an index base: adopts every segment of `list`, loads
/// the base's live records, replays the segments the base does not cover
/// and unindexes what `ix` names as forgotten. Returns the job and how
/// many segments it replayed.
///
/// The restored job writes to a disk of its own: logs sharing a sim disk
/// would take each other's write completions.
fn recover_indexed(
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    list: &[SegmentRef],
    ix: &IndexCheckpoint,
    budget: usize,
) -> (Job, usize) {
    let mut j = job(&SimDisk::new(1), 1 << 32, budget, 16 << 10);
    let replayed = restore_through_base(&mut j.backend, disk, list, ix);
    (j, replayed)
}

/// Restores `backend` (its states registered, its log empty) from the
/// checkpoint `list` and `ix` on `disk`: adopts the segments, loads the
/// index base, replays the segments it does not cover. Returns how many it
/// replayed.
fn restore_through_base(
    backend: &mut KeyedStateBackend<u32>,
    disk: &Rc<std::cell::RefCell<SimDisk>>,
    list: &[SegmentRef],
    ix: &IndexCheckpoint,
) -> usize {
    let adopted: Vec<(u32, u64)> =
        list.iter().map(|s| (adopt_from(backend, disk, s, s.scope), s.id)).collect();
    let bytes = disk.borrow().read(ix.base.id).expect("the base was written");
    let base = index::BaseFile::open(Rc::new(bytes), ix.base.len as usize, ix.base.id).unwrap();
    let covered: Vec<u64> = base.base().segments.iter().map(|s| s.id.to_native()).collect();
    backend.load_index(&base).unwrap();
    let mut replayed = 0;
    for (no, id) in adopted {
        if !covered.contains(&id) {
            backend.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
            replayed += 1;
        }
    }
    backend.finish_index(&ix.forgotten);
    replayed
}

/// At every checkpoint of a spilling, compacting run, a restore through
/// the index base (written now and then; the segments sealed since are
/// replayed) holds exactly the state a full replay does: the same values,
/// the same keys in the log, and the same dead bytes (recounted from the
/// index instead of seen record by record).
#[test]
fn an_index_base_restores_what_a_full_replay_does() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(seed);
    let mut j = job(&disk, 0, 4 << 10, 8 << 10);
    let mut model = Model::default();
    let keys = 400;
    let (mut written, mut with_tail) = (0, 0);
    // A state that spills first, then small rounds between checkpoints.
    for _ in 0..3_000 {
        step(&mut j, &mut model, &mut rng, keys);
    }
    for round in 0..24 {
        for _ in 0..rng.usize(10..120) {
            step(&mut j, &mut model, &mut rng, keys);
        }
        let list = j.backend.flush_log().unwrap();
        let ix = j.backend.checkpoint_index(&list).unwrap();
        settle(&mut j);
        let mut all = list.clone();
        all.push(ix.base.clone());
        assert_eq!(j.backend.log().unwrap().borrow().durability(&all), Durability::Durable, "round {round}");
        written += usize::from(ix.written);
        let (mut indexed, replayed) = recover_indexed(&disk, &list, &ix, 4 << 10);
        with_tail += usize::from(replayed > 0);
        let mut full = job(&SimDisk::new(2), 2 << 32, 4 << 10, 16 << 10);
        for s in &list {
            let no = adopt_from(&full.backend, &disk, s, s.scope);
            full.backend.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
        }
        let (a, b) = (indexed.backend.log_stats().unwrap(), full.backend.log_stats().unwrap());
        assert_eq!((a.cold, a.dead_bytes, a.log_bytes), (b.cold, b.dead_bytes, b.log_bytes), "round {round}");
        check(&mut indexed, &model, keys, &format!("round {round}, through the index"));
        check(&mut full, &model, keys, &format!("round {round}, replayed"));
    }
    let stats = j.backend.log_stats().unwrap();
    println!("bases written {written} of 24, restores with a tail {with_tail}; {stats:?}");
    assert!(stats.log.compacted > 0, "segments were compacted between checkpoints");
    assert!((2..24).contains(&written), "bases are written now and then: {written}");
    assert!(with_tail >= 4, "restores replayed segments sealed after their base: {with_tail}");
}

/// A base file that was damaged, cut, or is not a base at all is refused
/// before anything is read from it: by its checksum, or by rkyv's
/// validation when the checksum was forged to match.
#[test]
fn a_damaged_index_base_is_refused() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = index::IndexBase {
        segments: (0..5).map(|i| index::BaseSegment { id: i, live: vec![rng.u64(..); 3] }).collect(),
        counts: vec![(0, 7), (2, 9)],
    };
    let good = index::encode(77, &base);
    let open = |b: Vec<u8>, len: usize| index::BaseFile::open(Rc::new(b), len, 77).map(|_| ());
    assert!(open(good.clone(), good.len()).is_ok());
    let mut flipped = good.clone();
    let at = rng.usize(index::INDEX_HEADER_BYTES..good.len());
    flipped[at] ^= 1 << rng.u32(0..8);
    // Forged: garbage with a matching checksum.
    let mut forged = good[..index::INDEX_HEADER_BYTES].to_vec();
    let garbage: Vec<u8> = (0..good.len() - forged.len()).map(|_| rng.u8(..) | 0x80).collect();
    forged.extend_from_slice(&garbage);
    let crc = crc32c::crc32c(&forged[16..]);
    forged[12..16].copy_from_slice(&crc.to_le_bytes());
    let mut magic = good.clone();
    magic[0] = b'X';
    for (what, bytes, len) in [
        ("flipped", flipped, good.len()),
        ("cut", good[..good.len() - 3].to_vec(), good.len()),
        ("forged", forged, good.len()),
        ("magic", magic, good.len()),
    ] {
        let r = open(bytes, len);
        println!("{what}: {r:?}");
        assert!(r.is_err(), "a {what} base was accepted");
    }
    assert!(index::BaseFile::open(Rc::new(good.clone()), good.len(), 78).is_err(), "another base's file");
    let read = index::BaseFile::open(Rc::new(good.clone()), good.len(), 77).unwrap();
    assert_eq!(rkyv::deserialize::<index::IndexBase, rkyv::rancor::Error>(read.base()).unwrap(), base);
}

/// A user value archived with rkyv ([`crate::Rkyv`]).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Features {
    user: String,
    weights: Vec<f32>,
    seen: u64,
}

fn features(rng: &mut fastrand::Rng, k: u32) -> Features {
    let n = rng.usize(0..48);
    Features {
        user: format!("user_{k}"),
        weights: (0..n).map(|_| rng.f32()).collect(),
        seen: rng.u64(..1000),
    }
}

/// Reads every key's archived value back (in place, then decoded) and
/// compares with the model.
fn check_archived(
    backend: &mut KeyedStateBackend<u32>,
    f: &ValueState<crate::Rkyv<Features>>,
    model: &BTreeMap<u32, Features>,
    keys: u32,
    what: &str,
) {
    for k in 0..keys {
        let mut v = backend.value(f, at(&k));
        let got = v.get();
        assert_eq!(
            got.map(|a| a.get().seen.to_native()),
            model.get(&k).map(|m| m.seen),
            "{what}: seen of {k}"
        );
        assert_eq!(got.map(|a| a.to_value()).as_ref(), model.get(&k), "{what}: value of {k}");
    }
}

/// Values archived with rkyv on the log backend, under a budget that keeps
/// nearly all of them cold: evicted, read back (copied out of the mapped
/// segment and validated), compacted, then checkpointed and restored
/// through the index base and through a heap snapshot, equal to a model
/// throughout.
#[test]
fn archived_values_spill_read_back_and_restore_unchanged() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys = 400;
    let disk = SimDisk::new(rng.u64(..));
    let log = LogStore::new(Box::new(SimIo(disk.clone())), 0, 8 << 10);
    let mut backend = KeyedStateBackend::with_log(log, MemoryBudget::new(8 << 10));
    let f = backend.value_state::<crate::Rkyv<Features>>("f").unwrap();
    let mut model = BTreeMap::new();
    for i in 0..8000 {
        let k = rng.u32(0..keys);
        match rng.u32(0..10) {
            0..=3 => {
                let v = features(&mut rng, k);
                backend.value(&f, at(&k)).set(crate::Rkyv::new(&v));
                model.insert(k, v);
            }
            4..=5 => {
                // Read, modify, write back: decode, change, archive again.
                if let Some(a) = backend.value(&f, at(&k)).get_mut() {
                    let mut v = a.to_value();
                    v.seen += 1;
                    a.set(&v);
                }
                if let Some(m) = model.get_mut(&k) {
                    m.seen += 1;
                }
            }
            6 => {
                let got = backend.value(&f, at(&k)).clear().map(|a| a.to_value());
                assert_eq!(got, model.remove(&k), "clear of {k}");
            }
            _ => {
                let mut v = backend.value(&f, at(&k));
                let got = v.get().map(|a| (a.get().user.to_string(), a.get().weights.len()));
                let want = model.get(&k).map(|m| (m.user.clone(), m.weights.len()));
                assert_eq!(got, want, "read of {k} at step {i}");
            }
        }
        if i % 97 == 0 {
            backend.maintain_log();
        }
    }
    check_archived(&mut backend, &f, &model, keys, "before the checkpoint");
    let stats = backend.log_stats().unwrap();
    assert!(stats.spill.written > 1000, "values were written to the log: {stats:?}");
    assert!(stats.spill.faulted_in > 1000, "values were read back from the log: {stats:?}");
    assert!(stats.log.compacted > 0, "segments were compacted: {stats:?}");

    // A checkpoint, then a restore through its index base on a new log.
    let list = backend.flush_log().unwrap();
    let ix = backend.checkpoint_index(&list).unwrap();
    for _ in 0..8 {
        backend.maintain_log();
    }
    let log = LogStore::new(Box::new(SimIo(SimDisk::new(1))), 1 << 32, 8 << 10);
    let mut restored = KeyedStateBackend::with_log(log, MemoryBudget::new(8 << 10));
    let rf = restored.value_state::<crate::Rkyv<Features>>("f").unwrap();
    restore_through_base(&mut restored, &disk, &list, &ix);
    check_archived(&mut restored, &rf, &model, keys, "restored through the index base");

    // A heap backend restored from the log backend's snapshot entries.
    let mut entries = Vec::new();
    backend.snapshot_state(0, &mut |_, bytes| entries.push(bytes.to_vec()));
    assert_eq!(entries.len(), model.len());
    let mut heap: KeyedStateBackend<u32> = KeyedStateBackend::new();
    let hf = heap.value_state::<crate::Rkyv<Features>>("f").unwrap();
    for e in &entries {
        heap.restore_entry(0, e).unwrap();
    }
    check_archived(&mut heap, &hf, &model, keys, "restored on the heap backend");

    // A damaged archive in a snapshot entry is refused, not read.
    let k = *model.keys().next().unwrap();
    let archive = crate::Rkyv::new(&model[&k]);
    let good = archive.as_bytes();
    // A byte whose damage is structural (an offset or a length).
    let at = (0..good.len())
        .find(|&i| {
            let mut bad = good.to_vec();
            bad[i] = 0x7F;
            crate::Rkyv::<Features>::from_archive(&bad).is_err()
        })
        .expect("some byte of an archive is structural");
    let mut one = Vec::new();
    crate::log::spill::encode_entry(&k, &archive, &mut one);
    // The archive is the entry's tail.
    let start = one.len() - good.len();
    one[start + at] = 0x7F;
    let mut fresh: KeyedStateBackend<u32> = KeyedStateBackend::new();
    fresh.value_state::<crate::Rkyv<Features>>("f").unwrap();
    let e = fresh.restore_entry(0, &one).unwrap_err();
    assert!(e.to_string().contains("Features"), "{e}");
}
