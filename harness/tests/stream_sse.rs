//! Issue 7 (harness): stream steps. A step with `"stream": {"kind": "sse"}`
//! reads its body as Server-Sent Events, reconnects with `Last-Event-ID` when
//! the server ends it with `event: reconnect` (not a failure, not a retry),
//! and counts a stream cut without one as a failure of its class, retried per
//! policy. Against tiny in-test SSE servers, then the reference server's
//! `/live/stock` through a SIGHUP rolling restart (needs `cargo build -p
//! reference-server` in the same target dir). Loopback only; every server
//! the test starts is a task of the test's runtime or killed by the lifecycle.
#![allow(clippy::unwrap_used)]

mod chaos_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use harness::record::ledger::{AttemptRecord, OutcomeKind};

/// What one in-test server answers to one request.
#[derive(Clone, Copy)]
enum Plan {
    /// Fresh stream: events 1 and 2 then `event: reconnect` and a complete
    /// body. Resumed (Last-Event-ID): one event, `event: end`, complete body.
    ReconnectOnce,
    /// Fresh stream: event 1 then the connection is closed inside the chunked
    /// body. Resumed: `event: end`, complete body.
    CutOnce,
    /// Every request: event 1 then closed inside the chunked body.
    CutAlways,
}

/// A tiny SSE server on 127.0.0.1; records each request's Last-Event-ID.
struct SseServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SseServer {
    async fn start(plan: Plan) -> SseServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                n += 1;
                tokio::spawn(serve(sock, plan, n, log.clone()));
            }
        });
        SseServer { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

fn chunk(text: &str) -> String {
    format!("{:x}\r\n{text}\r\n", text.len())
}

async fn serve(mut sock: TcpStream, plan: Plan, conn: u64, log: Arc<Mutex<Vec<Option<String>>>>) {
    // One request per connection (the harness never reuses a stream's).
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let last_id = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("last-event-id").then(|| v.trim().to_string())
    });
    log.lock().unwrap().push(last_id.clone());
    let worker = if last_id.is_some() { "w-new" } else { "w-old" };
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nx-worker-id: {worker}\r\n\r\n"
    );
    out += &chunk("retry: 1000\n\nevent: hello\ndata: {}\n\n");
    let resumed = last_id.is_some();
    match (plan, resumed) {
        (Plan::ReconnectOnce, false) => {
            out += &chunk(&format!("id: c{conn}:1\nevent: stock\ndata: 1\n\n"));
            out += &chunk(": ping\n\n");
            out += &chunk(&format!("id: c{conn}:2\nevent: stock\ndata: 2\n\n"));
            out += &chunk("event: reconnect\ndata: {\"reason\":\"draining\"}\n\n");
            out += "0\r\n\r\n";
        }
        (Plan::CutOnce, false) | (Plan::CutAlways, _) => {
            out += &chunk(&format!("id: c{conn}:1\nevent: stock\ndata: 1\n\n"));
            // A chunk that announces more than it carries, then the close.
            out += "40\r\nid: c";
        }
        (_, true) => {
            out += &chunk(&format!("id: c{conn}:9\nevent: stock\ndata: 9\n\n"));
            out += &chunk("event: end\ndata: {\"reason\":\"watch over\"}\n\n");
            out += "0\r\n\r\n";
        }
    }
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

const WATCH: &str = r#""stream": {"kind": "sse", "watch": "3s", "reconnect_delay": "50ms", "max_reconnects": 5}"#;

