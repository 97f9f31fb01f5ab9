//! The shop's handlers in-process (router + oneshot, no socket), on both stores: the happy path, sold-out, idempotent replay, the audit, and the bad-input table; SQLite's held write lock and Redis's outage as 503s.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use reference_server::shop::{self, ShopArgs};
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::stores::{Backend, TestStore};

struct Fixture {
    store: TestStore,
    args: ShopArgs,
    app: Router,
}

fn fixture(backend: Backend) -> Fixture {
    let store = TestStore::new(backend);
    let mut args = store.args();
    args.catalog_size = 20;
    args.stock = 50;
    args.doorbusters = 2;
    args.doorbuster_stock = 3;
    args.inventory_cost = 1;
    args.pricing_cost = 10;
    args.max_body = 1024;
    shop::prepare(&args).unwrap();
    let app = shop::router(shop::open(&args).unwrap());
    Fixture { store, args, app }
}

struct Resp {
    status: StatusCode,
    content_type: String,
    replayed: bool,
    closes: bool,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn send(app: &Router, method: &str, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let replayed = resp.headers().contains_key("idempotent-replayed");
    let closes = resp.headers().get("connection").is_some_and(|v| v == "close");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    Resp { status, content_type, replayed, closes, text: String::from_utf8(bytes.to_vec()).unwrap() }
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post(app: &Router, uri: &str, body: Value) -> Resp {
    send(app, "POST", uri, &[JSON], Some(&body.to_string())).await
}

for_each_store!(tokio: browse_cart_checkout_order, sold_out_reserves_nothing_and_idempotent_retries_replay, bad_input_table);

async fn browse_cart_checkout_order(backend: Backend) {
    let f = fixture(backend);
    let app = &f.app;

    let page = send(app, "GET", "/products?page=1&per_page=5", &[], None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let page = page.json();
    assert_eq!(page["total"], 22);
    assert_eq!(page["per_page"], 5);
    assert_eq!(page["products"].as_array().unwrap().len(), 5);
    assert_eq!(page["products"][0]["sku"], "door-1", "doorbusters are listed first");
    assert_eq!(page["products"][0]["doorbuster"], true);
    assert_eq!(page["products"][2]["sku"], "sku-0001");
    let last = send(app, "GET", "/products?page=5&per_page=5", &[], None).await.json();
    assert_eq!(last["products"].as_array().unwrap().len(), 2, "22 products: the fifth page of 5 holds 2");

    let p = send(app, "GET", "/products/sku-0003", &[], None).await;
    assert_eq!(p.status, StatusCode::OK);
    let p = p.json();
    assert_eq!(p["stock_left"], 50);
    assert_eq!(p["in_stock"], true);
    let price = p["price_cents"].as_i64().unwrap();

    let cart = send(app, "GET", "/carts/alice", &[], None).await;
    assert_eq!(cart.json(), json!({"cart_id": "alice", "lines": []}));
    post(app, "/carts/alice/items", json!({"sku": "sku-0003", "qty": 2})).await;
    // Setting the same line again replaces its quantity (a retried add is harmless).
    post(app, "/carts/alice/items", json!({"sku": "sku-0003", "qty": 2})).await;
    post(app, "/carts/alice/items", json!({"sku": "door-1", "qty": 1})).await;
    let cart = post(app, "/carts/alice/items", json!({"sku": "sku-0005", "qty": 1})).await;
    assert_eq!(cart.status, StatusCode::OK);
    assert_eq!(cart.json()["lines"].as_array().unwrap().len(), 3);
    let cart = send(app, "DELETE", "/carts/alice/items/sku-0005", &[], None).await;
    assert_eq!(
        cart.json(),
        json!({"cart_id": "alice", "lines": [{"sku": "door-1", "qty": 1}, {"sku": "sku-0003", "qty": 2}]})
    );

    let order = post(app, "/checkout", json!({"cart_id": "alice"})).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
    let order = order.json();
    assert!(order["order_id"].is_i64());
    assert_eq!(order["idempotency_key"], Value::Null);
    assert_eq!(order["lines"][1], json!({"sku": "sku-0003", "qty": 2, "unit_price_cents": price}));
    let subtotal = 9900 + 2 * price;
    assert_eq!(order["subtotal_cents"], subtotal);
    let tax = (subtotal * 825 + 5000) / 10000;
    assert_eq!(order["total_cents"], subtotal + tax);

    let cart = send(app, "GET", "/carts/alice", &[], None).await.json();
    assert_eq!(cart["lines"], json!([]), "a successful checkout empties the cart");
    let fetched = send(app, "GET", &format!("/orders/{}", order["order_id"]), &[], None).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.json(), order);
    let p = send(app, "GET", "/products/door-1", &[], None).await.json();
    assert_eq!(p["stock_left"], 2);

    let again = post(app, "/checkout", json!({"cart_id": "alice"})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "an emptied cart cannot be checked out twice");
}

async fn sold_out_reserves_nothing_and_idempotent_retries_replay(backend: Backend) {
    let f = fixture(backend);
    let app = &f.app;
    post(app, "/carts/bob/items", json!({"sku": "sku-0001", "qty": 1})).await;
    post(app, "/carts/bob/items", json!({"sku": "door-2", "qty": 4})).await;
    let refused = post(app, "/checkout", json!({"cart_id": "bob"})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.json(), json!({"error": "sold out", "sku": "door-2"}));
    let p = send(app, "GET", "/products/sku-0001", &[], None).await.json();
    assert_eq!(p["stock_left"], 50, "a refused checkout reserves nothing");

    post(app, "/carts/bob/items", json!({"sku": "door-2", "qty": 3})).await;
    let key = ("idempotency-key", "bob-checkout-1");
    let first = send(app, "POST", "/checkout", &[JSON, key], Some(r#"{"cart_id":"bob"}"#)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert!(!first.replayed);
    assert_eq!(first.json()["idempotency_key"], "bob-checkout-1");
    // The cart is now empty; a retry must still get the original 201, byte for byte.
    let second = send(app, "POST", "/checkout", &[JSON, key], Some(r#"{"cart_id":"bob"}"#)).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert!(second.replayed);
    assert_eq!(second.text, first.text);
    // The same key for another cart is a client bug, not a replay.
    post(app, "/carts/carol/items", json!({"sku": "sku-0002", "qty": 1})).await;
    let reused = send(app, "POST", "/checkout", &[JSON, key], Some(r#"{"cart_id":"carol"}"#)).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reused.text);

    let audit: Value = serde_json::from_str(&shop::audit_json(&f.args).unwrap()).unwrap();
    let orders = audit["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "one order for one key: {audit}");
    assert_eq!(orders[0]["idempotency_key"], "bob-checkout-1");
    for s in audit["stock"].as_array().unwrap() {
        assert_eq!(s["initial"].as_i64().unwrap(), s["left"].as_i64().unwrap() + s["sold"].as_i64().unwrap(), "{s}");
    }
    let door2 = audit["stock"].as_array().unwrap().iter().find(|s| s["sku"] == "door-2").unwrap();
    assert_eq!((door2["left"].as_i64(), door2["sold"].as_i64()), (Some(0), Some(3)));
}

/// (name, method, uri, headers, body, expected status)
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], Option<&'a str>, u16);

async fn bad_input_table(backend: Backend) {
    let f = fixture(backend);
    let app = &f.app;
    post(app, "/carts/dave/items", json!({"sku": "sku-0001", "qty": 1})).await;
    let big = format!(r#"{{"sku":"sku-0001","qty":1,"pad":"{}"}}"#, "x".repeat(2000));
    let long_key = "k".repeat(200);
    let no_ct: &[(&str, &str)] = &[];
    let text_ct: &[(&str, &str)] = &[("content-type", "text/plain")];
    let json_ct: &[(&str, &str)] = &[JSON];
    let with_long_key: &[(&str, &str)] = &[JSON, ("idempotency-key", &long_key)];
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("malformed JSON",        "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"#), 400),
        ("empty body",            "POST", "/carts/dave/items", json_ct, Some(""), 400),
        ("JSON array",            "POST", "/carts/dave/items", json_ct, Some("[1,2]"), 422),
        ("unknown field",         "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":1,"price":0}"#), 422),
        ("missing qty",           "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001"}"#), 422),
        ("qty as string",         "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":"2"}"#), 422),
        ("fractional qty",        "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":1.5}"#), 422),
        ("qty zero",              "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":0}"#), 422),
        ("qty negative",          "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":-3}"#), 422),
        ("qty absurd",            "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":101}"#), 422),
        ("qty beyond i64",        "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-0001","qty":1e30}"#), 422),
        ("unknown sku",           "POST", "/carts/dave/items", json_ct, Some(r#"{"sku":"sku-9999","qty":1}"#), 404),
        ("no content-type",       "POST", "/carts/dave/items", no_ct, Some(r#"{"sku":"sku-0001","qty":1}"#), 415),
        ("text content-type",     "POST", "/carts/dave/items", text_ct, Some(r#"{"sku":"sku-0001","qty":1}"#), 415),
        ("body over the limit",   "POST", "/carts/dave/items", json_ct, Some(&big), 413),
        ("bad cart id",           "GET",  "/carts/%20bad", no_ct, None, 400),
        ("delete unknown sku",    "DELETE", "/carts/dave/items/nope", no_ct, None, 404),
        ("unknown product",       "GET",  "/products/nope", no_ct, None, 404),
        ("page zero",             "GET",  "/products?page=0", no_ct, None, 400),
        ("per_page too big",      "GET",  "/products?per_page=101", no_ct, None, 400),
        ("page not a number",     "GET",  "/products?page=abc", no_ct, None, 400),
        ("order id not a number", "GET",  "/orders/abc", no_ct, None, 400),
        ("unknown order",         "GET",  "/orders/999999", no_ct, None, 404),
        ("checkout empty cart",   "POST", "/checkout", json_ct, Some(r#"{"cart_id":"nobody"}"#), 400),
        ("checkout no cart_id",   "POST", "/checkout", json_ct, Some("{}"), 422),
        ("checkout extra field",  "POST", "/checkout", json_ct, Some(r#"{"cart_id":"dave","coupon":"FREE"}"#), 422),
        ("checkout bad cart id",  "POST", "/checkout", json_ct, Some(r#"{"cart_id":""}"#), 400),
        ("idempotency key long",  "POST", "/checkout", with_long_key, Some(r#"{"cart_id":"dave"}"#), 400),
        ("GET on checkout",       "GET",  "/checkout", no_ct, None, 405),
        ("PUT on products",       "PUT",  "/products", no_ct, None, 405),
        ("DELETE an order",       "DELETE", "/orders/1", no_ct, None, 405),
        ("POST to a cart",        "POST", "/carts/dave", json_ct, Some("{}"), 405),
        ("unknown path",          "GET",  "/nope", no_ct, None, 404),
        ("unknown nested path",   "GET",  "/carts/dave/items/x/y", no_ct, None, 404),
    ];
    let mut failures = Vec::new();
    for (name, method, uri, headers, body, want) in cases {
        let r = send(app, method, uri, headers, body).await;
        let err = serde_json::from_str::<Value>(&r.text).ok().and_then(|v| v["error"].as_str().map(str::to_string));
        let ok = r.status.as_u16() == want
            && r.content_type.starts_with("application/json")
            && err.as_deref().is_some_and(|e| !e.is_empty());
        if !ok {
            failures.push(format!(
                "{name}: {method} {uri} -> {} {:?} {} (want {want} + JSON error)",
                r.status, r.content_type, r.text
            ));
        }
    }
    assert!(failures.is_empty(), "bad-input cases answered wrongly:\n{}", failures.join("\n"));

    // A 413 leaves the body unread: the connection must not be reused.
    let too_big = send(app, "POST", "/carts/dave/items", json_ct, Some(&big)).await;
    assert!(too_big.closes, "413 without Connection: close");
    assert!(!send(app, "GET", "/nope", no_ct, None).await.closes, "only a 413 closes");

    // Nothing above changed the cart or broke the shop.
    let cart = send(app, "GET", "/carts/dave", &[], None).await;
    assert_eq!(cart.status, StatusCode::OK);
    assert_eq!(cart.json()["lines"], json!([{"sku": "sku-0001", "qty": 1}]));
}

#[tokio::test]
async fn sqlite_a_held_write_lock_is_a_503_then_clears() {
    let mut f = fixture(Backend::Sqlite);
    f.args.db_busy_timeout = std::time::Duration::from_millis(100);
    let app = shop::router(shop::open(&f.args).unwrap());
    // Another "worker" holds SQLite's write lock (e.g. it was SIGSTOPped mid-transaction).
    let mut other = rusqlite::Connection::open(&f.args.db).unwrap();
    let tx = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    let busy = post(&app, "/carts/frank/items", json!({"sku": "sku-0001", "qty": 1})).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{}", busy.text);
    assert!(busy.json()["error"].as_str().unwrap().contains("busy"), "{}", busy.text);
    // Reads go on under WAL while a writer holds the lock.
    assert_eq!(send(&app, "GET", "/products/sku-0001", &[], None).await.status, StatusCode::OK);
    drop(tx);
    let ok = post(&app, "/carts/frank/items", json!({"sku": "sku-0001", "qty": 1})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn redis_down_is_a_503_then_clears_and_keeps_the_data() {
    let mut f = fixture(Backend::Redis);
    let app = &f.app;
    assert_eq!(post(app, "/carts/gina/items", json!({"sku": "sku-0001", "qty": 2})).await.status, StatusCode::OK);
    f.store.redis.as_mut().unwrap().kill();
    let budget = f.args.db_busy_timeout + std::time::Duration::from_secs(2);
    for (method, uri, body) in [
        ("GET", "/products/sku-0001", None),
        ("GET", "/carts/gina", None),
        ("POST", "/carts/gina/items", Some(r#"{"sku":"sku-0002","qty":1}"#)),
        ("POST", "/checkout", Some(r#"{"cart_id":"gina"}"#)),
    ] {
        let started = std::time::Instant::now();
        let r = send(app, method, uri, &[JSON], body).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}: {}", r.text);
        assert!(r.json()["error"].as_str().unwrap().contains("unavailable"), "{}", r.text);
        assert!(started.elapsed() < budget, "{method} {uri} hung past --db-busy-timeout: {:?}", started.elapsed());
    }
    // Restarted from its AOF: the same worker's store reconnects, and the
    // cart written before the kill is still there.
    f.store.redis.as_mut().unwrap().restart();
    let cart = send(app, "GET", "/carts/gina", &[], None).await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.text);
    assert_eq!(cart.json()["lines"], json!([{"sku": "sku-0001", "qty": 2}]));
    let order = post(app, "/checkout", json!({"cart_id": "gina"})).await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
}

#[tokio::test]
async fn a_hung_redis_is_a_503_after_the_busy_timeout_then_clears() {
    let mut f = fixture(Backend::Redis);
    f.args.db_busy_timeout = std::time::Duration::from_millis(300);
    let app = shop::router(shop::open(&f.args).unwrap());
    let pid = nix::unistd::Pid::from_raw(f.store.redis.as_ref().unwrap().pid().unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    let r = post(&app, "/carts/hank/items", json!({"sku": "sku-0001", "qty": 1})).await;
    let took = started.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(took >= f.args.db_busy_timeout, "answered before the timeout: {took:?}");
    assert!(took < f.args.db_busy_timeout * 2 + std::time::Duration::from_secs(2), "hung: {took:?}");
    let ok = post(&app, "/carts/hank/items", json!({"sku": "sku-0001", "qty": 1})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}
