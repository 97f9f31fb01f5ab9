//! The store's life cycle, on both stores: prepare seeds once (from flags or a catalog file) and keeps data across restarts unless --reset-db, workers never seed, and bad set-ups fail with a message naming the file; the TEST ONLY defects are refused on Redis.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::Request;
use reference_server::shop::{self, ShopArgs};
use serde_json::Value;
use tower::ServiceExt;

mod common;
use common::stores::{Backend, TestStore};

fn args(store: &TestStore) -> ShopArgs {
    let mut a = store.args();
    a.catalog_size = 3;
    a.doorbusters = 1;
    a.doorbuster_stock = 5;
    a.pricing_cost = 1;
    a
}

async fn status(a: &ShopArgs, method: &str, uri: &str, body: &str) -> u16 {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    shop::router(shop::open(a).unwrap()).oneshot(req).await.unwrap().status().as_u16()
}

fn audit(a: &ShopArgs) -> Value {
    serde_json::from_str(&shop::audit_json(a).unwrap()).unwrap()
}

for_each_store!(
    tokio: orders_survive_a_restart_and_reset_wipes_them,
    a_catalog_file_seeds_the_store,
    workers_refuse_an_unprepared_database,
);

async fn orders_survive_a_restart_and_reset_wipes_them(backend: Backend) {
    let store = TestStore::new(backend);
    let mut a = args(&store);
    shop::prepare(&a).unwrap();
    assert_eq!(status(&a, "POST", "/carts/c/items", r#"{"sku":"door-1","qty":2}"#).await, 200);
    assert_eq!(status(&a, "POST", "/checkout", r#"{"cart_id":"c"}"#).await, 201);

    // A restart of the whole server prepares again: nothing is reseeded,
    // even when the seed flags changed.
    a.doorbuster_stock = 50;
    shop::prepare(&a).unwrap();
    let kept = audit(&a);
    assert_eq!(kept["orders"].as_array().unwrap().len(), 1);
    assert_eq!(kept["stock"][0], serde_json::json!({"sku": "door-1", "initial": 5, "left": 3, "sold": 2}));

    a.reset_db = true;
    shop::prepare(&a).unwrap();
    let fresh = audit(&a);
    assert_eq!(fresh["orders"], serde_json::json!([]));
    assert_eq!(fresh["stock"][0], serde_json::json!({"sku": "door-1", "initial": 50, "left": 50, "sold": 0}));
    assert_eq!(fresh["stock"].as_array().unwrap().len(), 4);
}

async fn workers_refuse_an_unprepared_database(backend: Backend) {
    let store = TestStore::new(backend);
    let a = args(&store);
    let err = shop::open(&a).err().expect("open must not create a database").to_string();
    let place = if backend == Backend::Sqlite { "shop.db" } else { "redis://127.0.0.1:" };
    assert!(err.contains(place) && err.contains("prepared"), "{err}");
    match &store.redis {
        None => assert!(!a.db.exists(), "a worker must never create the database"),
        Some(r) => {
            let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(&mut r.conn()).unwrap();
            assert!(keys.is_empty(), "a worker must never seed: {keys:?}");
        }
    }
    let err = format!("{:#}", shop::audit_json(&a).unwrap_err());
    assert!(err.contains(place), "{err}");
}

#[test]
fn redis_refuses_the_sqlite_defects_and_bad_urls() {
    let store = TestStore::new(Backend::Redis);
    for flag in ["--unsafe-ack-before-commit", "--unsafe-idempotency-outside-tx"] {
        let mut a = args(&store);
        a.unsafe_ack_before_commit = flag == "--unsafe-ack-before-commit";
        a.unsafe_idempotency_outside_tx = flag == "--unsafe-idempotency-outside-tx";
        let err = shop::prepare(&a).unwrap_err().to_string();
        assert!(err.contains(flag) && err.contains("SQLite"), "{err}");
        let err = shop::open(&a).err().unwrap().to_string();
        assert!(err.contains(flag), "{err}");
    }
    for bad in ["rediss://127.0.0.1:1/0", "mysql://x", "redis://127.0.0.1:notaport/0"] {
        let err = ShopArgs::with_redis(bad).err().unwrap_or_else(|| panic!("{bad} accepted")).to_string();
        assert!(err.contains("redis://"), "{bad}: {err}");
    }
    let hidden = ShopArgs::with_redis("redis://user:secret@127.0.0.1:1/0").unwrap();
    assert!(!format!("{hidden:?}").contains("secret"), "a password reached Debug: {hidden:?}");
}

#[test]
fn bad_setups_name_the_problem() {
    let store = TestStore::new(Backend::Sqlite);
    let dir = &store.dir;
    let mut a = args(&store);
    a.catalog_size = 0;
    a.doorbusters = 0;
    let err = shop::prepare(&a).unwrap_err().to_string();
    assert!(err.contains("--catalog-size"), "{err}");

    let mut a = args(&store);
    a.db = dir.path().join("no-such-dir").join("shop.db");
    let err = format!("{:#}", shop::prepare(&a).unwrap_err());
    assert!(err.contains("no-such-dir"), "{err}");
}

async fn a_catalog_file_seeds_the_store(backend: Backend) {
    let store = TestStore::new(backend);
    let file = store.dir.path().join("catalog.json");
    std::fs::write(
        &file,
        r#"{"products": [
            {"sku": "tv-55", "name": "55in TV", "price_cents": 29900, "stock": 2, "doorbuster": true},
            {"sku": "cable", "name": "HDMI cable", "price_cents": 999, "stock": 500}
        ]}"#,
    )
    .unwrap();
    let mut a = args(&store);
    a.catalog_file = Some(file.clone());
    shop::prepare(&a).unwrap();
    let audit = audit(&a);
    assert_eq!(
        audit["stock"],
        serde_json::json!([
            {"sku": "tv-55", "initial": 2, "left": 2, "sold": 0},
            {"sku": "cable", "initial": 500, "left": 500, "sold": 0}
        ])
    );
    assert_eq!(status(&a, "POST", "/carts/c/items", r#"{"sku":"tv-55","qty":3}"#).await, 200);
    assert_eq!(status(&a, "POST", "/checkout", r#"{"cart_id":"c"}"#).await, 409);
    assert_eq!(status(&a, "POST", "/carts/c/items", r#"{"sku":"sku-0001","qty":1}"#).await, 404);

    std::fs::write(
        &file,
        r#"{"products": [{"sku": "a", "name": "A", "price_cents": 1, "stock": 1},
                                            {"sku": "a", "name": "A", "price_cents": 1, "stock": 1}]}"#,
    )
    .unwrap();
    a.reset_db = true;
    let err = format!("{:#}", shop::prepare(&a).unwrap_err());
    assert!(err.contains("catalog.json") && err.contains("products[1].sku"), "{err}");
    std::fs::write(&file, r#"{"products": [{"sku": "a", "name": "A", "price": 1, "stock": 1}]}"#).unwrap();
    let err = format!("{:#}", shop::prepare(&a).unwrap_err());
    assert!(err.contains("catalog.json") && err.contains("unknown field"), "{err}");
}

#[tokio::test]
async fn sqlite_the_wal_is_checkpointed_in_the_background() {
    let store = TestStore::new(Backend::Sqlite);
    let a = args(&store);
    shop::prepare(&a).unwrap();
    let before = std::fs::metadata(&a.db).unwrap().len();
    let app = shop::router(shop::open(&a).unwrap());
    // Writes land in the WAL; the worker's own commits never checkpoint.
    for i in 0..300 {
        let req = Request::post(format!("/carts/wal-{i:04}/items"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"sku":"sku-0001","qty":1}"#))
            .unwrap();
        assert_eq!(app.clone().oneshot(req).await.unwrap().status().as_u16(), 200);
    }
    // The checkpoint thread copies them into the database file.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&a.db).unwrap().len() <= before {
        assert!(std::time::Instant::now() < until, "no checkpoint reached the database file in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
