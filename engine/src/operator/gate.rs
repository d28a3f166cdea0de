//! The input gate of an operator instance with several input channels: data
//! passes straight through; control messages go through the
//! [`WatermarkValve`], and only what it emits reaches the operator.

use std::cell::RefCell;
use std::rc::Rc;

use crate::batch::{Batch, Control};
use crate::error::JobError;
use crate::runtime::core::Push;
use crate::watermark::WatermarkValve;

struct Gated<T> {
    valve: WatermarkValve,
    next: Box<dyn Push<T>>,
    emitted: Vec<Control>,
}

/// Builds `channels` input ports feeding `next` (one per upstream channel).
/// With one channel there is nothing to combine and `next` is returned as is.
pub(crate) fn gate<T: 'static>(channels: usize, next: Box<dyn Push<T>>) -> Vec<Box<dyn Push<T>>> {
    if channels == 1 {
        return vec![next];
    }
    let node =
        Rc::new(RefCell::new(Gated { valve: WatermarkValve::new(channels), next, emitted: Vec::new() }));
    (0..channels)
        .map(|channel| Box::new(GatePort { node: node.clone(), channel }) as Box<dyn Push<T>>)
        .collect()
}

struct GatePort<T> {
    node: Rc<RefCell<Gated<T>>>,
    channel: usize,
}

impl<T> Push<T> for GatePort<T> {
    fn push(&mut self, batch: &mut Batch<T>) -> Result<(), JobError> {
        self.node.borrow_mut().next.push(batch)
    }

    fn control(&mut self, control: Control) -> Result<(), JobError> {
        let mut node = self.node.borrow_mut();
        let node = &mut *node;
        node.valve.on_control(self.channel, control, &mut node.emitted);
        for c in node.emitted.drain(..) {
            node.next.control(c)?;
        }
        Ok(())
    }
}
