//! The accept loop and the drain, shared by cluster workers and the
//! single-process mode. Drain order (as in the tokio and hyper-util
//! examples): stop accepting -> let connections finish -> the caller's hard
//! deadline (the master's SIGKILL).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::accept::AcceptErrors;
use super::body;
use super::conn::{ConnState, Tracked};
use crate::handoff::{self, Received};
use crate::ipc::Counters;

/// Where connections come from: the shared listener, or (sticky balancing)
/// the master's hand-off socket carrying connections it accepted.
pub enum Source {
    Listener(TcpListener),
    Handoff(AsyncFd<std::os::fd::OwnedFd>),
}

impl From<TcpListener> for Source {
    fn from(l: TcpListener) -> Self {
        Self::Listener(l)
    }
}

impl Source {
    async fn next(&self) -> std::io::Result<TcpStream> {
        match self {
            Self::Listener(l) => l.accept().await.map(|(s, _peer)| s),
            Self::Handoff(sock) => loop {
                let mut guard = sock.readable().await?;
                match guard.try_io(|fd| recv_stream(fd.get_ref())) {
                    Ok(Ok(Some(stream))) => return Ok(stream),
                    // The master is gone: the IPC side drains us; accept nothing more.
                    Ok(Ok(None)) => std::future::pending::<()>().await,
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => continue,
                }
            },
        }
    }

    /// Connections the master passed before it ordered the drain: still in
    /// the hand-off queue, they are served (with `Connection: close`), never
    /// dropped by closing the socket.
    fn take_queued(&self) -> Vec<TcpStream> {
        let mut out = Vec::new();
        if let Self::Handoff(sock) = self {
            while let Ok(Some(stream)) = recv_stream(sock.get_ref()) {
                out.push(stream);
            }
        }
        out
    }
}

/// One passed connection; Ok(None) when the master closed the socket, and
/// `WouldBlock` when nothing is queued (what `AsyncFd::try_io` expects).
fn recv_stream(fd: &std::os::fd::OwnedFd) -> std::io::Result<Option<TcpStream>> {
    use std::os::fd::AsRawFd;
    match handoff::recv_fd(fd.as_raw_fd()).map_err(std::io::Error::from)? {
        Received::Conn(conn) => {
            let std_stream = std::net::TcpStream::from(conn);
            std_stream.set_nonblocking(true)?;
            TcpStream::from_std(std_stream).map(Some)
        }
        Received::Empty => Err(std::io::ErrorKind::WouldBlock.into()),
        Received::Closed => Ok(None),
    }
}

/// Counters and the draining flag of one serving process.
#[derive(Debug, Default)]
pub struct Shared {
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub connections: AtomicU64,
    pub draining: AtomicBool,
}

impl Shared {
    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
        }
    }
}

/// One request counted in [`Shared::in_flight`] for as long as this lives.
/// hyper drops the service future when the client goes away mid-request, so
/// a decrement written after the handler's `.await` would never run and the
/// gauge would leak (issue 18, item 5); `Drop` runs either way.
struct InFlightGauge(Arc<Shared>);

impl InFlightGauge {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection counted in [`Shared::connections`] from its accept until
/// its task ends, the TLS handshake included (a client stuck in one is
/// visible in `/workers`).
struct ConnGauge(Arc<Shared>);

impl ConnGauge {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(shared))
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub worker_id: String,
    pub keepalive_timeout: Duration,
    /// A request body must be complete this long after its head (`body.rs`).
    pub body_timeout: Duration,
    /// TEST ONLY: on drain, drop every connection at once.
    pub unsafe_drain: bool,
    /// TEST ONLY: on drain, drop every connection with nothing in flight.
    pub unsafe_close_idle: bool,
    /// TEST ONLY: every request leaks [`LEAK_BYTES`] and a descriptor.
    pub unsafe_leak: bool,
}

/// TEST ONLY (defect 8, `--unsafe-leak`): what each request leaks, besides
/// one open descriptor of /dev/null: 64 KiB, written (a page that is only
/// allocated is not resident), so 100 requests a second grow a worker by
/// about 22 GiB an hour.
pub const LEAK_BYTES: usize = 64 * 1024;

impl ServeConfig {
    /// The serving rules the command line sets, for the worker `worker_id`
    /// (a cluster worker's or the single process's).
    pub fn from_cli(cli: &crate::cli::Cli, worker_id: String) -> ServeConfig {
        ServeConfig {
            worker_id,
            keepalive_timeout: cli.keepalive_timeout,
            body_timeout: cli.body_timeout,
            unsafe_drain: cli.unsafe_drain,
            unsafe_close_idle: cli.unsafe_close_idle,
            unsafe_leak: cli.unsafe_leak,
        }
    }
}

