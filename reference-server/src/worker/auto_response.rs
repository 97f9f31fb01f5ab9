//! hyper's own error answers, rewritten into the API's shape.
//!
//! When hyper cannot parse a request head it answers by itself (400 bad
//! request line or header, 414 target over 65,534 bytes, 431 more than 100
//! header fields or a head over its buffer) and closes, without ever calling
//! our service: `HTTP/1.1 431 ...`, `connection: close`, `content-length: 0`,
//! no `X-Worker-Id`, no JSON error (issue 18). hyper 1 has no hook for these
//! answers, so the connection's IO wrapper (`conn.rs`, `Tracked`) shows each
//! write that may start one to [`rewrite`], and sends our version instead.
//!
//! A write is hyper's own answer only if all of these hold: nothing is in
//! flight on the connection (hyper answers so only before it called the
//! service for that request), the write starts with `HTTP/1.1 4`, and its
//! head has no `x-worker-id` (every response of ours has one). Response
//! bodies here are JSON or event streams, never an HTTP head.
//!
//! Not for: answers our service makes (they get the header in `serve.rs`).

/// Our replacement for hyper's automatic error answer at the start of
/// `buf`, and how many bytes of `buf` that answer's head took; None when
/// `buf` does not start with one.
pub fn rewrite(buf: &[u8], worker_id: &str) -> Option<(Vec<u8>, usize)> {
    const PREFIX: &[u8] = b"HTTP/1.1 4";
    if !buf.starts_with(PREFIX) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("\r\nx-worker-id:") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let (reason, msg) = match status {
        400 => ("Bad Request", "malformed request head: bad request line, header or HTTP version"),
        414 => ("URI Too Long", "request target too long (at most 65534 bytes)"),
        431 => {
            ("Request Header Fields Too Large", "request head too large (at most 100 header fields and about 400 KiB)")
        }
        _ => return None,
    };
    let body = serde_json::json!({ "error": msg }).to_string();
    let out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-worker-id: {worker_id}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((out.into_bytes(), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_431_becomes_json_with_the_worker_id() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\
                      date: Fri, 04 Dec 2026 22:23:33 GMT\r\n\r\n";
        let (out, used) = rewrite(hyper, "7").expect("hyper's own answer");
        assert_eq!(used, hyper.len());
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{text}");
        assert!(text.contains("\r\nx-worker-id: 7\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).expect("a body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("too large")), "{text}");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())), "{text}");
    }

    #[test]
    fn our_own_answers_and_bodies_pass_through() {
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\
                     x-worker-id: 1\r\n\r\n";
        assert_eq!(rewrite(ours, "1"), None, "has x-worker-id");
        assert_eq!(rewrite(b"{\"error\":\"x\"}", "1"), None, "a body");
        assert_eq!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", "1"), None, "not an error");
        assert_eq!(rewrite(b"HTTP/1.1 400 Bad Req", "1"), None, "an incomplete head");
    }
}
