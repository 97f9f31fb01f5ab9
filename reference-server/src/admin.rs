//! The admin address: metrics, the worker table and the shop audit. Never on
//! the public port. The master serves it from its single-threaded poll loop
//! (no async runtime there), the single process from its event loop; both
//! answer through [`route`].

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// What the admin routes read from.
pub trait AdminSource {
    fn metrics(&self) -> String;
    fn workers(&self) -> serde_json::Value;
    fn audit(&self) -> anyhow::Result<String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

const JSON: &str = "application/json";

fn json_error(status: u16, msg: &str) -> AdminResponse {
    AdminResponse { status, content_type: JSON, body: serde_json::json!({ "error": msg }).to_string() }
}

/// Route one admin request.
pub fn route(method: &str, target: &str, src: &dyn AdminSource) -> AdminResponse {
    let path = target.split('?').next().unwrap_or(target);
    if method != "GET" && method != "HEAD" {
        return json_error(405, "admin endpoints are GET only");
    }
    match path {
        "/metrics" => AdminResponse {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: src.metrics(),
        },
        "/workers" => AdminResponse { status: 200, content_type: JSON, body: src.workers().to_string() },
        "/audit" => match src.audit() {
            Ok(body) => AdminResponse { status: 200, content_type: JSON, body },
            Err(e) => json_error(503, &format!("audit unavailable: {e:#}")),
        },
        "/healthz" => AdminResponse { status: 200, content_type: JSON, body: "{\"status\":\"ok\"}".into() },
        _ => json_error(404, "no such admin endpoint (try /metrics, /workers, /audit, /healthz)"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    }
}

/// Serialise as an HTTP/1.1 response that closes the connection.
pub fn to_http(resp: &AdminResponse, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(resp.body.as_bytes());
    }
    out
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_CONNS: usize = 64;
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    stream: TcpStream,
    opened: Instant,
    inbuf: Vec<u8>,
    out: Option<(Vec<u8>, usize)>,
    done: bool,
}

/// A tiny non-blocking HTTP/1.1 server for the master's poll loop: one
/// request per connection, then close.
pub struct AdminServer {
    listener: TcpListener,
    conns: Vec<Conn>,
    /// False once a binary upgrade handed over: the new master answers on
    /// the same (inherited) listener, and the old one only finishes what it
    /// accepted, so /metrics and /workers never come from a leaving master.
    accepting: bool,
}

impl AdminServer {
    pub fn new(listener: TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self { listener, conns: Vec::new(), accepting: true })
    }

    /// The listener's fd, for a new master to inherit (binary upgrade).
    pub fn listener_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }

    /// Leave new connections to another process sharing the listener.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Fds to poll and whether each wants to write.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, bool)> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        // When no connection can be taken, leave new ones in the backlog
        // rather than wake the loop for a listener we will not accept from.
        if self.has_room() {
            fds.push((self.listener.as_fd(), false));
        }
        fds.extend(self.conns.iter().map(|c| (c.stream.as_fd(), c.out.is_some())));
        fds
    }

    /// A new connection can be taken: a free place, or one to evict.
    fn has_room(&self) -> bool {
        self.accepting && (self.conns.len() < MAX_CONNS || self.oldest_waiting().is_some())
    }

    /// The connection that has waited longest without sending a whole
    /// request (an idle or slow client); one being answered is never evicted.
    fn oldest_waiting(&self) -> Option<usize> {
        self.conns.iter().enumerate().filter(|(_, c)| c.out.is_none()).min_by_key(|(_, c)| c.opened).map(|(i, _)| i)
    }

    /// Accept, read, answer and write whatever is ready, without blocking.
    pub fn pump(&mut self, src: &dyn AdminSource) {
        while self.has_room() {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // Full: close the longest-waiting idle connection, so a
                    // new one (a monitor's /healthz) is served now, not after
                    // idle ones time out (issue 18: 80 idle connections made
                    // /healthz take 5 s). A client sending its request at
                    // once is served within this pump; it would take
                    // MAX_CONNS newer connections to evict it.
                    let evict = if self.conns.len() >= MAX_CONNS { self.oldest_waiting() } else { None };
                    if let Some(i) = evict {
                        self.conns.swap_remove(i);
                    }
                    if stream.set_nonblocking(true).is_ok() {
                        let mut conn =
                            Conn { stream, opened: Instant::now(), inbuf: Vec::new(), out: None, done: false };
                        // A request already here is answered before more
                        // connections can push this one out.
                        conn.step(src);
                        self.conns.push(conn);
                    }
                }
                Err(_) => break,
            }
        }
        for conn in &mut self.conns {
            conn.step(src);
        }
        self.conns.retain(|c| !c.done && c.opened.elapsed() < CONN_TIMEOUT);
    }
}

impl Conn {
    fn step(&mut self, src: &dyn AdminSource) {
        if self.out.is_none() {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => {
                        self.done = true;
                        return;
                    }
                    Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.done = true;
                        return;
                    }
                }
                if self.inbuf.len() > MAX_HEAD {
                    break;
                }
            }
            let Some(end) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.inbuf.len() > MAX_HEAD {
                    self.out = Some((to_http(&json_error(431, "request head too large"), false), 0));
                }
                return;
            };
            let head = String::from_utf8_lossy(&self.inbuf[..end]).into_owned();
            let mut parts = head.lines().next().unwrap_or("").split_whitespace();
            let resp = match (parts.next(), parts.next()) {
                (Some(method), Some(target)) => {
                    let resp = route(method, target, src);
                    to_http(&resp, method == "HEAD")
                }
                _ => to_http(&json_error(400, "malformed request line"), false),
            };
            self.out = Some((resp, 0));
        }
        if let Some((bytes, written)) = &mut self.out {
            while *written < bytes.len() {
                match self.stream.write(&bytes[*written..]) {
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            self.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl AdminSource for Fake {
        fn metrics(&self) -> String {
            "m 1\n".into()
        }
        fn workers(&self) -> serde_json::Value {
            serde_json::json!([])
        }
        fn audit(&self) -> anyhow::Result<String> {
            anyhow::bail!("no store")
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/metrics", &Fake).body, "m 1\n");
        assert_eq!(route("GET", "/workers?x=1", &Fake).body, "[]");
        assert_eq!(route("GET", "/audit", &Fake).status, 503);
        assert_eq!(route("POST", "/metrics", &Fake).status, 405);
        assert_eq!(route("GET", "/nope", &Fake).status, 404);
        let wire = String::from_utf8(to_http(&route("GET", "/healthz", &Fake), false)).unwrap();
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        assert!(wire.ends_with("{\"status\":\"ok\"}"), "{wire}");
    }
}
