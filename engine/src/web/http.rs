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
//!
//! Connections are tasks of a single-threaded tokio runtime with hyper's
//! HTTP/1.1 on this thread: at most [`CONNECTIONS_MAX`] open, a request
//! head within `HEAD_TIMEOUT`. (tiny_http, used before, served each
//! keep-alive connection on a pool thread and could leave a new
//! connection's request queued behind idle ones: a browser's page load
//! then hung. `tests/web_api.rs` keeps idle connections open while it
//! asks on new ones.)

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam::channel::{Receiver, TryRecvError};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{JobState, Monitor, MonitorMsg, drain};

/// The largest request body accepted, in bytes.
pub(crate) const BODY_MAX: usize = 64 * 1024;
use crate::config::WEB_CONNECTIONS_MAX as CONNECTIONS_MAX;
/// How long a client may take to send a request's head. A connection
/// that sends nothing for this long is closed.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head buffered, in bytes.
const HEAD_MAX: usize = 16 * 1024;
/// How often the monitor folds in messages and samples rates, and the
/// stop signal is checked, when no request comes.
const TICK: Duration = Duration::from_millis(100);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What a route answers: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Bytes,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: Bytes::from(value.to_string()) }
    }
    fn error(status: u16, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }
    fn asset(content_type: &'static str, body: &'static str) -> Self {
        Self { status: 200, content_type, body: Bytes::from_static(body.as_bytes()) }
    }
    fn text(content_type: &'static str, body: String) -> Self {
        Self { status: 200, content_type, body: Bytes::from(body) }
    }
}

/// What every connection of the server shares (on its one thread).
struct Shared {
    monitor: RefCell<Monitor>,
    rx: Receiver<MonitorMsg>,
    token: Option<String>,
    bound: SocketAddr,
    /// Whether a savepoint asked through the API is under way.
    action_running: Arc<AtomicBool>,
}

impl Shared {
    /// Folds in what the job reported and samples rates (at most once per
    /// sample interval).
    fn refresh(&self) {
        let mut m = self.monitor.borrow_mut();
        drain(&mut m, &self.rx);
        m.sample();
    }
}

