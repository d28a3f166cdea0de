//! The DataStream API: [`StreamEnv`] builds a job graph from
//! [`DataStream`]s and [`KeyedStream`]s and runs it.

use crate::runtime::exchange::TaskTime;
use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::rc::Rc;

use brisk_state::StateTable;

use crate::batch::{Batch, MAX_WATERMARK};
use crate::config::JobConfig;
use crate::error::JobError;
use crate::error::UserError;
use crate::graph::{FnFactory, NodeFactory, NodeId, NodeMeta, NodeSpec, Partitioning, plain_exchanges};
use crate::operator::basic::{CombineOp, FilterOp, FlatMapOp, Identity, MapOp};
use crate::operator::join::{Either, IntervalJoinFn, ProcessJoinFunction};
use crate::operator::keyed_process::Collector;
use crate::operator::keyed_process::{KeyOwner, KeyedProcessFunction, KeyedProcessHandle, KeyedProcessOp};
use crate::operator::reduce::ReduceOp;
use crate::operator::sink::{
    CollectSink, Collected, Sink, SinkContext, SinkHandle, SinkNode, SinkParallelism,
};
use crate::operator::source::{
    CollectionSource, Source, SourceContext, SourceReader as _, SplitOf, run_source,
};
use crate::operator::watermarks::{
    SplitWatermarks, TimestampsAndWatermarks, TimestampsAndWatermarksHandle, WatermarkStrategy,
};
use crate::runtime::core::{Core, Push};
use crate::runtime::exchange::{
    ConnectedEnds, ExchangeSender, HashRouter, LocalKeyed, SenderHandle, exchange_matrix, hash_key_with,
};
use crate::runtime::{JobResult, execute};
use crate::window::assigner::WindowAssigner;
use crate::window::evictor::{CountEvictor, Evictor};
use crate::window::function::WindowContext;
use crate::window::function::{AggregateFunction, PassThrough, ProcessWindowFunction};
use crate::window::operator::{
    AggInc, ComputeList, EvictingLogic, IncrementalLogic, ListLogic, ReduceInc, WindowHandle, WindowLogic,
    WindowOp, WindowSpec, reduce_logic,
};
use crate::window::trigger::{
    CountTrigger, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger,
};

/// What a stream can carry: records are cloned for fan-out and broadcast and
/// sent to other cores.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// What a stream can be keyed by: keys are part of checkpointed state, so
/// they serialize (serde).
pub trait Key: Data + Eq + Hash + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Data + Eq + Hash + serde::Serialize + serde::de::DeserializeOwned> Key for T {}

/// A record type that can live in checkpointed state (window contents,
/// reduce results): [`Data`] that serializes with serde.
pub trait StateData: Data + serde::Serialize + serde::de::DeserializeOwned {}
impl<T: Data + serde::Serialize + serde::de::DeserializeOwned> StateData for T {}

#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<NodeSpec>,
    errors: Vec<String>,
}

type Graph = Rc<RefCell<GraphBuilder>>;

fn add_node(
    graph: &Graph,
    kind: &'static str,
    inputs: Vec<(NodeId, Partitioning)>,
    factory: Box<dyn NodeFactory>,
    source: Option<bool>,
    is_sink: bool,
) -> NodeId {
    let mut g = graph.borrow_mut();
    let id = g.nodes.len();
    debug_assert!(inputs.iter().all(|(i, _)| *i < id), "inputs precede their consumers");
    g.nodes.push(NodeSpec {
        meta: NodeMeta {
            id,
            kind,
            name: format!("{kind}#{id}"),
            inputs,
            splits: None,
            bounded: source,
            is_sink,
            declared_side_outputs: Vec::new(),
            side_outputs: Vec::new(),
            input_active: Vec::new(),
        },
        factory,
    });
    id
}

/// A job under construction, and the way to run it.
///
/// ```
/// use brisk_engine::prelude::*;
///
/// let env = StreamEnv::new(JobConfig::with_cores(2));
/// let out = env
///     .from_collection(vec!["a b", "b c", "c"])
///     .flat_map(|line: &str| line.split(' ').map(str::to_string).collect::<Vec<_>>())
///     .key_by(|w: &String| w.clone())
///     .reduce(|a: String, b: String| a + &b)
///     .collect();
/// env.execute().unwrap();
/// let mut words = out.take();
/// words.sort();
/// assert_eq!(words, ["a", "b", "bb", "c", "cc"]);
/// ```
pub struct StreamEnv {
    graph: Graph,
    config: JobConfig,
    control: crate::checkpoint::JobControl,
}

impl StreamEnv {
    /// An empty job with `config`.
    pub fn new(config: JobConfig) -> Self {
        Self { graph: Rc::default(), config, control: Default::default() }
    }

    /// A handle to take savepoints of this job while it runs (from another
    /// thread): see [`crate::JobControl`].
    pub fn control(&self) -> crate::checkpoint::JobControl {
        self.control.clone()
    }

    /// The job's configuration.
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// The job's configuration, to change before [`execute`](Self::execute).
    pub fn config_mut(&mut self) -> &mut JobConfig {
        &mut self.config
    }

