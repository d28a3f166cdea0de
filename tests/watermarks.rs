//! Watermarks flow in-band with the data and an operator with several input
//! channels forwards the minimum: with sources whose splits advance event
//! time at very different speeds, no record ever arrives behind the
//! watermark (it would if a fast input's watermark won, or if a watermark
//! overtook records), and every job ends with the final watermark.

use std::sync::mpsc;

use brisk::prelude::*;
use brisk::{
    Batch, MAX_WATERMARK, MIN_WATERMARK, Sink, SinkContext, SinkError, SinkWriter, Source, SourceContext,
    SourceError, SourceOutput, SourceReader, SourceStatus, Timestamp,
};

/// Split `s` emits `per_split` records with timestamps `step(s), 2 step(s), ...`
/// and after every batch a watermark equal to its last timestamp (a promise
/// that later records of the split are newer).
#[derive(Clone)]
struct Skewed {
    per_split: u64,
    steps: Vec<i64>,
}

struct SkewedReader {
    next: u64,
    end: u64,
    step: i64,
    split: u64,
}

impl Source<(u64, Timestamp)> for Skewed {
    type Reader = SkewedReader;
    fn name(&self) -> String {
        "skewed".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, ctx: &SourceContext) -> Result<SkewedReader, SourceError> {
        Ok(SkewedReader {
            next: 0,
            end: self.per_split,
            step: self.steps[ctx.split() % self.steps.len()],
            split: ctx.split() as u64,
        })
    }
}

impl SourceReader<(u64, Timestamp)> for SkewedReader {
    async fn next_batch(
        &mut self,
        out: &mut SourceOutput<'_, (u64, Timestamp)>,
    ) -> Result<SourceStatus, SourceError> {
        // Small batches: many watermarks interleaved with data.
        let mut last = None;
        for _ in 0..out.remaining().min(100) {
            if self.next == self.end {
                break;
            }
            self.next += 1;
            let ts = self.next as i64 * self.step;
            out.collect_with_timestamp((self.split * 1_000_003 + self.next, ts), ts);
            last = Some(ts);
        }
        if let Some(ts) = last {
            out.emit_watermark(ts);
        }
        Ok(if self.next == self.end { SourceStatus::Done } else { SourceStatus::More })
    }
}

/// Emits `(late, watermark_seen)` per record.
#[derive(Clone)]
struct LateCheck;

impl KeyedProcessFunction<u64, (u64, Timestamp), (bool, Timestamp)> for LateCheck {
    fn process_element(
        &mut self,
        (_, ts): (u64, Timestamp),
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, (bool, Timestamp)>,
    ) -> Result<(), UserError> {
        assert_eq!(ctx.timestamp(), Some(ts), "the record's timestamp travels with it");
        out.collect((ts <= ctx.current_watermark(), ctx.current_watermark()));
        Ok(())
    }
}

/// Records the watermarks a sink instance observes; delivers them at the end.
#[derive(Clone)]
struct WatermarkLog(mpsc::SyncSender<Vec<Timestamp>>);

struct WatermarkLogWriter(mpsc::SyncSender<Vec<Timestamp>>, Vec<Timestamp>);

impl<T: 'static> Sink<T> for WatermarkLog {
    type Writer = WatermarkLogWriter;
    fn name(&self) -> String {
        "watermark_log".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<WatermarkLogWriter, SinkError> {
        Ok(WatermarkLogWriter(self.0.clone(), Vec::new()))
    }
}

impl<T: 'static> SinkWriter<T> for WatermarkLogWriter {
    fn write(&mut self, batch: &mut Batch<T>) -> Result<(), SinkError> {
        batch.clear();
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Timestamp) {
        self.1.push(watermark);
    }
    async fn flush(&mut self, end: bool) -> Result<(), SinkError> {
        if end {
            self.0.send(std::mem::take(&mut self.1)).map_err(|e| SinkError(e.to_string()))?;
        }
        Ok(())
    }
}

fn check(
    cores: usize,
    checked: Vec<(bool, Timestamp)>,
    logs: mpsc::Receiver<Vec<Timestamp>>,
    expected: usize,
) {
    assert_eq!(checked.len(), expected, "cores {cores}");
    let late = checked.iter().filter(|(late, _)| *late).count();
    assert_eq!(late, 0, "records behind the watermark at {cores} cores");
    let progressed = checked.iter().filter(|(_, wm)| *wm > MIN_WATERMARK).count();
    assert!(progressed > 0, "watermarks never reached the keyed operator at {cores} cores");
    let logs: Vec<Vec<Timestamp>> = logs.try_iter().collect();
    assert_eq!(logs.len(), cores, "one log per sink instance");
    for log in logs {
        assert!(log.windows(2).all(|w| w[0] < w[1]), "watermarks strictly increase: {log:?}");
        assert_eq!(log.last(), Some(&MAX_WATERMARK), "the job ends with the final watermark");
    }
}

#[test]
fn a_keyed_exchange_combines_skewed_splits_as_the_minimum() {
    for cores in [1, 2, 3] {
        let env = StreamEnv::new(JobConfig { pin_cores: cores <= 2, ..JobConfig::with_cores(cores) });
        let (tx, rx) = mpsc::sync_channel(cores);
        let per_split = 20_000;
        let checked = env
            .from_source(Skewed { per_split, steps: vec![1_000, 1, 37] })
            .key_by(|r: &(u64, Timestamp)| r.0 % 101)
            .process(LateCheck);
        checked.sink_to(WatermarkLog(tx));
        let out = checked.collect();
        env.execute().unwrap();
        check(cores, out.take(), rx, cores * per_split as usize);
    }
}

#[test]
fn union_and_rebalance_combine_as_the_minimum_too() {
    for cores in [1, 2] {
        let env = StreamEnv::new(JobConfig::with_cores(cores));
        let (tx, rx) = mpsc::sync_channel(cores);
        let per_split = 10_000;
        let fast = env.from_source(Skewed { per_split, steps: vec![5_000] });
        let slow = env.from_source(Skewed { per_split, steps: vec![2] }).map(|(k, ts)| (k + 500_000_000, ts));
        let checked =
            fast.union(&[slow]).rebalance().key_by(|r: &(u64, Timestamp)| r.0 % 13).process(LateCheck);
        checked.sink_to(WatermarkLog(tx));
        let out = checked.collect();
        env.execute().unwrap();
        check(cores, out.take(), rx, 2 * cores * per_split as usize);
    }
}