/// Serves until `stop` is dropped, folding monitor messages in between
/// requests. Connections are tasks of one single-threaded runtime: an idle
/// keep-alive connection costs a socket and a little memory, never a
/// thread, so no request waits behind another client's idle connection.
pub(super) fn serve(
    runtime: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    monitor: Monitor,
    rx: Receiver<MonitorMsg>,
    stop: Receiver<()>,
    token: Option<String>,
    bound: SocketAddr,
) {
    let shared = Rc::new(Shared {
        monitor: RefCell::new(monitor),
        rx,
        token,
        bound,
        action_running: Arc::new(AtomicBool::new(false)),
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, accept(listener, shared, stop));
}

/// Counts an open connection until dropped.
struct Open(Rc<Cell<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn accept(listener: std::net::TcpListener, shared: Rc<Shared>, stop: Receiver<()>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("web server: cannot listen: {e}");
            return;
        }
    };
    let open = Rc::new(Cell::new(0usize));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !matches!(stop.try_recv(), Err(TryRecvError::Empty)) {
                    break;
                }
                shared.refresh();
            }
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: try again after a tick
                        // rather than spin.
                        tracing::warn!("web server: cannot accept a connection: {e}");
                        tokio::time::sleep(TICK).await;
                        continue;
                    }
                };
                if open.get() >= CONNECTIONS_MAX {
                    tracing::debug!("web server: {CONNECTIONS_MAX} connections open; closing a new one");
                    continue;
                }
                open.set(open.get() + 1);
                let guard = Open(open.clone());
                let shared = shared.clone();
                tokio::task::spawn_local(async move {
                    let _open = guard;
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(respond(handle(req, &shared).await)) }
                    });
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .max_buf_size(HEAD_MAX)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!("web server: connection ended: {e}");
                    }
                });
            }
        }
    }
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let headers = [
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
    ];
    let mut response = Response::builder().status(reply.status);
    for (k, v) in headers {
        response = response.header(k, v);
    }
    response.body(Full::new(reply.body)).unwrap_or_else(|e| {
        tracing::error!("web server: cannot build a response: {e}");
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn header(req: &Request<Incoming>, name: impl hyper::header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A read-only route's reply, if `path` is one.
fn read_route(path: &str, m: &mut Monitor) -> Option<Reply> {
    Some(match path {
        "/" | "/index.html" => Reply::asset("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => Reply::asset("text/javascript; charset=utf-8", APP_JS),
        "/style.css" => Reply::asset("text/css; charset=utf-8", STYLE_CSS),
        "/api/overview" => Reply::json(200, &m.overview()),
        "/api/graph" => Reply::json(200, &m.graph_json()),
        "/api/operators" => Reply::json(200, &m.operators()),
        "/api/checkpoints" => Reply::json(200, &m.checkpoints_json()),
        "/api/exceptions" => Reply::json(200, &m.exceptions_json()),
        "/api/latency" => Reply::json(200, &m.latency_json()),
        "/metrics" => Reply::text("text/plain; version=0.0.4; charset=utf-8", m.prometheus()),
        _ => return None,
    })
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Reply {
    shared.refresh();
    if shared.bound.ip().is_loopback() && !loopback_host(header(&req, HOST), shared.bound.port()) {
        return Reply::error(403, "requests must name a loopback host");
    }
    let path = req.uri().path().to_string();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let post = *req.method() == Method::POST;
    let declared = header(&req, CONTENT_LENGTH).and_then(|n| n.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_MAX as u64) {
        return Reply::error(413, &format!("request body over {BODY_MAX} bytes"));
    }
    let read =
        std::panic::catch_unwind(AssertUnwindSafe(|| read_route(&path, &mut shared.monitor.borrow_mut())));
    match read {
        Ok(Some(reply)) => return if get { reply } else { Reply::error(405, "method not allowed (GET)") },
        Ok(None) => {}
        Err(_) => {
            // Nothing of the panic goes to the client; it is in the log.
            tracing::error!("web server: a request handler panicked");
            return Reply::error(500, "internal error");
        }
    }
    let action = match path.as_str() {
        "/api/cancel" => Action::Cancel,
        "/api/savepoint" => Action::Savepoint { stop: false },
        "/api/stop" => Action::Savepoint { stop: true },
        _ => return Reply::error(404, "not found"),
    };
    if !post {
        return Reply::error(405, "method not allowed (POST)");
    }
    if let Some(reply) = refuse(&req, shared.token.as_deref()) {
        return reply;
    }
    // At most BODY_MAX bytes, also for a body of no declared length.
    let body = match Limited::new(req.into_body(), BODY_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Reply::error(413, &format!("request body over {BODY_MAX} bytes"));
        }
        Err(e) => return Reply::error(400, &format!("cannot read the request body: {e}")),
    };
    act(shared, action, &body).await
}

/// Why a mutating request is refused, if it is: a foreign `Origin`, a
/// missing or wrong token.
fn refuse(req: &Request<Incoming>, token: Option<&str>) -> Option<Reply> {
    if let Some(origin) = header(req, hyper::header::ORIGIN) {
        let host = header(req, HOST).unwrap_or("");
        if origin != format!("http://{host}") {
            return Some(Reply::error(403, "cross-origin request refused"));
        }
    }
    let token = token?;
    match header(req, hyper::header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ")) {
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

async fn act(shared: &Shared, action: Action, body: &[u8]) -> Reply {
    let (stop, control, root) = {
        let mut m = shared.monitor.borrow_mut();
        if matches!(m.state, JobState::Finished | JobState::Failed | JobState::Cancelled) {
            return Reply::error(409, "the job is not running");
        }
        match action {
            Action::Cancel => {
                tracing::warn!("cancel requested through the REST API");
                m.cancel();
                return Reply::json(202, &serde_json::json!({ "cancelling": true }));
            }
            Action::Savepoint { stop } => (stop, m.control.clone(), m.checkpoint_dir.clone()),
        }
    };
    let Some(root) = root else {
        return Reply::error(409, "the job takes no checkpoints: start it with --checkpoint-dir");
    };
    let dir = match savepoint_dir(body, &root) {
        Ok(d) => d,
        Err(e) => return Reply::error(400, &e),
    };
    if shared.action_running.swap(true, Ordering::AcqRel) {
        return Reply::error(409, "another savepoint is in progress");
    }
    // A savepoint takes as long as a checkpoint: it waits on a thread of its
    // own, and this connection's task awaits the outcome while the server
    // keeps answering the others.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let running = shared.action_running.clone();
    let spawned = std::thread::Builder::new().name("brisk-web-action".into()).spawn(move || {
        let result = if stop { control.stop_with_savepoint(&dir) } else { control.savepoint(&dir) };
        running.store(false, Ordering::Release);
        // The client may be gone; the savepoint stands either way.
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        shared.action_running.store(false, Ordering::Release);
        return Reply::error(503, &format!("cannot start the savepoint thread: {e}"));
    }
    match rx.await {
        Ok(Ok(path)) => Reply::json(200, &serde_json::json!({ "savepoint": path, "stopped": stop })),
        Ok(Err(e)) => Reply::error(500, &e),
        Err(_) => Reply::error(500, "the savepoint thread ended without an outcome"),
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