    /// Adds a source; each core reads one split of it.
    pub fn from_source<T: Data, S: Source<T>>(&self, source: S) -> DataStream<T> {
        self.source_node(source, None)
    }

    /// Adds a source whose records get timestamps and watermarks inside the
    /// source, per split (Flink's `fromSource(source, strategy, name)`): each
    /// split a reader owns (a file, a partition) has its own watermark
    /// generator, and the source emits the minimum over its active splits, so
    /// a slow split's records are not made late by a fast one.
    pub fn from_source_with_watermarks<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: WatermarkStrategy<T>,
    ) -> DataStream<T> {
        self.source_node(source, Some(strategy))
    }

    fn source_node<T: Data, S: Source<T>>(
        &self,
        source: S,
        strategy: Option<WatermarkStrategy<T>>,
    ) -> DataStream<T> {
        let bounded = source.is_bounded();
        let name = source.name();
        let factory = FnFactory {
            exchanges: |_: usize, _: usize| Vec::new(),
            build: move |b: &mut crate::graph::CoreBuilder,
                         meta: &NodeMeta,
                         _ends: Vec<Box<dyn std::any::Any>>| {
                let out = b.output::<T>(meta.id);
                let info = b.info(meta);
                let core = b.core.clone();
                let splits = meta.splits.unwrap_or(core.cores()).min(core.cores());
                if core.index() < splits {
                    let ctx = SourceContext {
                        core: core.clone(),
                        name: meta.name.clone(),
                        split: core.index(),
                        splits,
                        restored: crate::operator::source::restored_positions(&core, meta.id)?,
                    };
                    let reader = source.create_reader(&ctx).map_err(|e| JobError::Source {
                        operator: meta.name.clone(),
                        core: core.index(),
                        message: e.0,
                    })?;
                    if core.checkpoints.is_some() && reader.position().is_none() {
                        return Err(JobError::Config(format!(
                            "source '{}' cannot be replayed, so the job cannot take checkpoints \
                             (its reader reports no position)",
                            meta.name
                        )));
                    }
                    let split_watermarks = strategy.map(|s| SplitWatermarks::new(s, &core));
                    let split_of = SplitOf { node: meta.id, split: core.index(), splits };
                    let time = TaskTime::new(&core, &meta.name);
                    b.spawn(
                        format!("source '{}'", meta.name),
                        run_source(core.clone(), info, reader, out, split_watermarks, Some(split_of), time),
                    );
                } else {
                    let time = TaskTime::new(&core, &meta.name);
                    b.spawn(
                        format!("source '{}' (no split)", meta.name),
                        run_source(core, info, NoSplit, out, None, None, time),
                    );
                }
                Ok(())
            },
        };
        let id = add_node(&self.graph, "source", Vec::new(), Box::new(factory), Some(bounded), false);
        let stream = self.stream(id);
        stream.name(&name)
    }

    /// A bounded source over `items` (split in contiguous slices over cores).
    pub fn from_collection<T: Data + Sync>(&self, items: Vec<T>) -> DataStream<T> {
        self.from_source(CollectionSource::new(items))
    }

    /// A bounded source over the items of `iter`.
    pub fn from_iter<T: Data + Sync>(&self, iter: impl IntoIterator<Item = T>) -> DataStream<T> {
        self.from_collection(iter.into_iter().collect())
    }

    fn stream<T>(&self, node: NodeId) -> DataStream<T> {
        DataStream { graph: self.graph.clone(), node, _type: PhantomData }
    }

    /// A description of the job graph, one operator per line.
    pub fn describe(&self) -> String {
        let g = self.graph.borrow();
        let mut s = String::new();
        for n in &g.nodes {
            let inputs: Vec<String> =
                n.meta.inputs.iter().map(|(i, p)| format!("{} ({p:?})", g.nodes[*i].meta.name)).collect();
            s.push_str(&format!("{} [{}] <- [{}]\n", n.meta.name, n.meta.kind, inputs.join(", ")));
        }
        s
    }

    /// Runs the job on `config.cores` cores until its bounded sources end and
    /// everything in flight is drained, or until it fails.
    pub fn execute(self) -> Result<JobResult, JobError> {
        let graph = std::mem::take(&mut *self.graph.borrow_mut());
        if let Some(e) = graph.errors.first() {
            return Err(JobError::Config(e.clone()));
        }
        execute(graph.nodes, &self.config, &self.control)
    }
}

/// A stream of `T` records: the output of one operator.
pub struct DataStream<T> {
    graph: Graph,
    node: NodeId,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        Self { graph: self.graph.clone(), node: self.node, _type: PhantomData }
    }
}

impl<T: Data> DataStream<T> {
    fn derive<O>(&self, node: NodeId) -> DataStream<O> {
        DataStream { graph: self.graph.clone(), node, _type: PhantomData }
    }