/// Serve until `drain` is cancelled, then drain. Returns how long the drain
/// took. With `tls`, every connection is served after its handshake
/// (`crate::tls::handshake`); the drain rules are the same.
pub async fn serve(
    listener: impl Into<Source>,
    app: Router,
    shared: Arc<Shared>,
    cfg: ServeConfig,
    tls: Option<TlsAcceptor>,
    drain: CancellationToken,
) -> Duration {
    let listener: Source = listener.into();
    let tracker = TaskTracker::new();
    let worker_id = HeaderValue::from_str(&cfg.worker_id).unwrap_or(HeaderValue::from_static("unknown"));
    // `single`, or `HOST-single` with --host-id; worker ids end in a number.
    let who = if cfg.worker_id.ends_with(crate::single::WORKER_ID) {
        "[single]".to_string()
    } else {
        format!("[worker {}]", cfg.worker_id)
    };
    let unsafe_drain = cfg.unsafe_drain;
    let conns = Conns { app, shared: Arc::clone(&shared), cfg, worker_id, drain: drain.clone(), tls };
    let mut accept_errors = AcceptErrors::default();
    loop {
        tokio::select! {
            biased;
            () = drain.cancelled() => break,
            accepted = listener.next() => match accepted {
                Ok(stream) => {
                    if let Some(line) = accept_errors.succeeded() {
                        crate::log_line(&format!("{who} {line}"));
                    }
                    conns.spawn(&tracker, stream);
                }
                Err(e) => {
                    // EMFILE and friends: the connection stays queued in the
                    // shared backlog for another worker or a later accept.
                    let (line, delay) = accept_errors.failed(&e, Instant::now());
                    if let Some(line) = line {
                        crate::log_line(&format!("{who} {line}"));
                    }
                    // The drain must not wait for the pause.
                    tokio::select! {
                        () = drain.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    }
    let started = Instant::now();
    shared.draining.store(true, Ordering::SeqCst);
    for stream in listener.take_queued() {
        conns.spawn(&tracker, stream);
    }
    // Closing our copy of the shared listener loses nothing: the master and
    // the other workers hold the same socket, so its queue stays served.
    // A hand-off socket is empty now, and the master sends no more.
    drop(listener);
    if unsafe_drain {
        return started.elapsed();
    }
    tracker.close();
    tracker.wait().await;
    started.elapsed()
}

/// What every connection of one serving process is served with.
struct Conns {
    app: Router,
    shared: Arc<Shared>,
    cfg: ServeConfig,
    worker_id: HeaderValue,
    drain: CancellationToken,
    tls: Option<TlsAcceptor>,
}

impl Conns {
    /// Serve one accepted connection on its own task: at once when plain,
    /// after its (bounded) handshake with TLS.
    fn spawn(&self, tracker: &TaskTracker, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let counted = ConnGauge::new(&self.shared);
        let (app, shared, cfg) = (self.app.clone(), Arc::clone(&self.shared), self.cfg.clone());
        let (worker_id, drain) = (self.worker_id.clone(), self.drain.clone());
        let Some(acceptor) = &self.tls else {
            tracker.spawn(serve_conn(stream, counted, app, shared, cfg, worker_id, drain));
            return;
        };
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            // A failed handshake has no request to answer: the client
            // sees its own TLS error (bad trust, no shared version), or
            // was idle past the handshake timeout.
            if let Ok(tls) = crate::tls::handshake(&acceptor, stream, &drain).await {
                serve_conn(tls, counted, app, shared, cfg, worker_id, drain).await;
            }
        });
    }
}

/// How a connection's stream ends when the idle rule closes it.
trait IdleClose {
    /// Say so first (TLS close_notify), or just drop the socket (plain TCP:
    /// its FIN says it; the plain path stays as it always was).
    const CLOSE_NOTIFY: bool;
}

impl IdleClose for TcpStream {
    const CLOSE_NOTIFY: bool = false;
}

/// Over TLS an end without close_notify reads as a truncation to the client
/// (rustls: `UnexpectedEof`), so an idle close says it.
impl IdleClose for tokio_rustls::server::TlsStream<TcpStream> {
    const CLOSE_NOTIFY: bool = true;
}

/// How long an idle TLS connection may take to take its close_notify.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// One connection, plain or TLS: generic rather than boxed, so the plain
/// path stays exactly what it was (no indirection per read or write).
/// Responses with `Connection: close` (every one sent while draining) end
/// with hyper's shutdown of the stream, which over TLS is close_notify.
async fn serve_conn<S: AsyncRead + AsyncWrite + IdleClose + Unpin + Send + 'static>(
    stream: S,
    _counted: ConnGauge,
    app: Router,
    shared: Arc<Shared>,
    cfg: ServeConfig,
    worker_id: HeaderValue,
    drain: CancellationToken,
) {
    let state = ConnState::new();
    let io = TokioIo::new(Tracked::new(stream, Arc::clone(&state), cfg.worker_id.clone()));
    let svc_state = Arc::clone(&state);
    let svc_shared = Arc::clone(&shared);
    let svc_drain = drain.clone();
    let body_timeout = cfg.body_timeout;
    let leak = cfg.unsafe_leak;
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let guard = svc_state.begin();
        if leak {
            // TEST ONLY, defect 8: a leak per request, memory and a descriptor.
            std::mem::forget(vec![0x5au8; LEAK_BYTES]);
            std::mem::forget(std::fs::File::open("/dev/null"));
        }
        let shared = Arc::clone(&svc_shared);
        let worker_id = worker_id.clone();
        let answer = respond(app.clone(), req, Arc::clone(&shared), body_timeout, svc_drain.clone());
        async move {
            let mut resp = answer.await;
            shared.requests.fetch_add(1, Ordering::Relaxed);
            let headers = resp.headers_mut();
            headers.insert("x-worker-id", worker_id);
            if shared.draining.load(Ordering::SeqCst) {
                // hyper closes the connection after writing this response.
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            // The guard lives in the body, so the request counts as in flight
            // until hyper has written the last byte of it.
            let resp = resp.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &guard;
                    frame
                }))
            });
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Some(Duration::from_secs(30)))
        .serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let tick = (cfg.keepalive_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut close_idle = cfg.unsafe_close_idle;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = ticker.tick() => {
                if state.idle_expired(cfg.keepalive_timeout) {
                    if S::CLOSE_NOTIFY {
                        // Nothing in flight and idle, so hyper closes at
                        // once, through the stream's shutdown: close_notify.
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, conn.as_mut()).await;
                    }
                    break;
                }
            }
            () = drain.cancelled(), if cfg.unsafe_drain => break,
            // TEST ONLY, defect 2: "idle" as hyper's graceful shutdown sees
            // it, nothing in flight this instant, even if the last response
            // left a millisecond ago and the client's next request is on
            // the wire; that client gets a zero-byte EOF (module doc of conn.rs).
            () = drain.cancelled(), if close_idle => {
                close_idle = false;
                if state.nothing_in_flight() {
                    break;
                }
            }
        }
    }
}

