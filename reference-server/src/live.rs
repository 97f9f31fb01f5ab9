//! `GET /live/stock?skus=a,b`: live stock levels as Server-Sent Events, with
//! state that lives in one worker's memory, so client affinity matters.
//!
//! Each worker has one hub: it polls the shop (through the shop's own router,
//! so the shop stays untouched) every `--live-interval` for the skus its
//! subscribers watch, numbers every change with a per-worker sequence and
//! keeps the last [`HISTORY`] changes. Event ids are `<worker_id>:<seq>`. A
//! client reconnecting with `Last-Event-ID` to the *same* worker resumes
//! exactly (missed changes replayed, `"resumed": true` in the `hello`
//! event); on any other worker the id means nothing, and it gets a fresh
//! `snapshot` instead (`"resumed": false`). Subscriber ids are per worker too.
//!
//! Why SSE and not long-poll: one response carries many events, so a drain
//! has to end a response that would otherwise never end (the case the
//! cluster must get right), and SSE has reconnection with `Last-Event-ID`
//! built into the protocol (EventSource), which is what a resume needs.
//!
//! On drain every stream sends `event: reconnect` and ends its body at once,
//! well inside the drain timeout; a ping comment every [`PING`] finds
//! clients that went away. Not for orders or carts: stock only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Changes kept for resuming.
pub const HISTORY: usize = 1024;
/// Skus one subscription may watch, and one hub at most.
const MAX_SKUS_PER_SUB: usize = 20;
const MAX_SKUS: usize = 256;
/// A comment line this often: a gone client is noticed by the failed write.
const PING: Duration = Duration::from_secs(1);

/// One stock change.
#[derive(Debug, Clone)]
struct Change {
    seq: u64,
    sku: String,
    stock_left: i64,
}

#[derive(Default)]
struct HubState {
    next_subscriber: u64,
    seq: u64,
    watched: BTreeSet<String>,
    last: BTreeMap<String, i64>,
    history: VecDeque<Change>,
    polling: bool,
}

/// The per-worker feed.
#[derive(Clone)]
pub struct Hub {
    worker_id: String,
    interval: Duration,
    shop: Router,
    drain: CancellationToken,
    state: Arc<Mutex<HubState>>,
    tx: broadcast::Sender<Change>,
}

#[derive(Debug, Deserialize)]
struct Params {
    skus: Option<String>,
    /// End the stream after this long with `event: end` (a bounded watch,
    /// for load generators that count one response per request).
    for_ms: Option<u64>,
}

/// Longest bounded watch.
const MAX_FOR_MS: u64 = 600_000;

impl Hub {
    pub fn new(worker_id: String, interval: Duration, shop: Router, drain: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        Self { worker_id, interval, shop, drain, state: Arc::default(), tx }
    }

    /// The `/live/stock` route.
    pub fn router(self) -> Router {
        Router::new().route("/live/stock", get(subscribe)).with_state(self)
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current stock of one sku, read through the shop's public route.
    async fn stock_of(&self, sku: &str) -> Option<i64> {
        let req = Request::get(format!("/products/{sku}")).body(Body::empty()).ok()?;
        let resp = self.shop.clone().oneshot(req).await.ok()?;
        if resp.status() != StatusCode::OK {
            return None;
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.ok()?;
        serde_json::from_slice::<serde_json::Value>(&body).ok()?.get("stock_left")?.as_i64()
    }

    /// One poll: record every changed level as a numbered change.
    async fn poll_once(&self) {
        let skus: Vec<String> = self.lock().watched.iter().cloned().collect();
        for sku in skus {
            let Some(left) = self.stock_of(&sku).await else {
                continue;
            };
            let mut st = self.lock();
            if st.last.get(&sku) == Some(&left) {
                continue;
            }
            st.last.insert(sku.clone(), left);
            st.seq += 1;
            let change = Change { seq: st.seq, sku, stock_left: left };
            if st.history.len() == HISTORY {
                st.history.pop_front();
            }
            st.history.push_back(change.clone());
            // Sent under the lock: a subscriber that registers under the same
            // lock sees each change exactly once, in history or live.
            let _ = self.tx.send(change);
        }
    }

    fn start_polling(&self) {
        let mut st = self.lock();
        if st.polling {
            return;
        }
        st.polling = true;
        let hub = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(hub.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = hub.drain.cancelled() => break,
                    _ = ticker.tick() => hub.poll_once().await,
                }
            }
        });
    }
}