    /// Names this stream's operator (shown in errors, metrics and the graph).
    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].meta.name = name.to_string();
        self
    }

    /// Sources only: read the input in `splits` splits (cores `0..splits`
    /// read; the others produce nothing). `1` keeps the input's order.
    pub fn set_parallelism(self, splits: usize) -> Self {
        {
            let mut g = self.graph.borrow_mut();
            let meta = &g.nodes[self.node].meta;
            if meta.bounded.is_none() || splits == 0 {
                let msg = format!(
                    "set_parallelism({splits}) on '{}': only sources take a parallelism, and it must be at least 1",
                    meta.name
                );
                g.errors.push(msg);
            } else {
                g.nodes[self.node].meta.splits = Some(splits);
            }
        }
        self
    }

    fn chain<O: Data>(
        &self,
        kind: &'static str,
        make: impl FnOnce(&Rc<Core>, Box<dyn Push<O>>, crate::error::OperatorInfo) -> Box<dyn Push<T>>
        + Clone
        + Send
        + 'static,
    ) -> DataStream<O> {
        let factory = FnFactory {
            exchanges: |_: usize, _: usize| Vec::new(),
            build: move |b: &mut crate::graph::CoreBuilder,
                         meta: &NodeMeta,
                         ends: Vec<Box<dyn std::any::Any>>| {
                let out = b.output::<O>(meta.id);
                let info = b.info(meta);
                let core = b.core.clone();
                let input = make(&core, out, info);
                b.wire_plain_inputs::<T>(meta, input, ends);
                Ok(())
            },
        };
        let id = add_node(
            &self.graph,
            kind,
            vec![(self.node, Partitioning::Forward)],
            Box::new(factory),
            None,
            false,
        );
        self.derive(id)
    }

    /// Applies `f` to every record.
    pub fn map<O: Data>(&self, f: impl FnMut(T) -> O + Clone + Send + 'static) -> DataStream<O> {
        self.chain("map", move |_, next, info| Box::new(MapOp { f, out: Batch::default(), next, info }))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(&self, f: impl FnMut(&T) -> bool + Clone + Send + 'static) -> DataStream<T> {
        self.chain("filter", move |_, next, info| Box::new(FilterOp { f, out: Batch::default(), next, info }))
    }

    /// Replaces every record by the items `f` returns for it.
    pub fn flat_map<O: Data, I: IntoIterator<Item = O>>(
        &self,
        f: impl FnMut(T) -> I + Clone + Send + 'static,
    ) -> DataStream<O> {
        self.chain("flat_map", move |_, next, info| {
            Box::new(FlatMapOp { f, out: Batch::default(), next, info })
        })
    }

    /// Combines the records of each batch that have equal keys into one, with
    /// `merge(earlier, later)`, before they go on: the local half of a
    /// two-phase aggregation (Flink SQL's local-global aggregation). Put it
    /// before a `key_by` whose downstream aggregation can take the combined
    /// records as input, and a hot key costs the exchange and its core one
    /// record per batch instead of one per event. The combined record takes
    /// the place of the key's first record and the latest timestamp of those
    /// merged. Nothing is held from one batch to the next: no state, no added
    /// latency, and watermarks keep their place between records. For window
    /// aggregations, make the window part of the key (the pane of a sliding
    /// window, `timestamp / slide`), so that merged records share windows.
    pub fn combine_in_batch<K: Eq + Hash + Send + 'static>(
        &self,
        key: impl FnMut(&T) -> K + Clone + Send + 'static,
        merge: impl FnMut(&mut T, T) + Clone + Send + 'static,
    ) -> DataStream<T> {
        self.chain("combine_in_batch", move |_, next, info| {
            Box::new(CombineOp { key, merge, slots: Default::default(), out: Batch::default(), next, info })
        })
    }

    fn repartition(&self, kind: &'static str, inputs: Vec<(NodeId, Partitioning)>) -> DataStream<T> {
        let factory = FnFactory {
            exchanges: {
                let inputs = inputs.clone();
                move |cores: usize, q: usize| plain_exchanges::<T>(&inputs, cores, q)
            },
            build: |b: &mut crate::graph::CoreBuilder, meta: &NodeMeta, ends: Vec<Box<dyn std::any::Any>>| {
                let out = b.output::<T>(meta.id);
                b.wire_plain_inputs::<T>(meta, Box::new(Identity { next: out }), ends);
                Ok(())
            },
        };
        let id = add_node(&self.graph, kind, inputs, Box::new(factory), None, false);
        self.derive(id)
    }

    /// Assigns event timestamps and generates watermarks on every core (see
    /// [`crate::operator::watermarks::WatermarkStrategy`]).
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        self.chain("timestamps_watermarks", move |core, next, info| {
            let op = TimestampsAndWatermarks::new(core, &strategy, next, info);
            core.timers.register(op.clone());
            Box::new(TimestampsAndWatermarksHandle { op })
        })
    }

    /// Merges this stream with `others` (same type); watermarks combine as the
    /// minimum over all inputs.
    pub fn union(&self, others: &[DataStream<T>]) -> DataStream<T> {
        let mut inputs = vec![(self.node, Partitioning::Forward)];
        inputs.extend(others.iter().map(|s| (s.node, Partitioning::Forward)));
        self.repartition("union", inputs)
    }

    /// Spreads records round-robin over all cores.
    pub fn rebalance(&self) -> DataStream<T> {
        self.repartition("rebalance", vec![(self.node, Partitioning::Rebalance)])
    }

    /// Sends every record to every core.
    pub fn broadcast(&self) -> DataStream<T> {
        self.repartition("broadcast", vec![(self.node, Partitioning::Broadcast)])
    }

    /// Sends every record to core 0.
    pub fn global(&self) -> DataStream<T> {
        self.repartition("global", vec![(self.node, Partitioning::Global)])
    }

    /// Keeps records on their core (the default between operators; explicit
    /// for readability).
    pub fn forward(&self) -> DataStream<T> {
        self.repartition("forward", vec![(self.node, Partitioning::Forward)])
    }

    /// Partitions by key: records with equal keys go to the same core, in the
    /// order each sending core emitted them.
    pub fn key_by<K: Key>(
        &self,
        key_fn: impl Fn(&T) -> K + Clone + Send + 'static,
    ) -> KeyedStream<T, K, impl Fn(&T) -> K + Clone + Send + 'static> {
        KeyedStream { input: self.clone(), key_fn, _key: PhantomData }
    }

    /// The side output `tag` of this stream's operator (e.g. a window's late
    /// data), as a stream of its own.
    pub fn side_output<X: Data>(&self, tag: &OutputTag<X>) -> DataStream<X> {
        let existing = {
            let mut g = self.graph.borrow_mut();
            let meta = &g.nodes[self.node].meta;
            let declared = meta
                .declared_side_outputs
                .iter()
                .any(|(t, ty)| *t == tag.id && *ty == std::any::TypeId::of::<X>());
            if !declared {
                let msg = format!("operator '{}' has no side output '{}' of that type", meta.name, tag.id);
                g.errors.push(msg);
            }
            g.nodes[self.node].meta.side_outputs.iter().find(|(t, _)| *t == tag.id).map(|(_, id)| *id)
        };
        if let Some(id) = existing {
            return self.derive(id);
        }
        // A placeholder node: its consumers are taken over by the operator
        // that produces the side output (see the window operator's factory).
        let factory = FnFactory {
            exchanges: |_: usize, _: usize| Vec::new(),
            build: |_b: &mut crate::graph::CoreBuilder,
                    _meta: &NodeMeta,
                    _ends: Vec<Box<dyn std::any::Any>>| Ok(()),
        };
        let id = add_node(
            &self.graph,
            "side_output",
            vec![(self.node, Partitioning::Forward)],
            Box::new(factory),
            None,
            false,
        );
        let mut g = self.graph.borrow_mut();
        g.nodes[id].meta.name = format!("{} ({})", g.nodes[self.node].meta.name, tag.id);
        g.nodes[self.node].meta.side_outputs.push((tag.id.clone(), id));
        drop(g);
        self.derive(id)
    }

    /// Joins with `other` on equal keys within windows (Flink's
    /// `join(..).where(..).equalTo(..).window(..).apply(..)`).
    pub fn join<U: Data>(&self, other: &DataStream<U>) -> JoinedStreams<T, U> {
        JoinedStreams { left: self.clone(), right: other.clone() }
    }

    /// Writes every record to `sink`.
    pub fn sink_to<S: Sink<T>>(&self, sink: S) {
        let partitioning = match sink.parallelism() {
            SinkParallelism::PerCore => Partitioning::Forward,
            SinkParallelism::Single => Partitioning::Global,
        };
        let single = partitioning == Partitioning::Global;
        let inputs = vec![(self.node, partitioning)];
        let name = sink.name();
        let factory = FnFactory {
            exchanges: {
                let inputs = inputs.clone();
                move |cores: usize, q: usize| plain_exchanges::<T>(&inputs, cores, q)
            },
            build: move |b: &mut crate::graph::CoreBuilder,
                         meta: &NodeMeta,
                         ends: Vec<Box<dyn std::any::Any>>| {
                let core = b.core.clone();
                let info = b.info(meta);
                let writer = if single && core.index() != 0 {
                    None
                } else {
                    let ctx = SinkContext { core: core.clone(), name: meta.name.clone() };
                    Some(sink.create_writer(&ctx).map_err(|e| JobError::Sink {
                        operator: meta.name.clone(),
                        core: core.index(),
                        message: e.0,
                    })?)
                };
                let node = SinkNode::new(&core, info, writer);
                b.wire_plain_inputs::<T>(meta, Box::new(SinkHandle { node, core }), ends);
                Ok(())
            },
        };
        let id = add_node(&self.graph, "sink", inputs, Box::new(factory), None, true);
        self.graph.borrow_mut().nodes[id].meta.name = name;
    }

    /// Collects every record in memory; read them with [`Collected::take`]
    /// after the job ends.
    pub fn collect(&self) -> Collected<T> {
        let (sink, handle) = CollectSink::new();
        self.sink_to(sink);
        handle
    }
}

