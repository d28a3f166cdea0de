//! State TTL on both backends: expiry in processing time per Flink's
//! semantics, cleanup on read, by the sweeps, in full snapshots, and across
//! a log checkpoint and restore; and a model check on random operations.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::log::{LogStore, MemoryBudget, SegmentRef, SimDisk, SimIo};
use crate::{AggregateFunction, CurrentKey, KeyedStateBackend, StateError, key_hash};

#[test]
fn expiry_is_at_the_expiration_time_and_saturates() {
    let ttl = StateTtlConfig::new(Duration::from_millis(100)).at(1_100);
    assert!(!ttl.expired(1_001), "expires at 1101");
    assert!(ttl.expired(1_000), "expiration time 1100 is not after now");
    let forever = StateTtlConfig::new(Duration::MAX).at(i64::MAX);
    assert!(forever.expired(i64::MAX), "saturates instead of wrapping");
    assert!(!StateTtlConfig::new(Duration::MAX).at(i64::MAX - 1).expired(0));
}

#[test]
fn a_stamped_list_purges_its_expired_elements_in_order() {
    let ttl = StateTtlConfig::new(Duration::from_millis(10)).at(100);
    let mut l = StampedList { at: vec![95, 80, 91, 90, 99], values: vec!['a', 'b', 'c', 'd', 'e'] };
    assert_eq!(l.purge(&ttl), 2);
    assert_eq!(l.values, vec!['a', 'c', 'e']);
    assert_eq!(l.at, vec![95, 91, 99]);
    assert!(!l.all_expired(&ttl));
    assert!(l.all_expired(&StateTtlConfig::new(Duration::from_millis(10)).at(200)));
}

fn at(k: &u32) -> CurrentKey<'_, u32> {
    CurrentKey::new(k, key_hash(k))
}

