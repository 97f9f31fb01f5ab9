//! The store's cross-connection guarantees without any server, on both stores: threads, each with its own `Shop` (own SQLite or Redis connection, as each worker process has) on one database, race doorbuster checkouts and same-key retries.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Barrier};
use std::thread;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use reference_server::shop::{self, ShopArgs};
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::stores::{Backend, TestStore};

const THREADS: usize = 4;

fn args(store: &TestStore, door_stock: i64) -> ShopArgs {
    let mut a = store.args();
    a.catalog_size = 10;
    a.doorbusters = 1;
    a.doorbuster_stock = door_stock;
    a.inventory_cost = 0;
    a.pricing_cost = 50;
    a
}

/// One request through a router on a private current-thread runtime.
fn call(rt: &tokio::runtime::Runtime, app: &Router, uri: &str, key: Option<&str>, body: Value) -> (u16, String) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    rt.block_on(async {
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    })
}

fn audit(a: &ShopArgs) -> Value {
    let audit: Value = serde_json::from_str(&shop::audit_json(a).unwrap()).unwrap();
    for s in audit["stock"].as_array().unwrap() {
        let (initial, left, sold) = (s["initial"].as_i64(), s["left"].as_i64(), s["sold"].as_i64());
        assert_eq!(initial, Some(left.unwrap() + sold.unwrap()), "stock does not add up: {s}");
        assert!(left.unwrap() >= 0, "negative stock: {s}");
    }
    audit
}

/// Run `per_thread` on THREADS threads, each with its own store connection,
/// released together by a barrier.
fn race<T: Send + 'static>(
    a: &ShopArgs,
    per_thread: impl Fn(usize, &tokio::runtime::Runtime, &Router) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(THREADS));
    let per_thread = Arc::new(per_thread);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (a, barrier, f) = (a.clone(), Arc::clone(&barrier), Arc::clone(&per_thread));
            thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let app = shop::router(shop::open(&a).unwrap());
                barrier.wait();
                f(t, &rt, &app)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

for_each_store!(sync: doorbuster_race_sells_exactly_the_stock, same_key_from_every_connection_makes_one_order);

fn doorbuster_race_sells_exactly_the_stock(backend: Backend) {
    let store = TestStore::new(backend);
    let (stock, buyers) = (25_i64, 200_usize);
    let a = args(&store, stock);
    shop::prepare(&a).unwrap();
    let results = race(&a, move |t, rt, app| {
        let mut statuses = Vec::new();
        for b in (t..buyers).step_by(THREADS) {
            let cart = format!("buyer-{b}");
            let (s, body) = call(rt, app, &format!("/carts/{cart}/items"), None, json!({"sku": "door-1", "qty": 1}));
            assert_eq!(s, 200, "{body}");
            statuses.push(call(rt, app, "/checkout", None, json!({"cart_id": cart})));
        }
        statuses
    });
    let all: Vec<(u16, String)> = results.into_iter().flatten().collect();
    let created: Vec<&String> = all.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    let refused = all.iter().filter(|(s, b)| *s == 409 && b.contains("sold out")).count();
    assert_eq!(created.len() as i64, stock, "exactly the stock is sold");
    assert_eq!(created.len() + refused, buyers, "every other buyer is told 'sold out': {all:?}");

    let audit = audit(&a);
    assert_eq!(audit["orders"].as_array().unwrap().len() as i64, stock);
    assert_eq!(audit["stock"][0]["sku"], "door-1");
    assert_eq!(audit["stock"][0]["left"], 0);
    let mut acked: Vec<i64> =
        created.iter().map(|b| serde_json::from_str::<Value>(b).unwrap()["order_id"].as_i64().unwrap()).collect();
    let mut audited: Vec<i64> =
        audit["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_i64().unwrap()).collect();
    acked.sort_unstable();
    audited.sort_unstable();
    assert_eq!(acked, audited, "every 201 is in the audit, and nothing else");
}

fn same_key_from_every_connection_makes_one_order(backend: Backend) {
    let store = TestStore::new(backend);
    let a = args(&store, 10);
    shop::prepare(&a).unwrap();
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = shop::router(shop::open(&a).unwrap());
        let (s, _) = call(&rt, &app, "/carts/eve/items", None, json!({"sku": "door-1", "qty": 3}));
        assert_eq!(s, 200);
    }
    // Every thread sends the same checkout with the same key, several times.
    let results = race(&a, |_, rt, app| {
        (0..5).map(|_| call(rt, app, "/checkout", Some("eve-1"), json!({"cart_id": "eve"}))).collect::<Vec<_>>()
    });
    let all: Vec<(u16, String)> = results.into_iter().flatten().collect();
    assert!(all.iter().all(|r| r == &all[0]), "every answer is the first answer: {all:?}");
    assert_eq!(all[0].0, 201);

    let audit = audit(&a);
    assert_eq!(audit["orders"].as_array().unwrap().len(), 1, "{audit}");
    assert_eq!(audit["stock"][0]["sold"], 3, "stock reserved once");
}