/// A stream partitioned by key (`key_by`): keyed state and aggregations.
pub struct KeyedStream<T, K, KF> {
    input: DataStream<T>,
    key_fn: KF,
    _key: PhantomData<fn() -> K>,
}

impl<T: Data, K: Key, KF: Fn(&T) -> K + Clone + Send + 'static> KeyedStream<T, K, KF> {
    fn keyed_node<O: Data>(
        &self,
        kind: &'static str,
        make: impl FnOnce(
            &mut crate::graph::CoreBuilder,
            &NodeMeta,
            Box<dyn Push<O>>,
            crate::error::OperatorInfo,
        ) -> Result<Box<dyn Push<(u64, T)>>, JobError>
        + Clone
        + Send
        + 'static,
    ) -> DataStream<O> {
        let key_fn = self.key_fn.clone();
        let factory = FnFactory {
            exchanges: |cores: usize, q: usize| {
                if cores == 1 {
                    // On one core every key stays local: chained, no exchange.
                    return Vec::new();
                }
                vec![
                    exchange_matrix::<(u64, T)>(cores, q)
                        .into_iter()
                        .map(|e| Box::new(e) as Box<dyn crate::runtime::exchange::UnconnectedEnds>)
                        .collect(),
                ]
            },
            build: move |b: &mut crate::graph::CoreBuilder,
                         meta: &NodeMeta,
                         ends: Vec<Box<dyn std::any::Any>>| {
                let out = b.output::<O>(meta.id);
                let info = b.info(meta);
                let input = make(b, meta, out, info.clone())?;
                let cores = b.core.cores();
                let from = meta.inputs[0].0;
                if cores == 1 {
                    let key_of_hash = hash_key_with(key_fn);
                    b.add_consumer::<T>(from, Box::new(LocalKeyed::new(key_of_hash, input)));
                    return Ok(());
                }
                let ends = *ends
                    .into_iter()
                    .next()
                    .expect("keyed input")
                    .downcast::<ConnectedEnds<(u64, T)>>()
                    .expect("exchange type");
                let active = meta.active_channels(0, cores);
                let mut ports = crate::operator::gate::gate(&b.core, active, input).into_iter();
                b.spawn_receivers(meta, ends.receivers, active, &mut ports);
                let core = b.core.clone();
                let router = HashRouter {
                    key_of_hash: hash_key_with(key_fn),
                    max_parallelism: core.config.max_parallelism,
                    cores,
                };
                let sender = ExchangeSender::new(&core, info, router, ends.senders);
                b.add_consumer::<T>(from, Box::new(SenderHandle { sender, core }));
                Ok(())
            },
        };
        let id = add_node(
            &self.input.graph,
            kind,
            vec![(self.input.node, Partitioning::Hash)],
            Box::new(factory),
            None,
            false,
        );
        self.input.derive(id)
    }

    /// Groups each key's records into windows.
    pub fn window(&self, assigner: WindowAssigner<T>) -> WindowedStream<T, K, KF> {
        WindowedStream {
            keyed: self.clone_stream(),
            assigner,
            trigger: None,
            evictor: None,
            allowed_lateness: 0,
            late_tag: None,
        }
    }

    /// Windows of `n` elements per key, fired and purged every `n` elements
    /// (Flink's `countWindow(n)`).
    pub fn count_window(&self, n: u64) -> WindowedStream<T, K, KF>
    where
        T: StateData,
    {
        self.window(WindowAssigner::global()).trigger(PurgingTrigger::of(CountTrigger::of(n)))
    }

    /// The last `n` elements per key, fired every `slide` elements (Flink's
    /// `countWindow(n, slide)`).
    pub fn count_window_sliding(&self, n: u64, slide: u64) -> WindowedStream<T, K, KF>
    where
        T: StateData,
    {
        self.window(WindowAssigner::global())
            .evictor(CountEvictor::of(n as usize))
            .trigger(CountTrigger::of(slide))
    }

    /// Joins each element with the elements of `other` (same key) whose
    /// timestamps lie within bounds of its own (Flink's `intervalJoin`).
    pub fn interval_join<U: Data, KU: Fn(&U) -> K + Clone + Send + 'static>(
        &self,
        other: &KeyedStream<U, K, KU>,
    ) -> IntervalJoin<T, U, K, KF, KU> {
        IntervalJoin {
            left: self.clone_stream(),
            right: KeyedStream {
                input: other.input.clone(),
                key_fn: other.key_fn.clone(),
                _key: PhantomData,
            },
        }
    }

    fn clone_stream(&self) -> KeyedStream<T, K, KF> {
        KeyedStream { input: self.input.clone(), key_fn: self.key_fn.clone(), _key: PhantomData }
    }

    /// Runs `f` on every record with keyed state scoped to its key.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O>>(&self, f: F) -> DataStream<O> {
        let key_fn = self.key_fn.clone();
        self.keyed_node("process", move |b, meta, next, info| {
            let op = KeyedProcessOp::new(key_fn, f, next, info, key_owner(b), b.core.clone(), meta.id)?;
            Ok(Box::new(KeyedProcessHandle(op)))
        })
    }

    /// Rolling reduce per key: `f(accumulated, new)`. Streaming mode emits
    /// every new aggregate; batch mode one final aggregate per key.
    pub fn reduce(&self, f: impl FnMut(T, T) -> T + Clone + Send + 'static) -> DataStream<T>
    where
        T: StateData,
    {
        let key_fn = self.key_fn.clone();
        self.keyed_node("reduce", move |b, meta, next, info| {
            let mut op = ReduceOp {
                key_fn,
                f,
                table: StateTable::default(),
                batch_mode: b.core.batch_mode(),
                out: Batch::default(),
                next,
                info,
                owner: key_owner(b),
                core: b.core.clone(),
                node: meta.id,
            };
            op.restore()?;
            Ok(Box::new(op))
        })
    }

    /// Rolling sum of the field `field` selects; other fields keep the values
    /// of the key's first record (Flink's `sum(field)`).
    pub fn sum<V>(&self, field: impl Fn(&mut T) -> &mut V + Clone + Send + 'static) -> DataStream<T>
    where
        T: StateData,
        V: std::ops::AddAssign + Copy,
    {
        self.reduce(move |mut acc, mut x| {
            let v = *field(&mut x);
            *field(&mut acc) += v;
            acc
        })
    }

    /// Rolling minimum of a field; other fields keep the first record's values
    /// (Flink's `min(field)`).
    pub fn min<V: PartialOrd + Copy>(
        &self,
        field: impl Fn(&mut T) -> &mut V + Clone + Send + 'static,
    ) -> DataStream<T>
    where
        T: StateData,
    {
        self.reduce(move |mut acc, mut x| {
            let v = *field(&mut x);
            if v < *field(&mut acc) {
                *field(&mut acc) = v;
            }
            acc
        })
    }

    /// Rolling maximum of a field; other fields keep the first record's values
    /// (Flink's `max(field)`).
    pub fn max<V: PartialOrd + Copy>(
        &self,
        field: impl Fn(&mut T) -> &mut V + Clone + Send + 'static,
    ) -> DataStream<T>
    where
        T: StateData,
    {
        self.reduce(move |mut acc, mut x| {
            let v = *field(&mut x);
            if v > *field(&mut acc) {
                *field(&mut acc) = v;
            }
            acc
        })
    }

    /// The record with the smallest field so far (first one on ties; Flink's
    /// `minBy`).
    pub fn min_by<V: PartialOrd + Copy>(
        &self,
        field: impl Fn(&mut T) -> &mut V + Clone + Send + 'static,
    ) -> DataStream<T>
    where
        T: StateData,
    {
        self.reduce(move |mut acc, mut x| if *field(&mut x) < *field(&mut acc) { x } else { acc })
    }

    /// The record with the largest field so far (first one on ties; Flink's
    /// `maxBy`).
    pub fn max_by<V: PartialOrd + Copy>(
        &self,
        field: impl Fn(&mut T) -> &mut V + Clone + Send + 'static,
    ) -> DataStream<T>
    where
        T: StateData,
    {
        self.reduce(move |mut acc, mut x| if *field(&mut x) > *field(&mut acc) { x } else { acc })
    }
}

fn key_owner(b: &crate::graph::CoreBuilder) -> KeyOwner {
    KeyOwner { max_parallelism: b.core.config.max_parallelism, cores: b.core.cores(), core: b.core.index() }
}

/// The reader of a core that owns no split: ends at once.
pub(crate) struct NoSplit;

impl<T: 'static> crate::operator::source::SourceReader<T> for NoSplit {
    async fn next_batch(
        &mut self,
        _out: &mut crate::operator::source::SourceOutput<'_, T>,
    ) -> Result<crate::operator::source::SourceStatus, crate::operator::source::SourceError> {
        Ok(crate::operator::source::SourceStatus::Done)
    }
}

