//! The run's one event log (`events.jsonl`) and the run clock.
//!
//! The engine (run milestones, every failed attempt) and the chaos injector
//! (`fault_start` / `fault_end`) write into the same log with the same clock,
//! so every failure can be placed relative to the fault that caused it. Each
//! line is one JSON object `{"t_ms": <ms since run start>, "kind": "...", ...fields}`.
//!
//! Not the ledger: the ledger (`ledger.rs`) has one record per attempt; this log
//! has events, which are rarer and free-form.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value};

/// The event log's file name in a run folder.
pub const EVENTS_FILE: &str = "events.jsonl";

/// A cheap-to-clone handle on the event log. `Send + Sync`.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    // None: events are counted but not written (tests, `EventLog::discard`).
    out: Mutex<Option<BufWriter<File>>>,
}

impl EventLog {
    /// Creates (truncates) `path` and starts the run clock now.
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::create_at(path, Instant::now())
    }

    /// Creates (truncates) `path`; the run clock's zero is `start`.
    pub fn create_at(path: &Path, start: Instant) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self::with(Some(BufWriter::new(file)), start))
    }

    /// Appends to `path` (created if missing); the run clock's zero is
    /// `start`. For a stage that adds to a log another stage wrote (the merge).
    pub fn append_at(path: &Path, start: Instant) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::with(Some(BufWriter::new(file)), start))
    }

    /// An event log that keeps the clock but writes nowhere.
    pub fn discard(start: Instant) -> Self {
        Self::with(None, start)
    }

    fn with(out: Option<BufWriter<File>>, start: Instant) -> Self {
        EventLog { inner: Arc::new(Inner { start, out: Mutex::new(out) }) }
    }

    /// The instant that is `t_ms == 0`.
    pub fn start(&self) -> Instant {
        self.inner.start
    }

    /// Milliseconds since the run started (fractional, microsecond resolution).
    pub fn now_ms(&self) -> f64 {
        self.ms_at(Instant::now())
    }

    /// Milliseconds from the run start to `at` (0 if `at` is earlier).
    pub fn ms_at(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.inner.start).as_micros() as f64 / 1000.0
    }

    /// Writes `{"t_ms": now, "kind": kind, ...fields}`. `fields` should be a
    /// JSON object; any other value is stored under the key `"value"`.
    /// Writing errors are reported once on stderr and then ignored: losing the
    /// event log must not stop the run (the ledger is the record of truth).
    pub fn emit(&self, kind: &str, fields: Value) {
        self.emit_at(self.now_ms(), kind, fields)
    }

    /// Like [`emit`](Self::emit) with an explicit time (ms since run start).
    pub fn emit_at(&self, t_ms: f64, kind: &str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("t_ms".into(), round_ms(t_ms));
        obj.insert("kind".into(), Value::String(kind.to_string()));
        match fields {
            Value::Object(m) => {
                for (k, v) in m {
                    if k != "t_ms" && k != "kind" {
                        obj.insert(k, v);
                    }
                }
            }
            Value::Null => {}
            other => {
                obj.insert("value".into(), other);
            }
        }
        let mut line = match serde_json::to_vec(&Value::Object(obj)) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut guard = match self.inner.out.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(w) = guard.as_mut()
            && let Err(e) = w.write_all(&line)
        {
            eprintln!("harness: cannot write the event log ({e}); further events are dropped");
            *guard = None;
        }
    }

    /// Flushes buffered events to the file.
    pub fn flush(&self) -> io::Result<()> {
        let mut guard = match self.inner.out.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

// Keep the file readable: microsecond resolution is plenty for events.
fn round_ms(t: f64) -> Value {
    let r = (t * 1000.0).round() / 1000.0;
    serde_json::Number::from_f64(r).map(Value::Number).unwrap_or(Value::Null)
}

/// Reads an `events.jsonl` file back (for the report and the attribution).
pub fn read(path: &Path) -> io::Result<Vec<Value>> {
    let f = File::open(path)?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_carry_time_kind_and_fields_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::create(&path).unwrap();
        let other = log.clone();
        log.emit("run_start", json!({"scenario": "smoke"}));
        std::thread::sleep(std::time::Duration::from_millis(3));
        other.emit("fault_start", json!({"fault": "k1", "pids": [1, 2], "kind": "ignored"}));
        log.emit("note", json!(5));
        log.flush().unwrap();
        let ev = read(&path).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0]["kind"], "run_start");
        assert_eq!(ev[0]["scenario"], "smoke");
        assert_eq!(ev[1]["kind"], "fault_start");
        assert_eq!(ev[1]["pids"], json!([1, 2]));
        assert_eq!(ev[2]["value"], 5);
        let t0 = ev[0]["t_ms"].as_f64().unwrap();
        let t1 = ev[1]["t_ms"].as_f64().unwrap();
        assert!(t1 >= t0 + 2.0, "{t0} {t1}");
    }

    #[test]
    fn discard_keeps_the_clock() {
        // The clock counts from the given start, not from when the log was made.
        let start = Instant::now();
        let log = EventLog::discard(start);
        log.emit("x", Value::Null);
        assert_eq!(log.ms_at(start + std::time::Duration::from_millis(1500)), 1500.0);
        assert_eq!(log.start(), start);
        log.flush().unwrap();
    }
}
