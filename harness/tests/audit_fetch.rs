//! The audit's fetch path (audit::run) against canned HTTP responses on
//! loopback: a chunked document that passes, a lost order that fails, and the
//! ways an audit is unknown (error status, not a document, nothing listening).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::judge::audit::{self, CheckoutView};
use harness::judge::verdict::Status;
use harness::outcome::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serve `response` (raw bytes) to every connection; returns the audit URL.
async fn serve(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/audit")
}

fn chunked(body: &str) -> Vec<u8> {
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

const DOC: &str = r#"{"orders":[{"order_id":1,"idempotency_key":"k1","cart_id":"c1","lines":[{"sku":"door-1","qty":1,"unit_price_cents":100}],"total_cents":100,"created_ms":1.0}],
"stock":[{"sku":"door-1","initial":10,"left":9,"sold":1}]}"#;

fn acked(key: &str, order_id: i64) -> CheckoutView {
    CheckoutView {
        op: 1,
        step: "checkout".into(),
        idempotency_key: Some(key.into()),
        cart_id: None,
        attempts: vec![Outcome::Ok],
        order_id: Some(order_id),
    }
}

#[tokio::test]
async fn a_chunked_document_is_read_and_checked() {
    let url = serve(chunked(DOC)).await;
    let r = audit::run(&url, &[acked("k1", 1)], true, Duration::from_secs(5)).await;
    assert_eq!(r.verdict, Status::Pass, "{r:?}");
    let r = audit::run(&url, &[acked("k2", 2)], true, Duration::from_secs(5)).await;
    assert_eq!(r.verdict, Status::Fail);
    assert_eq!(r.lost.len(), 1);
}

#[tokio::test]
async fn error_status_bad_body_and_no_listener_are_unknown() {
    let url = serve(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
    let r = audit::run(&url, &[], true, Duration::from_secs(5)).await;
    assert_eq!(r.verdict, Status::Unknown);
    assert!(r.reason.contains("503"), "{}", r.reason);

    let body = r#"{"orders":[{"order_id":1}],"stock":[]}"#;
    let url = serve(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()).await;
    let r = audit::run(&url, &[], true, Duration::from_secs(5)).await;
    assert_eq!(r.verdict, Status::Unknown);
    assert!(r.reason.contains("orders[0]") && r.reason.contains("lines"), "{}", r.reason);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = audit::run(&format!("http://127.0.0.1:{port}/audit"), &[], true, Duration::from_secs(2)).await;
    assert_eq!(r.verdict, Status::Unknown);
    assert!(r.reason.contains("unreachable"), "{}", r.reason);

    // https is spoken (issue 14): a TLS audit URL with nothing listening is
    // unreachable like a plain one, not refused for its scheme.
    let r = audit::run(&format!("https://127.0.0.1:{port}/audit"), &[], true, Duration::from_secs(2)).await;
    assert_eq!(r.verdict, Status::Unknown);
    assert!(r.reason.contains("unreachable"), "{}", r.reason);

    let r = audit::run("ftp://127.0.0.1/audit", &[], true, Duration::from_secs(2)).await;
    assert_eq!(r.verdict, Status::Unknown);
    assert!(r.reason.contains("http://"), "{}", r.reason);
}