const _: () = assert!(MAX_WATERMARK == i64::MAX);

/// Names a side output of an operator (Flink's `OutputTag`).
pub struct OutputTag<T> {
    id: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        Self { id: self.id.clone(), _type: PhantomData }
    }
}

impl<T> OutputTag<T> {
    /// A tag named `id`.
    pub fn new(id: &str) -> Self {
        Self { id: id.to_string(), _type: PhantomData }
    }

    /// The tag's name.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A keyed stream grouped into windows: configure trigger, evictor and
/// lateness, then apply a window function.
pub struct WindowedStream<T, K, KF> {
    keyed: KeyedStream<T, K, KF>,
    assigner: WindowAssigner<T>,
    trigger: Option<Box<dyn Trigger<T>>>,
    evictor: Option<Box<dyn Evictor<T>>>,
    allowed_lateness: i64,
    late_tag: Option<String>,
}

impl<T: StateData, K: Key, KF: Fn(&T) -> K + Clone + Send + 'static> WindowedStream<T, K, KF> {
    /// Replaces the assigner's default trigger.
    pub fn trigger(mut self, trigger: impl Trigger<T>) -> Self {
        self.trigger = Some(Box::new(trigger));
        self
    }

    /// Removes elements before/after the window function runs (the window
    /// then keeps every element).
    pub fn evictor(mut self, evictor: impl Evictor<T>) -> Self {
        self.evictor = Some(Box::new(evictor));
        self
    }