/// One request's answer: refused by the Host check, or the app's, with
/// the body's deadline applied; counted in flight while it runs.
async fn respond(
    app: Router,
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
    body_timeout: Duration,
    drain: CancellationToken,
) -> axum::response::Response {
    let _gauge = InFlightGauge::new(&shared);
    if let Some(msg) = host_error(&req) {
        return closing_error(StatusCode::BAD_REQUEST, msg);
    }
    let (parts, body) = req.into_parts();
    let (body, expired) = body::limit(body, body_timeout, &drain);
    let Ok(resp) = app.oneshot(hyper::Request::from_parts(parts, body)).await;
    match expired.as_ref().and_then(|e| e.get()) {
        // Whatever the handler made of the cut body, the client gets 408,
        // and the connection closes: the rest of its body would otherwise
        // be read as the next request.
        Some(why) => closing_error(StatusCode::REQUEST_TIMEOUT, why),
        None => resp,
    }
}

/// RFC 9112, section 3.2: a server must answer 400 to an HTTP/1.1 request
/// without a `Host` header or with more than one (hyper checks neither).
fn host_error<B>(req: &hyper::Request<B>) -> Option<&'static str> {
    let hosts = req.headers().get_all(HOST).iter().count();
    if hosts > 1 {
        return Some("more than one Host header (RFC 9112, section 3.2)");
    }
    if hosts == 0 && req.version() == hyper::Version::HTTP_11 {
        return Some("HTTP/1.1 request without a Host header (RFC 9112, section 3.2)");
    }
    None
}

/// An error answer of the serving layer, shaped like the shop's
/// (`{"error": message}`, docs/SHOP_API.md), after which hyper closes the
/// connection.
fn closing_error(status: StatusCode, msg: &str) -> axum::response::Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    let len = HeaderValue::from(body.len());
    let mut resp = axum::response::Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The router sets Content-Length on its own responses; this one is made
    // outside it, and the body wrapper below hides its size from hyper.
    resp.headers_mut().insert(CONTENT_LENGTH, len);
    resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}
