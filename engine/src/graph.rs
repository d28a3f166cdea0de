//! The logical job graph, built once by the user's program and instantiated
//! on every core.
//!
//! A [`NodeSpec`] holds a factory for its operator: user functions are
//! `Clone + Send`, so each core gets its own clone and builds its own operator
//! instance from it on its own thread. Node ids grow in creation order and an
//! input always has a smaller id, so building in reverse id order creates every
//! consumer before its producer (push-based: a producer owns its consumers).

use std::any::Any;
use std::fmt;
use std::rc::Rc;

use crate::error::{JobError, OperatorInfo};
use crate::operator::gate::gate;
use crate::runtime::core::{Core, Discard, LocalFuture, Push, Tee};
use crate::runtime::exchange::{
    Broadcast, ConnectedEnds, ExchangeSender, Global, InEnd, RoundRobin, SenderHandle, UnconnectedEnds,
    exchange_matrix, run_receiver,
};

/// Index of a node in the job graph.
pub(crate) type NodeId = usize;

/// How records move from an operator to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Same core, chained by a plain call.
    Forward,
    /// By key group of the key's hash (`key_by`).
    Hash,
    /// Round-robin over all cores.
    Rebalance,
    /// Every record to every core.
    Broadcast,
    /// Every record to core 0.
    Global,
}

impl Partitioning {
    /// Whether records cross cores (an exchange).
    pub fn is_exchange(self) -> bool {
        self != Partitioning::Forward
    }
}

/// What one node is, for planning and display.
#[derive(Debug, Clone)]
pub(crate) struct NodeMeta {
    pub id: NodeId,
    pub kind: &'static str,
    pub name: String,
    pub inputs: Vec<(NodeId, Partitioning)>,
    /// Sources only: into how many splits the input is divided.
    pub splits: Option<usize>,
    /// Sources only: whether the input ends.
    pub bounded: Option<bool>,
    pub is_sink: bool,
    /// Side outputs this operator can produce: `(tag, record type)`.
    pub declared_side_outputs: Vec<(String, std::any::TypeId)>,
    /// Side outputs someone consumes: `(tag, node standing for the side stream)`.
    pub side_outputs: Vec<(String, NodeId)>,
    /// Per input, how many cores can emit records into it (cores `0..n`);
    /// filled in at job start. Channels from the other cores carry nothing
    /// but end-of-input and stay out of the watermark valve.
    pub input_active: Vec<usize>,
}

impl NodeMeta {
    /// Channels of input `i` that take part in watermark combining.
    pub fn active_channels(&self, i: usize, cores: usize) -> usize {
        if self.inputs[i].1.is_exchange() { self.input_active.get(i).copied().unwrap_or(cores) } else { 1 }
    }
}

/// Which cores can emit records from each node: a source's splits, carried
/// through forward edges; all cores after an exchange (core 0 after `global`).
pub(crate) fn fill_active_cores(metas: &mut [NodeMeta], cores: usize) {
    let mut active = vec![cores; metas.len()];
    for i in 0..metas.len() {
        let meta = &metas[i];
        active[i] = if meta.bounded.is_some() {
            meta.splits.unwrap_or(cores).min(cores)
        } else {
            meta.inputs
                .iter()
                .map(|(from, p)| match p {
                    Partitioning::Forward => active[*from],
                    Partitioning::Global => 1,
                    _ => cores,
                })
                .max()
                .unwrap_or(cores)
        };
        let input_active = metas[i].inputs.iter().map(|(from, _)| active[*from]).collect();
        metas[i].input_active = input_active;
    }
}

/// Builds one node's operator on one core.
pub(crate) trait NodeFactory: Send {
    fn clone_box(&self) -> Box<dyn NodeFactory>;
    /// The exchange channels of this node's inputs that cross cores, in input
    /// order: `[exchange][core]`.
    fn exchanges(&self, cores: usize, queue_batches: usize) -> Vec<Vec<Box<dyn UnconnectedEnds>>>;
    /// Instantiates the operator on `b`'s core; `ends` are this core's
    /// connected ends of the node's exchanges, in the same order.
    fn instantiate(
        self: Box<Self>,
        b: &mut CoreBuilder,
        meta: &NodeMeta,
        ends: Vec<Box<dyn Any>>,
    ) -> Result<(), JobError>;
}