    /// Keeps windows `ms` past their end for late elements, each of which
    /// fires the window again.
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms;
        self
    }

    /// Sends elements too late for every window to the side output `tag`
    /// (read it with [`DataStream::side_output`]).
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.id.clone());
        self
    }

    /// Reduces each window's elements with `f` (incrementally).
    pub fn reduce(self, f: impl FnMut(T, T) -> T + Clone + Send + 'static) -> DataStream<T> {
        self.finish("window_reduce", reduce_logic(f))
    }

    /// Reduces incrementally, then hands the result to `process` with the window.
    pub fn reduce_with<O: Data>(
        self,
        f: impl FnMut(T, T) -> T + Clone + Send + 'static,
        process: impl ProcessWindowFunction<K, T, O>,
    ) -> DataStream<O> {
        self.finish("window_reduce", IncrementalLogic::new(ReduceInc(f), process))
    }

    /// Aggregates each window incrementally with an [`AggregateFunction`].
    pub fn aggregate<A: AggregateFunction<T>>(self, agg: A) -> DataStream<A::Out>
    where
        A::Out: Data,
    {
        self.finish("window_aggregate", IncrementalLogic::new(AggInc(agg), PassThrough))
    }

    /// Aggregates incrementally, then hands the result to `process` with the window.
    pub fn aggregate_with<A: AggregateFunction<T>, O: Data>(
        self,
        agg: A,
        process: impl ProcessWindowFunction<K, A::Out, O>,
    ) -> DataStream<O> {
        self.finish("window_aggregate", IncrementalLogic::new(AggInc(agg), process))
    }

    /// Hands all of a window's elements to `process` when it fires.
    pub fn process<O: Data>(self, process: impl ProcessWindowFunction<K, T, O>) -> DataStream<O> {
        self.finish("window_process", ListLogic(process, PhantomData))
    }

    fn finish<O: Data, C>(mut self, kind: &'static str, logic: C) -> DataStream<O>
    where
        C: WindowLogic<K, T, Out = O> + ComputeList<K, T, Out = O> + Clone + Send,
    {
        match self.evictor.take() {
            Some(evictor) => self.window_node(kind, EvictingLogic { compute: logic, evictor }),
            None => self.window_node(kind, logic),
        }
    }

    fn window_node<O: Data, L>(self, kind: &'static str, logic: L) -> DataStream<O>
    where
        L: WindowLogic<K, T, Out = O> + Clone + Send,
    {
        let trigger: Box<dyn Trigger<T>> = match self.trigger {
            Some(t) => t,
            None if self.assigner.is_global() => Box::new(NeverTrigger),
            None if self.assigner.is_event_time() => Box::new(EventTimeTrigger),
            None => Box::new(ProcessingTimeTrigger),
        };
        let mut errors = Vec::new();
        if let Err(e) = self.assigner.validate() {
            errors.push(e);
        }
        if self.assigner.is_merging() && !trigger.can_merge() {
            errors.push("a merging window assigner (sessions) needs a trigger that supports merging".into());
        }
        if self.allowed_lateness < 0 {
            errors.push(format!("allowed_lateness = {}: must be >= 0", self.allowed_lateness));
        }
        let spec = WindowSpec { assigner: self.assigner, trigger, allowed_lateness: self.allowed_lateness };
        let key_fn = self.keyed.key_fn.clone();
        let late_tag = self.late_tag.clone();
        let stream = self.keyed.keyed_node(kind, move |b, meta, next, info| {
            let late = match &late_tag {
                Some(tag) => {
                    let side = meta.side_outputs.iter().find(|(t, _)| t == tag).map(|(_, id)| *id);
                    Some(match side {
                        Some(id) => b.output::<T>(id),
                        None => Box::new(crate::runtime::core::Discard) as Box<dyn Push<T>>,
                    })
                }
                None => None,
            };
            let op =
                WindowOp::new(key_fn, spec, logic, next, late, info, key_owner(b), b.core.clone(), meta.id)?;
            Ok(Box::new(WindowHandle(op)))
        });
        let mut g = stream.graph.borrow_mut();
        for e in errors {
            let name = g.nodes[stream.node].meta.name.clone();
            g.errors.push(format!("window '{name}': {e}"));
        }
        if let Some(tag) = self.late_tag {
            g.nodes[stream.node].meta.declared_side_outputs.push((tag, std::any::TypeId::of::<T>()));
        }
        drop(g);
        stream
    }
}

/// Two streams to join within windows; say which keys must be equal.
pub struct JoinedStreams<A, B> {
    left: DataStream<A>,
    right: DataStream<B>,
}

impl<A: Data, B: Data> JoinedStreams<A, B> {
    /// The left input's join key.
    pub fn where_key<K: Key, KA: Fn(&A) -> K + Clone + Send + 'static>(
        self,
        key: KA,
    ) -> JoinWhere<A, B, K, KA> {
        JoinWhere { left: self.left, right: self.right, left_key: key, _key: PhantomData }
    }
}

