//! The harness's one HTTP/1.1 client path: connect, send one request, read one
//! response, and classify how the attempt ended.
//!
//! Why not reqwest or hyper's client: the ledger must tell apart "refused",
//! "reset before the response", "closed before the response on a reused
//! keep-alive connection", "truncated body" and "timeout", and must know
//! whether a connection was reused. reqwest hides reuse and flattens these
//! kinds; hyper's `client::conn` keeps them but puts a channel hop and a
//! second task between the shopper and its socket on every request, which
//! costs CPU the speed target (wrk's rate on one core) does not leave. So the
//! shopper's task owns its socket and parses with `httparse` (hyper's own
//! parser). Each failure is classified where it is observed, by the phase the
//! attempt was in; docs/LEDGER.md lists the rules.
//!
//! https:// is the same code over a different byte stream ([`Stream`]: plain
//! TCP or rustls over TCP); the handshake is one more phase of a new
//! connection, classified by tls.rs, and is paid inside the attempt's
//! deadline and latency like the TCP connect.
//!
//! Not here: pooling (engine.rs), retries (engine.rs), what a status means for
//! the step (engine.rs decides ok / refused / unexpected from the step), the
//! TLS configuration (tls.rs).

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use crate::outcome::FailureClass;
pub use crate::outcome::Handshake;
use crate::traffic::sse::Sse;
use crate::traffic::tls::{self, TlsConnect};

/// Largest response head or body the client accepts; beyond it the response is
/// a protocol error (a shop API never sends this much).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Where to connect and how to name the host.
#[derive(Debug)]
pub struct Connector {
    /// The first of `addrs` (what source-address spreading is decided for).
    pub addr: SocketAddr,
    /// Every address the target's name resolved to; new connections go to
    /// them in turn (IPv4 and IPv6 alike), so each load-balancer address
    /// carries its share and the ledger's `addr` says which one answered.
    pub addrs: Vec<SocketAddr>,
    next_addr: AtomicUsize,
    /// The `Host` header value (authority of the base URL).
    pub host: String,
    /// Source addresses to bind, round-robin. Empty: let the kernel choose.
    /// Used to spread connections over 127.0.0.0/8 when one source address's
    /// ephemeral ports are not enough.
    pub sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    /// Largest response accepted ([`MAX_RESPONSE_BYTES`] for shoppers).
    pub max_response_bytes: usize,
    /// `https://` targets: the handshake every new connection makes.
    pub tls: Option<TlsConnect>,
    /// What the TLS connections did (zero for plain http).
    pub tls_stats: TlsStats,
}

/// Counts over a run's TLS connections, for summary.json.
#[derive(Debug, Default)]
pub struct TlsStats {
    pub handshakes_full: AtomicU64,
    pub handshakes_resumed: AtomicU64,
    /// Connections the server ended without close_notify after a complete
    /// response (seen on an idle connection, or ending a close-delimited
    /// body). Not failures: every response on them was complete.
    pub unclean_closes: AtomicU64,
    /// Connections the server ended with close_notify, seen the same way.
    pub clean_closes: AtomicU64,
    /// The first refused certificate's problem, for the run's verdict.
    pub first_certificate_problem: OnceLock<String>,
}

impl Connector {
    pub fn new(addr: SocketAddr, host: String, sources: Vec<IpAddr>) -> Self {
        Connector {
            addr,
            addrs: vec![addr],
            next_addr: AtomicUsize::new(0),
            host,
            sources,
            next_source: AtomicUsize::new(0),
            tls: None,
            tls_stats: TlsStats::default(),
            max_response_bytes: MAX_RESPONSE_BYTES,
        }
    }

    /// Spreads new connections over `addrs` (all of a name's answers); the
    /// first is kept as [`Connector::addr`]. An empty list changes nothing.
    pub fn spread_over(mut self, addrs: Vec<SocketAddr>) -> Self {
        if let Some(first) = addrs.first() {
            self.addr = *first;
            self.addrs = addrs;
        }
        self
    }

    /// Makes every new connection a TLS one.
    pub fn with_tls(mut self, tls: Option<TlsConnect>) -> Self {
        self.tls = tls;
        self
    }

    /// The address the next new connection goes to.
    pub fn next_addr(&self) -> SocketAddr {
        match self.addrs.len() {
            0 | 1 => self.addr,
            n => self.addrs[self.next_addr.fetch_add(1, Ordering::Relaxed) % n],
        }
    }

