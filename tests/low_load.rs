//! At low load, partly filled exchange buffers are sent when their source
//! runs out of input instead of waiting to fill: a source that emits its
//! next record only after the previous one reached the sink (ping-pong)
//! finishes; if partial buffers waited to fill, it would wait forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use brisk::prelude::*;
use brisk::{
    Batch, Sink, SinkContext, SinkError, SinkWriter, Source, SourceContext, SourceError, SourceOutput,
    SourceReader, SourceStatus,
};

const RECORDS: u64 = 200;

#[derive(Clone)]
struct PingPong(Arc<AtomicU64>);

struct PingPongReader {
    delivered: Arc<AtomicU64>,
    sent: u64,
}

impl Source<u64> for PingPong {
    type Reader = PingPongReader;
    fn name(&self) -> String {
        "ping".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _ctx: &SourceContext) -> Result<PingPongReader, SourceError> {
        Ok(PingPongReader { delivered: self.0.clone(), sent: 0 })
    }
}

impl SourceReader<u64> for PingPongReader {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourceStatus, SourceError> {
        if self.sent == RECORDS {
            return Ok(SourceStatus::Done);
        }
        if self.delivered.load(Ordering::Acquire) < self.sent {
            // The previous record is still on its way: idle until it arrives.
            return Ok(SourceStatus::Wait(Duration::from_micros(50)));
        }
        out.collect(self.sent);
        self.sent += 1;
        Ok(SourceStatus::Wait(Duration::from_micros(50)))
    }
}

#[derive(Clone)]
struct Pong(Arc<AtomicU64>);

impl Sink<u64> for Pong {
    type Writer = Pong;
    fn name(&self) -> String {
        "pong".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<Pong, SinkError> {
        Ok(self.clone())
    }
}

impl SinkWriter<u64> for Pong {
    fn write(&mut self, batch: &mut Batch<u64>) -> Result<(), SinkError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Release);
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, _end: bool) -> Result<(), SinkError> {
        Ok(())
    }
}

#[test]
fn partial_exchange_buffers_go_out_when_the_source_idles() {
    let delivered = Arc::new(AtomicU64::new(0));
    let d = delivered.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        env.from_source(PingPong(d.clone()))
            .set_parallelism(1)
            .key_by(|i: &u64| *i)
            .reduce(|a, b| a + b)
            .sink_to(Pong(d));
        let _ = tx.send(env.execute().map(|_| ()));
    });
    // A hang guard, not a wait for progress: the job either finishes or hangs.
    let result =
        rx.recv_timeout(Duration::from_secs(60)).expect("ping-pong hung: partial buffers were not flushed");
    result.unwrap();
    assert_eq!(delivered.load(Ordering::Acquire), RECORDS);
}
