//! Stateless one-to-one, filtering and one-to-many operators.

use crate::batch::{Batch, Control};
use crate::error::{JobError, OperatorInfo};
use crate::runtime::core::Push;

/// `map`: one output per input; timestamps carry over.
pub(crate) struct MapOp<O, F> {
    pub f: F,
    pub out: Batch<O>,
    pub next: Box<dyn Push<O>>,
    pub info: OperatorInfo,
}

impl<I, O, F: FnMut(I) -> O> Push<I> for MapOp<O, F> {
    fn push(&mut self, batch: &mut Batch<I>) -> Result<(), JobError> {
        let (f, out) = (&mut self.f, &mut self.out);
        self.info.guard(|| out.records.extend(batch.records.drain(..).map(f)))?;
        out.timestamps.append(&mut batch.timestamps);
        self.next.push(&mut self.out)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}

/// `filter`: keeps the records the predicate accepts.
pub(crate) struct FilterOp<T, F> {
    pub f: F,
    pub out: Batch<T>,
    pub next: Box<dyn Push<T>>,
    pub info: OperatorInfo,
}

impl<T, F: FnMut(&T) -> bool> Push<T> for FilterOp<T, F> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let (f, out) = (&mut self.f, &mut self.out);
        self.info.guard(|| {
            if batch.has_timestamps() {
                for (r, ts) in batch.drain() {
                    if f(&r) {
                        out.push_with(r, ts);
                    }
                }
            } else {
                out.records.extend(batch.records.drain(..).filter(|r| f(r)));
            }
        })?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}

/// `flat_map`: zero or more outputs per input, each with the input's timestamp.
pub(crate) struct FlatMapOp<O, F> {
    pub f: F,
    pub out: Batch<O>,
    pub next: Box<dyn Push<O>>,
    pub info: OperatorInfo,
}

impl<I, O, It: IntoIterator<Item = O>, F: FnMut(I) -> It> Push<I> for FlatMapOp<O, F> {
    fn push(&mut self, batch: &mut Batch<I>) -> Result<(), JobError> {
        let (f, out) = (&mut self.f, &mut self.out);
        self.info.guard(|| {
            if batch.has_timestamps() {
                for (r, ts) in batch.drain() {
                    for o in f(r) {
                        out.push_with(o, ts);
                    }
                }
            } else {
                for r in batch.records.drain(..) {
                    out.records.extend(f(r));
                }
            }
        })?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}

/// Passes everything through unchanged (`union`, explicit partitioning).
pub(crate) struct Identity<T> {
    pub next: Box<dyn Push<T>>,
}

impl<T> Push<T> for Identity<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        self.next.push(batch)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}

/// `combine_in_batch`: records of one input batch with equal keys become one
/// record (`merge`d in arrival order), placed where the key first appeared;
/// its timestamp is the latest of the merged records'. Nothing is held
/// between batches, so the operator has no state to checkpoint and adds no
/// latency.
pub(crate) struct CombineOp<T, K, KF, MF> {
    pub key: KF,
    pub merge: MF,
    pub slots: rustc_hash::FxHashMap<K, usize>,
    pub out: Batch<T>,
    pub next: Box<dyn Push<T>>,
    pub info: OperatorInfo,
}

impl<T, K: Eq + std::hash::Hash, KF: FnMut(&T) -> K, MF: FnMut(&mut T, T)> Push<T>
    for CombineOp<T, K, KF, MF>
{
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        let (key, merge, slots, out) = (&mut self.key, &mut self.merge, &mut self.slots, &mut self.out);
        let guarded = self.info.guard(|| {
            for (r, ts) in batch.drain() {
                match slots.entry(key(&r)) {
                    std::collections::hash_map::Entry::Occupied(slot) => {
                        let i = *slot.get();
                        merge(&mut out.records[i], r);
                        if let Some(ts) = ts {
                            out.timestamps[i] = out.timestamps[i].max(ts);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(out.records.len());
                        out.push_with(r, ts);
                    }
                }
            }
        });
        self.slots.clear();
        guarded?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.next.push(&mut self.out)
    }
    fn control(&mut self, control: Control) -> Result<(), JobError> {
        self.next.control(control)
    }
}