fn events(dir: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_requested_reconnect_resumes_with_last_event_id_and_is_not_a_failure() {
    let srv = SseServer::start(Plan::ReconnectOnce).await;
    let dir = tempfile::tempdir().unwrap();
    let step = format!(r#""path": "/live", "headers": {{"accept": "text/event-stream"}}, {WATCH}"#);
    let json = support::scenario(&srv.url(), 4, 10.0, r#"{"model": "per_shopper"}"#, &step);
    let (s, recs) = support::run(&json, dir.path()).await;
    let t = &s.totals;
    let d = format!("{t:?}\n{recs:#?}");
    assert_eq!((t.operations, t.ok, t.dropped, t.refused), (4, 4, 0, 0), "{d}");
    assert_eq!((t.attempts, t.attempts_ok, t.attempts_failed), (8, 8, 0), "{d}");
    assert_eq!((t.first_attempt_failures, t.retries), (0, 0), "{d}");
    assert!(support::failures(&s).is_empty(), "{d}");
    assert_eq!(reconnects(&recs), 4, "{d}");
    assert_eq!(s.totals.reconnects, 4, "summary.json carries the count: {d}");
    assert_eq!(s.verdict.as_str(), "pass");
    // Each reconnect carried the last id of the stream it resumed.
    let seen = srv.seen();
    assert_eq!(seen.len(), 8, "{seen:?}");
    let resumed: Vec<&String> = seen.iter().flatten().collect();
    assert_eq!(resumed.len(), 4, "{seen:?}");
    assert!(resumed.iter().all(|id| id.starts_with('c') && id.ends_with(":2")), "{seen:?}");
    // One ledger record per connection, each with its worker, the reconnect
    // sent the delay after the first ended.
    for op in recs.iter().map(|r| r.op).collect::<std::collections::BTreeSet<_>>() {
        let a: Vec<_> = recs.iter().filter(|r| r.op == op).collect();
        assert_eq!(a.len(), 2, "{d}");
        let (first, second) = (a.iter().find(|r| r.attempt == 1).unwrap(), a.iter().find(|r| r.attempt == 2).unwrap());
        assert_eq!(first.worker.as_deref(), Some("w-old"));
        assert_eq!(second.worker.as_deref(), Some("w-new"));
        assert!(second.intended_ms >= first.end_ms + 49.0, "{d}");
        // The server ended the resumed stream long before the watch did.
        assert!(second.end_ms - first.intended_ms < 2000.0, "{d}");
    }
    let ev = events(dir.path(), "stream_reconnect");
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev.iter().all(|e| e["data"] == "{\"reason\":\"draining\"}"), "{ev:?}");
    let end = events(dir.path(), "streams_end");
    assert_eq!(end.len(), 1);
    assert_eq!(end[0]["reconnects"], 4, "{end:?}");
    assert!(events(dir.path(), "attempt_failed").is_empty());
}

/// The watched `/live` step, retried once when its stream is cut.
fn watch_retrying_truncated() -> String {
    format!(
        r#""path": "/live", {WATCH},
        "retry": {{"attempts": 2, "on": ["truncated_body"], "backoff": "20ms"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_without_reconnect_is_a_truncated_body_retried_with_last_event_id() {
    let srv = SseServer::start(Plan::CutOnce).await;
    let dir = tempfile::tempdir().unwrap();
    let step = watch_retrying_truncated();
    let json = support::scenario(&srv.url(), 3, 10.0, r#"{"model": "pool", "size": 4}"#, &step);
    let (s, recs) = support::run(&json, dir.path()).await;
    let t = &s.totals;
    let d = format!("{t:?}\n{recs:#?}");
    assert_eq!((t.operations, t.ok, t.dropped), (3, 3, 0), "{d}");
    assert_eq!(support::failures(&s), vec![("truncated_body".to_string(), 3)], "{d}");
    assert_eq!((t.first_attempt_failures, t.recovered, t.retries), (3, 3, 3), "{d}");
    assert_eq!(reconnects(&recs), 0, "{d}");
    // The failed attempt kept its status and worker; the retry resumed.
    let failed: Vec<_> = recs.iter().filter(|r| r.attempt == 1).collect();
    assert!(failed.iter().all(|r| r.status == Some(200) && r.worker.as_deref() == Some("w-old")), "{d}");
    let seen = srv.seen();
    assert_eq!(seen.iter().flatten().filter(|id| id.ends_with(":1")).count(), 3, "{seen:?}");
    assert!(events(dir.path(), "stream_reconnect").is_empty());
    assert_eq!(events(dir.path(), "attempt_failed").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_every_time_is_dropped_as_truncated_body() {
    let srv = SseServer::start(Plan::CutAlways).await;
    let dir = tempfile::tempdir().unwrap();
    let step = watch_retrying_truncated();
    let json = support::scenario(&srv.url(), 2, 10.0, r#"{"model": "per_shopper"}"#, &step);
    let (s, recs) = support::run(&json, dir.path()).await;
    let t = &s.totals;
    let d = format!("{t:?}\n{recs:#?}");
    assert_eq!((t.operations, t.ok, t.dropped, t.attempts), (2, 0, 2, 4), "{d}");
    assert_eq!(s.totals.dropped_by_class[&harness::outcome::FailureClass::TruncatedBody], 2, "{d}");
    assert_eq!(reconnects(&recs), 0, "{d}");
    assert!(s.validity.valid, "{:?}", s.validity);
}

#[test]
fn stream_fields_are_checked_with_their_path() {
    let base = |stream: &str, extra: &str| {
        support::scenario(
            "http://127.0.0.1:1",
            1,
            10.0,
            r#"{"model": "pool"}"#,
            &format!(r#""path": "/live", "stream": {stream}{extra}"#),
        )
    };
    let err = |json: String| harness::scenario::parse(&json).unwrap_err().to_string();
    let e = err(base(r#"{"kind": "longpoll", "watch": "1s"}"#, ""));
    assert!(
        e.contains("journeys[0].steps[0].stream.kind: unknown stream kind \"longpoll\" (expected one of sse)"),
        "{e}"
    );
    let e = err(base(r#"{"kind": "sse", "watch": "0s"}"#, ""));
    assert!(e.contains("journeys[0].steps[0].stream.watch: must be greater than 0s"), "{e}");
    let e = err(base(r#"{"kind": "sse"}"#, ""));
    assert!(e.contains("journeys[0].steps[0].stream") && e.contains("watch"), "{e}");
    let e = err(base(r#"{"kind": "sse", "watch": "1s", "reconnect": 3}"#, ""));
    assert!(e.contains("journeys[0].steps[0].stream.reconnect: unknown field"), "{e}");
    let e = err(base(r#"{"kind": "sse", "watch": "1s", "max_reconnects": 20000}"#, ""));
    assert!(e.contains("journeys[0].steps[0].stream.max_reconnects: 20000: must be 0..=10000"), "{e}");
    let e = err(base(r#"{"kind": "sse", "watch": "1s"}"#, r#", "extract": {"x": "/x"}"#));
    assert!(e.contains("journeys[0].steps[0].extract: a stream step's body"), "{e}");
    let e = err(base(r#"{"kind": "sse", "watch": "1s"}"#, r#", "headers": {"Last-Event-ID": "1"}"#));
    assert!(e.contains("journeys[0].steps[0].headers.Last-Event-ID: Last-Event-ID is set by the harness"), "{e}");
    let s = harness::scenario::parse(&base(r#"{"kind": "sse", "watch": "2s"}"#, "")).unwrap();
    let st = s.journeys[0].steps[0].stream.unwrap();
    assert_eq!(
        (st.watch, st.reconnect_delay, st.max_reconnects),
        (Duration::from_secs(2), Duration::from_millis(100), 10)
    );
    // The drain timeout covers the watch and every reconnect.
    assert!(harness::traffic::engine::longest_journey(&s) >= Duration::from_secs(2) + Duration::from_secs(10) * 11);
}

/// Watchers on `/live/stock` (no `for_ms`: only the drain or the watch ends
/// a stream) through a SIGHUP rolling restart of a sticky cluster.
const WATCHERS: &str = r#"{
  "name": "sse watchers",
  "seed": 11,
  "target": { "base_url": "http://127.0.0.1:1", "ready_path": "/healthz", "ready_timeout": "30s" },
  "shoppers": 30,
  "arrival": [ { "duration": "2s", "rate": 15 } ],
  "think": { "kind": "uniform", "min": "10ms", "max": "50ms" },
  "connections": { "model": "per_shopper", "idle_timeout": "1s", "addresses": 16 },
  "defaults": {
    "timeout": "5s",
    "retry": { "attempts": 3, "on": ["connect_refused", "reset_before_response", "closed_before_response", "truncated_body"], "backoff": "100ms" }
  },
  "journeys": [
    {
      "name": "watcher",
      "steps": [
        { "name": "view product", "path": "/products/door-1" },
        { "name": "watch", "path": "/live/stock?skus=door-1,door-2", "headers": { "accept": "text/event-stream" },
          "stream": { "kind": "sse", "watch": "3s", "reconnect_delay": "50ms", "max_reconnects": 10 } }
      ]
    }
  ],
  "gates": { "max_dropped": 0, "max_affinity_breaks": 0 },
  "chaos": [ { "name": "deploy", "at": "1500ms", "action": "signal_master", "signal": "SIGHUP" } ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_reconnect_through_a_rolling_restart_and_nothing_is_dropped() {
    use chaos_support::{free_port, reference_launch};
    let dir = tempfile::tempdir().unwrap();
    let mut s = harness::scenario::parse(WATCHERS).unwrap();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    // A 20 s drain timeout: a stream the drain did not end would hold its
    // worker (and the restart) that long before the SIGKILL.
    let extra = ["--balance", "sticky", "--live-interval", "50ms", "--drain-timeout", "20s"];
    s.target.launch = Some(reference_launch(dir.path(), port, admin, 2, &extra));
    let opts = harness::drive::run::RunOptions { out: Some(dir.path().join("run")), ..Default::default() };
    let lo = harness::drive::lifecycle::LifecycleOptions {
        chaos: harness::chaos::faults::ChaosOptions { settle: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    let r = harness::drive::lifecycle::run(s, &opts, &lo, Arc::new(harness::traffic::engine::Live::default()))
        .await
        .unwrap();
    let run_dir = dir.path().join("run");
    let recs = support::read_ledger(&run_dir.join(harness::record::ledger::LEDGER_FILE));
    let reconnects = reconnects(&recs);
    let d = format!(
        "totals: {:?}\nreconnects: {reconnects}\nfaults: {:#?}\naffinity: {:?}\nstop: {}\nduration: {} s",
        r.summary.totals, r.chaos.faults, r.chaos.affinity, r.chaos.target_stop, r.summary.run.duration_s
    );
    eprintln!("{d}");
    let t = &r.summary.totals;
    assert_eq!(t.dropped, 0, "{d}");
    assert_eq!(t.open_operations + t.open_attempts, 0, "{d}");
    assert!(r.summary.validity.valid, "{:?}", r.summary.validity);
    let arrived = r.summary.run.shoppers_arrived;
    assert_eq!(t.ok, arrived * 2, "{d}");
    assert!(reconnects > 0, "the restart ended no stream with a reconnect? {d}");
    assert_eq!(events(&run_dir, "stream_reconnect").len() as u64, reconnects, "{d}");
    // The reconnects named the new worker, and moved nobody outside the
    // restart's window.
    assert_eq!(r.chaos.affinity.breaks, 0, "{d}");
    // No stream held a draining worker until its SIGKILL: the restart was
    // over well inside the 20 s drain timeout, and so was the run.
    assert_eq!(r.chaos.faults.len(), 1, "{d}");
    let recovery = r.chaos.faults[0].recovery_ms().unwrap();
    assert!(recovery < 10_000.0, "{d}");
    assert!(r.summary.run.duration_s < 12.0, "{d}");
    assert!(r.chaos.target_stop.contains("gracefully"), "{d}");
    assert_eq!(r.summary.exit_code, 0, "{d}");
}

/// How many attempts of `records` were a stream's reconnects, from the
/// ledger file alone: attempts whose previous attempt of the same operation
/// ended ok (an ordinary step ends at its first ok attempt, so only a
/// stream's reconnect follows one). Checked against the summary's count.
fn reconnects(records: &[AttemptRecord]) -> u64 {
    let ok: std::collections::HashSet<(u64, u32)> =
        records.iter().filter(|r| r.outcome == OutcomeKind::Ok).map(|r| (r.op, r.attempt)).collect();
    records.iter().filter(|r| r.attempt > 1 && ok.contains(&(r.op, r.attempt - 1))).count() as u64
}
