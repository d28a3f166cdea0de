//! Counters an operator instance updates on its core and the control thread
//! reads. A counter has exactly one writer (its core), so updates are plain
//! relaxed load/store pairs: no locked instruction on the hot path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count owned by one core.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`. Only the owning core may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v + n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value its core sets and the control thread reads (an operator's
/// current watermark).
#[derive(Debug, Clone)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// A gauge holding `v`.
    pub fn new(v: i64) -> Self {
        Self(Arc::new(AtomicI64::new(v)))
    }

    /// Sets the value. Only the owning core may call this.
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One registered gauge: which operator, which metric, which core.
#[derive(Debug, Clone)]
pub struct GaugeEntry {
    /// Operator display name.
    pub operator: String,
    /// Metric name, e.g. `watermark`.
    pub metric: String,
    /// Core the gauge belongs to.
    pub core: usize,
    /// The gauge.
    pub gauge: Gauge,
}

/// One registered counter: which operator, which metric, which core.
#[derive(Debug, Clone)]
pub struct CounterEntry {
    /// Operator display name.
    pub operator: String,
    /// Metric name, e.g. `malformed_skipped`.
    pub metric: String,
    /// Core the counter belongs to.
    pub core: usize,
    /// The counter.
    pub counter: Counter,
}

/// The counters of a finished (or running) job.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    entries: Vec<CounterEntry>,
}

impl Metrics {
    pub(crate) fn extend(&mut self, entries: impl IntoIterator<Item = CounterEntry>) {
        self.entries.extend(entries);
    }

    /// Sum over all operators and cores of the metric named `metric`.
    pub fn total(&self, metric: &str) -> u64 {
        self.entries.iter().filter(|e| e.metric == metric).map(|e| e.counter.get()).sum()
    }

    /// Sum over cores of `metric` for the operator named `operator`.
    pub fn operator_total(&self, operator: &str, metric: &str) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.metric == metric && e.operator == operator)
            .map(|e| e.counter.get())
            .sum()
    }

    /// `(operator, metric) → total over cores`, sorted.
    pub fn totals(&self) -> BTreeMap<(String, String), u64> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            *out.entry((e.operator.clone(), e.metric.clone())).or_insert(0) += e.counter.get();
        }
        out
    }

    /// Every counter, per core.
    pub fn entries(&self) -> &[CounterEntry] {
        &self.entries
    }
}