/// A [`NodeFactory`] from two closures (both clone per core with their captures).
#[derive(Clone)]
pub(crate) struct FnFactory<X, B> {
    pub exchanges: X,
    pub build: B,
}

impl<X, B> NodeFactory for FnFactory<X, B>
where
    X: Fn(usize, usize) -> Vec<Vec<Box<dyn UnconnectedEnds>>> + Clone + Send + 'static,
    B: FnOnce(&mut CoreBuilder, &NodeMeta, Vec<Box<dyn Any>>) -> Result<(), JobError>
        + Clone
        + Send
        + 'static,
{
    fn clone_box(&self) -> Box<dyn NodeFactory> {
        Box::new(self.clone())
    }
    fn exchanges(&self, cores: usize, queue_batches: usize) -> Vec<Vec<Box<dyn UnconnectedEnds>>> {
        (self.exchanges)(cores, queue_batches)
    }
    fn instantiate(
        self: Box<Self>,
        b: &mut CoreBuilder,
        meta: &NodeMeta,
        ends: Vec<Box<dyn Any>>,
    ) -> Result<(), JobError> {
        (self.build)(b, meta, ends)
    }
}

/// One node: what it is and how to build it.
pub(crate) struct NodeSpec {
    pub meta: NodeMeta,
    pub factory: Box<dyn NodeFactory>,
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.meta.fmt(f)
    }
}

/// Channel matrices for the exchange inputs of a plain (non-keyed) node.
pub(crate) fn plain_exchanges<T: Send + 'static>(
    inputs: &[(NodeId, Partitioning)],
    cores: usize,
    queue_batches: usize,
) -> Vec<Vec<Box<dyn UnconnectedEnds>>> {
    inputs
        .iter()
        .filter(|(_, p)| p.is_exchange())
        .map(|_| {
            exchange_matrix::<T>(cores, queue_batches)
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn UnconnectedEnds>)
                .collect()
        })
        .collect()
}

/// Per-core build state: the consumers registered for each node's output and
/// the tasks to spawn.
pub(crate) struct CoreBuilder {
    pub core: Rc<Core>,
    /// Node names, for the metrics of each node's output.
    names: Vec<String>,
    outputs: Vec<Option<Box<dyn Any>>>,
    pub tasks: Vec<(String, LocalFuture<'static, Result<(), JobError>>)>,
}

impl CoreBuilder {
    pub fn new(core: Rc<Core>, names: Vec<String>) -> Self {
        let outputs = (0..names.len()).map(|_| None).collect();
        Self { core, names, outputs, tasks: Vec::new() }
    }

    /// The operator info of `meta` on this core.
    pub fn info(&self, meta: &NodeMeta) -> OperatorInfo {
        OperatorInfo { name: Rc::from(meta.name.as_str()), core: self.core.index() }
    }

    /// The output of node `id`: its consumers, fanned out if several,
    /// observed (records out and watermark, per core) for the monitor.
    pub fn output<T: Clone + 'static>(&mut self, id: NodeId) -> Box<dyn Push<T>> {
        let inner = self.consumers(id);
        let name = &self.names[id];
        Box::new(crate::runtime::core::Observed {
            inner,
            records_out: self.core.counter(name, "records_out"),
            watermark: self.core.gauge(name, "watermark", crate::batch::MIN_WATERMARK),
        })
    }

