//! A panic or error in a user function fails the job with an error naming the
//! operator and core; the job never hangs, even with unbounded sources
//! elsewhere.

use std::sync::mpsc;
use std::time::Duration;

use brisk::prelude::*;

/// Runs `job` on a helper thread and fails the test if it does not finish
/// within `limit` (a guard against hangs, not a way to wait for progress).
fn within<T: Send + 'static>(limit: Duration, job: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(job());
    });
    rx.recv_timeout(limit).expect("the job did not finish: it hangs")
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_panic_in_map_names_the_operator_and_core() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        let _ = env
            .from_collection((0..10_000u64).collect())
            .map(|i| if i == 7_777 { panic!("boom at {i}") } else { i })
            .name("explode")
            .collect();
        env.execute().unwrap_err()
    });
    match &err {
        JobError::UserFunction { operator, core, message } => {
            assert_eq!(operator, "explode");
            // 7 777 is in the second half of the collection: core 1's split.
            assert_eq!(*core, 1);
            assert!(message.contains("boom at 7777"), "{message}");
        }
        other => panic!("expected a user-function error, got {other}"),
    }
    assert!(err.to_string().contains("operator 'explode' failed on core 1"), "{err}");
}

#[derive(Clone)]
struct FailOnKey;

impl KeyedProcessFunction<u64, u64, u64> for FailOnKey {
    fn process_element(
        &mut self,
        v: u64,
        ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), UserError> {
        if *ctx.current_key() == 13 {
            return Err(format!("refusing key {}", ctx.current_key()).into());
        }
        out.collect(v);
        Ok(())
    }
}

#[test]
fn an_error_returned_by_a_process_function_fails_the_job() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        let _ = env
            .from_collection((0..1_000u64).collect())
            .key_by(|v: &u64| v % 20)
            .process(FailOnKey)
            .name("picky")
            .collect();
        env.execute().unwrap_err()
    });
    let msg = err.to_string();
    assert!(msg.contains("operator 'picky' failed on core") && msg.contains("refusing key 13"), "{msg}");
}

#[test]
fn a_panic_in_a_key_selector_names_the_keyed_operator() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        let _ = env
            .from_collection((0..1_000u64).collect())
            .key_by(|v: &u64| if *v == 500 { panic!("no key for {v}") } else { *v })
            .reduce(|a, b| a + b)
            .name("summing")
            .collect();
        env.execute().unwrap_err()
    });
    let msg = err.to_string();
    assert!(msg.contains("operator 'summing'") && msg.contains("no key for 500"), "{msg}");
}

#[test]
fn a_failure_on_one_core_stops_unbounded_sources_on_the_others() {
    for cores in [2, 3] {
        let err = within(LIMIT, move || {
            let env = StreamEnv::new(JobConfig::with_cores(cores));
            // Split s of an unbounded generator gets s, s + cores, ...: index
            // 1_000_001 belongs to a core other than 0 at 2 and 3 cores. No
            // exchange links the cores, so only cancellation stops the others.
            env.from_source(GeneratorSource::unbounded(|i| i))
                .map(|i: u64| if i == 1_000_001 { panic!("poison pill") } else { i })
                .name("pill")
                .sink_to(brisk::DiscardSink);
            env.execute().unwrap_err()
        });
        let msg = err.to_string();
        assert!(msg.contains("operator 'pill'") && msg.contains("poison pill"), "cores {cores}: {msg}");
    }
}

#[test]
fn a_failure_behind_an_exchange_does_not_hang_the_senders() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        env.from_source(GeneratorSource::unbounded(|i| i))
            .key_by(|i: &u64| i % 64)
            .reduce(|a, b| if b > 2_000_000 { panic!("overflow") } else { a.max(b) })
            .name("bounded max")
            .sink_to(brisk::DiscardSink);
        env.execute().unwrap_err()
    });
    assert!(err.to_string().contains("operator 'bounded max'"), "{err}");
}

#[derive(Clone)]
struct BadOpen;

impl KeyedProcessFunction<u64, u64, u64> for BadOpen {
    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<(), UserError> {
        let _a: ValueState<u64> = ctx.value_state("s")?;
        let _b: ListState<u64> = ctx.list_state("s")?;
        Ok(())
    }
    fn process_element(
        &mut self,
        v: u64,
        _ctx: &mut Context<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<(), UserError> {
        out.collect(v);
        Ok(())
    }
}

#[test]
fn a_state_registration_conflict_in_open_is_reported() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(1));
        let _ =
            env.from_collection(vec![1u64]).key_by(|v: &u64| *v).process(BadOpen).name("opener").collect();
        env.execute().unwrap_err()
    });
    let msg = err.to_string();
    assert!(
        msg.contains("operator 'opener'")
            && msg.contains("open failed")
            && msg.contains("already registered"),
        "{msg}"
    );
}

/// A sink whose asynchronous flush panics (user code that runs in a task of
/// its own, outside the operators' panic guards).
#[derive(Clone)]
struct PanickingFlush;

struct PanickingWriter {
    core: usize,
}

impl brisk::Sink<u64> for PanickingFlush {
    type Writer = PanickingWriter;
    fn name(&self) -> String {
        "panicking-flush".into()
    }
    fn create_writer(&self, ctx: &brisk::SinkContext) -> Result<PanickingWriter, brisk::SinkError> {
        Ok(PanickingWriter { core: ctx.core() })
    }
}

impl brisk::SinkWriter<u64> for PanickingWriter {
    fn write(&mut self, batch: &mut brisk::Batch<u64>) -> Result<(), brisk::SinkError> {
        batch.clear();
        Ok(())
    }
    async fn flush(&mut self, end: bool) -> Result<(), brisk::SinkError> {
        // The last core only: the others must not wait for it forever.
        if end && self.core == 0 {
            panic!("flush exploded on core {}", self.core);
        }
        Ok(())
    }
}

#[test]
fn a_panic_in_a_sinks_flush_fails_the_job() {
    for cores in [2, 1] {
        let err = within(LIMIT, move || {
            let env = StreamEnv::new(JobConfig::with_cores(cores));
            env.from_source(GeneratorSource::new(100_000, |i| i).with_splits(1))
                .key_by(|i: &u64| *i)
                .reduce(|a: u64, b: u64| a.max(b))
                .sink_to(PanickingFlush);
            env.execute().unwrap_err()
        });
        println!("{cores} cores: {err}");
        let err = err.to_string();
        assert!(err.contains("flush exploded on core 0") && err.contains("panicking-flush"), "{err}");
    }
}

#[test]
fn a_panic_in_a_source_reader_names_the_source() {
    let err = within(LIMIT, || {
        let env = StreamEnv::new(JobConfig::with_cores(2));
        let _ = env
            .from_source(GeneratorSource::new(10_000, |i| {
                if i == 5_000 { panic!("generator broke at {i}") } else { i }
            }))
            .collect();
        env.execute().unwrap_err().to_string()
    });
    assert!(err.contains("generator broke at 5000") && err.contains("operator 'generator'"), "{err}");
}
