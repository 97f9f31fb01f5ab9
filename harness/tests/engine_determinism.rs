//! Determinism through the real engine: the same scenario and seed, run
//! twice against the same server, sends the same requests (methods, paths and
//! bodies with their random picks) at the same intended times: arrivals at
//! identical offsets, and every later step one identical think time after the
//! previous step ended. Another seed changes them, so the comparison can fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::record::ledger::AttemptRecord;
use support::{Behavior, TestServer, run};

fn scenario(url: &str, seed: u64) -> String {
    format!(
        r#"{{
  "name": "determinism",
  "seed": {seed},
  "target": {{"base_url": "{url}", "ready_timeout": "2s"}},
  "shoppers": 60,
  "arrival": [{{"duration": "1s", "rate": 40}}, {{"duration": "1s", "from_rate": 40, "to_rate": 80}}],
  "arrival_process": "poisson",
  "think": {{"kind": "exponential", "mean": "30ms", "max": "200ms"}},
  "data": {{"skus": ["a", "b", "c", "d", "e", "f", "g"]}},
  "connections": {{"model": "pool", "size": 16}},
  "journeys": [
    {{"name": "browse", "weight": 3, "steps": [
      {{"name": "list", "path": "/products?page={{{{rand.1.50}}}}"}},
      {{"name": "view", "path": "/products/{{{{pick.skus}}}}"}}
    ]}},
    {{"name": "buy", "weight": 1, "steps": [
      {{"name": "add", "method": "POST", "path": "/carts/s{{{{shopper}}}}/items",
        "body": {{"sku": "{{{{pick.skus}}}}", "qty": "{{{{rand.1.9}}}}"}}}},
      {{"name": "look", "path": "/carts/s{{{{shopper}}}}?x={{{{rand.1.1000000}}}}"}},
      {{"name": "pay", "method": "POST", "path": "/checkout", "body": {{"cart_id": "s{{{{shopper}}}}"}}}}
    ]}}
  ]
}}"#
    )
}

/// What one run sent: the server's sorted request lines, each shopper's first
/// intended send (ms), and each later step's think time (intended send minus
/// the previous step's end, ms) keyed by (shopper, step).
struct Sent {
    requests: Vec<String>,
    arrivals: BTreeMap<u64, f64>,
    thinks: BTreeMap<(u64, String), f64>,
}

async fn play(seed: u64) -> Sent {
    let srv = TestServer::start(Behavior::Delay(Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let (s, recs) = run(&scenario(&srv.url(), seed), dir.path()).await;
    assert_eq!((s.totals.operations, s.totals.ok), (s.totals.ok, s.totals.ok), "{:?}", s.totals);
    assert!(s.validity.valid);
    let mut requests = srv.counters.seen.lock().unwrap().clone();
    assert_eq!(requests.len() as u64, s.totals.attempts);
    requests.sort();

    let mut by_shopper: BTreeMap<u64, Vec<&AttemptRecord>> = BTreeMap::new();
    for r in &recs {
        assert_eq!(r.attempt, 1, "no retries in this scenario");
        by_shopper.entry(r.shopper).or_default().push(r);
    }
    let (mut arrivals, mut thinks) = (BTreeMap::new(), BTreeMap::new());
    for (shopper, mut steps) in by_shopper {
        steps.sort_by(|a, b| a.intended_ms.total_cmp(&b.intended_ms));
        arrivals.insert(shopper, steps[0].intended_ms);
        for pair in steps.windows(2) {
            thinks.insert((shopper, pair[1].step.clone()), pair[1].intended_ms - pair[0].end_ms);
        }
    }
    Sent { requests, arrivals, thinks }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_sends_the_same_requests_at_the_same_intended_times() {
    let (a, b) = (play(11).await, play(11).await);
    assert_eq!(a.arrivals.len(), 60);
    assert_eq!(a.arrivals, b.arrivals, "arrival offsets must be identical");
    assert_eq!(a.requests, b.requests, "the same methods, paths and bodies");
    assert_eq!(a.thinks.len(), b.thinks.len());
    assert!(!a.thinks.is_empty());
    for (key, think) in &a.thinks {
        let other = b.thinks[key];
        // The ledger keeps microseconds: two rounded times per think.
        assert!((think - other).abs() <= 0.002, "{key:?}: think {think} ms vs {other} ms");
    }
    // The thinks are real draws, not all zero or all equal.
    let distinct: std::collections::BTreeSet<u64> = a.thinks.values().map(|t| (t * 1000.0) as u64).collect();
    assert!(distinct.len() > 10, "{distinct:?}");

    let c = play(12).await;
    assert_ne!(a.arrivals, c.arrivals, "another seed, other arrival times");
    assert_ne!(a.requests, c.requests, "another seed, other picks");
}
