//! Purpose-built HTTP/1.1 servers for the engine tests, started in-process on
//! 127.0.0.1:0. Each misbehaves in one deterministic way and counts what it
//! did, so the tests can check the harness's ledger against the server's own
//! counts. Also a helper that runs a scenario through the harness's stages.
// Test helpers: a failure here is a test failure, so unwrap is the right tool.
#![allow(dead_code, clippy::unwrap_used)]

pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::drive::run::{RunOptions, conclude, execute, prepare};
use harness::judge::summary::Summary;
use harness::record::ledger::{self, AttemptRecord, LEDGER_FILE};
use harness::traffic::engine::Live;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Behavior {
    /// Answer 200 after a fixed delay.
    Delay(Duration),
    /// Every k-th accepted connection: read the request, then reset (RST).
    ResetEveryKthConnection(u64),
    /// Answer the first request of each connection (keep-alive), and close
    /// the connection without answering when a second request arrives on it.
    CloseOnSecondRequest,
    /// Answer the first request, then close right away although the
    /// response said nothing about closing.
    CloseAfterResponse,
    /// Announce 100 body bytes, send 10, close.
    Truncated,
    /// Every k-th request gets a 503.
    Status503EveryKth(u64),
    /// Requests received inside [from, until) (server clock) are never answered.
    SilentWindow { from: Duration, until: Duration },
    /// Requests received inside [from, until) are held until `until`, then answered.
    StallWindow { from: Duration, until: Duration },
    /// 503 the first time an Idempotency-Key is seen, 201 with an order on the next.
    FailFirstPerIdempotencyKey,
}

/// What the server did.
#[derive(Default, Debug)]
pub struct Counters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// Responses with status 2xx sent in full.
    pub ok: AtomicU64,
    pub resets: AtomicU64,
    pub closed_without_response: AtomicU64,
    pub truncated: AtomicU64,
    pub status_503: AtomicU64,
    /// Requests never answered (silent window).
    pub silent: AtomicU64,
    /// Requests held by the stall window.
    pub stalled: AtomicU64,
    pub idem_keys: Mutex<HashMap<String, u32>>,
    /// Every request as "METHOD path body", in arrival order.
    pub seen: Mutex<Vec<String>>,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    pub started: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(behavior: Behavior) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let n = c.connections.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(serve(stream, n, behavior.clone(), c.clone(), started));
            }
        });
        TestServer { addr, counters, started, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        f(&self.counters).load(Ordering::SeqCst)
    }
}

struct Req {
    idem: Option<String>,
    /// "METHOD path body".
    line: String,
}

/// Reads one request; `None` at a clean end of stream or on an error.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let mut len = 0usize;
            let mut idem = None;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                }
                if h.name.eq_ignore_ascii_case("idempotency-key") {
                    idem = Some(String::from_utf8_lossy(h.value).into_owned());
                }
            }
            let head = format!("{} {}", req.method.unwrap_or(""), req.path.unwrap_or(""));
            while buf.len() < n + len {
                let mut chunk = [0u8; 4096];
                let r = s.read(&mut chunk).await.ok()?;
                if r == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..r]);
            }
            let line = format!("{head} {}", String::from_utf8_lossy(&buf[n..n + len]));
            buf.drain(..n + len);
            return Some(Req { idem, line });
        }
        let mut chunk = [0u8; 4096];
        let r = s.read(&mut chunk).await.ok()?;
        if r == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..r]);
    }
}

