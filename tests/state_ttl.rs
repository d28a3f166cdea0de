//! State TTL in a running job: a keyed process function's state expires in
//! processing time, read from the job's injected clock, on both state
//! backends and on two cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brisk::prelude::*;
use brisk::{
    ManualClock, Source, SourceContext, SourceError, SourceOutput, SourceReader, SourceStatus,
    StateBackendKind,
};

mod common;

const TTL_MS: u64 = 100;

/// Per key: the previous phase seen, kept for `TTL_MS` after it was written.
#[derive(Clone)]
struct Previous {
    last: ValueState<u32>,
    processed: Arc<AtomicU64>,
}

impl KeyedProcessFunction<u32, (u32, u32), (u32, u32, Option<u32>)> for Previous {
    fn open(&mut self, ctx: &mut OpenContext<'_, u32>) -> Result<(), UserError> {
        let ttl = StateTtlConfig::new(Duration::from_millis(TTL_MS));
        self.last = ctx.with_ttl(ttl).value_state("last")?;
        Ok(())
    }

    fn process_element(
        &mut self,
        (key, phase): (u32, u32),
        ctx: &mut Context<'_, u32>,
        out: &mut Collector<'_, (u32, u32, Option<u32>)>,
    ) -> Result<(), UserError> {
        let previous = ctx.value(&self.last).set(phase);
        out.collect((key, phase, previous));
        self.processed.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// Phase `p` sends the keys `PHASES[p].1` once the previous phases were
/// processed, after moving the clock `PHASES[p].0` ms.
const PHASES: [(i64, std::ops::Range<u32>); 3] = [(0, 0..10), (60, 0..5), (60, 0..10)];

#[derive(Clone)]
struct Phased {
    clock: Arc<ManualClock>,
    processed: Arc<AtomicU64>,
}

struct PhasedReader {
    src: Phased,
    phase: usize,
    /// Records sent so far.
    sent: u64,
}

impl Source<(u32, u32)> for Phased {
    type Reader = PhasedReader;
    fn name(&self) -> String {
        "phased".into()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _ctx: &SourceContext) -> Result<PhasedReader, SourceError> {
        Ok(PhasedReader { src: self.clone(), phase: 0, sent: 0 })
    }
}

impl SourceReader<(u32, u32)> for PhasedReader {
    async fn next_batch(
        &mut self,
        out: &mut SourceOutput<'_, (u32, u32)>,
    ) -> Result<SourceStatus, SourceError> {
        let Some((advance, keys)) = PHASES.get(self.phase).cloned() else { return Ok(SourceStatus::Done) };
        if self.src.processed.load(Ordering::Acquire) < self.sent {
            // The previous phase is still on its way to the state.
            return Ok(SourceStatus::Wait(Duration::from_micros(200)));
        }
        self.src.clock.advance_ms(advance);
        for k in keys {
            out.collect((k, self.phase as u32));
            self.sent += 1;
        }
        self.phase += 1;
        Ok(SourceStatus::More)
    }
}

fn run(backend: StateBackendKind) -> Vec<(u32, u32, Option<u32>)> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let processed = Arc::new(AtomicU64::new(0));
    let config = JobConfig {
        clock: clock.clone(),
        pin_cores: false,
        state_backend: backend,
        state_dir: Some(dir.path().join("state")),
        ..JobConfig::with_cores(2)
    };
    let source = Phased { clock, processed: processed.clone() };
    let mut out = common::run_guarded(60, move || {
        let env = StreamEnv::new(config);
        let out = env
            .from_source(source)
            .set_parallelism(1)
            .key_by(|r: &(u32, u32)| r.0)
            .process(Previous { last: ValueState::default(), processed })
            .collect();
        env.execute().unwrap();
        out.take()
    });
    out.sort();
    out
}

#[test]
fn keyed_state_expires_in_processing_time_on_either_backend() {
    for backend in [StateBackendKind::Memory, StateBackendKind::Log] {
        let got = run(backend);
        let mut want = Vec::new();
        // Phase 0 at t: nothing before. Phase 1 at t+60: phase 0's values
        // live until t+100. Phase 2 at t+120: keys 0..5 were rewritten at
        // t+60 (live until t+160); keys 5..10 expired at t+100.
        for k in 0..10 {
            want.push((k, 0, None));
            if k < 5 {
                want.push((k, 1, Some(0)));
                want.push((k, 2, Some(1)));
            } else {
                want.push((k, 2, None));
            }
        }
        want.sort();
        assert_eq!(got, want, "{backend:?}");
    }
}
