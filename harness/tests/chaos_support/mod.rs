//! Shared helpers for the chaos tests: a tiny foreign pre-fork server (Python,
//! so the chaos code is shown to work on servers other than ours), free ports,
//! target specs, and the reference server's binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::chaos::faults::{ChaosReport, FaultRecord};
use harness::outcome::FailureClass;
use harness::record::events::EventLog;
use harness::scenario::{self, LaunchSpec, RetryPolicy, Scenario, TargetSpec};

/// A pre-fork HTTP server in the style of gunicorn: the master binds one
/// listening socket, forks N workers that accept on it, respawns a worker that
/// dies, and on SIGTERM/SIGINT stops its workers and exits. With 0 workers it
/// is a single process that serves by itself. Every response is
/// `200 ok` with the worker's pid in X-Worker-Id.
pub const PREFORK_PY: &str = r#"
import os, signal, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(128)

def serve():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while True:
        c, _ = s.accept()
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\nx-worker-id: %d\r\n\r\nok" % os.getpid())
        except OSError:
            pass
        finally:
            c.close()

def spawn():
    pid = os.fork()
    if pid == 0:
        try:
            serve()
        finally:
            os._exit(0)
    return pid

if n == 0:
    serve()  # single process: the master serves
workers = set(spawn() for _ in range(n))
stopping = False

def stop(*_):
    global stopping
    stopping = True
    for p in list(workers):
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
while workers:
    try:
        pid, _ = os.wait()
    except ChildProcessError:
        break
    workers.discard(pid)
    if not stopping:
        workers.add(spawn())
"#;

/// A scenario (as JSON, for callers to adjust) against a foreign server on
/// `port`: `shoppers` arriving at `rate` per second, one `GET /` step that
/// retries connection failures, one connection per shopper, a kill of the
/// oldest worker at 1 s. No launch, no audit.
pub fn foreign_scenario(port: u16, shoppers: u64, rate: f64) -> serde_json::Value {
    serde_json::json!({
        "name": "foreign",
        "seed": 5,
        "target": { "base_url": format!("http://127.0.0.1:{port}"), "ready_timeout": "20s" },
        "shoppers": shoppers,
        "arrival": [{ "duration": format!("{}ms", (shoppers as f64 * 1000.0 / rate).ceil()), "rate": rate }],
        "journeys": [{ "name": "look", "steps": [
            { "name": "home", "path": "/", "retry": { "attempts": 3, "on": ["connect_refused", "reset_before_response", "closed_before_response"], "backoff": "20ms" } }
        ]}],
        "connections": { "model": "per_shopper" },
        "chaos": [{ "name": "kill", "at": "1s", "action": "kill_worker", "pick": "oldest" }]
    })
}

/// The launch part of a scenario's target for `l`.
pub fn launch_json(l: &LaunchSpec) -> serde_json::Value {
    serde_json::json!({ "argv": l.argv, "stop_signal": l.stop_signal, "stop_timeout": format!("{}ms", l.stop_timeout.as_millis()) })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn launch(argv: &[&str]) -> LaunchSpec {
    LaunchSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        stop_signal: "SIGTERM".into(),
        stop_timeout: Duration::from_secs(10),
    }
}

pub fn target_spec(port: u16, launch: Option<LaunchSpec>) -> TargetSpec {
    TargetSpec {
        base_url: format!("http://127.0.0.1:{port}"),
        ready_path: "/".into(),
        ready_timeout: Duration::from_secs(20),
        launch,
        pid_file: None,
        metrics: Vec::new(),
        ca_file: None,
        insecure_skip_verify: false,
        resolve: Default::default(),
    }
}

/// Launch spec for the Python pre-fork server with `workers` workers on `port`;
/// the script is written into `dir`.
pub fn prefork(dir: &Path, port: u16, workers: usize) -> LaunchSpec {
    let script = dir.join("prefork.py");
    std::fs::write(&script, PREFORK_PY).unwrap();
    let port = port.to_string();
    let workers = workers.to_string();
    launch(&["python3", "-u", script.to_str().unwrap(), &port, &workers])
}

/// The reference server binary built into this test's target dir, or a clear
/// panic saying how to build it.
pub fn reference_server() -> PathBuf {
    // tests run from .../debug/deps/<test>-<hash>; the binaries are in .../debug.
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(Path::parent).unwrap();
    let bin = debug.join("reference-server");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `cargo build -p reference-server` (same CARGO_TARGET_DIR)",
        bin.display()
    );
    bin
}