    /// `source`: bind this address (a shopper's own, see [`send_from`]);
    /// None: the round-robin `sources`, or the kernel's choice.
    async fn connect(&self, addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
        let source = source.or_else(|| {
            (!self.sources.is_empty())
                .then(|| self.sources[self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len()])
        });
        let stream = match source {
            // A 127/8 source cannot reach an IPv6 address: let the kernel choose.
            Some(ip) if ip.is_ipv4() == addr.is_ipv4() => {
                let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
            _ => TcpStream::connect(addr).await?,
        };
        // Requests are small and sent whole; do not let Nagle hold them back.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Connects to the next address and, for https, completes the
    /// handshake (with `via`'s TLS session memory if it has one). `trace`
    /// learns the address and the handshake paid.
    async fn open(&self, via: Via<'_>, trace: &mut Trace) -> Result<Conn, TransportFailure> {
        let addr = self.next_addr();
        trace.addr = Some(addr);
        let tcp = self.connect(addr, via.source).await.map_err(|e| connect_failure(&e))?;
        let tls = match (&self.tls, via.tls) {
            (Some(_), Some(own)) => Some(own),
            (run, _) => run.as_ref(),
        };
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                trace.phase = Phase::Handshake;
                match tls.connector.connect(tls.server_name.clone(), tcp).await {
                    Ok(s) => {
                        let resumed = s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                        trace.handshake = if resumed { Handshake::Resumed } else { Handshake::Full };
                        let counter =
                            if resumed { &self.tls_stats.handshakes_resumed } else { &self.tls_stats.handshakes_full };
                        counter.fetch_add(1, Ordering::Relaxed);
                        Stream::Tls(Box::new(s))
                    }
                    Err(e) => {
                        let (class, detail) = tls::handshake_failure(&e);
                        if class == FailureClass::TlsCertificate {
                            let _ = self.tls_stats.first_certificate_problem.set(detail.clone());
                        }
                        return Err(fail(class, detail));
                    }
                }
            }
        };
        Ok(Conn {
            stream,
            peer: addr,
            buf: Vec::new(),
            last_used: Instant::now(),
            served: 0,
            limit: self.max_response_bytes,
        })
    }
}

/// How a shopper's own new connection is opened: from its own source
/// address (scenario `connections.addresses`) and, over https, with its own
/// session memory (tls.rs `TlsConnect::for_one_client`: a browser resumes
/// its own sessions, not other shoppers'). The default: the connector's
/// round-robin sources and the run's shared session cache (the pool).
#[derive(Clone, Copy, Default)]
pub struct Via<'a> {
    pub source: Option<IpAddr>,
    pub tls: Option<&'a TlsConnect>,
}

/// A connection's byte stream: plain TCP or TLS over TCP. The HTTP code
/// above it is the same for both.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open HTTP/1.1 connection with its read buffer.
pub struct Conn {
    stream: Stream,
    /// The target address it is connected to.
    pub peer: SocketAddr,
    buf: Vec<u8>,
    /// When the last response on it completed (for the idle timeout).
    pub last_used: Instant,
    /// Requests completed on this connection.
    pub served: u32,
    /// The connector's `max_response_bytes`.
    limit: usize,
}

impl Conn {
    /// Whether an idle connection still looks usable: not past the idle
    /// timeout, and the server has not closed it (or sent something
    /// unsolicited) while it sat in the pool. A real client does the same
    /// check (hyper's pool polls idle connections for closure); the race that
    /// remains, a close arriving while the request is in flight, is what the
    /// ledger reports as closed-before-response on a reused connection.
    /// Over TLS the look goes through rustls, so a close_notify counts as a
    /// close and a TCP close without one is counted in `stats`.
    pub fn usable(&mut self, now: Instant, idle_timeout: std::time::Duration, stats: &TlsStats) -> bool {
        if now.saturating_duration_since(self.last_used) >= idle_timeout {
            return false;
        }
        match &mut self.stream {
            Stream::Plain(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
            }
            Stream::Tls(s) => match tls::probe_idle(s) {
                tls::IdleTls::Open => true,
                tls::IdleTls::ClosedClean => {
                    stats.clean_closes.fetch_add(1, Ordering::Relaxed);
                    false
                }
                tls::IdleTls::ClosedUnclean => {
                    stats.unclean_closes.fetch_add(1, Ordering::Relaxed);
                    false
                }
                tls::IdleTls::Broken => false,
            },
        }
    }
}

