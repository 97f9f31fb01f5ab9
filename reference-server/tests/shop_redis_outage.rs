//! A Redis outage under checkouts (issue 16): redis-server is SIGKILLed and restarted from its AOF while a cluster's clients check out; meanwhile the shop answers 503 within --db-busy-timeout, no worker dies, and afterwards the audit holds exactly the acknowledged orders, none twice, nothing oversold.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;

mod common;
use common::Server;
use common::stores::{Backend, TestStore};

const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// What one client saw for its checkout, retried with one key until decided.
struct Checkout {
    cart: String,
    status: u16,
    body: String,
    /// Latency of each 503 it got.
    unavailable: Vec<Duration>,
}

async fn checkout_until_decided(
    http: reqwest::Client,
    url: String,
    i: usize,
    decided: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) -> Checkout {
    let cart = format!("o-{i}");
    let mut unavailable = Vec::new();
    for _ in 0..600 {
        let started = Instant::now();
        let resp = http
            .post(&url)
            .header("idempotency-key", format!("outage-{i}"))
            .json(&json!({"cart_id": cart}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("checkout {i}: no answer (did a worker die?): {e}"));
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        match status {
            201 | 409 => {
                decided.fetch_add(1, Ordering::SeqCst);
                return Checkout { cart, status, body, unavailable };
            }
            503 => {
                unavailable.push(started.elapsed());
                refused.fetch_add(1, Ordering::SeqCst);
                assert!(body.contains("unavailable"), "checkout {i}: 503 {body}");
            }
            s => panic!("checkout {i}: {s} {body}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("checkout {i} never got a decision");
}

#[tokio::test]
async fn a_redis_outage_is_503s_then_nothing_acknowledged_is_lost() {
    let mut store = TestStore::new(Backend::Redis);
    let busy = format!("{}ms", BUSY_TIMEOUT.as_millis());
    let mut args = vec!["--workers", "2", "--hang-timeout", "20s", "--reset-db", "--db-busy-timeout", &busy];
    let flags = store.flags();
    args.extend(flags.iter().map(String::as_str));
    args.extend(["--pricing-cost", "300", "--catalog-size", "20", "--doorbuster-stock", "50"]);
    let server = Server::start(&args);
    let before: BTreeSet<i32> = server.wait_ready(2).into_iter().map(|(_, pid)| pid).collect();
    let base = format!("http://{}", server.public);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    let carts = 120_usize;
    for i in 0..carts {
        let url = format!("{base}/carts/o-{i}/items");
        for (sku, qty) in [(format!("sku-{:04}", i % 20 + 1), i % 3 + 1), ("door-1".to_string(), 1)] {
            let r = http.post(&url).json(&json!({"sku": sku, "qty": qty})).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    }

    let decided = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..carts {
        let (http, url) = (http.clone(), format!("{base}/checkout"));
        set.spawn(checkout_until_decided(http, url, i, Arc::clone(&decided), Arc::clone(&refused)));
    }
    // The outage lands mid-run: after the first decisions, while most
    // checkouts are still queued on the workers.
    let until = Instant::now() + Duration::from_secs(60);
    while decided.load(Ordering::SeqCst) < 10 {
        assert!(Instant::now() < until, "no checkout was decided in 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let redis = store.redis.as_mut().unwrap();
    redis.kill();
    let seen = refused.load(Ordering::SeqCst);
    while refused.load(Ordering::SeqCst) < seen + 20 {
        assert!(Instant::now() < until, "the outage produced no 503s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Blocks this runtime (the clients pause) for the restart only.
    redis.restart();

    let mut finals = Vec::new();
    while let Some(r) = set.join_next().await {
        finals.push(r.unwrap());
    }
    let slowest = finals.iter().flat_map(|c| c.unavailable.iter()).max().copied().unwrap_or_default();
    let total_503: usize = finals.iter().map(|c| c.unavailable.len()).sum();
    eprintln!("{total_503} answers were 503, the slowest in {slowest:?}");
    assert!(total_503 > 0);
    // 503 fast: never held past the busy timeout (plus the CPU a debug
    // build spends on the checkouts queued ahead on the same worker).
    assert!(slowest < BUSY_TIMEOUT + Duration::from_secs(5), "a 503 took {slowest:?}");

    let after: BTreeSet<i32> = server.wait_ready(2).into_iter().map(|(_, pid)| pid).collect();
    assert_eq!(before, after, "a worker died or was replaced during the Redis outage");

    let audit: Value = reqwest::get(format!("http://{}/audit", server.admin)).await.unwrap().json().await.unwrap();
    for s in audit["stock"].as_array().unwrap() {
        let (initial, left, sold) =
            (s["initial"].as_i64().unwrap(), s["left"].as_i64().unwrap(), s["sold"].as_i64().unwrap());
        assert!(left >= 0, "oversold: {s}");
        assert_eq!(initial, left + sold, "stock does not add up: {s}");
    }
    let orders = audit["orders"].as_array().unwrap();
    let by_cart: BTreeMap<&str, &Value> = orders.iter().map(|o| (o["cart_id"].as_str().unwrap(), o)).collect();
    assert_eq!(by_cart.len(), orders.len(), "two orders for one cart (one key): {orders:?}");
    let mut acknowledged = 0;
    for c in &finals {
        match c.status {
            201 => {
                acknowledged += 1;
                let body: Value = serde_json::from_str(&c.body).unwrap();
                let o = by_cart.get(c.cart.as_str()).unwrap_or_else(|| panic!("acknowledged {} was lost", c.cart));
                assert_eq!((&o["order_id"], &o["lines"]), (&body["order_id"], &body["lines"]), "{}", c.cart);
            }
            _ => assert!(!by_cart.contains_key(c.cart.as_str()), "{} was refused yet has an order", c.cart),
        }
    }
    assert_eq!(acknowledged, orders.len(), "every order in the audit was acknowledged to its client");
    let door = audit["stock"].as_array().unwrap().iter().find(|s| s["sku"] == "door-1").unwrap();
    assert_eq!(door["sold"], json!(acknowledged), "one door-1 per acknowledged order");
    drop(server);
}