/// Launch spec for the reference server in cluster mode (`workers` > 0) or
/// single-process mode (`workers` == 0), its database in `dir`, on `port`
/// (public) and `admin` (admin). Extra flags are appended.
pub fn reference_launch(dir: &Path, port: u16, admin: u16, workers: usize, extra: &[&str]) -> LaunchSpec {
    let bin = reference_server();
    let db = dir.join("shop.db");
    let (listen, admin, workers) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin}"), workers.to_string());
    let mut argv = vec![
        bin.to_str().unwrap(),
        "--listen",
        &listen,
        "--admin",
        &admin,
        "--workers",
        &workers,
        "--db",
        db.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    let mut l = launch(&argv);
    l.stop_signal = "SIGINT".into();
    l
}

/// An event log in `dir` that [`wait_for_events`] can watch.
pub fn watched_log(dir: &Path) -> (EventLog, PathBuf) {
    let path = dir.join("events.jsonl");
    (EventLog::create(&path).unwrap(), path)
}

/// Waits (at most 60 s) until the log at `path` holds `n` events of `kind`,
/// e.g. `fault_end`: the observable state a test needs before it finishes
/// the fault runner, instead of a sleep that a slow machine outlasts.
pub async fn wait_for_events(log: &EventLog, path: &Path, kind: &str, n: usize) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        log.flush().unwrap();
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let seen = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["kind"] == kind)
            .count();
        if seen >= n {
            return;
        }
        assert!(std::time::Instant::now() < until, "only {seen} of {n} `{kind}` events after 60 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The report's first fault, or a failure that says no fault ran.
pub fn first_fault(report: &ChaosReport) -> &FaultRecord {
    report.faults.first().unwrap_or_else(|| panic!("no fault ran: {report:?}"))
}

/// Every step retries every transport failure and 5xx (GETs and keyed
/// checkouts are safe to retry): the policy under which a correct cluster
/// drops nothing, and under which even a broken drain drops nothing, so that
/// only the budgets can tell. Not retried: answers a retry would not change
/// (unexpected status, invalid body) and the harness's own local errors.
pub fn retry_everything(s: &mut Scenario) {
    use FailureClass::{InvalidBody, LocalError, UnexpectedStatus};
    let on: Vec<FailureClass> =
        FailureClass::ALL.into_iter().filter(|c| !matches!(c, UnexpectedStatus | InvalidBody | LocalError)).collect();
    for j in &mut s.journeys {
        for step in &mut j.steps {
            step.retry = RetryPolicy { attempts: 4, on: on.clone(), backoff: Duration::from_millis(100) };
        }
    }
}

/// Inserts a `GET /slow?ms=MS` step (the reference server's) at position
/// `at` of every journey, so that requests are in flight whenever a drain starts.
pub fn hold_requests_in_flight(s: &mut Scenario, at: usize, ms: u64) {
    for (i, j) in s.journeys.iter_mut().enumerate() {
        let mut slow = j.steps[0].clone();
        slow.name = format!("slow view {i}");
        slow.method = "GET".into();
        slow.path = scenario::Template::parse(&format!("/slow?ms={ms}"), scenario::Escape::Path).unwrap();
        slow.headers.clear();
        slow.body = None;
        slow.expect = vec![200];
        slow.refuse.clear();
        slow.extract.clear();
        slow.idempotency_key = false;
        j.steps.insert(at, slow);
    }
}

/// A reference cluster of `workers` started through the harness's own
/// target lifecycle (ready when the product list answers), its database in
/// a temp folder that lives as long as it does.
pub struct Cluster {
    pub target: std::sync::Arc<harness::chaos::target::Target>,
    pub port: u16,
    pub admin: u16,
    _dir: tempfile::TempDir,
}

pub async fn cluster(workers: usize, extra: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let mut spec = target_spec(port, Some(reference_launch(dir.path(), port, admin, workers, extra)));
    spec.ready_path = "/products?page=1&per_page=1".into();
    let target = std::sync::Arc::new(harness::chaos::target::Target::start(&spec, None, dir.path()).await.unwrap());
    Cluster { target, port, admin, _dir: dir }
}
