//! The target's metrics scraped during a run (issue 17): against the real
//! reference cluster, the scraped series show a dip-free rolling restart and
//! restart markers by reason (crash after SIGKILL, hang after SIGSTOP);
//! against endpoints that stall or answer garbage, the run stays valid, the
//! gaps are in the file, the summary and the report, and the schedule keeps
//! time on a single-threaded runtime (the scraper is not on it).
//! The cluster tests need `cargo build -p reference-server` in the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chaos_support::*;
use harness::chaos::faults::{self as chaos, ChaosOptions, ChaosReport};
use harness::scenario::{FaultAction, FaultSpec, MetricsEndpoint, Pick, default_series};
use harness::scrape::series::{self, ServerChart};
use harness::scrape::{self, ScrapeLog, Scraper, fetch};
use serde_json::json;

/// The admin /metrics of `admin` every 100 ms, with the default series.
fn admin_scrape(admin: u16) -> scrape::Target {
    scrape::Target {
        spec: MetricsEndpoint {
            url: format!("http://127.0.0.1:{admin}/metrics"),
            label: "cluster".into(),
            interval: Duration::from_millis(100),
            series: default_series(),
        },
        at: fetch::Endpoint {
            addr: format!("127.0.0.1:{admin}").parse().unwrap(),
            authority: format!("127.0.0.1:{admin}"),
            path: "/metrics".into(),
        },
    }
}

/// Plays `faults` against the cluster while scraping it; returns the scrapes and the faults' report.
async fn scraped_faults(c: &Cluster, faults: &[FaultSpec], hold: impl FnOnce()) -> (ScrapeLog, ChaosReport) {
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = watched_log(dir.path());
    let scraper = Scraper::start(&[admin_scrape(c.admin)], log.start());
    hold();
    let opts = ChaosOptions {
        recovery_timeout: Duration::from_secs(30),
        settle: Duration::from_millis(300),
        ..Default::default()
    };
    let handle = chaos::start(faults, 3, Arc::clone(&c.target), log.clone(), opts).unwrap();
    wait_for_events(&log, &path, "fault_end", faults.len()).await;
    let report = handle.finish(Duration::from_secs(60)).await;
    // A few scrapes after recovery, so the last restart is counted.
    tokio::time::sleep(Duration::from_millis(400)).await;
    (scraper.finish(), report)
}

fn chart<'a>(charts: &'a [ServerChart], title: &str) -> &'a ServerChart {
    charts.iter().find(|c| c.title == title).unwrap_or_else(|| panic!("no chart {title:?} in {charts:#?}"))
}

