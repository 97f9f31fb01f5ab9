//! A real run folder into the report: `harness run`'s stages against a tiny
//! loopback HTTP server (one route ok, one always 500), then
//! `report::rundir::run_from_dir` reads the run's summary into run data
//! whose counts match the summary, and the page renders from it.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::outcome::FailureClass;
use harness::report::model::{Machine, ReportData, ScenarioInfo, Status};
use harness::report::{self, rundir};

/// Answers every request: 500 for `/boom`, else 200 `{}`. Keep-alive.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn serve(stream: TcpStream) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = if request_line.contains(" /boom ") { "500 Internal Server Error" } else { "200 OK" };
        let response = format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}");
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn start_server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(s) = stream {
                std::thread::spawn(move || serve(s));
            }
        }
    });
    Server { port, stop }
}

#[test]
fn run_folder_becomes_report_data() {
    let server = start_server();
    let scenario = format!(
        r#"{{
          "name": "report-rundir",
          "seed": 7,
          "target": {{ "base_url": "http://127.0.0.1:{port}", "ready_path": "/", "ready_timeout": "10s" }},
          "shoppers": 30,
          "arrival": [ {{ "duration": "1s", "rate": 30 }} ],
          "journeys": [ {{ "name": "j", "weight": 1, "steps": [
              {{ "name": "ok step", "path": "/ok" }},
              {{ "name": "boom step", "path": "/boom",
                 "retry": {{ "attempts": 2, "on": ["server_error"], "backoff": "1ms" }} }}
          ] }} ]
        }}"#,
        port = server.port
    );
    let scenario = harness::scenario::parse(&scenario).unwrap();
    let requests = report::build::requests_of(&scenario);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let opts = harness::drive::run::RunOptions { out: Some(out.clone()), ..Default::default() };
    // `harness run`'s stages on their own runtime (without a launched target).
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let summary = rt.block_on(async {
        let p = harness::drive::run::prepare(scenario, &opts).unwrap();
        let ex = harness::drive::run::execute(&p, Vec::new(), Default::default()).await.unwrap();
        harness::drive::run::conclude(&p, ex, None).unwrap()
    });
    // Each shopper runs both steps once.
    let n = summary.run.shoppers_arrived;
    assert!(n > 0);
    assert_eq!(summary.totals.operations, 2 * n, "{:?}", summary.totals);

    let options = rundir::RunDirOptions { label: "loopback", target: "test server", requests: &requests, audit: None };
    let (run, read_back) = rundir::run_from_dir(&out, &options).unwrap();
    assert_eq!(read_back, summary);

    // Counts agree with the summary; the always-500 step drops every operation.
    assert_eq!((run.totals.operations, run.totals.ok, run.totals.dropped), (2 * n, n, n));
    assert_eq!(run.totals.first_attempt_failures, n);
    let steps: Vec<(&str, u64, u64, u64)> =
        run.endpoints.iter().map(|e| (e.step.as_str(), e.count, e.failures, e.dropped)).collect();
    assert_eq!(steps, [("ok step", n, 0, 0), ("boom step", 2 * n, 2 * n, n)]);
    assert_eq!(run.endpoints[1].request, "GET /boom");
    let per_second_ok: u64 = run.seconds.iter().map(|s| s.ok).sum();
    let per_second_failed: u64 =
        run.seconds.iter().map(|s| s.failures.get(&FailureClass::ServerError).copied().unwrap_or(0)).sum();
    assert_eq!((per_second_ok, per_second_failed), (n, 2 * n));
    assert!(run.seconds.iter().any(|s| s.p99_ms.is_some() && s.failed_ms.is_some()));
    assert!(!run.spectrum.is_empty());
    assert!(run.faults.is_empty());
    // Memory and descriptors: the harness sampled itself; the target was
    // not the harness's to read (no launch), so it has no line.
    let res = run.resources.as_ref().expect("resources from summary.json and resources.csv");
    assert!(
        res.samples.len() >= 2 && res.samples.iter().all(|p| p.harness_rss_mib > 0.0 && p.server_rss_mib.is_none())
    );
    assert!(res.summary.harness.is_some() && res.summary.server.is_none());

    let verdict = summary.gate_rows("loopback");
    assert_eq!(verdict[0].status, Status::Pass, "{:?}", verdict[0]);
    let data = ReportData {
        title: "loopback".into(),
        generated: report::model::now_rfc3339(),
        machine: Machine::current(),
        scenario: ScenarioInfo {
            name: summary.scenario.name.clone(),
            description: "test".into(),
            shoppers: n,
            duration_s: summary.run.duration_s,
            seed: 7,
            transport: None,
        },
        scaling_note: None,
        verdict,
        runs: vec![run],
    };
    let written = report::write(&out, &data).unwrap();
    let html = std::fs::read_to_string(written.index_html).unwrap();
    let headline = format!("The loopback dropped {n} of {} requests (50.00%) with no faults injected", 2 * n);
    assert!(html.contains(&headline), "no {headline:?} in the page");
    assert!(html.contains("GET /boom"));
}