impl Conn {
    /// Frees the read buffer of a connection that will sit idle for a while
    /// (a thinking shopper's); the next response allocates a fresh one.
    pub fn park(&mut self) {
        self.buf = Vec::new();
    }
}

/// One request to send. `headers` must not contain `Host` or `Content-Length`.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Option<&'a [u8]>,
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The body, when the caller asked to keep it.
    pub body: Option<Vec<u8>>,
    /// The `X-Worker-Id` header, when present.
    pub worker_id: Option<String>,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// How one attempt ended at the transport level.
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<Response, TransportFailure>,
    /// The request went out on a connection that had served earlier requests.
    pub reused: bool,
    /// The TLS handshake this attempt paid (none on a reused connection).
    pub handshake: Handshake,
    /// The target address it went to (None: it never got that far, e.g.
    /// no pool connection).
    pub addr: Option<SocketAddr>,
}

#[derive(Debug)]
pub struct TransportFailure {
    pub class: FailureClass,
    /// What was seen, for the event log (e.g. "read: Connection reset by peer").
    pub detail: String,
    /// For a failure after the head arrived (truncated body): its status.
    pub status: Option<u16>,
    pub worker_id: Option<String>,
}

fn fail(class: FailureClass, detail: impl Into<String>) -> TransportFailure {
    TransportFailure { class, detail: detail.into(), status: None, worker_id: None }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connect,
    Handshake,
    Send,
    Head,
    Body,
}

/// Sends `req` on `slot`'s connection (or a new one if `slot` is empty) and
/// reads the response, all before `deadline`. On return `slot` holds the
/// connection if it may be reused, and is empty otherwise.
pub async fn send(
    connector: &Connector,
    slot: &mut Option<Conn>,
    req: &Request<'_>,
    keep_body: bool,
    deadline: tokio::time::Instant,
    scratch: &mut Vec<u8>,
) -> Attempt {
    send_from(connector, Via::default(), slot, req, keep_body, deadline, scratch).await
}

/// [`send`], opening a new connection (if one is needed) the shopper's way
/// ([`Via`]): from its own address, so a target balancing by client IP
/// keeps it on one worker, and with its own TLS sessions.
pub async fn send_from(
    connector: &Connector,
    via: Via<'_>,
    slot: &mut Option<Conn>,
    req: &Request<'_>,
    keep_body: bool,
    deadline: tokio::time::Instant,
    scratch: &mut Vec<u8>,
) -> Attempt {
    let reused = slot.as_ref().is_some_and(|c| c.served > 0);
    let mut trace = Trace::of(slot.as_ref());
    let taken = slot.take();
    let outcome =
        tokio::time::timeout_at(deadline, exchange(connector, via, taken, req, keep_body, &mut trace, scratch)).await;
    let result = match outcome {
        Ok(Ok((conn, resp))) => {
            if resp.keep_alive {
                *slot = Some(conn);
            }
            Ok(resp)
        }
        Ok(Err(f)) => Err(f),
        Err(_elapsed) => Err(timed_out(trace.phase, "no complete response")),
    };
    Attempt { result, reused, handshake: trace.handshake, addr: trace.addr }
}

/// What an attempt went through, followed along so that a timeout or a
/// failure still says how far it got, where, and what handshake it paid.
struct Trace {
    phase: Phase,
    addr: Option<SocketAddr>,
    handshake: Handshake,
}

impl Trace {
    /// For an attempt on `conn` (None: a new connection).
    fn of(conn: Option<&Conn>) -> Trace {
        Trace { phase: Phase::Connect, addr: conn.map(|c| c.peer), handshake: Handshake::None }
    }
}

/// The failure of an attempt whose deadline passed in `phase`: a connect
/// timeout while connecting, else a response timeout (`what` did not come).
fn timed_out(phase: Phase, what: &str) -> TransportFailure {
    if phase == Phase::Connect {
        fail(FailureClass::ConnectTimeout, "connect did not complete within the step timeout")
    } else if phase == Phase::Handshake {
        // A starved server finishes its handshakes late as it accepts late:
        // the same class as a slow connect (nothing was sent either way).
        fail(FailureClass::ConnectTimeout, "TLS handshake did not complete within the step timeout")
    } else {
        fail(FailureClass::ResponseTimeout, format!("{what} within the step timeout ({phase:?})"))
    }
}