/// `Last-Event-ID: <worker>:<seq>` -> the seq, if it was this worker's.
fn resume_point(headers: &HeaderMap, worker_id: &str) -> Option<u64> {
    let v = headers.get("last-event-id")?.to_str().ok()?;
    let (w, seq) = v.rsplit_once(':')?;
    if w != worker_id {
        return None;
    }
    seq.parse().ok()
}

fn event(id: Option<(&str, u64)>, name: &str, data: &serde_json::Value) -> String {
    let mut s = String::new();
    if let Some((w, seq)) = id {
        s.push_str(&format!("id: {w}:{seq}\n"));
    }
    s.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    s
}

async fn subscribe(State(hub): State<Hub>, Query(p): Query<Params>, headers: HeaderMap) -> Response {
    let skus: BTreeSet<String> = p
        .skus
        .as_deref()
        .unwrap_or("door-1")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if p.for_ms.is_some_and(|ms| ms == 0 || ms > MAX_FOR_MS) {
        let msg = format!("for_ms: give 1..={MAX_FOR_MS} milliseconds");
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response();
    }
    if skus.is_empty() || skus.len() > MAX_SKUS_PER_SUB {
        let msg = format!("skus: give 1..={MAX_SKUS_PER_SUB} comma-separated skus, got {}", skus.len());
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response();
    }
    if skus.iter().any(|s| s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')) {
        let msg = "skus: each sku is at most 64 letters, digits, '-' or '_'";
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response();
    }
    let resume = resume_point(&headers, &hub.worker_id);
    // Register: a subscriber id, the watch set, the replay and the live
    // receiver, all under one lock (see `poll_once`).
    let (subscriber, first, rx) = {
        let mut st = hub.lock();
        let new: Vec<&String> = skus.iter().filter(|s| !st.watched.contains(*s)).collect();
        if st.watched.len() + new.len() > MAX_SKUS {
            let msg = format!("this worker already watches {} skus (limit {MAX_SKUS})", st.watched.len());
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": msg}))).into_response();
        }
        st.watched.extend(skus.iter().cloned());
        st.next_subscriber += 1;
        let subscriber = st.next_subscriber;
        let oldest = st.history.front().map_or(st.seq + 1, |c| c.seq);
        // Resumable when nothing after `seq` fell out of the history.
        let resumed = resume.filter(|&seq| seq <= st.seq && seq + 1 >= oldest);
        let mut first = String::from("retry: 1000\n\n");
        let hello = json!({"worker_id": hub.worker_id, "subscriber": subscriber, "resumed": resumed.is_some()});
        first.push_str(&event(None, "hello", &hello));
        match resumed {
            Some(seq) => {
                for c in st.history.iter().filter(|c| c.seq > seq && skus.contains(&c.sku)) {
                    let data = json!({"sku": c.sku, "stock_left": c.stock_left});
                    first.push_str(&event(Some((&hub.worker_id, c.seq)), "stock", &data));
                }
            }
            None => {
                let levels: Vec<_> = skus.iter().map(|s| json!({"sku": s, "stock_left": st.last.get(s)})).collect();
                first.push_str(&event(Some((&hub.worker_id, st.seq)), "snapshot", &json!({ "stock": levels })));
            }
        }
        (subscriber, first, hub.tx.subscribe())
    };
    hub.start_polling();
    stream(hub, skus, subscriber, first, rx, p.for_ms.map(Duration::from_millis))
}

