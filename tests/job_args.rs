//! The standard job options (`brisk::cli::JobArgs`): what they set in the
//! job's configuration, and that a bad value is rejected with a message
//! naming the option.

use brisk::cli::JobArgs;
use brisk::prelude::*;
use clap::Parser;

/// A job's parser: its own option beside the standard ones.
#[derive(Parser, Debug)]
struct Cli {
    /// The job's own option.
    #[arg(long, default_value_t = 1)]
    events: u64,
    #[command(flatten)]
    job: JobArgs,
}

fn parse(args: &[&str]) -> Result<Cli, String> {
    Cli::try_parse_from(std::iter::once("job").chain(args.iter().copied())).map_err(|e| e.to_string())
}

#[test]
fn the_options_set_the_job_configuration() {
    let cli = parse(&[
        "--events",
        "5",
        "--cores",
        "2",
        "--checkpoint-dir",
        "/tmp/chk",
        "--restore",
        "latest",
        "--state-backend",
        "log",
        "--state-memory-budget",
        "1048576",
        "--full-checkpoints",
        "--execution-mode",
        "batch",
        "--web-ui",
        "127.0.0.1:9081",
        "--log-level",
        "info,brisk=debug",
    ])
    .unwrap();
    assert_eq!(cli.events, 5);
    let c = cli.job.config();
    assert_eq!(c.cores, Some(2));
    assert_eq!(c.checkpoint_dir.as_deref(), Some(std::path::Path::new("/tmp/chk")));
    assert_eq!(
        c.checkpoint_interval_ms,
        brisk::cli::CHECKPOINT_INTERVAL_MS_DEFAULT,
        "the default with a dir"
    );
    assert_eq!(c.restore, Some(RestoreFrom::Latest));
    assert_eq!(c.state_backend, brisk::StateBackendKind::Log);
    assert_eq!(c.state_memory_budget_bytes, 1 << 20);
    assert!(!c.incremental_checkpoints);
    assert_eq!(c.execution_mode, ExecutionMode::Batch);
    assert_eq!(c.web_ui, Some("127.0.0.1:9081".parse().unwrap()));
    assert_eq!(cli.job.log_level.as_deref(), Some("info,brisk=debug"));

    let c = parse(&["--checkpoint-dir", "d", "--checkpoint-interval-ms", "0"]).unwrap().job.config();
    assert_eq!(c.checkpoint_interval_ms, 0, "0: savepoints and the final checkpoint only");
    let c = parse(&["--web-ui"]).unwrap().job.config();
    assert_eq!(c.web_ui, Some("127.0.0.1:8081".parse().unwrap()), "--web-ui alone: loopback, Flink's port");
    let c = parse(&[]).unwrap().job.config();
    assert_eq!((c.cores, c.checkpoint_dir, c.checkpoint_interval_ms, c.web_ui), (None, None, 0, None));
}

#[test]
fn bad_values_are_rejected_naming_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cores", "0"], "--cores"),
        (&["--cores", "many"], "--cores"),
        (&["--web-ui", "localhost"], "--web-ui"),
        (&["--web-ui", "127.0.0.1:99999"], "--web-ui"),
        (&["--web-token", "short"], "--web-token"),
        (&["--log-level", "info,,=[["], "--log-level"),
        (&["--state-backend", "rocksdb"], "--state-backend"),
        (&["--execution-mode", "lazy"], "--execution-mode"),
        (&["--state-memory-budget", "12"], "--state-memory-budget"),
        (&["--checkpoint-interval-ms", "100"], "--checkpoint-dir"),
        (&["--checkpoint-dir", "d", "--checkpoint-interval-ms", "soon"], "--checkpoint-interval-ms"),
        (&["--checkpoint-dir", "d", "--checkpoint-interval-ms=-1"], "--checkpoint-interval-ms"),
        (&["--restore", "latest"], "--checkpoint-dir"),
    ];
    for (args, option) in cases {
        let err = parse(args).expect_err(&format!("{args:?} must be rejected"));
        assert!(err.contains(option), "{args:?}: the message names {option}: {err}");
    }
}

#[test]
fn a_web_ui_off_loopback_needs_a_token() {
    let run = |web_ui: &str, token: Option<&str>| {
        let config = JobConfig {
            web_ui: Some(web_ui.parse().unwrap()),
            web_token: token.map(String::from),
            pin_cores: false,
            ..JobConfig::with_cores(1)
        };
        let env = StreamEnv::new(config);
        env.from_collection(vec![1u64]).sink_to(brisk::DiscardSink);
        env.execute().map(|_| ()).map_err(|e| e.to_string())
    };
    let err = run("0.0.0.0:0", None).unwrap_err();
    assert!(
        err.contains("web_ui = 0.0.0.0:0 is not a loopback address") && err.contains("web_token"),
        "{err}"
    );
    let err = run("127.0.0.1:0", Some("short")).unwrap_err();
    assert!(err.contains("web_token"), "{err}");
}