fn connect_failure(e: &io::Error) -> TransportFailure {
    let class = match e.kind() {
        ErrorKind::ConnectionRefused => FailureClass::ConnectRefused,
        ErrorKind::TimedOut => FailureClass::ConnectTimeout,
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => FailureClass::ResetBeforeResponse,
        // EADDRNOTAVAIL (out of ephemeral ports), EMFILE (out of fds) and the
        // like are the harness's own limits, not the server's fault.
        _ => FailureClass::LocalError,
    };
    fail(class, format!("connect: {e}"))
}

/// An I/O error before a response head was complete.
fn head_io_failure(e: &io::Error, what: &str) -> TransportFailure {
    let class = match e.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => FailureClass::ResetBeforeResponse,
        // EPIPE: the server had already closed its side when we wrote.
        ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => FailureClass::ClosedBeforeResponse,
        _ => FailureClass::LocalError,
    };
    fail(class, format!("{what}: {e}"))
}

/// Connects (or reuses `conn`), sends `req` and reads the response head;
/// `phase` follows along for the caller's timeout.
async fn send_head(
    connector: &Connector,
    via: Via<'_>,
    conn: Option<Conn>,
    req: &Request<'_>,
    trace: &mut Trace,
    scratch: &mut Vec<u8>,
) -> Result<(Conn, Head), TransportFailure> {
    let mut conn = match conn {
        Some(c) => c,
        None => connector.open(via, trace).await?,
    };
    trace.phase = Phase::Send;
    encode(req, &connector.host, scratch);
    conn.stream.write_all(scratch).await.map_err(|e| head_io_failure(&e, "write"))?;
    if matches!(conn.stream, Stream::Tls(_)) {
        // rustls buffers what it encrypts; the request is out only once flushed.
        conn.stream.flush().await.map_err(|e| head_io_failure(&e, "write"))?;
    }
    trace.phase = Phase::Head;
    conn.buf.clear();
    let head = read_head(&mut conn, req.method == "HEAD").await?;
    Ok((conn, head))
}

async fn exchange(
    connector: &Connector,
    via: Via<'_>,
    conn: Option<Conn>,
    req: &Request<'_>,
    keep_body: bool,
    trace: &mut Trace,
    scratch: &mut Vec<u8>,
) -> Result<(Conn, Response), TransportFailure> {
    let (mut conn, head) = send_head(connector, via, conn, req, trace, scratch).await?;
    let resp = read_body(&mut conn, head, keep_body, &mut trace.phase, &connector.tls_stats).await?;
    conn.last_used = Instant::now();
    conn.served += 1;
    Ok((conn, resp))
}

