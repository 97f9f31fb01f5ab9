//! One scrape over its own short-lived connection: a blocking HTTP/1.0 GET
//! with one deadline for connect, request and response together.
//!
//! Why not the shoppers' client (traffic/client.rs): it lives on the run's
//! runtime and its pool is the load; a scrape must never take a pooled
//! connection nor a turn on that runtime. Why not reqwest: a blocking client
//! would bring a second HTTP stack (and its own runtime thread) for one GET
//! per second. HTTP/1.0 with `Connection: close`: the body is delimited by
//! Content-Length, by the close, or (HAProxy's exporter does this even to
//! HTTP/1.0) chunked; httparse (already the engine's parser) reads the head
//! and the chunk sizes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An exposition larger than this is refused (HAProxy's with a few hundred
/// servers is about 1 MiB).
pub const MAX_BODY: usize = 16 << 20;

/// Where one endpoint is, resolved once before the run.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// For the Host header.
    pub authority: String,
    /// Path and query, e.g. "/metrics".
    pub path: String,
}

/// GET the endpoint; the body of a 200 answer, or why not (a gap).
pub fn get(e: &Endpoint, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no complete answer within {} ms", timeout.as_millis()))
    };
    let mut s = TcpStream::connect_timeout(&e.addr, left()?).map_err(|err| format!("connect to {}: {err}", e.addr))?;
    s.set_write_timeout(Some(left()?)).map_err(|err| err.to_string())?;
    let req =
        format!("GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n", e.path, e.authority);
    s.write_all(req.as_bytes()).map_err(|err| format!("sending the request: {err}"))?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        s.set_read_timeout(Some(left()?)).map_err(|err| err.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("no complete answer within {} ms", timeout.as_millis()));
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(format!("reading the answer: {err}")),
        }
        if buf.len() > MAX_BODY {
            return Err(format!("answer larger than {} MiB", MAX_BODY >> 20));
        }
        if let Some(body) = complete(&buf, false)? {
            return Ok(body);
        }
    }
    complete(&buf, true)?.ok_or_else(|| "connection closed before the answer was complete".into())
}

/// The body once `buf` holds a whole answer: a Content-Length's worth, or
/// without one everything up to the close (`eof`).
fn complete(buf: &[u8], eof: bool) -> Result<Option<String>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).map_err(|e| format!("not an HTTP answer: {e}"))? {
        httparse::Status::Partial if eof => return Err("connection closed inside the answer's head".into()),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) => n,
    };
    let status = resp.code.unwrap_or(0);
    if status != 200 {
        return Err(format!("HTTP status {status}"));
    }
    let header = |name: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let body = &buf[head..];
    if let Some(te) = header("transfer-encoding") {
        // HAProxy's exporter answers an HTTP/1.0 request chunked all the same.
        if !te.eq_ignore_ascii_case(b"chunked") {
            return Err(format!("unsupported Transfer-Encoding {:?}", String::from_utf8_lossy(te)));
        }
        return match dechunk(body)? {
            Some(b) => text(&b).map(Some),
            None if eof => Err("connection closed inside a chunked answer".into()),
            None => Ok(None),
        };
    }
    let len = header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    match len {
        Some(n) if body.len() < n => Ok(None),
        Some(n) => text(&body[..n]).map(Some),
        // Close-delimited: only whole once the connection closed; get() calls
        // again after EOF, where "partial" would be wrong, so answer now and
        // let the caller decide by whether the stream ended.
        None if eof => text(body).map(Some),
        None => Ok(None),
    }
}

/// A chunked body, once its last (zero-size) chunk is in; None until then.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let (at, size) = match httparse::parse_chunk_size(rest).map_err(|_| "bad chunk size in the answer")? {
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete(c) => c,
        };
        let size = usize::try_from(size).map_err(|_| "chunk too large")?;
        if size == 0 {
            // Trailers are not read: the body is complete.
            return Ok(Some(out));
        }
        let chunk = &rest[at..];
        if chunk.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&chunk[..size]);
        rest = &chunk[size + 2..];
    }
}

fn text(body: &[u8]) -> Result<String, String> {
    String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_by_length_by_close_and_chunked() {
        let by_len = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nup 1\n";
        assert_eq!(complete(by_len, false).unwrap().as_deref(), Some("up 1\n"));
        assert_eq!(complete(&by_len[..by_len.len() - 2], false).unwrap(), None, "partial");
        let by_close = b"HTTP/1.0 200 OK\r\n\r\nup 1\n";
        assert_eq!(complete(by_close, false).unwrap(), None, "not whole until the close");
        assert_eq!(complete(by_close, true).unwrap().as_deref(), Some("up 1\n"));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nup \r\n2\r\n1\n\r\n0\r\n\r\n";
        assert_eq!(complete(chunked, false).unwrap().as_deref(), Some("up 1\n"));
        assert_eq!(complete(&chunked[..chunked.len() - 5], false).unwrap(), None);
        assert!(complete(&chunked[..chunked.len() - 5], true).unwrap_err().contains("inside a chunked answer"));
        assert!(complete(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", false).unwrap_err().contains("503"));
        assert!(complete(b"SSH-2.0-OpenSSH\r\n\r\n", true).unwrap_err().contains("not an HTTP answer"));
    }
}
