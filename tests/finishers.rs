//! Finishers: what a source or sink leaves for when the job's output is
//! final (a Kafka reader's last offset commit, a transactional writer's
//! last commit). They run once the job ended without error, after its last
//! checkpoint is complete; never when it fails; and a finisher's error
//! fails the job.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use brisk::prelude::*;
use brisk::{
    Batch, DiscardSink, Finisher, Sink, SinkContext, SinkError, SinkWriter, Source, SourceContext,
    SourceError, SourceOutput, SourceReader, SourceStatus,
};

/// Emits `0..n` on one split; its finisher records, in `finished`, the
/// newest checkpoint complete at the time it ran (plus one, so that 0
/// means "never ran").
#[derive(Clone)]
struct Counting {
    n: u64,
    finished: Arc<AtomicU64>,
    checkpoints: Option<std::path::PathBuf>,
}

struct CountingReader {
    src: Counting,
    next: u64,
    split: usize,
}

impl Source<u64> for Counting {
    type Reader = CountingReader;
    fn name(&self) -> String {
        "counting".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, ctx: &SourceContext) -> Result<CountingReader, SourceError> {
        Ok(CountingReader { src: self.clone(), next: 0, split: ctx.split() })
    }
}

impl SourceReader<u64> for CountingReader {
    async fn next_batch(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourceStatus, SourceError> {
        if self.split != 0 || self.next == self.src.n {
            return Ok(SourceStatus::Done);
        }
        let end = (self.next + out.remaining() as u64).min(self.src.n);
        for i in self.next..end {
            out.collect(i);
        }
        self.next = end;
        Ok(SourceStatus::More)
    }
    fn position(&self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }
    fn finisher(&mut self) -> Option<Finisher> {
        let (finished, dir) = (self.src.finished.clone(), self.src.checkpoints.clone());
        Some(Box::new(move || {
            let newest = dir.map_or(0, |d| newest_finished(&d));
            finished.store(newest + 1, Ordering::SeqCst);
            Ok(())
        }))
    }
}

/// The id of the newest complete checkpoint in `dir`, or 0.
fn newest_finished(dir: &std::path::Path) -> u64 {
    let listed = brisk::checkpoint::store::list(dir).unwrap_or_default();
    listed.iter().filter(|(_, _, complete)| *complete).map(|(id, _, _)| *id).max().unwrap_or(0)
}

fn config(cores: usize) -> JobConfig {
    JobConfig { pin_cores: false, ..JobConfig::with_cores(cores) }
}

#[test]
fn finishers_run_after_the_last_checkpoint_and_never_after_a_failure() {
    for checkpoints in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let chk = checkpoints.then(|| dir.path().join("chk"));
        let run = |fail_at: Option<u64>| {
            let finished = Arc::new(AtomicU64::new(0));
            let src = Counting { n: 10_000, finished: finished.clone(), checkpoints: chk.clone() };
            let config = JobConfig {
                checkpoint_dir: chk.clone(),
                checkpoint_interval_ms: if checkpoints { 600_000 } else { 0 },
                ..config(2)
            };
            let result = common::run_guarded(60, move || {
                let env = StreamEnv::new(config);
                env.from_source(src)
                    .map(move |i: u64| {
                        assert!(Some(i) != fail_at, "injected failure at {i}");
                        i
                    })
                    .sink_to(DiscardSink);
                env.execute()
            });
            (result, finished.load(Ordering::SeqCst))
        };
        let (result, finished) = run(None);
        result.unwrap();
        assert!(finished > 0, "checkpoints {checkpoints}: the finisher ran");
        if checkpoints {
            assert!(finished > 1, "it ran after the final checkpoint was complete ({})", finished - 1);
        }
        let (result, finished) = run(Some(5_000));
        assert!(result.is_err(), "checkpoints {checkpoints}: the job failed");
        assert_eq!(finished, 0, "checkpoints {checkpoints}: no finisher after a failure");
    }
}

/// A sink whose finisher fails (a commit that cannot be made): the job
/// fails, naming the sink.
#[derive(Clone)]
struct FailingAtTheEnd;

struct FailingWriter;

impl Sink<u64> for FailingAtTheEnd {
    type Writer = FailingWriter;
    fn name(&self) -> String {
        "commits-late".into()
    }
    fn create_writer(&self, _ctx: &SinkContext) -> Result<FailingWriter, SinkError> {
        Ok(FailingWriter)
    }
}

impl SinkWriter<u64> for FailingWriter {
    fn write(&mut self, batch: &mut Batch<u64>) -> Result<(), SinkError> {
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, _end_of_input: bool) -> Result<(), SinkError> {
        Ok(())
    }
    fn finisher(&mut self) -> Option<Finisher> {
        Some(Box::new(|| Err("the broker refused the last commit".into())))
    }
}

#[test]
fn a_failing_finisher_fails_the_job() {
    let err = common::run_guarded(60, || {
        let env = StreamEnv::new(config(2));
        env.from_collection((0..100u64).collect()).sink_to(FailingAtTheEnd);
        env.execute()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("commits-late") && err.contains("the broker refused the last commit"), "{err}");
}