fn encode(req: &Request<'_>, host: &str, out: &mut Vec<u8>) {
    out.clear();
    // One allocation for the whole request instead of growing by doubling.
    let headers: usize = req.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    out.reserve(req.method.len() + req.path.len() + host.len() + headers + req.body.map_or(0, |b| b.len() + 64) + 32);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_type = false;
    for (k, v) in req.headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = req.body {
        if !has_type {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads more bytes into `conn.buf`. `Ok(0)` is end of stream. Over TLS,
/// rustls reports a TCP close without close_notify as `UnexpectedEof`; it
/// stays an error here, and the reader that can tell a complete response
/// from a cut one decides (see [`fill_to_close`]).
async fn fill(conn: &mut Conn) -> io::Result<usize> {
    if conn.buf.len() >= conn.limit {
        return Err(io::Error::other("response larger than the client accepts"));
    }
    if conn.buf.capacity() - conn.buf.len() < 2048 {
        conn.buf.reserve(conn.buf.capacity().max(4096));
    }
    conn.stream.read_buf(&mut conn.buf).await
}

/// [`fill`] for a body that ends when the connection does: over TLS, a
/// close without close_notify ends it too (it is how many servers close),
/// counted in `unclean_closes` rather than failed.
async fn fill_to_close(conn: &mut Conn, stats: &TlsStats) -> io::Result<usize> {
    match fill(conn).await {
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && matches!(conn.stream, Stream::Tls(_)) => {
            stats.unclean_closes.fetch_add(1, Ordering::Relaxed);
            Ok(0)
        }
        Ok(0) => {
            if matches!(conn.stream, Stream::Tls(_)) {
                stats.clean_closes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(0)
        }
        r => r,
    }
}

enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    len: usize,
    body: BodyKind,
    keep_alive: bool,
    worker_id: Option<String>,
}

/// Whether `haystack` contains `lower` (lowercase ASCII) in any case,
/// without a lowercased copy (every keep-alive response has a `Connection`
/// header).
fn contains_ignore_case(haystack: &[u8], lower: &[u8]) -> bool {
    haystack.windows(lower.len()).any(|w| w.eq_ignore_ascii_case(lower))
}

fn parse_head(buf: &[u8], is_head_request: bool) -> Result<Option<Head>, TransportFailure> {
    if buf.is_empty() {
        // Nothing read yet (every request's first look): incomplete.
        return Ok(None);
    }
    // Uninitialised: httparse fills only the headers it finds, so a response
    // does not pay for zeroing 64 headers (2 KB) on every parse.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(fail(FailureClass::ProtocolError, format!("response head: {e}"))),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut length = None;
    let mut chunked = false;
    let mut worker_id = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).ok().and_then(|s| s.trim().parse::<usize>().ok());
            match v {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Err(fail(FailureClass::ProtocolError, "invalid or conflicting content-length")),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = contains_ignore_case(h.value, b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if contains_ignore_case(h.value, b"close") {
                keep_alive = false;
            } else if contains_ignore_case(h.value, b"keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("x-worker-id") {
            worker_id = Some(String::from_utf8_lossy(h.value).into_owned());
        }
    }
    let body = if is_head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::None
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        keep_alive = false;
        BodyKind::UntilClose
    };
    Ok(Some(Head { status, len, body, keep_alive, worker_id }))
}

/// Reads a response head into `conn.buf`, skipping interim 1xx responses
/// (100 Continue).
async fn read_head(conn: &mut Conn, is_head_request: bool) -> Result<Head, TransportFailure> {
    loop {
        match parse_head(&conn.buf, is_head_request)? {
            Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                conn.buf.drain(..h.len);
                continue;
            }
            Some(h) => return Ok(h),
            None => {}
        }
        match fill(conn).await {
            Ok(0) => {
                let detail = if conn.buf.is_empty() {
                    "connection closed before any response byte".to_string()
                } else {
                    format!("connection closed after {} bytes of a response head", conn.buf.len())
                };
                return Err(fail(FailureClass::ClosedBeforeResponse, detail));
            }
            Ok(_) => {}
            Err(e) => return Err(head_io_failure(&e, "read")),
        }
    }
}

/// Reads the body that `head` announced, into a complete response.
async fn read_body(
    conn: &mut Conn,
    head: Head,
    keep_body: bool,
    phase: &mut Phase,
    stats: &TlsStats,
) -> Result<Response, TransportFailure> {
    *phase = Phase::Body;
    let truncated = |detail: String, head: &Head| TransportFailure {
        class: FailureClass::TruncatedBody,
        detail,
        status: Some(head.status),
        worker_id: head.worker_id.clone(),
    };
    let mut pos = head.len;
    let body: Option<Vec<u8>> = match head.body {
        BodyKind::None => keep_body.then(Vec::new),
        BodyKind::Length(n) => {
            if n > conn.limit {
                return Err(fail(FailureClass::ProtocolError, format!("content-length {n} too large")));
            }
            while conn.buf.len() < pos + n {
                match fill(conn).await {
                    Ok(0) => {
                        let got = conn.buf.len() - pos;
                        return Err(truncated(format!("body ended after {got} of {n} bytes"), &head));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(truncated(
                            format!("body read after {} of {n} bytes: {e}", conn.buf.len() - pos),
                            &head,
                        ));
                    }
                }
            }
            let b = keep_body.then(|| conn.buf[pos..pos + n].to_vec());
            pos += n;
            b
        }
        BodyKind::UntilClose => loop {
            match fill_to_close(conn, stats).await {
                Ok(0) => break keep_body.then(|| conn.buf[pos..].to_vec()),
                Ok(_) => {}
                Err(e) => return Err(truncated(format!("close-delimited body read: {e}"), &head)),
            }
        },
        BodyKind::Chunked => {
            let mut out = Vec::new();
            loop {
                match next_chunk(&conn.buf, pos)? {
                    Chunk::Data { start, end, next } => {
                        if keep_body {
                            out.extend_from_slice(&conn.buf[start..end]);
                        }
                        pos = next;
                    }
                    Chunk::Last { next } => {
                        pos = next;
                        break;
                    }
                    Chunk::NeedMore(at) => match fill(conn).await {
                        Ok(0) => return Err(truncated(format!("chunked body ended {at}"), &head)),
                        Ok(_) => {}
                        Err(e) => return Err(truncated(format!("chunked body read: {e}"), &head)),
                    },
                }
            }
            keep_body.then_some(out)
        }
    };
    // Bytes beyond this response were never asked for: do not reuse the
    // connection, whatever the server said.
    let keep_alive = head.keep_alive && conn.buf.len() == pos;
    Ok(Response { status: head.status, body, worker_id: head.worker_id, keep_alive })
}

/// One step of decoding a chunked body (RFC 9112 section 7.1) held in `buf`
/// from `pos`: the one decoder of both the plain and the stream readers.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// A chunk's data is `buf[start..end]`; the next chunk starts at `next`.
    Data { start: usize, end: usize, next: usize },
    /// The last chunk and its trailers; the body ends at `next`.
    Last { next: usize },
    /// More bytes are needed; says where the body would end if none come.
    NeedMore(&'static str),
}

fn next_chunk(buf: &[u8], pos: usize) -> Result<Chunk, TransportFailure> {
    let (consumed, size) = match httparse::parse_chunk_size(&buf[pos..]) {
        Ok(httparse::Status::Complete(v)) => v,
        Ok(httparse::Status::Partial) => return Ok(Chunk::NeedMore("inside a chunk size")),
        Err(_) => return Err(fail(FailureClass::ProtocolError, "invalid chunk size line")),
    };
    let start = pos + consumed;
    if size == 0 {
        // Trailers (usually none), then the final CRLF.
        return Ok(match trailer_end(&buf[start..]) {
            Some(end) => Chunk::Last { next: start + end },
            None => Chunk::NeedMore("before its last CRLF"),
        });
    }
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > MAX_RESPONSE_BYTES {
        return Err(fail(FailureClass::ProtocolError, "chunk too large"));
    }
    let end = start + size;
    if buf.len() < end + 2 {
        return Ok(Chunk::NeedMore("inside a chunk"));
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(fail(FailureClass::ProtocolError, "chunk not followed by CRLF"));
    }
    Ok(Chunk::Data { start, end, next: end + 2 })
}

/// Length of the trailer section including its final empty line, if complete.
fn trailer_end(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

// ---------------------------------------------------------------------------
// Event streams (Server-Sent Events; the parser is sse.rs)
// ---------------------------------------------------------------------------

/// How a stream that was not a failure ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server ended the response (see `Sse::reconnect` for whether it
    /// asked the client to come back).
    Server,
    /// The watch time ran out first; the harness closed the connection.
    Watched,
}

/// A stream's head and how its body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamResponse {
    pub status: u16,
    pub worker_id: Option<String>,
    pub end: StreamEnd,
}

