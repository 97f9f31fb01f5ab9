//! End to end: shoppers holding live stock streams (`/live/stock?for_ms=`)
//! against the reference server with `--balance sticky`, through a rolling
//! restart: nothing dropped (a stream the drain ends with `reconnect` is a
//! complete response), and the affinity count and its gate land in
//! chaos.json and summary.json; and the gate failing against the shared
//! listener, where pooled connections land on any worker. Needs `cargo build -p reference-server` in
//! the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::sync::Arc;
use std::time::Duration;

use chaos_support::{free_port, reference_launch};
use harness::chaos::faults::ChaosOptions;
use harness::drive::lifecycle::{self, LifecycleOptions};
use harness::drive::run::RunOptions;
use harness::scenario;
use harness::traffic::engine::Live;

const SCENARIO: &str = r#"{
  "name": "sticky watchers",
  "seed": 7,
  "target": { "base_url": "http://127.0.0.1:1", "ready_path": "/healthz", "ready_timeout": "30s" },
  "shoppers": 40,
  "arrival": [ { "duration": "2s", "rate": 20 } ],
  "think": { "kind": "uniform", "min": "10ms", "max": "50ms" },
  "connections": { "model": "per_shopper", "idle_timeout": "2s" },
  "defaults": {
    "timeout": "10s",
    "retry": { "attempts": 3, "on": ["connect_refused", "reset_before_response", "closed_before_response"], "backoff": "100ms" }
  },
  "journeys": [
    {
      "name": "watcher",
      "weight": 1,
      "steps": [
        { "name": "view product", "path": "/products/sku-0001" },
        { "name": "watch 1", "path": "/live/stock?skus=door-1,door-2&for_ms=1200", "headers": { "accept": "text/event-stream" } },
        { "name": "view again", "path": "/products/sku-0002" },
        { "name": "watch 2", "path": "/live/stock?skus=door-1&for_ms=800", "headers": { "accept": "text/event-stream" } }
      ]
    }
  ],
  "gates": { "max_dropped": 0, "max_affinity_breaks": 0 },
  "chaos": [ { "name": "deploy", "at": "1500ms", "action": "signal_master", "signal": "SIGHUP" } ]
}"#;