fn seed() -> u64 {
    let seed =
        std::env::var("BRISK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!("seed = {seed} (rerun with BRISK_SEED={seed})");
    seed
}

/// A log backend on a fresh storage twin with a budget of `budget` bytes.
fn log_backend(disk: &Rc<RefCell<SimDisk>>, id_base: u64, budget: usize) -> KeyedStateBackend<u32> {
    let log = LogStore::new(Box::new(SimIo(disk.clone())), id_base, 8 << 10);
    KeyedStateBackend::with_log(log, MemoryBudget::new(budget))
}

/// Both backends, named; the log one with a budget small enough to evict.
fn backends() -> Vec<(&'static str, KeyedStateBackend<u32>)> {
    let disk = SimDisk::new(7);
    vec![("heap", KeyedStateBackend::new()), ("log", log_backend(&disk, 0, 4 << 10))]
}

fn ttl_ms(ms: u64) -> StateTtlConfig {
    StateTtlConfig::new(Duration::from_millis(ms))
}

#[test]
fn values_expire_ttl_after_their_last_write_unless_reads_renew_them() {
    for (name, mut b) in backends() {
        let written = b.with_ttl(ttl_ms(100)).value_state::<u64>("w").unwrap();
        let read = b.with_ttl(ttl_ms(100).update(TtlUpdate::OnReadAndWrite)).value_state::<u64>("r").unwrap();
        let k = 1;
        b.set_current_time(1_000);
        b.value(&written, at(&k)).set(7);
        b.value(&read, at(&k)).set(7);
        b.set_current_time(1_060);
        assert_eq!(b.value(&written, at(&k)).get(), Some(&7), "{name}");
        assert_eq!(b.value(&read, at(&k)).get(), Some(&7), "{name}: this read renews it until 1160");
        b.set_current_time(1_099);
        assert_eq!(b.value(&written, at(&k)).get(), Some(&7), "{name}: expires at 1100");
        b.set_current_time(1_100);
        assert_eq!(b.value(&written, at(&k)).get(), None, "{name}: expired at 1000 + 100");
        assert_eq!(b.value(&read, at(&k)).get(), Some(&7), "{name}: renewed at 1060");
        b.set_current_time(1_199);
        assert_eq!(b.value(&read, at(&k)).get(), Some(&7), "{name}: renewed at 1100");
        b.set_current_time(1_299);
        assert_eq!(b.value(&read, at(&k)).get(), None, "{name}: last renewed at 1199");
        // A write renews; an expired value is absent to writes too.
        b.value(&written, at(&k)).set(1);
        b.set_current_time(1_350);
        *b.value(&written, at(&k)).get_mut().unwrap() += 1;
        b.set_current_time(1_449);
        assert_eq!(b.value(&written, at(&k)).get(), Some(&2), "{name}: get_mut at 1350 is a write");
        b.set_current_time(1_450);
        assert_eq!(b.value(&written, at(&k)).get_mut(), None, "{name}");
        assert_eq!(*b.value(&written, at(&k)).get_or_insert_with(|| 40), 40, "{name}: expired is unset");
        b.set_current_time(2_000);
        assert_eq!(
            b.value(&written, at(&k)).set(5),
            None,
            "{name}: an expired previous value is not returned"
        );
        assert_eq!(b.value(&written, at(&k)).clear(), Some(5), "{name}");
    }
}

#[test]
fn expired_values_stay_readable_until_cleaned_up_when_visible() {
    for (name, mut b) in backends() {
        let cfg = ttl_ms(100).visibility(TtlVisibility::ReturnExpiredIfNotCleanedUp);
        let v = b.with_ttl(cfg).value_state::<u64>("v").unwrap();
        let l = b.with_ttl(cfg).list_state::<u64>("l").unwrap();
        let k = 3;
        b.set_current_time(0);
        b.value(&v, at(&k)).set(9);
        b.list(&l, at(&k)).add(9);
        b.set_current_time(500);
        assert_eq!(b.value(&v, at(&k)).get(), Some(&9), "{name}: expired but not cleaned up");
        assert_eq!(b.list(&l, at(&k)).get(), &[9], "{name}");
        // A full snapshot is a cleanup: it leaves them out.
        for id in 0..2 {
            b.snapshot_state(id, &mut |_, _| panic!("{name}: an expired entry was snapshotted"));
        }
        // A write treats the expired value as absent.
        assert_eq!(*b.value(&v, at(&k)).get_or_insert_with(|| 1), 1, "{name}");
    }
}

#[test]
fn list_elements_and_map_entries_expire_one_by_one() {
    for (name, mut b) in backends() {
        let l = b.with_ttl(ttl_ms(100)).list_state::<char>("l").unwrap();
        let m = b.with_ttl(ttl_ms(100)).map_state::<char, u32>("m").unwrap();
        let k = 5;
        b.set_current_time(0);
        b.list(&l, at(&k)).add('a');
        b.map(&m, at(&k)).put('x', 1);
        b.set_current_time(60);
        b.list(&l, at(&k)).add_all(['b', 'c']);
        b.map(&m, at(&k)).put('y', 2);
        b.set_current_time(100);
        assert_eq!(b.list(&l, at(&k)).get(), &['b', 'c'], "{name}: 'a' expired at 100");
        assert_eq!(b.map(&m, at(&k)).get(&'x'), None, "{name}");
        assert_eq!(b.map(&m, at(&k)).get(&'y'), Some(&2), "{name}");
        assert_eq!(b.map(&m, at(&k)).len(), 1, "{name}");
        assert_eq!(b.map(&m, at(&k)).iter().collect::<Vec<_>>(), vec![(&'y', &2)], "{name}");
        b.map(&m, at(&k)).put('z', 3);
        b.set_current_time(160);
        assert!(b.list(&l, at(&k)).get().is_empty(), "{name}");
        assert!(!b.map(&m, at(&k)).contains(&'y'), "{name}");
        assert_eq!(b.map(&m, at(&k)).remove(&'z'), Some(3), "{name}: written at 100");
        assert_eq!(b.entry_counts(0).0 + b.entry_counts(1).0, 0, "{name}: empty keys are gone");
        b.list(&l, at(&k)).update(vec!['q']);
        b.set_current_time(259);
        assert_eq!(b.list(&l, at(&k)).clear(), vec!['q'], "{name}");
    }
}

#[derive(Clone)]
struct Mean;

impl AggregateFunction<u32> for Mean {
    type Acc = (u32, u32);
    type Out = u32;
    fn create_accumulator(&mut self) -> (u32, u32) {
        (0, 0)
    }
    fn add(&mut self, v: u32, (s, n): (u32, u32)) -> (u32, u32) {
        (s + v, n + 1)
    }
    fn get_result(&mut self, (s, n): &(u32, u32)) -> u32 {
        s / n
    }
    fn merge(&mut self, a: (u32, u32), b: (u32, u32)) -> (u32, u32) {
        (a.0 + b.0, a.1 + b.1)
    }
}

#[test]
fn reducing_and_aggregating_state_start_over_after_expiry() {
    for (name, mut b) in backends() {
        let r = b.with_ttl(ttl_ms(100)).reducing_state("sum", |a: u32, x: u32| a + x).unwrap();
        let a = b.with_ttl(ttl_ms(100)).aggregating_state("mean", Mean).unwrap();
        let k = 8;
        b.set_current_time(0);
        b.reducing(&r, at(&k)).add(5);
        b.aggregating(&a, at(&k)).add(10);
        b.set_current_time(50);
        b.reducing(&r, at(&k)).add(3);
        b.aggregating(&a, at(&k)).add(20);
        b.set_current_time(149);
        assert_eq!(b.reducing(&r, at(&k)).get(), Some(&8), "{name}: renewed by the add at 50");
        assert_eq!(b.aggregating(&a, at(&k)).get(), Some(15), "{name}");
        b.set_current_time(150);
        assert_eq!(b.reducing(&r, at(&k)).get(), None, "{name}");
        b.reducing(&r, at(&k)).add(1);
        b.aggregating(&a, at(&k)).add(2);
        assert_eq!(b.reducing(&r, at(&k)).get(), Some(&1), "{name}: starts over");
        assert_eq!(b.aggregating(&a, at(&k)).get(), Some(2), "{name}: a fresh accumulator");
    }
}

#[test]
fn ttl_is_part_of_the_state_kind_and_must_be_positive() {
    let mut b = KeyedStateBackend::<u32>::new();
    b.with_ttl(ttl_ms(10)).value_state::<u64>("v").unwrap();
    let err = b.value_state::<u64>("v").unwrap_err();
    assert!(err.to_string().contains("ValueState<u64> with TTL"), "{err}");
    let err = b.with_ttl(StateTtlConfig::new(Duration::from_micros(999))).list_state::<u8>("l").unwrap_err();
    assert!(matches!(err, StateError::InvalidTtl { .. }), "{err}");
    assert!(err.to_string().contains("at least 1 ms"), "{err}");
}

#[test]
fn a_full_snapshot_leaves_out_expired_entries_and_restores_the_rest_with_their_stamps() {
    for (name, mut b) in backends() {
        let v = b.with_ttl(ttl_ms(100)).value_state::<u32>("v").unwrap();
        for k in 0..200u32 {
            b.set_current_time(i64::from(k));
            b.value(&v, at(&k)).set(k);
        }
        b.set_current_time(250);
        let mut copy = KeyedStateBackend::<u32>::new();
        let v2 = copy.with_ttl(ttl_ms(100)).value_state::<u32>("v").unwrap();
        let mut n = 0;
        b.snapshot_state(0, &mut |_, bytes| {
            copy.restore_entry(0, bytes).unwrap();
            n += 1;
        });
        assert_eq!(n, 49, "{name}: keys written at 151..=199 have not expired at 250");
        copy.set_current_time(250);
        assert_eq!(copy.value(&v2, at(&151)).get(), Some(&151), "{name}");
        copy.set_current_time(251);
        assert_eq!(copy.value(&v2, at(&151)).get(), None, "{name}: the stamp came along");
        assert_eq!(copy.value(&v2, at(&199)).get(), Some(&199), "{name}");
    }
}

/// Drives the storage twin until the log's writes are durable.
fn settle(b: &mut KeyedStateBackend<u32>) {
    for _ in 0..8 {
        b.maintain_log();
    }
}

/// A log backend restored from `list` on `disk`, with a TTL value state.
fn restore(disk: &Rc<RefCell<SimDisk>>, list: &[SegmentRef], id_base: u64) -> KeyedStateBackend<u32> {
    let mut b = log_backend(disk, id_base, 4 << 10);
    b.with_ttl(ttl_ms(100)).value_state::<u32>("v").unwrap();
    replay(&mut b, disk, list);
    b
}

/// Adopts the segments of `list` from `disk` into `b` and replays them
/// (its states registered in the checkpoint's order).
fn replay(b: &mut KeyedStateBackend<u32>, disk: &Rc<RefCell<SimDisk>>, list: &[SegmentRef]) {
    for s in list {
        let bytes = disk.borrow().read(s.id).unwrap();
        let no = b
            .log()
            .unwrap()
            .borrow_mut()
            .adopt_verified(s.id, Rc::new(bytes), s.len as usize, s.scope)
            .unwrap();
        b.replay_segment(no, |_| true, |s| Some(s as usize)).unwrap();
    }
}

#[test]
fn the_sweep_removes_keys_that_are_never_read_again_in_memory_and_in_the_log() {
    let disk = SimDisk::new(11);
    let heap = KeyedStateBackend::new();
    for (name, mut b) in [("heap", heap), ("log", log_backend(&disk, 0, 16 << 10))] {
        let v = b.with_ttl(ttl_ms(100)).value_state::<u32>("v").unwrap();
        b.set_current_time(0);
        for k in 0..5_000u32 {
            b.value(&v, at(&k)).set(k);
        }
        if b.is_log() {
            // A checkpoint: every key has a record in the log.
            b.flush_log();
            settle(&mut b);
            assert!(b.entry_counts(0).1 >= 5_000, "{name}: {:?}", b.entry_counts(0));
        }
        // Only one other key is used from now on.
        b.set_current_time(1_000);
        let live = 1_000_000u32;
        for i in 0..40_000u32 {
            b.value(&v, at(&live)).set(i);
        }
        let (hot, cold) = b.entry_counts(0);
        assert_eq!(hot, 1, "{name}: the sweep removed every expired key from memory");
        if b.is_log() {
            assert!(cold <= 1, "{name}: the sweep removed the expired records from the log ({cold} left)");
            assert!(b.log_stats().unwrap().spill.expired >= 5_000, "{name}: {:?}", b.log_stats());
            // Their tombstones keep them gone across a checkpoint and restore.
            let list = b.flush_log().unwrap();
            settle(&mut b);
            let mut r = restore(&disk, &list, 1 << 32);
            let v = r.with_ttl(ttl_ms(100)).value_state::<u32>("v").unwrap();
            assert_eq!(r.entry_counts(0).1, 1, "{name}: only the live key was restored");
            r.set_current_time(1_000);
            assert_eq!(r.value(&v, at(&live)).get(), Some(&39_999));
        }
    }
}

/// What a key holds in the model: values with the time they were stamped.
#[derive(Default, Clone, Debug)]
struct Model {
    value: BTreeMap<u32, (i64, i64)>,
    list: BTreeMap<u32, Vec<(i64, u32)>>,
    map: BTreeMap<u32, BTreeMap<u32, (i64, u32)>>,
}

/// Flink's semantics, written out plainly, for never-visible expired values.
struct Rules {
    ttl: i64,
    renew: bool,
    now: i64,
}

impl Rules {
    fn expired(&self, at: i64) -> bool {
        at + self.ttl <= self.now
    }

    fn read_value(&self, m: &mut Model, k: u32) -> Option<i64> {
        let (at, v) = *m.value.get(&k)?;
        if self.expired(at) {
            m.value.remove(&k);
            return None;
        }
        if self.renew {
            m.value.insert(k, (self.now, v));
        }
        Some(v)
    }

    fn read_list(&self, m: &mut Model, k: u32) -> Vec<u32> {
        let Some(l) = m.list.get_mut(&k) else { return Vec::new() };
        l.retain(|(at, _)| !self.expired(*at));
        if self.renew {
            l.iter_mut().for_each(|e| e.0 = self.now);
        }
        let out = l.iter().map(|e| e.1).collect();
        if l.is_empty() {
            m.list.remove(&k);
        }
        out
    }

    fn read_map(&self, m: &mut Model, k: u32) -> BTreeMap<u32, u32> {
        let Some(map) = m.map.get_mut(&k) else { return BTreeMap::new() };
        map.retain(|_, (at, _)| !self.expired(*at));
        if self.renew {
            map.values_mut().for_each(|e| e.0 = self.now);
        }
        let out = map.iter().map(|(uk, e)| (*uk, e.1)).collect();
        if map.is_empty() {
            m.map.remove(&k);
        }
        out
    }
}

struct Handles {
    v: crate::ValueState<i64>,
    l: crate::ListState<u32>,
    m: crate::MapState<u32, u32>,
}

fn register(b: &mut KeyedStateBackend<u32>, cfg: StateTtlConfig) -> Handles {
    Handles {
        v: b.with_ttl(cfg).value_state("v").unwrap(),
        l: b.with_ttl(cfg).list_state("l").unwrap(),
        m: b.with_ttl(cfg).map_state("m").unwrap(),
    }
}

/// One random operation on the backend and the model.
fn step(b: &mut KeyedStateBackend<u32>, h: &Handles, m: &mut Model, r: &Rules, rng: &mut fastrand::Rng) {
    let k = rng.u32(0..200);
    let now = r.now;
    match rng.u32(0..11) {
        0 | 1 => {
            let add = rng.i64(1..50);
            // A write: an expired value counts as unset.
            let base = match m.value.get(&k) {
                Some(&(at, v)) if !r.expired(at) => v,
                _ => 0,
            };
            m.value.insert(k, (now, base + add));
            *b.value(&h.v, at(&k)).get_or_insert_with(|| 0) += add;
        }
        2 => {
            let want = r.read_value(m, k);
            assert_eq!(b.value(&h.v, at(&k)).get().copied(), want, "value of {k} at {now}");
        }
        3 => {
            let want = m.value.remove(&k).filter(|(at, _)| !r.expired(*at)).map(|e| e.1);
            assert_eq!(b.value(&h.v, at(&k)).clear(), want, "clear of {k} at {now}");
        }
        4 | 5 => {
            let x = rng.u32(..);
            m.list.entry(k).or_default().push((now, x));
            b.list(&h.l, at(&k)).add(x);
        }
        6 => {
            let want = r.read_list(m, k);
            assert_eq!(b.list(&h.l, at(&k)).get(), want.as_slice(), "list of {k} at {now}");
        }
        7 => {
            let (uk, uv) = (rng.u32(0..4), rng.u32(..));
            let map = m.map.entry(k).or_default();
            let want = map.insert(uk, (now, uv)).filter(|(at, _)| !r.expired(*at)).map(|e| e.1);
            assert_eq!(b.map(&h.m, at(&k)).put(uk, uv), want, "put {k}/{uk} at {now}");
        }
        8 => {
            let uk = rng.u32(0..4);
            let want = match m.map.get_mut(&k).and_then(|map| map.get(&uk).copied()) {
                Some((at, _)) if r.expired(at) => {
                    let map = m.map.get_mut(&k).unwrap();
                    map.remove(&uk);
                    if map.is_empty() {
                        m.map.remove(&k);
                    }
                    None
                }
                Some((_, v)) => {
                    if r.renew {
                        m.map.get_mut(&k).unwrap().insert(uk, (now, v));
                    }
                    Some(v)
                }
                None => None,
            };
            assert_eq!(b.map(&h.m, at(&k)).get(&uk).copied(), want, "get {k}/{uk} at {now}");
        }
        9 => {
            let want = r.read_map(m, k);
            let got: BTreeMap<u32, u32> = b.map(&h.m, at(&k)).iter().map(|(a, b)| (*a, *b)).collect();
            assert_eq!(got, want, "map of {k} at {now}");
        }
        _ => {
            let uk = rng.u32(0..4);
            let want = match m.map.get_mut(&k) {
                Some(map) => {
                    let old = map.remove(&uk);
                    if map.is_empty() {
                        m.map.remove(&k);
                    }
                    old.filter(|(at, _)| !r.expired(*at)).map(|e| e.1)
                }
                None => None,
            };
            assert_eq!(b.map(&h.m, at(&k)).remove(&uk), want, "remove {k}/{uk} at {now}");
        }
    }
}

/// Reads every key of every state through the backend and the model.
fn check_all(b: &mut KeyedStateBackend<u32>, h: &Handles, m: &mut Model, r: &Rules, what: &str) {
    for k in 0..200 {
        assert_eq!(b.value(&h.v, at(&k)).get().copied(), r.read_value(m, k), "{what}: value of {k}");
        assert_eq!(b.list(&h.l, at(&k)).get(), r.read_list(m, k).as_slice(), "{what}: list of {k}");
        let got: BTreeMap<u32, u32> = b.map(&h.m, at(&k)).iter().map(|(a, b)| (*a, *b)).collect();
        assert_eq!(got, r.read_map(m, k), "{what}: map of {k}");
    }
}

#[test]
fn ttl_state_matches_a_model_on_random_operations_and_time() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..8 {
        let renew = round % 2 == 1;
        let on_log = round >= 4;
        let cfg =
            ttl_ms(100).update(if renew { TtlUpdate::OnReadAndWrite } else { TtlUpdate::OnCreateAndWrite });
        let disk = SimDisk::new(rng.u64(..));
        let mut b = if on_log { log_backend(&disk, 0, 6 << 10) } else { KeyedStateBackend::new() };
        let mut h = register(&mut b, cfg);
        let mut m = Model::default();
        let mut r = Rules { ttl: 100, renew, now: 1_000 };
        for i in 0..20_000 {
            if rng.u32(0..8) == 0 {
                r.now += rng.i64(0..12);
            }
            b.set_current_time(r.now);
            step(&mut b, &h, &mut m, &r, &mut rng);
            if on_log && i == 10_000 {
                // A checkpoint and a restore from it in the middle.
                let list = b.flush_log().unwrap();
                settle(&mut b);
                drop(b);
                b = log_backend(&disk, 1 << 32, 6 << 10);
                h = register(&mut b, cfg);
                replay(&mut b, &disk, &list);
            }
        }
        b.set_current_time(r.now);
        check_all(&mut b, &h, &mut m, &r, &format!("round {round} (renew {renew}, log {on_log})"));
        r.now += 60;
        b.set_current_time(r.now);
        check_all(&mut b, &h, &mut m, &r, &format!("round {round}, 60 ms later"));
    }
}
