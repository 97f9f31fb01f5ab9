//! Routes every serving process has besides the shop: health, version, and
//! knobs for drain and hang tests: a slow response, CPU burned on the event
//! loop, and a long-lived streaming response that the drain ends cleanly.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Query;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;

use crate::build_info;

/// Who is serving: reported by `/version` and in `ready`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub worker_id: String,
    pub pid: u32,
}

#[derive(Debug, Deserialize)]
struct Millis {
    ms: Option<u64>,
}

/// Longest `/slow` or `/burn` a client may ask for.
const MAX_MS: u64 = 600_000;

/// The whole public app: our routes merged with the shop's and the live
/// stock feed (`live`, polling the shop every `live_interval`). `drain` is
/// cancelled when the serving process starts draining.
pub fn app(id: Identity, drain: CancellationToken, shop: Router, live_interval: Duration) -> Router {
    let live = crate::live::Hub::new(id.worker_id.clone(), live_interval, shop.clone(), drain.clone()).router();
    let version = {
        let id = id.clone();
        move || async move {
            Json(json!({
                "version": build_info::VERSION,
                "build_id": build_info::build_id(),
                "worker_id": id.worker_id,
                "pid": id.pid,
            }))
        }
    };
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/version", get(version))
        .route("/slow", get(slow))
        .route("/burn", get(burn))
        .route(
            "/stream",
            get(move |Query(q): Query<Millis>| {
                let drain = drain.clone();
                async move { ticks(Duration::from_millis(q.ms.unwrap_or(100).clamp(1, MAX_MS)), drain) }
            }),
        )
        .merge(live)
        .merge(shop)
}

/// A long-lived response: a server-sent event every `interval`, for as long
/// as the client listens, until the drain starts; then a last `drain` event
/// and a clean end of the body, so a drain never waits on (or cuts) it.
fn ticks(interval: Duration, drain: CancellationToken) -> Response {
    let (mut tx, rx) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let chunk = tokio::select! {
                () = drain.cancelled() => {
                    let _ = tx.write_all(b"event: drain\ndata: bye\n\n").await;
                    break;
                }
                () = tokio::time::sleep(interval) => format!("data: tick {n}\n\n"),
            };
            // The client went away: stop ticking.
            if tx.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            n += 1;
        }
    });
    ([(CONTENT_TYPE, "text/event-stream")], Body::from_stream(ReaderStream::new(rx))).into_response()
}

/// Answers after `ms` milliseconds without blocking the event loop.
async fn slow(Query(q): Query<Millis>) -> impl IntoResponse {
    let ms = q.ms.unwrap_or(100).min(MAX_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({"slept_ms": ms}))
}

/// Burns `ms` of CPU on the event loop, blocking this worker (and only it).
async fn burn(Query(q): Query<Millis>) -> impl IntoResponse {
    let ms = q.ms.unwrap_or(10).min(MAX_MS);
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while Instant::now() < until {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        x = std::hint::black_box(x);
    }
    Json(json!({"burned_ms": ms, "x": x % 1000}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn version_reports_build_id() {
        let app = app(
            Identity { worker_id: "w1".into(), pid: 1 },
            CancellationToken::new(),
            Router::new(),
            Duration::from_millis(250),
        );
        let resp = app.oneshot(Request::get("/version").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["build_id"], build_info::build_id());
        assert_eq!(v["worker_id"], "w1");
    }

    #[tokio::test]
    async fn stream_ends_cleanly_when_the_drain_starts() {
        let drain = CancellationToken::new();
        let app =
            app(Identity { worker_id: "w1".into(), pid: 1 }, drain.clone(), Router::new(), Duration::from_millis(250));
        let resp = app.oneshot(Request::get("/stream?ms=5").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drain.cancel();
        });
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("data: tick 0\n\n"), "{text}");
        assert!(text.ends_with("event: drain\ndata: bye\n\n"), "{text}");
    }
}
