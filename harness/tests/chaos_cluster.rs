//! Chaos pieces against the real reference server cluster: worker discovery,
//! SIGKILL with a replacement, a SIGSTOP hang that the master replaces, a
//! SIGHUP rolling restart, and the audit fetched from its admin address.
//! Needs `cargo build -p reference-server` in the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::sync::Arc;
use std::time::Duration;

use chaos_support::*;
use harness::chaos::faults::{self as chaos, ChaosOptions};
use harness::chaos::target::http_get;
use harness::host::procs;
use harness::judge::audit::{self, CheckoutView};
use harness::judge::verdict::Status;
use harness::outcome::Outcome;
use harness::scenario::{FaultAction, FaultSpec, Pick};

fn opts() -> ChaosOptions {
    ChaosOptions { recovery_timeout: Duration::from_secs(30), settle: Duration::from_millis(300), ..Default::default() }
}

fn fault(name: &str, action: FaultAction) -> FaultSpec {
    FaultSpec::once(name, Duration::from_millis(100), action)
}

/// The worker pids the master reports on its admin address.
async fn admin_worker_pids(admin: u16) -> Vec<i64> {
    let r = http_get(&format!("http://127.0.0.1:{admin}/workers"), Duration::from_secs(5), true).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
    let mut pids: Vec<i64> = v["workers"].as_array().unwrap().iter().filter_map(|w| w["pid"].as_i64()).collect();
    pids.sort_unstable();
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_worker_is_seen_replaced() {
    let c = cluster(2, &[]).await;
    let before = c.target.worker_tree().unwrap().pids();
    assert_eq!(before.len(), 2);
    // procs.rs and the master agree on who the workers are.
    assert_eq!(admin_worker_pids(c.admin).await, before.iter().map(|&p| p as i64).collect::<Vec<_>>());

    let kill = fault("kill", FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random });
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = watched_log(dir.path());
    let handle = chaos::start(&[kill], 3, Arc::clone(&c.target), log.clone(), opts()).unwrap();
    wait_for_events(&log, &path, "fault_end", 1).await;
    let report = handle.finish(Duration::from_secs(30)).await;
    let f = first_fault(&report);
    assert_eq!(f.outcome, "ok");
    assert!(f.recovered_at_ms.is_some(), "{f:?}");
    let after = c.target.worker_tree().unwrap().pids();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&f.pids[0]) && before.contains(&f.pids[0]));
    assert!(report.healthy_at_end, "{}", report.end_health);
    c.target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_replaced_by_the_master() {
    // The master kills a worker whose heartbeats stop for 1 s.
    let c = cluster(2, &["--hang-timeout", "1s"]).await;
    let before = c.target.worker_tree().unwrap().pids();
    let hang = fault("hang", FaultAction::HangWorker { pick: Pick::Oldest, duration: Duration::from_secs(4) });
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = watched_log(dir.path());
    let handle = chaos::start(&[hang], 3, Arc::clone(&c.target), log.clone(), opts()).unwrap();
    wait_for_events(&log, &path, "fault_end", 1).await;
    let report = handle.finish(Duration::from_secs(30)).await;
    let f = first_fault(&report);
    assert_eq!(f.outcome, "ok", "{f:?}");
    let victim = f.pids[0];
    assert!(before.contains(&victim));
    assert!(!procs::is_alive(victim), "the hung worker {victim} was not replaced");
    let after = c.target.worker_tree().unwrap().pids();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&victim));
    assert!(f.recovered_at_ms.is_some());
    c.target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rolling_restart_replaces_every_worker() {
    let c = cluster(2, &[]).await;
    let before = c.target.worker_tree().unwrap().pids();
    let hup = fault("deploy", FaultAction::SignalMaster { signal: "SIGHUP".into() });
    let dir = tempfile::tempdir().unwrap();
    let (log, path) = watched_log(dir.path());
    let handle = chaos::start(&[hup], 3, Arc::clone(&c.target), log.clone(), opts()).unwrap();
    wait_for_events(&log, &path, "fault_end", 1).await;
    let report = handle.finish(Duration::from_secs(60)).await;
    let f = first_fault(&report);
    assert_eq!((f.outcome.as_str(), f.pids.clone()), ("ok", vec![c.target.pid().unwrap()]));
    assert!(f.recovered_at_ms.is_some(), "{report:?}");
    let after = c.target.worker_tree().unwrap().pids();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "{before:?} -> {after:?}");
    c.target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_of_the_real_shop_finds_the_acknowledged_order_and_flags_a_lost_one() {
    let c = cluster(2, &[]).await;
    let base = c.target.base_url().to_string();
    let at = harness::chaos::target::resolve(&base).await.unwrap();
    let connector = harness::traffic::client::Connector::new(at.addr, at.host, vec![]);
    let post = |path: &'static str, body: &'static str, headers: Vec<(String, String)>| {
        let connector = &connector;
        async move {
            let req = harness::traffic::client::Request {
                method: "POST",
                path,
                headers: &headers,
                body: Some(body.as_bytes()),
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let a = harness::traffic::client::send(connector, &mut None, &req, true, deadline, &mut Vec::new()).await;
            a.result.unwrap()
        }
    };
    let r = post("/carts/audit-1/items", r#"{"sku":"door-1","qty":2}"#, vec![]).await;
    assert_eq!(r.status, 200);
    let key = vec![("idempotency-key".to_string(), "audit-key-1".to_string())];
    let r = post("/checkout", r#"{"cart_id":"audit-1"}"#, key).await;
    assert_eq!(r.status, 201);
    let body: serde_json::Value = serde_json::from_slice(&r.body.unwrap()).unwrap();
    let order_id = body["order_id"].as_i64().unwrap();

    let url = format!("http://127.0.0.1:{}/audit", c.admin);
    let acked = CheckoutView {
        op: 1,
        step: "checkout".into(),
        idempotency_key: Some("audit-key-1".into()),
        cart_id: Some("audit-1".into()),
        attempts: vec![Outcome::Ok],
        order_id: Some(order_id),
    };
    let report = audit::run(&url, std::slice::from_ref(&acked), true, Duration::from_secs(10)).await;
    assert_eq!(report.verdict, Status::Pass, "{report:?}");
    assert_eq!((report.orders_in_audit, report.acknowledged), (1, 1));

    // A checkout the harness says was acknowledged but the shop never saw.
    let phantom = CheckoutView { op: 2, idempotency_key: Some("never-sent".into()), order_id: Some(999_999), ..acked };
    let report = audit::run(&url, &[phantom], true, Duration::from_secs(10)).await;
    assert_eq!(report.verdict, Status::Fail);
    assert_eq!(report.lost.len(), 1);

    // The admin address down: unknown, never pass.
    c.target.stop(None).await.unwrap();
    let report = audit::run(&url, &[], true, Duration::from_secs(2)).await;
    assert_eq!(report.verdict, Status::Unknown, "{report:?}");
    assert!(report.reason.contains("unreachable"), "{}", report.reason);
}
