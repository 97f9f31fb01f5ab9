//! The shop on the real cluster (master + 2 worker processes), on both stores (one SQLite file; one private redis-server): a doorbuster race sells exactly the stock, one Idempotency-Key on two workers makes one order, and SIGKILLed workers lose no acknowledged order and leave nothing half-written.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::task::JoinSet;

mod common;
use common::Server;
use common::stores::{Backend, TestStore};

/// A running cluster (common::Server: loopback port 0, killed with its
/// workers on drop) with its own store (dropped after the cluster).
struct Cluster {
    server: Server,
    public: SocketAddr,
    admin: SocketAddr,
    _store: TestStore,
}

impl Cluster {
    fn start(backend: Backend, shop_args: &[&str]) -> Cluster {
        let store = TestStore::new(backend);
        let flags = store.flags();
        let mut args = vec!["--workers", "2", "--hang-timeout", "20s", "--reset-db"];
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(shop_args);
        let server = Server::start(&args);
        Cluster { public: server.public, admin: server.admin, server, _store: store }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    async fn admin(&self, path: &str) -> Value {
        let url = format!("http://{}{path}", self.admin);
        reqwest::get(&url).await.unwrap().json().await.unwrap()
    }

    /// Pids of the workers in state `ready`, once there are `n` of them.
    async fn ready_workers(&self, n: usize) -> Vec<i32> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let w = self.admin("/workers").await;
            let pids: Vec<i32> = w["workers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["state"] == "ready")
                .map(|w| w["pid"].as_i64().unwrap() as i32)
                .collect();
            if pids.len() >= n {
                return pids;
            }
            assert!(Instant::now() < until, "never {n} ready workers: {w}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop gracefully while letting this runtime run, so the test's idle
    /// client connections close at once instead of waiting out the
    /// server's keep-alive timeout (a blocking Drop would freeze them).
    async fn stop(mut self) {
        self.server.signal("SIGINT");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(status) = self.server.try_exit() {
                assert!(status.success(), "cluster exited with {status}; log:\n{}", self.server.dump());
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("cluster did not stop on SIGINT; log:\n{}", self.server.dump());
        // Drop kills it and its workers.
    }

    /// The audit, checked for what must hold in any state: stock never
    /// negative and initial = left + sold for every SKU.
    async fn audit(&self) -> Value {
        let audit = self.admin("/audit").await;
        for s in audit["stock"].as_array().unwrap() {
            let (initial, left, sold) =
                (s["initial"].as_i64().unwrap(), s["left"].as_i64().unwrap(), s["sold"].as_i64().unwrap());
            assert!(left >= 0, "negative stock: {s}");
            assert_eq!(initial, left + sold, "stock does not add up: {s}");
        }
        audit
    }
}

for_each_store!(
    tokio: doorbuster_race_across_workers_sells_exactly_the_stock,
    one_idempotency_key_on_two_workers_makes_one_order,
    sigkilled_workers_lose_no_acknowledged_order,
    bad_input_over_the_socket_leaves_every_worker_alive,
);

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

struct Answer {
    status: u16,
    worker: String,
    body: String,
}

async fn post(c: &reqwest::Client, url: &str, key: Option<&str>, body: Value) -> reqwest::Result<Answer> {
    let mut req = c.post(url).json(&body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let worker = resp.headers().get("x-worker-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Ok(Answer { status, worker, body: resp.text().await? })
}

fn order_id(body: &str) -> i64 {
    serde_json::from_str::<Value>(body).unwrap()["order_id"].as_i64().unwrap()
}

async fn doorbuster_race_across_workers_sells_exactly_the_stock(backend: Backend) {
    let (stock, buyers) = (40_i64, 300_usize);
    let stock_arg = stock.to_string();
    let c =
        Cluster::start(backend, &["--doorbuster-stock", &stock_arg, "--pricing-cost", "100", "--catalog-size", "10"]);
    c.ready_workers(2).await;
    let http = client();
    let mut set = JoinSet::new();
    for b in 0..buyers {
        let (http, items, checkout) = (http.clone(), c.url(&format!("/carts/buyer-{b}/items")), c.url("/checkout"));
        set.spawn(async move {
            let added = post(&http, &items, None, json!({"sku": "door-1", "qty": 1})).await.unwrap();
            assert_eq!(added.status, 200, "{}", added.body);
            post(&http, &checkout, Some(&format!("buyer-{b}")), json!({"cart_id": format!("buyer-{b}")})).await.unwrap()
        });
    }
    let mut created = Vec::new();
    let mut refused = 0;
    let mut workers = BTreeSet::new();
    while let Some(a) = set.join_next().await {
        let a = a.unwrap();
        workers.insert(a.worker.clone());
        match a.status {
            201 => created.push(order_id(&a.body)),
            409 => {
                assert_eq!(
                    serde_json::from_str::<Value>(&a.body).unwrap(),
                    json!({"error": "sold out", "sku": "door-1"})
                );
                refused += 1;
            }
            s => panic!("unexpected {s}: {}", a.body),
        }
    }
    assert!(workers.len() >= 2, "checkouts were all served by one worker: {workers:?}");
    assert_eq!(created.len() as i64, stock, "exactly min(stock, buyers) orders");
    assert_eq!(created.len() + refused, buyers);

    let audit = c.audit().await;
    let mut audited: Vec<i64> =
        audit["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_i64().unwrap()).collect();
    created.sort_unstable();
    audited.sort_unstable();
    assert_eq!(created, audited, "the audit lists exactly the acknowledged orders");
    let door = audit["stock"].as_array().unwrap().iter().find(|s| s["sku"] == "door-1").unwrap().clone();
    assert_eq!(door, json!({"sku": "door-1", "initial": stock, "left": 0, "sold": stock}));
    drop(http);
    c.stop().await;
}

/// A client whose one keep-alive connection is served by the worker it names.
async fn client_on_worker(c: &Cluster, want: &str) -> reqwest::Client {
    for _ in 0..200 {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(1).build().unwrap();
        let resp = http.get(c.url("/products/door-1")).send().await.unwrap();
        let worker = resp.headers().get("x-worker-id").unwrap().to_str().unwrap().to_string();
        resp.bytes().await.unwrap();
        if worker == want {
            return http;
        }
    }
    panic!("no connection landed on worker {want} in 200 tries");
}

async fn one_idempotency_key_on_two_workers_makes_one_order(backend: Backend) {
    let c = Cluster::start(backend, &["--pricing-cost", "300", "--catalog-size", "10"]);
    c.ready_workers(2).await;
    let ids: Vec<String> =
        c.admin("/workers").await["workers"].as_array().unwrap().iter().map(|w| w["id"].to_string()).collect();
    let (a, b) = (client_on_worker(&c, &ids[0]).await, client_on_worker(&c, &ids[1]).await);
    let rounds = 30;
    for i in 0..rounds {
        let cart = format!("twice-{i}");
        let added =
            post(&a, &c.url(&format!("/carts/{cart}/items")), None, json!({"sku": "door-2", "qty": 2})).await.unwrap();
        assert_eq!(added.status, 200);
        let key = format!("key-{i}");
        let body = json!({"cart_id": cart});
        let url = c.url("/checkout");
        let (first, second) =
            tokio::join!(post(&a, &url, Some(&key), body.clone()), post(&b, &url, Some(&key), body.clone()));
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_ne!(first.worker, second.worker, "the two copies must be served by two workers");
        assert_eq!(first.status, 201, "{}", first.body);
        assert_eq!((first.status, &first.body), (second.status, &second.body), "same status and body both times");
    }
    let audit = c.audit().await;
    let orders = audit["orders"].as_array().unwrap();
    assert_eq!(orders.len(), rounds, "one order per key");
    let keys: BTreeSet<&str> = orders.iter().map(|o| o["idempotency_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), rounds);
    let door = audit["stock"].as_array().unwrap().iter().find(|s| s["sku"] == "door-2").unwrap().clone();
    assert_eq!(door["sold"], 2 * rounds as i64, "stock reserved once per key");
    drop((a, b));
    c.stop().await;
}

async fn sigkilled_workers_lose_no_acknowledged_order(backend: Backend) {
    // Debug builds make a unit ~10x dearer: checkouts take tens of ms, so
    // many are in flight (queued on a busy worker) when the kills land.
    let c = Cluster::start(backend, &["--pricing-cost", "2000", "--catalog-size", "20", "--doorbuster-stock", "60"]);
    c.ready_workers(2).await;
    let http = client();
    let carts = 160_usize;
    // Carts first, without faults: a mix of regular items and a doorbuster.
    for i in 0..carts {
        let url = c.url(&format!("/carts/k-{i}/items"));
        post(&http, &url, None, json!({"sku": format!("sku-{:04}", i % 20 + 1), "qty": i % 3 + 1})).await.unwrap();
        if i % 2 == 0 {
            post(&http, &url, None, json!({"sku": "door-1", "qty": 1})).await.unwrap();
        }
    }

    let decided = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for i in 0..carts {
        let (http, url, decided) = (http.clone(), c.url("/checkout"), Arc::clone(&decided));
        set.spawn(async move {
            // Retry on anything but a decision, with the same key, as a careful client would.
            let key = format!("kill-{i}");
            let mut failed_attempts = 0;
            for _ in 0..30 {
                match post(&http, &url, Some(&key), json!({"cart_id": format!("k-{i}")})).await {
                    Ok(a) if a.status == 201 || a.status == 409 => {
                        decided.fetch_add(1, Ordering::SeqCst);
                        return (i, a, failed_attempts);
                    }
                    Ok(_) | Err(_) => failed_attempts += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("checkout {i} never got a decision");
        });
    }
    // Two SIGKILLs while most checkouts are still queued or in flight: all
    // were sent at once, so after the first decisions the rest are waiting
    // on a worker, whatever the build's speed.
    let mut killed = Vec::new();
    for after in [5, 40] {
        let until = Instant::now() + Duration::from_secs(60);
        while decided.load(Ordering::SeqCst) < after && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = c.ready_workers(1).await[0];
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        killed.push(pid);
    }
    let mut finals = BTreeMap::new();
    let mut failed = 0;
    while let Some(r) = set.join_next().await {
        let (i, a, f) = r.unwrap();
        failed += f;
        finals.insert(format!("k-{i}"), a);
    }
    assert_eq!(killed.len(), 2);
    assert!(failed > 0, "the kills interrupted no checkout, so this test showed nothing");

    let audit = c.audit().await;
    let orders = audit["orders"].as_array().unwrap();
    let by_cart: BTreeMap<&str, &Value> = orders.iter().map(|o| (o["cart_id"].as_str().unwrap(), o)).collect();
    assert_eq!(by_cart.len(), orders.len(), "one order per cart at most: {orders:?}");
    for o in orders {
        let lines = o["lines"].as_array().unwrap();
        assert!(!lines.is_empty(), "an order without lines is half-written: {o}");
        let sub: i64 = lines.iter().map(|l| l["qty"].as_i64().unwrap() * l["unit_price_cents"].as_i64().unwrap()).sum();
        assert_eq!(o["total_cents"].as_i64().unwrap(), sub + (sub * 825 + 5000) / 10000, "order total: {o}");
    }
    let mut acknowledged = 0;
    for (cart, a) in &finals {
        if a.status == 201 {
            acknowledged += 1;
            let body: Value = serde_json::from_str(&a.body).unwrap();
            let o = by_cart
                .get(cart.as_str())
                .unwrap_or_else(|| panic!("acknowledged order for {cart} is not in the audit"));
            assert_eq!(o["order_id"], body["order_id"], "{cart}");
            assert_eq!(o["lines"], body["lines"], "{cart}");
            let left = reqwest::get(c.url(&format!("/carts/{cart}"))).await.unwrap().json::<Value>().await.unwrap();
            assert_eq!(left["lines"], json!([]), "cart {cart} was checked out but not emptied");
        } else {
            assert!(!by_cart.contains_key(cart.as_str()), "{cart} was refused yet has an order");
        }
    }
    eprintln!(
        "{acknowledged} orders acknowledged, {failed} attempts failed and were retried, workers killed: {killed:?}"
    );
    assert_eq!(acknowledged, orders.len(), "every order in the audit was acknowledged to its client");
    assert!(acknowledged > 0);
    drop(http);
    c.stop().await;
}

/// (method, path, content-type, body, expected status)
type BadCase = (&'static str, &'static str, Option<&'static str>, Option<String>, u16);

async fn bad_input_over_the_socket_leaves_every_worker_alive(backend: Backend) {
    let c = Cluster::start(backend, &["--pricing-cost", "10", "--catalog-size", "10", "--max-body", "1024"]);
    let before: BTreeSet<i32> = c.ready_workers(2).await.into_iter().collect();
    let http = client();
    let big = format!(r#"{{"sku":"sku-0001","qty":1,"pad":"{}"}}"#, "x".repeat(1 << 20));
    let cases: Vec<BadCase> = vec![
        ("POST", "/carts/x/items", Some("application/json"), Some(r#"{"sku":"#.into()), 400),
        ("POST", "/carts/x/items", Some("application/json"), Some(r#"{"sku":"sku-0001","qty":0}"#.into()), 422),
        ("POST", "/carts/x/items", Some("application/json"), Some(r#"{"sku":"nope","qty":1}"#.into()), 404),
        ("POST", "/carts/x/items", Some("application/json"), Some(big), 413),
        ("POST", "/carts/x/items", None, Some(r#"{"sku":"sku-0001","qty":1}"#.into()), 415),
        ("POST", "/checkout", Some("application/json"), Some(r#"{"cart_id":"x","extra":1}"#.into()), 422),
        ("GET", "/checkout", None, None, 405),
        ("GET", "/no/such/path", None, None, 404),
        ("GET", "/orders/not-a-number", None, None, 400),
    ];
    // Each case several times, so both workers see them.
    for _ in 0..4 {
        for (method, path, ct, body, want) in &cases {
            let mut req = http.request(method.parse().unwrap(), c.url(path));
            if let Some(ct) = ct {
                req = req.header("content-type", *ct);
            }
            if let Some(b) = body {
                req = req.body(b.clone());
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap();
                    assert_eq!(status, *want, "{method} {path}: {v}");
                    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {v}");
                }
                // The server may answer 413 and close before reading a huge
                // body; the client can then see the close instead. Fine, as
                // long as the worker lives (checked below).
                Err(e) if *want == 413 => eprintln!("413 case ended in a client error: {e}"),
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
    }
    let ok = http.get(c.url("/products/sku-0001")).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let after: BTreeSet<i32> = c.ready_workers(2).await.into_iter().collect();
    assert_eq!(before, after, "a worker died or was replaced on bad input");
    drop(http);
    c.stop().await;
}