/// One request of a stream: the result, and the events read (also when the
/// stream failed: a retry resumes from the last id seen).
#[derive(Debug)]
pub struct StreamAttempt {
    pub result: Result<StreamResponse, TransportFailure>,
    pub reused: bool,
    pub handshake: Handshake,
    pub addr: Option<SocketAddr>,
    pub sse: Sse,
}

/// Sends `req` and reads its response as an event stream. Connect, send
/// and head must complete before `head_deadline`; the body is then read
/// until the server ends it, until `watch_end` (the harness closes the
/// connection: not a failure), or until no byte came for `idle` (a
/// `response_timeout`). A body cut (EOF inside its framing, a reset) is
/// `truncated_body`, unless the server had already sent `event: reconnect`:
/// then it said goodbye and the stream ended. The connection is never kept
/// (`slot` is empty on return): a stream that ended is closing.
#[allow(clippy::too_many_arguments)]
pub async fn send_stream(
    connector: &Connector,
    via: Via<'_>,
    slot: &mut Option<Conn>,
    req: &Request<'_>,
    head_deadline: tokio::time::Instant,
    watch_end: tokio::time::Instant,
    idle: std::time::Duration,
    sse: Sse,
    scratch: &mut Vec<u8>,
) -> StreamAttempt {
    let reused = slot.as_ref().is_some_and(|c| c.served > 0);
    let mut sse = sse;
    let mut trace = Trace::of(slot.as_ref());
    let taken = slot.take();
    let opened =
        tokio::time::timeout_at(head_deadline, send_head(connector, via, taken, req, &mut trace, scratch)).await;
    let (handshake, addr) = (trace.handshake, trace.addr);
    let (mut conn, head) = match opened {
        Ok(Ok(v)) => v,
        Ok(Err(f)) => return StreamAttempt { result: Err(f), reused, handshake, addr, sse },
        Err(_elapsed) => {
            let result = Err(timed_out(trace.phase, "no response head"));
            return StreamAttempt { result, reused, handshake, addr, sse };
        }
    };
    let result = match read_stream_body(&mut conn, &head, &mut sse, watch_end, idle, &connector.tls_stats).await {
        Ok(end) => Ok(StreamResponse { status: head.status, worker_id: head.worker_id.clone(), end }),
        Err(f) if f.class != FailureClass::ProtocolError && sse.reconnect.is_some() => {
            // The server asked for the reconnect, then the bytes after it were lost.
            Ok(StreamResponse { status: head.status, worker_id: head.worker_id.clone(), end: StreamEnd::Server })
        }
        Err(f) => Err(f),
    };
    StreamAttempt { result, reused, handshake, addr, sse }
}

