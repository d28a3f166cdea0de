//! The HTTP side: a fixed route table over [`Monitor`], and the rules of
//! R16 (shared/RELIABILITY.md).
//!
//! - Only the routes below exist. Assets are compiled in; nothing is read
//!   from disk, and a path is compared as received (never decoded), so
//!   `../`, `%2e%2e/` and double encoding are just unknown paths: 404.
//! - Mutating calls are `POST`. With a token configured (required off
//!   loopback, see `JobConfig::web_token`) each needs `Authorization:
//!   Bearer TOKEN`: 401 without one, 403 with a wrong one. A request that
//!   carries an `Origin` other than its own host is refused (403), so a web
//!   page elsewhere cannot make a browser cancel a job on loopback.
//! - Bound to loopback, only requests naming a loopback host (`Host:
//!   127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`) are answered: a page
//!   elsewhere that rebinds its DNS name to 127.0.0.1 gets 403 and reads
//!   nothing.
//! - Request bodies are limited to [`BODY_MAX`] bytes: 413 beyond.
//! - Errors are one JSON line `{"error": "..."}`; a handler that panics
//!   answers 500 with no detail (the panic goes to the log, not the client).

use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam::channel::{Receiver, TryRecvError};
use tiny_http::{Header, Method, Request, Response};

use super::{JobState, Monitor, MonitorMsg, drain};

/// The largest request body accepted, in bytes.
pub(crate) const BODY_MAX: usize = 64 * 1024;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What a route answers: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: value.to_string() }
    }
    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }
    fn asset(content_type: &'static str, body: &str) -> Self {
        Self { status: 200, content_type, body: body.to_string() }
    }
}

/// Serves until `stop` is dropped, folding monitor messages in between
/// requests.
pub(super) fn serve(
    server: tiny_http::Server,
    mut monitor: Monitor,
    rx: Receiver<MonitorMsg>,
    stop: Receiver<()>,
    token: Option<String>,
    bound: std::net::SocketAddr,
) {
    let action_running = Arc::new(AtomicBool::new(false));
    loop {
        if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
            break;
        }
        drain(&mut monitor, &rx);
        monitor.sample();
        let req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("web server: cannot accept a request: {e}");
                continue;
            }
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if bound.ip().is_loopback() && !loopback_host(header(&req, "Host"), bound.port()) {
                return respond(req, Reply::error(403, "requests must name a loopback host"));
            }
            handle(req, &mut monitor, token.as_deref(), &action_running)
        }));
        if outcome.is_err() {
            // The request was consumed by the handler; the client sees the
            // connection close. Nothing of the panic goes to it.
            tracing::error!("web server: a request handler panicked");
        }
    }
}

fn respond(req: Request, reply: Reply) {
    let headers = [
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
    ];
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    for (k, v) in headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Err(e) = req.respond(response) {
        tracing::debug!("web server: cannot answer: {e}");
    }
}

fn header<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    req.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str())
}

