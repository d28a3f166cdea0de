//! brisk's benchmark harnesses (programs, not tests: speed goals live here).
//!
//! | target | what it measures |
//! | --- | --- |
//! | `keyed_count` (bin) | the KW events of shared/BENCHMARKS.md through a `key_by` exchange into a keyed count and sum |
//! | `nexmark` (bin, [`nexmark`]) | the Nexmark queries over the in-process generator or CSV files; `--generate-to` writes the files |
//! | `ysb` (bin, [`ysb`]) | the Yahoo streaming benchmark over the in-process generator, JSON files or Kafka; `--generate-to` writes the files |
//! | `exchange` (criterion) | records per second through forward, rebalance and key-by hand-offs between cores |
//!
//! Every harness prints its configuration with its result, and a last line
//! that scripts parse (`keyed_count events=.. keys=.. cores=.. secs=.. events_per_s=..`).

pub mod latency;
pub mod nexmark;
pub mod ysb;

/// Sums the counts of `(key, count)` records: the window aggregate of
/// counts combined per batch before the exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct SumCounts;

impl<K> brisk::prelude::AggregateFunction<(K, u64)> for SumCounts {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&mut self) -> u64 {
        0
    }
    fn add(&mut self, v: (K, u64), acc: u64) -> u64 {
        acc + v.1
    }
    fn get_result(&mut self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&mut self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// The KW workload's event `i` (shared/BENCHMARKS.md): `key = fmix64(i) mod
/// keys` (unsigned), `timestamp_ms = i / 1000`, `value = i mod 100`.
#[inline]
pub fn kw_event(i: u64, keys: u64) -> KwEvent {
    KwEvent { key: brisk::state::hash::fmix64(i) % keys, timestamp_ms: (i / 1000) as i64, value: i % 100 }
}

/// One KW event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KwEvent {
    /// The key, in `0..keys`.
    pub key: u64,
    /// Event time in milliseconds.
    pub timestamp_ms: i64,
    /// The value, in `0..100`.
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kw_event_matches_the_flink_job_definition() {
        // KeyedWindowBench.java: key = Long.remainderUnsigned(mix(i), keys).
        let e = kw_event(1, 10_000);
        assert_eq!(e.key, 0xb456_bcfc_34c2_cb2c % 10_000);
        assert_eq!((e.timestamp_ms, e.value), (0, 1));
        assert_eq!(kw_event(123_456, 7).timestamp_ms, 123);
        assert_eq!(kw_event(123_456, 7).value, 56);
    }
}