enum Read {
    Bytes,
    Eof,
    Error(io::Error),
    Watched,
    Idle,
}

/// Reads more bytes, waiting at most until the watch ends or `idle` passes.
/// `to_close`: the body ends with the connection (see [`fill_to_close`]).
async fn fill_watched(
    conn: &mut Conn,
    watch_end: tokio::time::Instant,
    idle: std::time::Duration,
    to_close: Option<&TlsStats>,
) -> Read {
    let now = tokio::time::Instant::now();
    if now >= watch_end {
        return Read::Watched;
    }
    let idle_end = now + idle;
    let read = async {
        match to_close {
            Some(stats) => fill_to_close(conn, stats).await,
            None => fill(conn).await,
        }
    };
    match tokio::time::timeout_at(watch_end.min(idle_end), read).await {
        Ok(Ok(0)) => Read::Eof,
        Ok(Ok(_)) => Read::Bytes,
        Ok(Err(e)) => Read::Error(e),
        Err(_) if idle_end < watch_end => Read::Idle,
        Err(_) => Read::Watched,
    }
}

async fn read_stream_body(
    conn: &mut Conn,
    head: &Head,
    sse: &mut Sse,
    watch_end: tokio::time::Instant,
    idle: std::time::Duration,
    stats: &TlsStats,
) -> Result<StreamEnd, TransportFailure> {
    let cut = |class: FailureClass, detail: String| TransportFailure {
        class,
        detail,
        status: Some(head.status),
        worker_id: head.worker_id.clone(),
    };
    // Ends a read that brought no bytes: Ok(end) to stop, Err to fail.
    let stop = |r: Read, what: &str| -> Result<StreamEnd, TransportFailure> {
        match r {
            Read::Watched => Ok(StreamEnd::Watched),
            Read::Idle => {
                Err(cut(FailureClass::ResponseTimeout, format!("no stream byte for {} ms ({what})", idle.as_millis())))
            }
            Read::Eof => Err(cut(FailureClass::TruncatedBody, format!("stream ended {what}"))),
            Read::Error(e) => Err(cut(FailureClass::TruncatedBody, format!("stream read {what}: {e}"))),
            Read::Bytes => Ok(StreamEnd::Server), // not reached: callers handle Bytes
        }
    };
    conn.buf.drain(..head.len);
    match head.body {
        BodyKind::None => Ok(StreamEnd::Server),
        BodyKind::Length(n) => {
            let mut left = n;
            loop {
                let take = left.min(conn.buf.len());
                sse.feed(&conn.buf[..take]);
                conn.buf.drain(..take);
                left -= take;
                if left == 0 {
                    return Ok(StreamEnd::Server);
                }
                match fill_watched(conn, watch_end, idle, None).await {
                    Read::Bytes => {}
                    r => return stop(r, &format!("with {left} of {n} bytes to come")),
                }
            }
        }
        BodyKind::UntilClose => loop {
            sse.feed(&conn.buf);
            conn.buf.clear();
            match fill_watched(conn, watch_end, idle, Some(stats)).await {
                Read::Bytes => {}
                Read::Eof => return Ok(StreamEnd::Server),
                r => return stop(r, "in a close-delimited body"),
            }
        },
        BodyKind::Chunked => loop {
            match next_chunk(&conn.buf, 0)? {
                Chunk::Data { start, end, next } => {
                    sse.feed(&conn.buf[start..end]);
                    conn.buf.drain(..next);
                }
                Chunk::Last { next } => {
                    conn.buf.drain(..next);
                    return Ok(StreamEnd::Server);
                }
                Chunk::NeedMore(at) => match fill_watched(conn, watch_end, idle, None).await {
                    Read::Bytes => {}
                    r => return stop(r, &format!("{at} of a chunked body")),
                },
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_body_with_length_and_default_type() {
        let mut out = Vec::new();
        let headers = vec![("idempotency-key".to_string(), "k1".to_string())];
        let req = Request { method: "POST", path: "/checkout", headers: &headers, body: Some(b"{}") };
        encode(&req, "127.0.0.1:8080", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /checkout HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nidempotency-key: k1\r\n\
             content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn head_parsing_reads_framing_and_worker() {
        let h =
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-worker-id: 3\r\n\r\nhello", false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(matches!(h.body, BodyKind::Length(5)));
        assert!(h.keep_alive);
        assert_eq!(h.worker_id.as_deref(), Some("3"));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(matches!(h.body, BodyKind::Chunked));
        assert!(!h.keep_alive);
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert!(matches!(h.body, BodyKind::UntilClose));
        assert!(!h.keep_alive);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", false).unwrap().is_none());
        let e = parse_head(b"garbage\r\n\r\n", false).err().unwrap();
        assert_eq!(e.class, FailureClass::ProtocolError);
        let e = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n", false).err().unwrap();
        assert_eq!(e.class, FailureClass::ProtocolError);
    }

    #[test]
    fn chunks_are_decoded_one_step_at_a_time() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(next_chunk(body, 0).unwrap(), Chunk::Data { start: 3, end: 6, next: 8 });
        assert_eq!(next_chunk(body, 8).unwrap(), Chunk::Last { next: 13 });
        assert_eq!(next_chunk(b"3\r\nab", 0).unwrap(), Chunk::NeedMore("inside a chunk"));
        assert_eq!(next_chunk(b"3", 0).unwrap(), Chunk::NeedMore("inside a chunk size"));
        assert_eq!(next_chunk(b"0\r\nx-t: 1\r\n", 0).unwrap(), Chunk::NeedMore("before its last CRLF"));
        assert_eq!(next_chunk(b"3\r\nabcXY", 0).unwrap_err().class, FailureClass::ProtocolError);
        assert_eq!(next_chunk(b"zz\r\n", 0).unwrap_err().class, FailureClass::ProtocolError);
    }

    /// A name with several DNS answers: new connections go to each in
    /// turn, and each attempt says which address it went to.
    #[tokio::test]
    async fn new_connections_are_spread_over_every_address() {
        let mut addrs = Vec::new();
        for ip in ["127.0.0.1", "127.0.0.2"] {
            let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
            addrs.push(l.local_addr().unwrap());
            tokio::spawn(async move {
                while let Ok((mut c, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = c.read(&mut buf).await;
                        let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                    });
                }
            });
        }
        let connector = Connector::new(addrs[0], "shop".into(), Vec::new()).spread_over(addrs.clone());
        let req = Request { method: "GET", path: "/", headers: &[], body: None };
        let mut seen = Vec::new();
        for _ in 0..4 {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            let a = send(&connector, &mut None, &req, false, deadline, &mut Vec::new()).await;
            assert_eq!(a.result.unwrap().status, 200);
            assert_eq!(a.handshake, Handshake::None, "plain http pays no handshake");
            seen.push(a.addr.unwrap());
        }
        assert_eq!(seen, vec![addrs[0], addrs[1], addrs[0], addrs[1]]);
    }

    #[test]
    fn trailer_end_finds_final_crlf() {
        assert_eq!(trailer_end(b"\r\n"), Some(2));
        assert_eq!(trailer_end(b"x-t: 1\r\n\r\n"), Some(10));
        assert_eq!(trailer_end(b"x-t: 1\r\n"), None);
    }
}
