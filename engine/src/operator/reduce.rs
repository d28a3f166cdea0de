//! Keyed rolling reduce (and `sum` / `min` / `max` built on it).
//!
//! Streaming mode emits the new aggregate for every input record, as Flink's
//! `KeyedStream.reduce` does. Batch mode emits one final aggregate per key when
//! the input is complete (the final watermark), as Flink's batch execution
//! does.
//!
//! At a checkpoint barrier every key's aggregate is snapshotted, tagged by
//! key group; on restore each core keeps the key groups it owns.

use std::hash::Hash;
use std::rc::Rc;

use brisk_state::{CurrentKey, StateTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::{BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK};
use crate::checkpoint::format::StateWriter;
use crate::checkpoint::restore_owned;
use crate::error::{JobError, OperatorInfo};
use crate::operator::keyed_process::KeyOwner;
use crate::runtime::core::{Core, Push};

/// The snapshot's one entry kind: `(key, aggregate)`.
const AGGREGATE: u8 = 1;

pub(crate) struct ReduceOp<K, T, KF, F> {
    pub key_fn: KF,
    pub f: F,
    pub table: StateTable<K, Option<T>>,
    pub batch_mode: bool,
    pub out: Batch<T>,
    pub next: Box<dyn Push<T>>,
    pub info: OperatorInfo,
    pub owner: KeyOwner,
    pub core: Rc<Core>,
    /// The operator's node id: names its state in checkpoints.
    pub node: usize,
}

impl<K, T, KF, F> ReduceOp<K, T, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
{
    /// Writes every key's aggregate as this operator's state for checkpoint `id`.
    fn snapshot(&self, id: u64) {
        let Some(cp) = &self.core.checkpoints else { return };
        let started = std::time::Instant::now();
        let mp = self.owner.max_parallelism;
        let mut w = StateWriter::new();
        for (key, hash, acc) in self.table.iter() {
            if let Some(acc) = acc {
                w.entry(AGGREGATE, mp.key_group(hash), &(key, acc));
            }
        }
        cp.write_state(id, self.node, w.finish(), started);
    }

    /// Loads the key groups this core owns from the restored checkpoint.
    pub fn restore(&mut self) -> Result<(), JobError> {
        let (core, info, owner) = (self.core.clone(), self.info.clone(), self.owner);
        restore_owned(&core, self.node, &info, &owner, |entry| {
            if entry.kind != AGGREGATE {
                return Err(entry.error(format!("unknown entry kind {}", entry.kind)).into());
            }
            let (key, acc): (K, T) = entry.decode()?;
            let hash = brisk_state::key_hash(&key);
            self.table.insert(CurrentKey::new(&key, hash), Some(acc));
            Ok(())
        })
    }
}

impl<K, T, KF, F> Push<(u64, T)> for ReduceOp<K, T, KF, F>
where
    K: Eq + Hash + Clone + Serialize + DeserializeOwned,
    T: Clone + Serialize + DeserializeOwned,
    KF: FnMut(&T) -> K,
    F: FnMut(T, T) -> T,
{
    fn push(&mut self, batch: &mut Batch<(u64, T)>) -> Result<(), JobError> {
        let Self { key_fn, f, table, batch_mode, out, info, owner, .. } = self;
        let emit = !*batch_mode;
        info.guard(|| {
            for ((hash, value), ts) in batch.drain() {
                owner.debug_check(hash);
                let key = key_fn(&value);
                let slot = table.get_or_insert_with(CurrentKey::new(&key, hash), || None);
                let acc = match slot.take() {
                    None => value,
                    Some(acc) => f(acc, value),
                };
                if emit {
                    out.push_with(acc.clone(), ts);
                }
                *slot = Some(acc);
            }
        })?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        if let Control::Barrier(id) = control {
            // Every push flushes: the aggregates are as of the barrier.
            self.snapshot(id);
        }
        if self.batch_mode && control == Control::Watermark(MAX_WATERMARK) {
            // Input complete: one final result per key, in bounded batches.
            for (_, _, acc) in self.table.drain() {
                if let Some(acc) = acc {
                    self.out.push(acc);
                }
                if self.out.len() >= BATCH_RECORDS_MAX {
                    self.next.push(&mut self.out)?;
                }
            }
            if !self.out.is_empty() {
                self.next.push(&mut self.out)?;
            }
        }
        self.next.control(control)
    }
}