fn handle(mut req: Request, m: &mut Monitor, token: Option<&str>, action_running: &Arc<AtomicBool>) {
    let path = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    let get = matches!(req.method(), Method::Get | Method::Head);
    let post = *req.method() == Method::Post;
    if req.body_length().is_some_and(|n| n > BODY_MAX) {
        return respond(req, Reply::error(413, &format!("request body over {BODY_MAX} bytes")));
    }
    let reads: Option<Reply> = match path.as_str() {
        "/" | "/index.html" => Some(Reply::asset("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(Reply::asset("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(Reply::asset("text/css; charset=utf-8", STYLE_CSS)),
        "/api/overview" => Some(Reply::json(200, &m.overview())),
        "/api/graph" => Some(Reply::json(200, &m.graph_json())),
        "/api/operators" => Some(Reply::json(200, &m.operators())),
        "/api/checkpoints" => Some(Reply::json(200, &m.checkpoints_json())),
        "/api/exceptions" => Some(Reply::json(200, &m.exceptions_json())),
        "/api/latency" => Some(Reply::json(200, &m.latency_json())),
        "/metrics" => Some(Reply::asset("text/plain; version=0.0.4; charset=utf-8", &m.prometheus())),
        _ => None,
    };
    if let Some(reply) = reads {
        return respond(req, if get { reply } else { Reply::error(405, "method not allowed (GET)") });
    }
    let action = match path.as_str() {
        "/api/cancel" => Action::Cancel,
        "/api/savepoint" => Action::Savepoint { stop: false },
        "/api/stop" => Action::Savepoint { stop: true },
        _ => return respond(req, Reply::error(404, "not found")),
    };
    if !post {
        return respond(req, Reply::error(405, "method not allowed (POST)"));
    }
    if let Some(reply) = refuse(&req, token) {
        return respond(req, reply);
    }
    // At most BODY_MAX bytes, also for a body of no declared length.
    let mut body = Vec::new();
    if let Err(e) = req.as_reader().take(BODY_MAX as u64 + 1).read_to_end(&mut body) {
        return respond(req, Reply::error(400, &format!("cannot read the request body: {e}")));
    }
    if body.len() > BODY_MAX {
        return respond(req, Reply::error(413, &format!("request body over {BODY_MAX} bytes")));
    }
    act(req, m, action, &body, action_running);
}

/// Why a mutating request is refused, if it is: a foreign `Origin`, a
/// missing or wrong token.
fn refuse(req: &Request, token: Option<&str>) -> Option<Reply> {
    if let Some(origin) = header(req, "Origin") {
        let host = header(req, "Host").unwrap_or("");
        if origin != format!("http://{host}") {
            return Some(Reply::error(403, "cross-origin request refused"));
        }
    }
    let token = token?;
    match header(req, "Authorization").and_then(|v| v.strip_prefix("Bearer ")) {
        None => Some(Reply::error(401, "this call needs 'Authorization: Bearer <token>'")),
        Some(given) if !same(given.as_bytes(), token.as_bytes()) => Some(Reply::error(403, "wrong token")),
        Some(_) => None,
    }
}

/// Whether `host` (a `Host` header) names this loopback server.
fn loopback_host(host: Option<&str>, port: u16) -> bool {
    let Some(host) = host else { return false };
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| host == format!("{h}:{port}") || (port == 80 && host == *h))
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum Action {
    Cancel,
    Savepoint { stop: bool },
}

fn act(req: Request, m: &mut Monitor, action: Action, body: &[u8], action_running: &Arc<AtomicBool>) {
    if matches!(m.state, JobState::Finished | JobState::Failed | JobState::Cancelled) {
        return respond(req, Reply::error(409, "the job is not running"));
    }
    match action {
        Action::Cancel => {
            tracing::warn!("cancel requested through the REST API");
            m.cancel();
            respond(req, Reply::json(202, &serde_json::json!({ "cancelling": true })))
        }
        Action::Savepoint { stop } => {
            let Some(root) = m.checkpoint_dir.clone() else {
                return respond(
                    req,
                    Reply::error(409, "the job takes no checkpoints: start it with --checkpoint-dir"),
                );
            };
            let dir = match savepoint_dir(body, &root) {
                Ok(d) => d,
                Err(e) => return respond(req, Reply::error(400, &e)),
            };
            if action_running.swap(true, Ordering::AcqRel) {
                return respond(req, Reply::error(409, "another savepoint is in progress"));
            }
            // A savepoint takes as long as a checkpoint: wait on a thread of
            // its own, so the API keeps answering meanwhile.
            let (control, running) = (m.control.clone(), action_running.clone());
            let spawned = std::thread::Builder::new().name("brisk-web-action".into()).spawn(move || {
                let result = if stop { control.stop_with_savepoint(&dir) } else { control.savepoint(&dir) };
                running.store(false, Ordering::Release);
                let reply = match result {
                    Ok(path) => Reply::json(200, &serde_json::json!({ "savepoint": path, "stopped": stop })),
                    Err(e) => Reply::error(500, &e),
                };
                respond(req, reply);
            });
            if let Err(e) = spawned {
                action_running.store(false, Ordering::Release);
                tracing::warn!("web server: cannot start the savepoint thread: {e}");
            }
        }
    }
}

/// The savepoint directory: `{"dir": "..."}` from the body, or
/// `<checkpoint_dir>/savepoints/savepoint-<epoch ms>`.
fn savepoint_dir(body: &[u8], root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(root.join("savepoints").join(format!("savepoint-{}", super::epoch_ms())));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON ({e}); expected {{\"dir\": PATH}}"))?;
    match v.get("dir") {
        None => Ok(root.join("savepoints").join(format!("savepoint-{}", super::epoch_ms()))),
        Some(serde_json::Value::String(d)) if !d.is_empty() => Ok(std::path::PathBuf::from(d)),
        Some(_) => Err("\"dir\" must be a non-empty string".into()),
    }
}
