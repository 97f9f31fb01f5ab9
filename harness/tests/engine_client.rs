//! The client path on its own: connections spread over 127.0.0.0/8 source
//! addresses when asked, and checkout order ids recorded for the audit.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use harness::traffic::client::{Connector, Request, send};
use support::{Behavior, TestServer, run, scenario};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_the_given_source_addresses() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut peers = Vec::new();
        for _ in 0..4 {
            let (mut s, peer) = listener.accept().await.unwrap();
            peers.push(peer.ip());
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
        }
        peers
    });
    let sources: Vec<IpAddr> = vec![Ipv4Addr::new(127, 0, 0, 2).into(), Ipv4Addr::new(127, 0, 0, 3).into()];
    let c = Connector::new(addr, addr.to_string(), sources.clone());
    let mut scratch = Vec::new();
    for _ in 0..4 {
        let mut slot = None;
        let req = Request { method: "GET", path: "/", headers: &[], body: None };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let a = send(&c, &mut slot, &req, false, deadline, &mut scratch).await;
        assert_eq!(a.result.unwrap().status, 200);
        assert!(slot.is_none(), "connection: close must not be kept");
    }
    let peers = server.await.unwrap();
    let seen: BTreeSet<IpAddr> = peers.into_iter().collect();
    assert_eq!(seen, sources.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_steps_record_the_order_id() {
    let srv = TestServer::start(Behavior::FailFirstPerIdempotencyKey).await;
    let dir = tempfile::tempdir().unwrap();
    let step = r#""method": "POST", "path": "/checkout", "body": {"cart_id": "c{{shopper}}"},
        "idempotency_key": true, "expect": [201],
        "retry": {"attempts": 2, "on": ["server_error"], "backoff": "5ms"}"#;
    let mut json = scenario(&srv.url(), 10, 50.0, r#"{"model": "pool", "size": 4}"#, step);
    json = json.replacen(
        "\"journeys\"",
        "\"audit\": {\"url\": \"http://127.0.0.1:9/audit\", \"checkout_steps\": [\"s\"]},\n  \"journeys\"",
        1,
    );
    let (s, recs) = run(&json, dir.path()).await;
    assert_eq!(s.totals.ok, 10);
    let ok: Vec<_> = recs.iter().filter(|r| r.class.is_none()).collect();
    assert_eq!(ok.len(), 10);
    assert!(ok.iter().all(|r| r.order_id.is_some()), "{ok:?}");
    assert!(recs.iter().filter(|r| r.class.is_some()).all(|r| r.order_id.is_none()));
    // No audit ran in this test: the audit gate says so and fails the run.
    let audit = s.gates.iter().find(|g| g.name == "audit").unwrap();
    assert!(!audit.passed && audit.detail.contains("did not run"), "{audit:?}");
    assert_eq!(s.verdict.as_str(), "fail");
}

/// One raw response per connection, then close.
#[allow(clippy::unwrap_used)] // test helper: a panic is a test failure
async fn raw_server(responses: Vec<&'static [u8]>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for r in responses {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(r).await.unwrap();
            let _ = s.shutdown().await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_decoded_and_a_cut_chunked_body_is_truncated() {
    let addr = raw_server(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-worker-id: 3\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nx-trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n10\r\n:1",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}EXTRA",
        b"NOT HTTP\r\n\r\n",
    ])
    .await;
    let c = Connector::new(addr, addr.to_string(), Vec::new());
    let mut scratch = Vec::new();
    let mut go = async || {
        let mut slot = None;
        let req = Request { method: "GET", path: "/", headers: &[], body: None };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let a = send(&c, &mut slot, &req, true, deadline, &mut scratch).await;
        (a, slot.is_some())
    };
    let (a, kept) = go().await;
    let r = a.result.unwrap();
    assert_eq!(r.body.as_deref(), Some(&b"{\"a\":1}"[..]));
    assert_eq!(r.worker_id.as_deref(), Some("3"));
    assert!(kept, "a complete chunked response keeps the connection");
    let (a, _) = go().await;
    let f = a.result.unwrap_err();
    assert_eq!(f.class.as_str(), "truncated_body", "{f:?}");
    assert_eq!(f.status, Some(200));
    // Bytes after the declared body: the response counts, the connection is not reused.
    let (a, kept) = go().await;
    assert_eq!(a.result.unwrap().body.as_deref(), Some(&b"{}"[..]));
    assert!(!kept);
    let (a, _) = go().await;
    assert_eq!(a.result.unwrap_err().class.as_str(), "protocol_error");
}
