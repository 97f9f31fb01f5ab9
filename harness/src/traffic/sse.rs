//! Server-Sent Events: the incremental parser of a stream step's body. The
//! client (client.rs) feeds it the bytes it reads; it keeps the last event
//! id (sent as Last-Event-ID on a reconnect) and notes an `event: reconnect`.
//!
//! Not for: reading from the socket or deciding to reconnect (client.rs,
//! engine.rs).

/// An incremental Server-Sent Events parser (the WHATWG event-stream format):
/// lines end with LF, CRLF or CR; a blank line dispatches the event; `:`
/// starts a comment; `id:` sets the last event id (kept across events and
/// connections, as EventSource does); `event:` names the event (default
/// `message`); `data:` lines are joined with LF. `retry:` is ignored: the
/// scenario's `reconnect_delay` decides.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sse {
    line: Vec<u8>,
    /// The previous byte was a CR (so an LF right after it ends nothing).
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id_buffer: Option<String>,
    /// The last event id at the last dispatch (`Some("")`: reset by an empty `id:`).
    pub last_event_id: Option<String>,
    /// Events dispatched (with data).
    pub events: u64,
    /// The data of an `event: reconnect`, once one was dispatched: the
    /// server asked the client to come back (on drain, or when it lagged).
    pub reconnect: Option<String>,
}

impl Sse {
    /// A parser whose last event id starts as `last_event_id` (a reconnect
    /// keeps the id it sent until the new stream names another).
    pub fn resuming(last_event_id: Option<String>) -> Self {
        Sse { id_buffer: last_event_id.clone(), last_event_id, ..Sse::default() }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' => self.end_line(),
                b'\r' => {
                    self.end_line();
                    self.after_cr = true;
                }
                _ if self.line.len() < MAX_SSE_LINE => self.line.push(b),
                _ => {}
            }
        }
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&c| c == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.id_buffer = Some(value.into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        self.last_event_id.clone_from(&self.id_buffer);
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        self.events += 1;
        if event == "reconnect" {
            self.reconnect = Some(data);
        }
    }
}

/// Longest SSE line kept; the rest of a longer line is ignored.
const MAX_SSE_LINE: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_reads_ids_events_and_reconnect_across_splits() {
        let text = "retry: 1000\n\nevent: hello\ndata: {\"w\":1}\n\n: ping\n\nid: 7:1\r\nevent: stock\r\ndata: a\r\ndata: b\r\n\r\nid: 7:2\rdata:c\r\revent: reconnect\ndata: {\"reason\":\"draining\"}\n\n";
        // Fed whole and byte by byte (CRLF split across reads), the same result.
        let mut whole = Sse::default();
        whole.feed(text.as_bytes());
        let mut bytes = Sse::default();
        for b in text.as_bytes() {
            bytes.feed(std::slice::from_ref(b));
        }
        assert_eq!(whole, bytes);
        assert_eq!(whole.events, 4);
        assert_eq!(whole.last_event_id.as_deref(), Some("7:2"));
        assert_eq!(whole.reconnect.as_deref(), Some("{\"reason\":\"draining\"}"));
        // No reconnect without the event; an id without data still counts
        // once its block ends; an empty id resets it.
        let mut s = Sse::resuming(Some("7:9".into()));
        s.feed(b"event: end\ndata: x\n\n");
        assert_eq!((s.reconnect.as_deref(), s.last_event_id.as_deref(), s.events), (None, Some("7:9"), 1));
        s.feed(b"id: 8:1\n\n");
        assert_eq!((s.last_event_id.as_deref(), s.events), (Some("8:1"), 1));
        s.feed(b"id\n\n");
        assert_eq!(s.last_event_id.as_deref(), Some(""));
        // An incomplete block dispatches nothing.
        s.feed(b"event: reconnect\ndata: y\n");
        assert_eq!(s.reconnect, None);
    }
}