/// Tokio's timer rounds up to the next millisecond; the delay server must
/// be exact, so it sleeps short and yields through the last 2 ms.
async fn precise_sleep(d: Duration) {
    let until = Instant::now() + d;
    if d > Duration::from_millis(2) {
        tokio::time::sleep(d - Duration::from_millis(2)).await;
    }
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

fn response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        503 => "Service Unavailable",
        _ => "Other",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-worker-id: w7\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn send_ok(s: &mut TcpStream, c: &Counters, status: u16, body: &str) -> bool {
    if s.write_all(&response(status, body)).await.is_ok() {
        c.ok.fetch_add(1, Ordering::SeqCst);
        true
    } else {
        false
    }
}

async fn serve(mut s: TcpStream, conn_no: u64, b: Behavior, c: Arc<Counters>, started: Instant) {
    let mut buf = Vec::new();
    let mut on_this_conn = 0u64;
    while let Some(req) = read_request(&mut s, &mut buf).await {
        let n = c.requests.fetch_add(1, Ordering::SeqCst) + 1;
        c.seen.lock().unwrap().push(req.line.clone());
        on_this_conn += 1;
        match &b {
            Behavior::Delay(d) => {
                precise_sleep(*d).await;
                if !send_ok(&mut s, &c, 200, "{\"ok\":true}").await {
                    return;
                }
            }
            Behavior::ResetEveryKthConnection(k) => {
                if conn_no % k == 0 {
                    c.resets.fetch_add(1, Ordering::SeqCst);
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    return; // dropped with linger 0: RST
                }
                if !send_ok(&mut s, &c, 200, "{}").await {
                    return;
                }
            }
            Behavior::CloseOnSecondRequest => {
                if on_this_conn >= 2 {
                    c.closed_without_response.fetch_add(1, Ordering::SeqCst);
                    let _ = s.shutdown().await;
                    return;
                }
                if !send_ok(&mut s, &c, 200, "{}").await {
                    return;
                }
            }
            Behavior::CloseAfterResponse => {
                send_ok(&mut s, &c, 200, "{}").await;
                let _ = s.shutdown().await;
                return;
            }
            Behavior::Truncated => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(b"{\"partial\":").await;
                c.truncated.fetch_add(1, Ordering::SeqCst);
                let _ = s.shutdown().await;
                return;
            }
            Behavior::Status503EveryKth(k) => {
                let ok = if n % k == 0 {
                    c.status_503.fetch_add(1, Ordering::SeqCst);
                    s.write_all(&response(503, "{\"error\":\"busy\"}")).await.is_ok()
                } else {
                    send_ok(&mut s, &c, 200, "{}").await
                };
                if !ok {
                    return;
                }
            }
            Behavior::SilentWindow { from, until } => {
                let t = started.elapsed();
                if t >= *from && t < *until {
                    c.silent.fetch_add(1, Ordering::SeqCst);
                    // Never answer; wait for the client to give up and close.
                    let mut sink = [0u8; 1024];
                    while let Ok(r) = s.read(&mut sink).await {
                        if r == 0 {
                            break;
                        }
                    }
                    return;
                }
                if !send_ok(&mut s, &c, 200, "{}").await {
                    return;
                }
            }
            Behavior::StallWindow { from, until } => {
                let t = started.elapsed();
                if t >= *from && t < *until {
                    c.stalled.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep_until((started + *until).into()).await;
                }
                if !send_ok(&mut s, &c, 200, "{}").await {
                    return;
                }
            }
            Behavior::FailFirstPerIdempotencyKey => {
                let key = req.idem.unwrap_or_default();
                let seen = {
                    let mut m = c.idem_keys.lock().unwrap();
                    let e = m.entry(key).or_insert(0);
                    *e += 1;
                    *e
                };
                let ok = if seen == 1 {
                    c.status_503.fetch_add(1, Ordering::SeqCst);
                    s.write_all(&response(503, "{\"error\":\"try again\"}")).await.is_ok()
                } else {
                    send_ok(&mut s, &c, 201, &format!("{{\"order_id\": {n}}}")).await
                };
                if !ok {
                    return;
                }
            }
        }
    }
}

/// A one-journey, one-step scenario with evenly spaced arrivals.
/// `step` is the step's JSON object without its name.
pub fn scenario(url: &str, shoppers: u64, rate: f64, connections: &str, step: &str) -> String {
    let secs = (shoppers as f64 / rate).ceil() + 1.0;
    format!(
        r#"{{
  "name": "engine-test",
  "seed": 7,
  "target": {{"base_url": "{url}", "ready_timeout": "2s"}},
  "shoppers": {shoppers},
  "arrival": [{{"duration": "{secs}s", "rate": {rate}}}],
  "arrival_process": "uniform",
  "connections": {connections},
  "journeys": [{{"name": "j", "steps": [{{"name": "s", {step}}}]}}]
}}"#
    )
}

/// A whole ledger file, in the order attempts completed.
pub fn read_ledger(path: &Path) -> Vec<AttemptRecord> {
    let mut out = Vec::new();
    ledger::for_each_record(path, |r| out.push(r.clone())).unwrap();
    out
}

/// Runs scenario JSON through prepare -> execute -> conclude, writing into `dir`.
pub async fn run(json: &str, dir: &Path) -> (Summary, Vec<AttemptRecord>) {
    let s = harness::scenario::parse(json).unwrap_or_else(|e| panic!("bad test scenario: {e}\n{json}"));
    let opts = RunOptions { out: Some(dir.to_path_buf()), ..RunOptions::default() };
    let p = prepare(s, &opts).unwrap();
    let ex = execute(&p, Vec::new(), Arc::new(Live::default())).await.unwrap();
    let summary = conclude(&p, ex, None).unwrap();
    let records = read_ledger(&dir.join(LEDGER_FILE));
    (summary, records)
}

/// The failure-class counts of a summary, non-zero ones only.
pub fn failures(s: &Summary) -> Vec<(String, u64)> {
    s.totals
        .attempts_failed_by_class
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.as_str().to_string(), *n))
        .collect()
}

/// The JSON Schema of summary.json (harness/summary.schema.json), compiled.
pub fn summary_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("summary.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

/// Where `doc` breaks the summary.json schema (empty: it matches).
pub fn summary_schema_errors(doc: &serde_json::Value) -> Vec<String> {
    summary_validator().iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect()
}
