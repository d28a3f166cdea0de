//! The input gate of an operator instance with several input channels: data
//! passes straight through; watermarks, status and end of input go through
//! the [`WatermarkValve`], and only what it emits reaches the operator;
//! checkpoint barriers are aligned.
//!
//! # Barrier alignment
//!
//! When barrier `n` arrives on a channel while others have yet to deliver it,
//! that channel is held back: the driving task that pushed the barrier waits
//! (through [`Core::block`]) before taking more input from it. Once every
//! live channel has delivered `n` (an ended channel never will and does not
//! count), the barrier goes on to the operator, which snapshots and forwards
//! it, and the held channels resume. A newer barrier arriving mid-alignment
//! means the older checkpoint was abandoned: its alignment is dropped.

use std::cell::RefCell;
use std::rc::Rc;

use glommio::sync::Semaphore;

use crate::batch::{Batch, Control};
use crate::error::JobError;
use crate::runtime::core::{Core, Push};
use crate::watermark::WatermarkValve;

struct Gated<T> {
    valve: WatermarkValve,
    next: Box<dyn Push<T>>,
    emitted: Vec<Control>,
    ended: Vec<bool>,
    /// The barrier being aligned and which channels delivered it.
    aligning: Option<(u64, Vec<bool>)>,
    /// When the first channel delivered it.
    aligning_since: Option<std::time::Instant>,
    /// The newest barrier forwarded.
    last_barrier: u64,
    /// Held channels wait on this; released all at once.
    release: Rc<Semaphore>,
    held: u64,
}

impl<T> Gated<T> {
    fn on_barrier(&mut self, core: &Core, channel: usize, id: u64) -> Result<(), JobError> {
        if id <= self.last_barrier {
            return Ok(()); // an abandoned checkpoint's straggler
        }
        match &mut self.aligning {
            Some((current, _)) if *current > id => return Ok(()),
            Some((current, _)) if *current < id => self.release_held(),
            _ => {}
        }
        let channels = self.ended.len();
        if self.aligning.is_none() {
            self.aligning_since = Some(std::time::Instant::now());
        }
        let (_, arrived) = self.aligning.get_or_insert_with(|| (id, vec![false; channels]));
        arrived[channel] = true;
        if self.try_complete(core)? {
            return Ok(());
        }
        self.held += 1;
        core.block(self.release.clone());
        Ok(())
    }

    /// Forwards the aligned barrier once every live channel has it.
    fn try_complete(&mut self, core: &Core) -> Result<bool, JobError> {
        let Some((id, arrived)) = &self.aligning else { return Ok(false) };
        if !arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e) {
            return Ok(false);
        }
        let id = *id;
        if let (Some(since), Some(cp)) = (self.aligning_since.take(), &core.checkpoints) {
            cp.aligned(id, since.elapsed().as_micros() as u64);
        }
        self.aligning = None;
        self.last_barrier = id;
        self.release_held();
        self.next.control(Control::Barrier(id))?;
        Ok(true)
    }

    fn release_held(&mut self) {
        self.aligning = None;
        self.aligning_since = None;
        if self.held > 0 {
            self.release.signal(self.held);
            self.held = 0;
        }
    }
}

/// Builds `channels` input ports feeding `next` (one per upstream channel).
/// With one channel there is nothing to combine and `next` is returned as is.
pub(crate) fn gate<T: 'static>(
    core: &Rc<Core>,
    channels: usize,
    next: Box<dyn Push<T>>,
) -> Vec<Box<dyn Push<T>>> {
    if channels == 1 {
        return vec![next];
    }
    let node = Rc::new(RefCell::new(Gated {
        valve: WatermarkValve::new(channels),
        next,
        emitted: Vec::new(),
        ended: vec![false; channels],
        aligning: None,
        aligning_since: None,
        last_barrier: 0,
        release: Rc::new(Semaphore::new(0)),
        held: 0,
    }));
    (0..channels)
        .map(|channel| {
            Box::new(GatePort { node: node.clone(), channel, core: core.clone() }) as Box<dyn Push<T>>
        })
        .collect()
}

struct GatePort<T> {
    node: Rc<RefCell<Gated<T>>>,
    channel: usize,
    core: Rc<Core>,
}

impl<T> Push<T> for GatePort<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        self.node.borrow_mut().next.push(batch)
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let mut node = self.node.borrow_mut();
        let node = &mut *node;
        if let Control::Barrier(id) = control {
            return node.on_barrier(&self.core, self.channel, id);
        }
        if control == Control::EndOfInput {
            node.ended[self.channel] = true;
            node.try_complete(&self.core)?;
            if self.core.is_stopping() {
                // Stop with savepoint: inputs end without the final
                // watermark an ended channel would otherwise stand for.
                return if node.ended.iter().all(|&e| e) { node.next.control(control) } else { Ok(()) };
            }
        }
        node.valve.on_control(self.channel, control, &mut node.emitted);
        for c in node.emitted.drain(..) {
            node.next.control(c)?;
        }
        Ok(())
    }
}