    fn consumers<T: Clone + 'static>(&mut self, id: NodeId) -> Box<dyn Push<T>> {
        match self.outputs[id].take() {
            None => Box::new(Discard),
            Some(any) => {
                let mut consumers =
                    *any.downcast::<Vec<Box<dyn Push<T>>>>().expect("output type matches the graph");
                if consumers.len() == 1 {
                    consumers.pop().expect("one consumer")
                } else {
                    Box::new(Tee::new(consumers))
                }
            }
        }
    }

    /// Registers `push` as a consumer of node `upstream`'s output.
    pub fn add_consumer<T: 'static>(&mut self, upstream: NodeId, push: Box<dyn Push<T>>) {
        let slot = self.outputs[upstream].get_or_insert_with(|| Box::new(Vec::<Box<dyn Push<T>>>::new()));
        slot.downcast_mut::<Vec<Box<dyn Push<T>>>>().expect("output type matches the graph").push(push);
    }

    /// Adds a task to spawn on this core.
    pub fn spawn(
        &mut self,
        what: String,
        task: impl std::future::Future<Output = Result<(), JobError>> + 'static,
    ) {
        self.tasks.push((what, Box::pin(task)));
    }

    /// Connects a plain node's inputs to `input`: forward inputs chain
    /// directly, exchange inputs get a sender upstream and one receiving task
    /// per channel here; several channels meet in a watermark gate.
    pub fn wire_plain_inputs<T: Clone + Send + 'static>(
        &mut self,
        meta: &NodeMeta,
        input: Box<dyn Push<T>>,
        ends: Vec<Box<dyn Any>>,
    ) {
        let cores = self.core.cores();
        let channels: usize = (0..meta.inputs.len()).map(|i| meta.active_channels(i, cores)).sum();
        let mut ports = gate(&self.core, channels, input).into_iter();
        let mut ends = ends.into_iter();
        let info = self.info(meta);
        for (i, &(from, partitioning)) in meta.inputs.iter().enumerate() {
            if partitioning == Partitioning::Forward {
                self.add_consumer(from, ports.next().expect("a port per channel"));
                continue;
            }
            let ends = *ends
                .next()
                .expect("ends per exchange")
                .downcast::<ConnectedEnds<T>>()
                .expect("exchange type");
            self.spawn_receivers(meta, ends.receivers, meta.active_channels(i, cores), &mut ports);
            let core = self.core.clone();
            let senders = ends.senders;
            let push: Box<dyn Push<T>> = match partitioning {
                Partitioning::Rebalance => {
                    let first = self.core.index() % cores;
                    let router = RoundRobin { next: first, cores };
                    Box::new(SenderHandle {
                        sender: ExchangeSender::new(&core, info.clone(), router, senders),
                        core,
                    })
                }
                Partitioning::Broadcast => Box::new(SenderHandle {
                    sender: ExchangeSender::new(&core, info.clone(), Broadcast, senders),
                    core,
                }),
                Partitioning::Global => Box::new(SenderHandle {
                    sender: ExchangeSender::new(&core, info.clone(), Global, senders),
                    core,
                }),
                Partitioning::Forward | Partitioning::Hash => unreachable!("plain inputs are not hashed"),
            };
            self.add_consumer(from, push);
        }
    }

    /// Spawns one receiving task per channel, each feeding the next port;
    /// channels from the `active..` cores (which never emit records) are
    /// drained without a port, so they do not hold back the watermark.
    pub fn spawn_receivers<P: Send + 'static>(
        &mut self,
        meta: &NodeMeta,
        receivers: Vec<InEnd<P>>,
        active: usize,
        ports: &mut impl Iterator<Item = Box<dyn Push<P>>>,
    ) {
        for (from_core, (rx, aux)) in receivers.into_iter().enumerate() {
            let port: Box<dyn Push<P>> = if from_core < active {
                ports.next().expect("a port per channel")
            } else {
                Box::new(crate::runtime::core::NoRecords { from_core })
            };
            let what = format!("receiver of '{}' from core {from_core}", meta.name);
            let time = crate::runtime::exchange::TaskTime::new(&self.core, &meta.name);
            let received = self.core.counter(&meta.name, "exchange_received");
            let records = self.core.counter(&meta.name, "records_received");
            self.spawn(what, run_receiver(self.core.clone(), rx, aux, port, time, received, records));
        }
    }
}