fn line_values(c: &ServerChart, name: &str) -> Vec<f64> {
    let line = c.lines.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no line {name:?} in {c:#?}"));
    line.points.iter().filter_map(|p| p.1).collect()
}

/// Requests to /slow held open on the public port, so each old worker's drain lasts a while.
fn hold_slow_requests(port: u16, n: usize, ms: u64) {
    for _ in 0..n {
        std::thread::spawn(move || {
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let req = format!("GET /slow?ms={ms} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(req.as_bytes());
            let _ = s.read_to_end(&mut Vec::new());
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_never_dips_below_the_worker_count_and_is_marked_rolling() {
    let c = cluster(2, &[]).await;
    let term =
        FaultSpec::once("deploy", Duration::from_millis(300), FaultAction::SignalMaster { signal: "SIGTERM".into() });
    let (log, report) = scraped_faults(&c, &[term], || hold_slow_requests(c.port, 8, 1500)).await;
    let f = first_fault(&report);
    assert_eq!(f.outcome, "ok", "{f:?}");
    let charts = series::charts(&log);
    let workers = chart(&charts, harness::scenario::WORKERS_TITLE);
    let up = line_values(workers, "workers_up");
    let draining = line_values(workers, "workers_draining");
    assert!(log.records.iter().all(|r| r.ok), "a scrape of the master failed: {:?}", log.records);
    // New before old: never fewer than the configured 2 ready workers, in any scrape.
    assert!(up.iter().all(|&v| v >= 2.0), "workers_up dipped: {up:?}");
    // The roll was seen while it happened (the slow requests hold each drain open).
    assert!(draining.iter().any(|&v| v >= 1.0), "no scrape saw a drain in progress: {draining:?}");
    let restarts = chart(&charts, harness::scenario::RESTARTS_TITLE);
    let rolled: f64 = restarts.markers.iter().filter(|m| m.row == "reason=rolling").map(|m| m.count).sum();
    assert_eq!(rolled, 2.0, "{:?}", restarts.markers);
    assert!(restarts.markers.iter().all(|m| m.row == "reason=rolling" && m.t_s * 1e3 >= f.start_ms));
    c.target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_is_marked_crash_and_a_long_sigstop_hang() {
    // The master replaces a worker whose heartbeats stop for 1 s.
    let c = cluster(2, &["--hang-timeout", "1s"]).await;
    let kill = FaultSpec::once(
        "kill",
        Duration::from_millis(300),
        FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random },
    );
    let hang = FaultSpec::once(
        "hang",
        Duration::from_secs(3),
        FaultAction::HangWorker { pick: Pick::Oldest, duration: Duration::from_secs(3) },
    );
    let (log, report) = scraped_faults(&c, &[kill, hang], || {}).await;
    assert!(report.faults.iter().all(|f| f.outcome == "ok"), "{report:?}");
    let (kill_at, hang_at) = (report.faults[0].start_ms / 1e3, report.faults[1].start_ms / 1e3);
    let charts = series::charts(&log);
    let restarts = chart(&charts, harness::scenario::RESTARTS_TITLE);
    let at = |row: &str| -> Vec<f64> { restarts.markers.iter().filter(|m| m.row == row).map(|m| m.t_s).collect() };
    let (crash, hung) = (at("reason=crash"), at("reason=hang"));
    assert_eq!(crash.len(), 1, "{:?}", restarts.markers);
    assert!(crash[0] >= kill_at && crash[0] < hang_at, "crash marker at {crash:?}, kill at {kill_at}");
    assert_eq!(hung.len(), 1, "{:?}", restarts.markers);
    // Replaced while still stopped (the hang outlasts the 1 s hang timeout),
    // so before the SIGCONT; the scrape that sees it may come one interval later.
    let released = report.faults[1].end_ms / 1e3;
    assert!(hung[0] > hang_at && hung[0] <= released + 0.2, "hang marker at {hung:?}, hang {hang_at}..{released}");
    assert!(at("reason=rolling").is_empty());
    // Every reason the server exposes has its row, restarted or not.
    assert_eq!(restarts.rows, ["reason=crash", "reason=hang", "reason=rolling", "reason=sigterm"]);
    c.target.stop(None).await.unwrap();
}

/// A loopback endpoint that accepts and never answers (`garbage` None) or
/// answers 200 with `garbage`, until dropped.
struct BadEndpoint {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl BadEndpoint {
    fn start(garbage: Option<&'static str>) -> BadEndpoint {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let (stop, accepted) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&accepted));
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        if let Some(body) = garbage {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                            let _ = s.read(&mut [0u8; 1024]);
                            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        } else {
                            held.push(s);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        BadEndpoint { port, stop, accepted }
    }
}

impl Drop for BadEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A small run against a purpose-built server with `metrics` as target.metrics; its summary.
async fn run_with_metrics(dir: &std::path::Path, metrics: serde_json::Value) -> harness::judge::summary::Summary {
    let server = support::TestServer::start(support::Behavior::Delay(Duration::from_millis(2))).await;
    let text = support::scenario(
        &server.url(),
        60,
        30.0,
        r#"{"model": "pool", "size": 8}"#,
        r#""method": "GET", "path": "/""#,
    );
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["target"]["metrics"] = metrics;
    support::run(&doc.to_string(), dir).await.0
}

// A current-thread runtime on purpose: a scrape that blocked it would stall
// every shopper for the whole stalled scrape (200 ms of every 200 ms).
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_or_garbage_endpoint_is_a_gap_and_the_schedule_keeps_time() {
    let stalled = BadEndpoint::start(None);
    let garbage = BadEndpoint::start(Some("<html><body>502 Bad Gateway</body></html>\n"));
    let dir = tempfile::tempdir().unwrap();
    let endpoint = |label: &str, port: u16| {
        json!({"url": format!("http://127.0.0.1:{port}/metrics"), "label": label, "interval": "200ms",
               "series": [{"name": "up", "as": "gauge"}]})
    };
    let s = run_with_metrics(dir.path(), json!([endpoint("stalled", stalled.port), endpoint("garbage", garbage.port)]))
        .await;
    assert!(s.validity.valid, "{:?}", s.validity.problems);
    assert_eq!(s.totals.attempts_failed, 0);
    let m = s.server_metrics.as_ref().unwrap();
    for e in &m.endpoints {
        assert!(e.scrapes >= 5, "{e:?}");
        assert_eq!(e.gaps, e.scrapes, "every scrape of {} is a gap, none a zero: {e:?}", e.label);
    }
    assert!(stalled.accepted.load(Ordering::Relaxed) >= 5 && garbage.accepted.load(Ordering::Relaxed) >= 5);
    // The schedule kept time although a scrape stalled for 200 ms five times a second.
    assert!(s.schedule_slip.p99_ms < 100.0, "slip {:?}", s.schedule_slip);
    // In the file: gap records with their reason and no samples.
    let log = scrape::read(dir.path()).unwrap();
    let reasons: BTreeMap<&str, &str> =
        log.records.iter().map(|r| (r.endpoint.as_str(), r.error.as_deref().unwrap_or(""))).collect();
    assert!(reasons["stalled"].contains("no complete answer within 200 ms"), "{reasons:?}");
    assert!(reasons["garbage"].contains("not in the Prometheus text format"), "{reasons:?}");
    assert!(log.records.iter().all(|r| !r.ok && r.samples.is_empty() && r.took_ms < 1000.0));
    let stalled_took = log.records.iter().filter(|r| r.endpoint == "stalled").map(|r| r.took_ms);
    assert!(stalled_took.clone().all(|t| t >= 150.0), "{:?}", stalled_took.collect::<Vec<_>>());
    // The summary with the new section still matches its schema.
    let doc: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(support::summary_schema_errors(&doc), Vec::<String>::new());
}

/// The same run's report, built from the run folder alone, states the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_run_with_a_failing_endpoint_shows_the_gap_and_the_good_series() {
    // A good endpoint whose counter restarts halfway (a process restart), and a stalled one.
    let stalled = BadEndpoint::start(None);
    let good = TcpListener::bind("127.0.0.1:0").unwrap();
    let good_port = good.local_addr().unwrap().port();
    let started = Instant::now();
    std::thread::spawn(move || {
        for s in good.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.read(&mut [0u8; 1024]);
            let ms = started.elapsed().as_millis() as u64;
            // 100 per second, from zero again after 1 s.
            let total = if ms < 1000 { ms / 10 } else { (ms - 1000) / 10 };
            let body = format!("# TYPE demo_requests_total counter\ndemo_requests_total {total}\ndemo_up 1\n");
            let _ = write!(s, "HTTP/1.0 200 OK\r\n\r\n{body}");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let s = run_with_metrics(
        dir.path(),
        json!([
            {"url": format!("http://127.0.0.1:{good_port}/metrics"), "label": "good", "interval": "200ms",
             "series": [{"name": "demo_requests_total", "as": "rate", "title": "demo requests"},
                        {"name": "demo_up", "as": "gauge", "title": "demo up"}]},
            {"url": format!("http://127.0.0.1:{}/metrics", stalled.port), "label": "stalled", "interval": "200ms",
             "series": [{"name": "demo_up", "as": "gauge", "title": "stalled up"}]},
        ]),
    )
    .await;
    assert!(s.validity.valid, "{:?}", s.validity.problems);
    let log = scrape::read(dir.path()).unwrap();
    let charts = series::charts(&log);
    // The good endpoint's rate: never negative across its counter's restart.
    // Two endpoints: each chart's title carries its endpoint's label.
    let rates = line_values(chart(&charts, "good: demo requests"), "demo_requests_total");
    assert!(rates.len() >= 4 && rates.iter().all(|&r| r >= 0.0), "{rates:?}");
    // The stalled endpoint exposes nothing: no chart, but the report says why.
    assert!(charts.iter().all(|c| c.endpoint != "stalled"), "{charts:?}");
    let (run, _) = harness::report::rundir::run_from_dir(
        dir.path(),
        &harness::report::rundir::RunDirOptions { label: "run", target: "test server", requests: &[], audit: None },
    )
    .unwrap();
    let data = harness::report::model::ReportData {
        title: "t".into(),
        generated: "now".into(),
        machine: harness::report::model::Machine::current(),
        scenario: harness::report::model::ScenarioInfo {
            name: "t".into(),
            description: String::new(),
            shoppers: 60,
            duration_s: 3.0,
            seed: 7,
            transport: None,
        },
        scaling_note: None,
        verdict: Vec::new(),
        runs: vec![run],
    };
    let html = harness::report::html::render(&data).unwrap();
    assert!(html.contains("data-server-chart=\"good: demo requests\""), "the good series is charted");
    assert!(html.contains("scrapes of stalled failed (no complete answer within 200 ms)"), "the gap in words");
    assert!(html.contains("metrics scraper (stalled)"), "the scraper's row in the slip table");
}

#[test]
fn a_remote_metrics_endpoint_needs_allow_remote() {
    let text = support::scenario("http://127.0.0.1:9", 1, 1.0, r#"{"model": "pool", "size": 1}"#, r#""path": "/""#);
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["target"]["metrics"] = json!([{"url": "http://192.0.2.1:9090/metrics", "label": "far"}]);
    let s = harness::scenario::parse(&doc.to_string()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = harness::drive::run::RunOptions { out: Some(dir.path().to_path_buf()), ..Default::default() };
    let Err(e) = harness::drive::run::prepare(s.clone(), &opts) else { panic!("a remote metrics URL was accepted") };
    let e = e.to_string();
    assert!(e.contains("target.metrics[0].url") && e.contains("--allow-remote"), "{e}");
    let opts = harness::drive::run::RunOptions { allow_remote: true, ..opts };
    assert!(harness::drive::run::prepare(s, &opts).is_ok());
}