/// A window join with its left key chosen.
pub struct JoinWhere<A, B, K, KA> {
    left: DataStream<A>,
    right: DataStream<B>,
    left_key: KA,
    _key: PhantomData<fn() -> K>,
}

impl<A: Data, B: Data, K: Key, KA: Fn(&A) -> K + Clone + Send + 'static> JoinWhere<A, B, K, KA> {
    /// The right input's join key.
    pub fn equal_to<KB: Fn(&B) -> K + Clone + Send + 'static>(self, key: KB) -> JoinEqual<A, B, K, KA, KB> {
        JoinEqual {
            left: self.left,
            right: self.right,
            left_key: self.left_key,
            right_key: key,
            _key: PhantomData,
        }
    }
}

/// A window join with both keys chosen; give it windows.
pub struct JoinEqual<A, B, K, KA, KB> {
    left: DataStream<A>,
    right: DataStream<B>,
    left_key: KA,
    right_key: KB,
    _key: PhantomData<fn() -> K>,
}

impl<A: Data, B: Data, K: Key, KA, KB> JoinEqual<A, B, K, KA, KB>
where
    KA: Fn(&A) -> K + Clone + Send + 'static,
    KB: Fn(&B) -> K + Clone + Send + 'static,
{
    /// The windows within which elements join.
    pub fn window(self, assigner: WindowAssigner<Either<A, B>>) -> WindowJoin<A, B, K, KA, KB> {
        WindowJoin { join: self, assigner, allowed_lateness: 0 }
    }
}

