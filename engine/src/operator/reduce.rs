//! Keyed rolling reduce (and `sum` / `min` / `max` built on it).
//!
//! Streaming mode emits the new aggregate for every input record, as Flink's
//! `KeyedStream.reduce` does. Batch mode emits one final aggregate per key when
//! the input is complete (the final watermark), as Flink's batch execution
//! does.

use std::hash::Hash;

use brisk_state::{CurrentKey, StateTable};

use crate::batch::{BATCH_RECORDS_MAX, Batch, Control, MAX_WATERMARK};
use crate::error::{JobError, OperatorInfo};
use crate::operator::keyed_process::KeyOwner;
use crate::runtime::core::Push;

pub(crate) struct ReduceOp<K, T, KF, F> {
    pub key_fn: KF,
    pub f: F,
    pub table: StateTable<K, Option<T>>,
    pub batch_mode: bool,
    pub out: Batch<T>,
    pub next: Box<dyn Push<T>>,
    pub info: OperatorInfo,
    pub owner: KeyOwner,
}

impl<K, T, KF, F> Push<(u64, T)> for ReduceOp<K, T, KF, F>
where
    K: Eq + Hash + Clone,
    T: Clone,
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
