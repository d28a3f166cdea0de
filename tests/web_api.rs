//! The REST API of a running job (`JobConfig::web_ui`): what it reports
//! (overview, graph, per-operator and per-core counters and watermarks,
//! checkpoints, Prometheus text), its actions (savepoint, stop with
//! savepoint, cancel), and R16 of shared/RELIABILITY.md: loopback by
//! default, a token for every mutating call, only embedded assets (a
//! traversal corpus gets 404), bodies limited (413), errors without stack
//! traces. Requests are written by hand on a TCP socket, so that paths go
//! out exactly as written (no client normalizes `../`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brisk::prelude::*;

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body`, reads the whole response (the server closes after it).
fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before taking the whole body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: body.to_string() }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, &format!("GET {path} HTTP/1.1"), b"")
}

fn post(addr: SocketAddr, path: &str, extra_headers: &str, body: &str) -> Reply {
    let mut head =
        format!("POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}", body.len());
    if !extra_headers.is_empty() {
        head.push_str("\r\n");
        head.push_str(extra_headers);
    }
    send(addr, &head, body.as_bytes())
}

/// A running job: a rate-limited generator keyed into a reduce, with
/// checkpoints and the web UI on a port the system picks.
struct Job {
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<Result<brisk::JobResult, brisk::JobError>>>,
    generated: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

fn start(token: Option<&str>) -> Job {
    start_on(token, |config| config)
}

/// [`start`], with `backend` adjusting the job's configuration.
fn start_on(token: Option<&str>, backend: impl FnOnce(JobConfig) -> JobConfig) -> Job {
    let dir = tempfile::tempdir().unwrap();
    let config = backend(JobConfig {
        pin_cores: false,
        checkpoint_dir: Some(dir.path().join("chk")),
        checkpoint_interval_ms: 100,
        web_ui: Some("127.0.0.1:0".parse().unwrap()),
        web_token: token.map(String::from),
        state_dir: Some(dir.path().join("state")),
        ..JobConfig::with_cores(2)
    });
    let generated = Arc::new(AtomicU64::new(0));
    let g = generated.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let env = StreamEnv::new(config);
        tx.send(env.control()).unwrap();
        env.from_source(
            GeneratorSource::new(u64::MAX / 2, move |i| {
                g.fetch_add(1, Ordering::Relaxed);
                (i % 100, i as i64)
            })
            .with_rate(20_000.0),
        )
        .name("numbers")
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(u64, i64), _| r.1),
        )
        .key_by(|r: &(u64, i64)| r.0)
        .reduce(|a: (u64, i64), b: (u64, i64)| (a.0, a.1.max(b.1)))
        .name("max per key")
        .sink_to(brisk::DiscardSink);
        env.execute()
    });
    let control = rx.recv().unwrap();
    let addr = wait_for("the web server", || control.web_address());
    Job { addr, thread: Some(thread), generated, dir }
}

impl Job {
    fn join(mut self) -> Result<brisk::JobResult, brisk::JobError> {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            // A test that failed midway: stop the job so the process ends.
            let _ = post(self.addr, "/api/cancel", "", "");
            let _ = t.join();
        }
    }
}

/// Polls `f` until it returns something (at most 60 s).
fn wait_for<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn the_api_reports_the_running_job() {
    let mut job = start(None);
    let a = job.addr;
    assert!(a.ip().is_loopback());
    // Overview.
    let o = get(a, "/api/overview");
    assert_eq!(o.status, 200);
    assert_eq!(o.header("content-type"), Some("application/json"));
    let o = o.json();
    assert_eq!(o["state"], "RUNNING");
    assert_eq!(o["cores"], 2);
    assert_eq!(o["monitor_messages_dropped"], 0, "the monitor's queue had room");
    assert!(o["state_memory"].is_null(), "no state memory figures on the heap backend: {o}");
    // Graph: source, timestamps, keyed reduce (hash exchange), sink.
    let g = get(a, "/api/graph").json();
    let nodes = g["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"numbers") && names.contains(&"max per key"), "{names:?}");
    let reduce = nodes.iter().find(|n| n["name"] == "max per key").unwrap();
    assert_eq!(reduce["inputs"][0]["partitioning"], "Hash");
    assert_eq!(reduce["chained"], false);
    assert_eq!(reduce["parallelism"], 2);
    // Per operator and core: records out and a watermark, once flowing.
    let ops = wait_for("records and watermarks on both cores", || {
        let ops = get(a, "/api/operators").json();
        let source = ops["operators"].as_array()?.iter().find(|o| o["name"] == "numbers")?.clone();
        let cores = source["per_core"].as_array()?;
        let flowing = cores.len() == 2 && cores.iter().all(|c| c["records_out"].as_u64().unwrap_or(0) > 0);
        let reduce = ops["operators"].as_array()?.iter().find(|o| o["name"] == "max per key")?.clone();
        let fed = reduce["records_in"].as_u64()? > 0
            && reduce["per_core"].as_array()?.iter().all(|c| c["records_in"].as_u64().unwrap_or(0) > 0);
        (flowing
            && fed
            && reduce["watermark"].is_i64()
            && source["rates_per_s"]["records_out"].as_f64()? > 0.0)
            .then_some(ops)
    });
    println!("operators: {}", ops["operators"][0]);
    // Where tasks spend their time, and what the exchange holds.
    let ops = wait_for("task time and queue figures", || {
        let ops = get(a, "/api/operators").json();
        let list = ops["operators"].as_array()?.clone();
        let source = list.iter().find(|o| o["name"] == "numbers")?;
        let reduce = list.iter().find(|o| o["name"] == "max per key")?;
        let timed = source["per_core"]
            .as_array()?
            .iter()
            .all(|c| c["busy_ratio"].is_f64() && c["idle_ratio"].is_f64());
        let queued = reduce["per_core"].as_array()?.iter().all(|c| {
            c["input_queue_capacity"].as_u64()
                == Some(2 * brisk::config::EXCHANGE_QUEUE_BATCHES_DEFAULT as u64)
        });
        (timed && queued).then_some(ops)
    });
    for o in ops["operators"].as_array().unwrap() {
        for c in o["per_core"].as_array().unwrap() {
            for k in ["busy_ratio", "backpressured_ratio", "idle_ratio"] {
                if let Some(r) = c[k].as_f64() {
                    assert!((0.0..=1.0).contains(&r), "{k} {r} in {c}");
                }
            }
        }
    }
    // Checkpoints complete and are listed with their figures.
    let cps = wait_for("a completed checkpoint", || {
        let c = get(a, "/api/checkpoints").json();
        (c["completed"].as_u64()? > 0).then_some(c)
    });
    let first = &cps["history"][0];
    assert_eq!(first["status"], "COMPLETED");
    // Alignment (the keyed exchange has a channel per core) happens within
    // the checkpoint.
    let (align, took) = (first["alignment_us"].as_u64().unwrap(), first["duration_ms"].as_u64().unwrap());
    assert!(align <= took * 1000 + 1000, "alignment {align} µs within {took} ms: {first}");
    assert!(first["id"].as_u64().unwrap() > 0 && first["triggered_ms"].as_i64().unwrap() > 0, "{first}");
    // Latency at the sink, from the generator's schedule.
    let lat = wait_for("latency at the sink", || {
        let l = get(a, "/api/latency").json();
        let s = l["sinks"].as_array()?.first()?.clone();
        (s["count"].as_u64()? > 0).then_some(s)
    });
    assert_eq!(lat["sink"], "discard");
    assert!(lat["p50_us"].as_u64().unwrap() <= lat["max_us"].as_u64().unwrap(), "{lat}");
    // Prometheus text.
    let m = get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(m.body.contains("# TYPE brisk_records_out counter"), "{}", m.body);
    assert!(m.body.contains("brisk_records_out{operator=\"numbers\",core=\"0\"}"), "{}", m.body);
    assert!(m.body.contains("brisk_checkpoints_completed "), "{}", m.body);
    assert!(
        m.body.contains("brisk_sink_latency_microseconds{sink=\"discard\",quantile=\"0.99\"}"),
        "{}",
        m.body
    );
    // The UI's assets.
    let page = get(a, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg id=\"graph\""));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'self'"));
    assert_eq!(get(a, "/app.js").status, 200);
    assert_eq!(get(a, "/style.css").status, 200);
    // Savepoint, then stop with one: the job ends.
    let sp = job.dir.path().join("sp-1");
    let r = post(a, "/api/savepoint", "", &format!("{{\"dir\": {:?}}}", sp.to_str().unwrap()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(sp.join("_manifest").exists(), "the savepoint was written");
    let stopped = job.dir.path().join("sp-stop");
    let r = post(a, "/api/stop", "", &format!("{{\"dir\": {:?}}}", stopped.to_str().unwrap()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stopped"], true);
    let reply = r.body.clone();
    let generated = job.generated.load(Ordering::Relaxed);
    // The directory outlives the job's handle.
    let _dir = std::mem::replace(&mut job.dir, tempfile::tempdir().unwrap());
    job.join().expect("a job stopped with a savepoint ends without error");
    assert!(stopped.join("_manifest").exists(), "{reply}");
    println!("{generated} records generated before the stop");
}

/// Under the log backend the overview sums the cores' state memory against
/// their budgets (whether a core is over is the monitor's unit test), and
/// `/metrics` has the gauges per core; on the heap backend there are none
/// (see [`the_api_reports_the_running_job`]).
#[test]
fn the_overview_reports_state_memory_on_the_log_backend() {
    let job = start_on(None, |config| JobConfig {
        state_backend: brisk::StateBackendKind::Log,
        state_memory_budget_bytes: 1 << 20,
        ..config
    });
    let a = job.addr;
    let memory = wait_for("the cores' state memory", || {
        let m = get(a, "/api/overview").json()["state_memory"].clone();
        (m["used_bytes"].as_i64()? > 0).then_some(m)
    });
    println!("state memory: {memory}");
    assert_eq!(memory["budget_bytes"], 2 << 20, "two cores' budgets");
    assert_eq!(memory["cores_over_budget"], 0, "a few KB cannot be evicted: {memory}");
    let unevictable = memory["unevictable_bytes"].as_i64().unwrap();
    assert!((0..=memory["used_bytes"].as_i64().unwrap()).contains(&unevictable), "{memory}");
    let metrics = get(a, "/metrics").body;
    for gauge in ["state_memory_used_bytes", "state_memory_unevictable_bytes", "state_memory_budget_bytes"] {
        for core in 0..2 {
            assert!(
                metrics.contains(&format!("brisk_{gauge}{{operator=\"(core)\",core=\"{core}\"}}")),
                "{gauge} of core {core} in /metrics"
            );
        }
    }
    assert_eq!(post(a, "/api/cancel", "", "").status, 202);
    assert!(job.join().expect_err("cancelled").is_cancellation());
}

#[test]
fn cancel_through_the_api_ends_the_job() {
    let job = start(None);
    let r = post(job.addr, "/api/cancel", "", "");
    assert_eq!(r.status, 202, "{}", r.body);
    let err = job.join().expect_err("a cancelled job ends with an error");
    assert!(err.is_cancellation(), "{err}");
}

#[test]
fn mutating_calls_need_the_token_and_a_same_origin() {
    let token = "0123456789abcdef-secret";
    let job = start(Some(token));
    let a = job.addr;
    // Reads need no token.
    assert_eq!(get(a, "/api/overview").status, 200);
    let r = post(a, "/api/cancel", "", "");
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post(a, "/api/cancel", "Authorization: Bearer wrong-token-0123456", "");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(a, "/api/savepoint", "Authorization: Basic abc", "");
    assert_eq!(r.status, 401, "{}", r.body);
    // A page elsewhere cannot make a browser act, token or not.
    let r =
        post(a, "/api/cancel", &format!("Authorization: Bearer {token}\r\nOrigin: http://evil.example"), "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(get(a, "/api/overview").json()["state"], "RUNNING", "nothing was cancelled");
    let r = post(a, "/api/cancel", &format!("Authorization: Bearer {token}\r\nOrigin: http://{a}"), "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(job.join().unwrap_err().is_cancellation());
}

#[test]
fn only_embedded_assets_are_served_and_bad_requests_get_clean_errors() {
    let job = start(None);
    let a = job.addr;
    let corpus = [
        "/../../../../etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%252e%252e/%252e%252e/etc/passwd",
        "/..%252f..%252fetc%252fpasswd",
        "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/app.js/../../Cargo.toml",
        "/./app.js/../../../etc/hostname",
        "//etc/passwd",
        "/assets/../Cargo.toml",
        "/api/../../README.md",
        "/index.html%00.png",
        "/..\\..\\etc\\passwd",
        "/Cargo.toml",
        "/engine/src/web/assets/app.js",
    ];
    for path in corpus {
        let r = get(a, path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.json()["error"], "not found", "{path}");
        assert!(!r.body.contains("root:") && !r.body.contains("[package]"), "{path} read a file: {}", r.body);
    }
    // DNS rebinding: a page elsewhere whose name now points at 127.0.0.1
    // sends its own name as Host, and reads nothing.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(b"GET /api/overview HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert!(!raw.contains("\"cores\""), "{raw}");
    let localhost = format!("localhost:{}", a.port());
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(
        format!("GET /api/overview HTTP/1.1\r\nHost: {localhost}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "localhost is fine: {raw}");
    // Wrong methods.
    assert_eq!(send(a, "DELETE /api/overview HTTP/1.1", b"").status, 405);
    assert_eq!(get(a, "/api/cancel").status, 405);
    // Bodies over the limit: declared, and streamed without a length.
    let big = "x".repeat(70 * 1024);
    let r = post(a, "/api/savepoint", "", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    let chunk = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let r = send(a, "POST /api/savepoint HTTP/1.1\r\nTransfer-Encoding: chunked", chunk.as_bytes());
    assert_eq!(r.status, 413, "{}", r.body);
    // A malformed body: a clear error, no stack trace.
    let r = post(a, "/api/savepoint", "", "{not json");
    assert_eq!(r.status, 400);
    for bad in [&r.body, &get(a, "/nope").body] {
        let v: serde_json::Value = serde_json::from_str(bad).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "one error field: {bad}");
        assert!(!bad.contains("panicked") && !bad.contains(".rs:") && !bad.contains("backtrace"), "{bad}");
    }
    assert_eq!(get(a, "/api/overview").json()["state"], "RUNNING", "still serving after all that");
}

/// Asks for `path` on an open connection and keeps it open: reads exactly
/// one response (head, then `Content-Length` bytes). `None` if the server
/// closed the connection or sent nothing for 20 s.
fn ask_keeping_alive(s: &mut TcpStream, addr: SocketAddr, path: &str) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}

/// A browser keeps its connections open between requests and opens a few
/// at once. Idle connections must not keep a new one's request waiting
/// (tiny_http, served before, could leave it queued behind them), and the
/// number of open connections is bounded.
#[test]
fn idle_connections_do_not_hold_up_new_ones_and_their_number_is_bounded() {
    let job = start(None);
    let a = job.addr;
    let mut held: Vec<TcpStream> = Vec::new();
    for round in 0..6 {
        // Some idle connections go away, so whatever served them is free
        // again; then a burst of new ones arrives at once.
        held.truncate(held.len() / 2);
        let burst: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(a).unwrap()).collect();
        for mut s in burst {
            let status = ask_keeping_alive(&mut s, a, "/api/exceptions");
            assert_eq!(status, Some(200), "round {round}: a new connection's request was not answered");
            held.push(s);
        }
        for s in held.iter_mut() {
            assert_eq!(
                ask_keeping_alive(s, a, "/api/overview"),
                Some(200),
                "round {round}: an idle connection"
            );
        }
    }
    // Up to the bound, every connection is served; beyond it, new ones are
    // closed unanswered, and the API still answers once some go.
    let limit = brisk::config::WEB_CONNECTIONS_MAX;
    while held.len() < limit {
        // The server may not have seen the dropped ones close yet.
        let s = wait_for("a connection under the bound served", || {
            let mut s = TcpStream::connect(a).ok()?;
            (ask_keeping_alive(&mut s, a, "/api/overview")? == 200).then_some(s)
        });
        held.push(s);
    }
    let mut over = TcpStream::connect(a).unwrap();
    assert_eq!(ask_keeping_alive(&mut over, a, "/api/overview"), None, "connection {} was served", limit + 1);
    held.truncate(limit / 2);
    wait_for("a new connection served again", || {
        let mut s = TcpStream::connect(a).ok()?;
        (ask_keeping_alive(&mut s, a, "/api/overview")? == 200).then_some(())
    });
    drop(held);
    let r = post(a, "/api/cancel", "", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(job.join().unwrap_err().is_cancellation());
}