/// A window join ready to apply.
pub struct WindowJoin<A, B, K, KA, KB> {
    join: JoinEqual<A, B, K, KA, KB>,
    assigner: WindowAssigner<Either<A, B>>,
    allowed_lateness: i64,
}

impl<A: StateData, B: StateData, K: Key, KA, KB> WindowJoin<A, B, K, KA, KB>
where
    KA: Fn(&A) -> K + Clone + Send + 'static,
    KB: Fn(&B) -> K + Clone + Send + 'static,
{
    /// Keeps windows open for late elements (each fires the window again).
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms;
        self
    }

    /// Emits `f(left, right)` for every pair of a key and window, at the
    /// window's max timestamp.
    pub fn apply<O: Data>(self, f: impl FnMut(&A, &B) -> O + Clone + Send + 'static) -> DataStream<O> {
        let JoinEqual { left, right, left_key, right_key, .. } = self.join;
        let tagged = left.map(Either::Left).union(&[right.map(Either::Right)]);
        let mut f = f;
        tagged
            .key_by(move |e: &Either<A, B>| match e {
                Either::Left(a) => left_key(a),
                Either::Right(b) => right_key(b),
            })
            .window(self.assigner)
            .allowed_lateness(self.allowed_lateness)
            .process(
                move |_key: &K,
                      _ctx: &WindowContext,
                      elements: &[Either<A, B>],
                      out: &mut Collector<'_, O>| {
                    let rights: Vec<&B> = elements
                        .iter()
                        .filter_map(|e| if let Either::Right(b) = e { Some(b) } else { None })
                        .collect();
                    for e in elements {
                        if let Either::Left(a) = e {
                            for b in &rights {
                                out.collect(f(a, b));
                            }
                        }
                    }
                    Ok::<(), UserError>(())
                },
            )
            .name("window_join")
    }
}

/// Two keyed streams to interval-join; give the bounds.
pub struct IntervalJoin<A, B, K, KA, KB> {
    left: KeyedStream<A, K, KA>,
    right: KeyedStream<B, K, KB>,
}

impl<A: Data, B: Data, K: Key, KA, KB> IntervalJoin<A, B, K, KA, KB>
where
    KA: Fn(&A) -> K + Clone + Send + 'static,
    KB: Fn(&B) -> K + Clone + Send + 'static,
{
    /// Joins `a` with `b` when `a.ts + lower_ms <= b.ts <= a.ts + upper_ms`.
    pub fn between(self, lower_ms: i64, upper_ms: i64) -> IntervalJoined<A, B, K, KA, KB> {
        IntervalJoined {
            join: self,
            lower: lower_ms,
            upper: upper_ms,
            lower_exclusive: false,
            upper_exclusive: false,
        }
    }
}

/// An interval join with its bounds; apply a function.
pub struct IntervalJoined<A, B, K, KA, KB> {
    join: IntervalJoin<A, B, K, KA, KB>,
    lower: i64,
    upper: i64,
    lower_exclusive: bool,
    upper_exclusive: bool,
}

impl<A: StateData, B: StateData, K: Key, KA, KB> IntervalJoined<A, B, K, KA, KB>
where
    KA: Fn(&A) -> K + Clone + Send + 'static,
    KB: Fn(&B) -> K + Clone + Send + 'static,
{
    /// Excludes the lower bound (`a.ts + lower < b.ts`).
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.lower_exclusive = true;
        self
    }

    /// Excludes the upper bound (`b.ts < a.ts + upper`).
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.upper_exclusive = true;
        self
    }

    /// Runs `f` on every joined pair; output carries the later timestamp.
    pub fn process<O: Data>(self, f: impl ProcessJoinFunction<A, B, O>) -> DataStream<O> {
        let lower = self.lower + i64::from(self.lower_exclusive);
        let upper = self.upper - i64::from(self.upper_exclusive);
        let IntervalJoin { left, right } = self.join;
        let (left_key, right_key) = (left.key_fn, right.key_fn);
        let tagged = left.input.map(Either::Left).union(&[right.input.map(Either::Right)]);
        let stream = tagged
            .key_by(move |e: &Either<A, B>| match e {
                Either::Left(a) => left_key(a),
                Either::Right(b) => right_key(b),
            })
            .process(IntervalJoinFn {
                lower,
                upper,
                f,
                left: Default::default(),
                right: Default::default(),
                _out: PhantomData,
            })
            .name("interval_join");
        if lower > upper {
            stream.graph.borrow_mut().errors.push(format!(
                "interval join: the lower bound ({lower}) must not be above the upper bound ({upper}), exclusivity included"
            ));
        }
        stream
    }
}