async fn play(s: scenario::Scenario, dir: &std::path::Path) -> lifecycle::FullRun {
    let opts = RunOptions { out: Some(dir.join("run")), ..Default::default() };
    let lo = LifecycleOptions {
        chaos: ChaosOptions { settle: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    lifecycle::run(s, &opts, &lo, Arc::new(Live::default())).await.unwrap()
}

/// One live cluster at a time: they share two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_fails_when_shoppers_hop_between_workers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario::parse(SCENARIO).unwrap();
    s.chaos.clear();
    // A shared pool: a shopper's next request takes whichever connection is
    // free, and the shared listener spread those over both workers.
    s.connections = scenario::ConnectionModel::Pool { size: 8, idle_timeout: Duration::from_secs(2) };
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch = Some(reference_launch(dir.path(), port, admin, 2, &["--live-interval", "50ms"]));
    let r = play(s, dir.path()).await;
    let d = format!("affinity: {:?}\ngates: {:?}", r.chaos.affinity, r.summary.gates);
    eprintln!("{d}");
    assert_eq!(r.summary.totals.dropped, 0, "{d}");
    assert!(r.chaos.affinity.breaks > 0, "{d}");
    let gate = r.summary.gates.iter().find(|g| g.name == "max_affinity_breaks").unwrap();
    assert!(!gate.passed, "{d}");
    assert_eq!(r.summary.exit_code, 1, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_a_rolling_restart_of_a_sticky_cluster_with_no_affinity_break() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario::parse(SCENARIO).unwrap();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch =
        Some(reference_launch(dir.path(), port, admin, 2, &["--balance", "sticky", "--live-interval", "50ms"]));
    let r = play(s, dir.path()).await;
    let d = format!(
        "totals: {:?}\nfaults: {:#?}\naffinity: {:?}\ngates: {:?}",
        r.summary.totals, r.chaos.faults, r.chaos.affinity, r.summary.gates
    );
    eprintln!("{d}");
    assert_eq!(r.chaos.faults.len(), 1, "{d}");
    assert!(r.chaos.faults[0].recovered_at_ms.is_some(), "{d}");
    assert_eq!(r.summary.totals.dropped, 0, "{d}");
    let arrived = r.summary.run.shoppers_arrived;
    assert!(arrived >= 20, "{d}");
    // Every step of every journey ended ok, streams included.
    assert_eq!(r.summary.totals.ok, arrived * 4, "{d}");
    // Every shopper was served (its worker named); the restart moved some,
    // inside its window, and nothing moved outside it.
    assert_eq!(r.chaos.affinity.shoppers, arrived, "{d}");
    assert_eq!(r.chaos.affinity.breaks, 0, "{d}");
    assert!(r.chaos.affinity.excused_changes > 0, "the rolling restart moved no shopper? {d}");
    let gate = r.summary.gates.iter().find(|g| g.name == "max_affinity_breaks").unwrap();
    assert!(gate.passed && gate.actual == Some(0.0), "{d}");
    assert_eq!(r.summary.exit_code, 0, "{d}");
    let chaos_json = std::fs::read_to_string(dir.path().join("run").join(lifecycle::CHAOS_FILE)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&chaos_json).unwrap();
    assert_eq!(v["affinity"]["breaks"], 0, "{chaos_json}");
}

/// Shoppers from 16 loopback addresses that reconnect between most steps
/// (20 ms idle timeout, 10..50 ms think): `(affinity, workers seen)`.
async fn reconnecting_shoppers(
    balance: &str,
) -> (harness::judge::affinity::Affinity, std::collections::BTreeSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario::parse(&SCENARIO.replace(
        r#""connections": { "model": "per_shopper", "idle_timeout": "2s" }"#,
        r#""connections": { "model": "per_shopper", "idle_timeout": "20ms", "addresses": 16 }"#,
    ))
    .unwrap();
    assert_eq!(s.shopper_addresses, Some(16));
    s.chaos.clear();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch =
        Some(reference_launch(dir.path(), port, admin, 2, &["--balance", balance, "--live-interval", "50ms"]));
    let r = play(s, dir.path()).await;
    let mut workers = std::collections::BTreeSet::new();
    let ledger = dir.path().join("run").join(harness::record::ledger::LEDGER_FILE);
    harness::record::ledger::for_each_record(&ledger, |r| workers.extend(r.worker.clone())).unwrap();
    eprintln!("{balance}: affinity {:?}, workers {workers:?}, totals {:?}", r.chaos.affinity, r.summary.totals);
    assert_eq!(r.summary.totals.dropped, 0);
    (r.chaos.affinity, workers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_shopper_addresses_keep_reconnecting_shoppers_on_their_worker_only_when_sticky() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (sticky, workers) = reconnecting_shoppers("sticky").await;
    assert_eq!(sticky.breaks, 0, "{sticky:?}");
    assert_eq!(workers.len(), 2, "16 addresses should spread over both workers: {workers:?}");
    // The same shoppers against the shared listener hop on reconnects.
    let (shared, _) = reconnecting_shoppers("shared").await;
    assert!(shared.breaks > 0, "{shared:?}");
}

#[test]
fn shopper_addresses_are_checked() {
    let pooled = SCENARIO.replace(
        r#""connections": { "model": "per_shopper", "idle_timeout": "2s" }"#,
        r#""connections": { "model": "pool", "size": 4, "addresses": 4 }"#,
    );
    let e = scenario::parse(&pooled).unwrap_err().to_string();
    assert!(e.contains("connections.addresses") && e.contains("per_shopper"), "{e}");
    let too_many = SCENARIO.replace(r#""idle_timeout": "2s" }"#, r#""idle_timeout": "2s", "addresses": 251 }"#);
    let e = scenario::parse(&too_many).unwrap_err().to_string();
    assert!(e.contains("connections.addresses: 251: must be 1..=250"), "{e}");
}
