//! Counters an operator instance updates on its core and the control thread
//! reads. A counter has exactly one writer (its core), so updates are plain
//! relaxed load/store pairs: no locked instruction on the hot path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// `bytes` for people: in GiB, MiB or KiB to one decimal, or in bytes
/// (`B`) under 1 KiB.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

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

/// Latency at one sink: how long latency markers took from their origin
/// (a record's creation, or the source's read) to the sink, merged over
/// cores. In microseconds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SinkLatency {
    /// The sink's name.
    pub sink: String,
    /// Markers recorded.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

/// Largest latency a histogram tracks (one hour, in µs); beyond it values
/// are clamped.
pub(crate) const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A latency histogram (µs, three significant digits).
pub(crate) fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

impl SinkLatency {
    /// Summarizes `hist` (merged over cores) for sink `sink`.
    pub(crate) fn of(sink: &str, hist: &hdrhistogram::Histogram<u64>) -> Self {
        Self {
            sink: sink.to_string(),
            count: hist.len(),
            p50_us: hist.value_at_quantile(0.5),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
        }
    }

    /// Merges per-core histograms into one summary per sink, sorted by name.
    pub(crate) fn merge(
        parts: impl IntoIterator<Item = (String, hdrhistogram::Histogram<u64>)>,
    ) -> Vec<Self> {
        let mut by_sink: BTreeMap<String, hdrhistogram::Histogram<u64>> = BTreeMap::new();
        for (sink, h) in parts {
            match by_sink.get_mut(&sink) {
                Some(m) => {
                    // Same bounds everywhere: adding cannot fail.
                    let _ = m.add(&h);
                }
                None => {
                    by_sink.insert(sink, h);
                }
            }
        }
        by_sink.iter().map(|(s, h)| Self::of(s, h)).collect()
    }
}

impl std::fmt::Display for SinkLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1000.0;
        write!(
            f,
            "latency at {}: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} markers)",
            self.sink,
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.count
        )
    }
}
