//! Retries and the ledger invariant: a retry that recovers is
//! recovered and still a first-attempt failure; exhausted retries drop; a run
//! cut off with requests open is invalid, never passed.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Behavior, Counters, TestServer, run, scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_retry_is_counted_as_recovered_and_as_a_first_attempt_failure() {
    let srv = TestServer::start(Behavior::FailFirstPerIdempotencyKey).await;
    let dir = tempfile::tempdir().unwrap();
    let step = r#""method": "POST", "path": "/checkout", "body": {"cart_id": "c{{shopper}}"},
        "idempotency_key": true, "expect": [201],
        "retry": {"attempts": 3, "on": ["server_error"], "backoff": "10ms"},
        "extract": {"order": "/order_id"}"#;
    let json = scenario(&srv.url(), 30, 50.0, r#"{"model": "pool", "size": 8}"#, step);
    let (s, recs) = run(&json, dir.path()).await;
    let t = &s.totals;
    assert_eq!((t.operations, t.ok, t.dropped), (30, 30, 0));
    assert_eq!(t.first_attempt_failures, 30);
    assert_eq!(t.first_attempt_failures_by_class[&harness::outcome::FailureClass::ServerError], 30);
    assert_eq!(t.recovered, 30);
    assert_eq!(t.retries, 30);
    assert_eq!(t.attempts, 60);
    assert_eq!(Counters::get(&srv.counters.status_503), 30);
    // The server saw each key exactly twice: the retry reused it.
    let keys = srv.counters.idem_keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 30);
    assert!(keys.values().all(|&n| n == 2), "{keys:?}");
    // The ledger pairs the attempts of one operation under one key.
    let mut by_op: BTreeMap<u64, Vec<&harness::record::ledger::AttemptRecord>> = BTreeMap::new();
    for r in &recs {
        by_op.entry(r.op).or_default().push(r);
    }
    for attempts in by_op.values() {
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].idem, attempts[1].idem);
        assert!(attempts[0].idem.is_some());
        let second = attempts.iter().find(|a| a.attempt == 2).unwrap();
        let first = attempts.iter().find(|a| a.attempt == 1).unwrap();
        // The retry's intended time is the first attempt's end + backoff, and
        // the order id of the acknowledged checkout is not recorded (no audit
        // checkout steps in this scenario).
        assert!(second.intended_ms >= first.end_ms + 9.0);
        assert_eq!(second.order_id, None);
    }
    assert_eq!(s.verdict.as_str(), "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_drop_the_operation() {
    let srv = TestServer::start(Behavior::Status503EveryKth(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let step = r#""path": "/x", "retry": {"attempts": 2, "on": ["server_error"], "backoff": "5ms"}"#;
    let mut json = scenario(&srv.url(), 10, 50.0, r#"{"model": "pool", "size": 2}"#, step);
    json = json.replacen("\"journeys\"", "\"gates\": {\"max_dropped\": 0},\n  \"journeys\"", 1);
    let (s, _) = run(&json, dir.path()).await;
    let t = &s.totals;
    assert_eq!((t.operations, t.ok, t.dropped, t.recovered), (10, 0, 10, 0));
    assert_eq!(t.first_attempt_failures, 10);
    assert_eq!(t.attempts_failed_by_class[&harness::outcome::FailureClass::ServerError], 20);
    assert_eq!(t.dropped_by_class[&harness::outcome::FailureClass::ServerError], 10);
    assert_eq!(s.verdict.as_str(), "fail");
    assert_eq!(s.exit_code, 1);
    assert!(s.validity.valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_with_requests_open_is_invalid() {
    let srv = TestServer::start(Behavior::Delay(Duration::from_secs(3))).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&srv.url(), 5, 50.0, r#"{"model": "pool", "size": 8}"#, r#""path": "/x""#);
    let sc = harness::scenario::parse(&json).unwrap();
    let opts = harness::drive::run::RunOptions {
        out: Some(dir.path().to_path_buf()),
        engine: harness::traffic::engine::EngineOptions { drain_timeout: Some(Duration::from_millis(200)) },
        ..Default::default()
    };
    let p = harness::drive::run::prepare(sc, &opts).unwrap();
    let ex = harness::drive::run::execute(&p, Vec::new(), Default::default()).await.unwrap();
    let s = harness::drive::run::conclude(&p, ex, None).unwrap();
    assert_eq!(s.verdict.as_str(), "invalid");
    assert_eq!(s.exit_code, 2);
    assert!(!s.validity.valid);
    assert_eq!(s.totals.open_attempts, 5);
    assert_eq!(s.totals.open_operations, 5);
    assert_eq!(s.run.cut_off_shoppers, 5);
    assert!(s.validity.problems.iter().any(|p| p.contains("still open")), "{:?}", s.validity.problems);
}