fn stream(
    hub: Hub,
    skus: BTreeSet<String>,
    subscriber: u64,
    first: String,
    mut rx: broadcast::Receiver<Change>,
    bound: Option<Duration>,
) -> Response {
    let (mut tx, body) = tokio::io::duplex(16 * 1024);
    tokio::spawn(async move {
        if tx.write_all(first.as_bytes()).await.is_err() {
            return;
        }
        let mut ping = tokio::time::interval(PING);
        ping.tick().await;
        let until = bound.map(|d| tokio::time::Instant::now() + d);
        loop {
            let chunk = tokio::select! {
                biased;
                () = hub.drain.cancelled() => {
                    let data = json!({"reason": "draining", "worker_id": hub.worker_id, "subscriber": subscriber});
                    let _ = tx.write_all(event(None, "reconnect", &data).as_bytes()).await;
                    break;
                }
                got = rx.recv() => match got {
                    Ok(c) if skus.contains(&c.sku) => {
                        event(Some((&hub.worker_id, c.seq)), "stock", &json!({"sku": c.sku, "stock_left": c.stock_left}))
                    }
                    Ok(_) => continue,
                    // Too slow to keep up: start over from a snapshot.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let data = json!({"reason": "lagged", "worker_id": hub.worker_id});
                        let _ = tx.write_all(event(None, "reconnect", &data).as_bytes()).await;
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = sleep_until(until) => {
                    let data = json!({"reason": "watch over", "worker_id": hub.worker_id, "subscriber": subscriber});
                    let _ = tx.write_all(event(None, "end", &data).as_bytes()).await;
                    break;
                }
                _ = ping.tick() => ": ping\n\n".to_string(),
            };
            if tx.write_all(chunk.as_bytes()).await.is_err() {
                break; // the client went away
            }
        }
    });
    ([(CONTENT_TYPE, "text/event-stream"), (CACHE_CONTROL, "no-cache")], Body::from_stream(ReaderStream::new(body)))
        .into_response()
}

/// Sleeps until `at`, or forever when there is no bound.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A fake shop whose `door-1` stock the test sets.
    fn fake_shop(level: Arc<AtomicI64>) -> Router {
        Router::new().route(
            "/products/{sku}",
            get(move || {
                let level = Arc::clone(&level);
                async move { Json(json!({"stock_left": level.load(Ordering::SeqCst)})) }
            }),
        )
    }

    async fn open(app: &Router, last_id: Option<&str>) -> Body {
        let mut req = Request::get("/live/stock?skus=door-1");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body()
    }

    async fn read_until(body: &mut Body, needle: &str) -> String {
        use http_body_util::BodyExt;
        let mut text = String::new();
        while !text.contains(needle) {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap();
            let Some(frame) = frame else { break };
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        text
    }

    #[tokio::test]
    async fn resume_on_the_same_worker_snapshot_elsewhere_and_reconnect_on_drain() {
        let level = Arc::new(AtomicI64::new(100));
        let drain = CancellationToken::new();
        let hub = Hub::new("7".into(), Duration::from_millis(5), fake_shop(Arc::clone(&level)), drain.clone());
        let app = hub.router();
        let mut a = open(&app, None).await;
        let text = read_until(&mut a, "event: stock").await;
        assert!(text.contains("\"resumed\":false") && text.contains("\"subscriber\":1"), "{text}");
        assert!(text.contains("id: 7:1\nevent: stock\ndata: {\"sku\":\"door-1\",\"stock_left\":100}"), "{text}");
        level.store(99, Ordering::SeqCst);
        let text = read_until(&mut a, "\"stock_left\":99").await;
        assert!(text.contains("id: 7:2\n"), "{text}");
        // Same worker: resumes from 7:1, the change 7:2 is replayed.
        let mut b = open(&app, Some("7:1")).await;
        let text = read_until(&mut b, "id: 7:2").await;
        assert!(text.contains("\"resumed\":true") && text.contains("\"subscriber\":2"), "{text}");
        // Another worker's id: no resume, a snapshot.
        let mut c = open(&app, Some("3:1")).await;
        let text = read_until(&mut c, "event: snapshot").await;
        assert!(text.contains("\"resumed\":false"), "{text}");
        drain.cancel();
        for body in [&mut a, &mut b, &mut c] {
            let text = read_until(body, "\n\n__end").await;
            assert!(text.contains("event: reconnect\ndata: {\"reason\":\"draining\""), "{text}");
        }
    }

    #[tokio::test]
    async fn a_bounded_watch_ends_with_an_end_event() {
        let level = Arc::new(AtomicI64::new(5));
        let hub = Hub::new("2".into(), Duration::from_millis(5), fake_shop(level), CancellationToken::new());
        let req = Request::get("/live/stock?skus=door-1&for_ms=50").body(Body::empty()).unwrap();
        let resp = hub.router().oneshot(req).await.unwrap();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20);
        let body = tokio::time::timeout(Duration::from_secs(5), body).await.unwrap().unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("event: hello") && text.ends_with("\n\n"), "{text}");
        assert!(text.contains("event: end\ndata: {\"reason\":\"watch over\""), "{text}");
    }

    #[tokio::test]
    async fn bad_sku_lists_are_refused() {
        let hub = Hub::new("1".into(), Duration::from_millis(5), Router::new(), CancellationToken::new());
        let app = hub.router();
        for q in [
            "skus=",
            "skus=a%2Fb",
            "for_ms=0",
            "for_ms=600001",
            &format!("skus={}", (0..21).map(|i| format!("s{i}")).collect::<Vec<_>>().join(",")),
        ] {
            let req = Request::get(format!("/live/stock?{q}")).body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{q}");
        }
    }
}
