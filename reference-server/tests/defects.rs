//! The hidden TEST ONLY defect flags (docs/CLUSTER.md, "Test-only defects"): each shows its real-world bug to a plain client on loopback, and the same steps without the flag do not.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Conn, Resp, Server, signal};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);

/// Pricing work units that keep a checkout busy for a few hundred ms here
/// (about 1.4 µs a unit in this build; scripts/bench-shop.sh measures it).
const PRICING_SLOW: &str = "300000";

/// A cluster of `workers` on a fresh database, with `extra` flags.
fn start(workers: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--workers", workers, "--hang-timeout", "20s", "--reset-db"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Put one unit of a regular SKU in `cart`.
fn fill_cart(c: &mut Conn, cart: &str) {
    let r = c.post_json(&format!("/carts/{cart}/items"), &[], r#"{"sku":"sku-0001","qty":1}"#).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn checkout(c: &mut Conn, cart: &str, key: &str) -> std::io::Result<Resp> {
    c.post_json("/checkout", &[("Idempotency-Key", key)], &format!(r#"{{"cart_id":"{cart}"}}"#))
}

fn order_id(r: &Resp) -> i64 {
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["order_id"].as_i64().unwrap()
}

/// The admin audit (read by the master from the database file).
fn audit(server: &Server) -> Value {
    server.admin_get("/audit").json()
}

fn audited_ids(audit: &Value) -> Vec<i64> {
    audit["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_i64().unwrap()).collect()
}

/// Defect 6, `--unsafe-ack-before-commit`: the 201 leaves before the order
/// commits; a SIGKILL right after it loses the acknowledged order (and the
/// stock it reserved is sold to nobody). Without the flag the order is there.
#[test]
fn defect6_ack_before_commit_loses_an_acknowledged_order_to_a_sigkill() {
    for defect in [true, false] {
        let flags: &[&str] = if defect { &["--unsafe-ack-before-commit"] } else { &[] };
        let server = start("1", flags);
        let [(_, pid)] = server.wait_ready(1)[..] else { unreachable!() };
        let mut c = Conn::open(server.public).unwrap();
        fill_cart(&mut c, "cart-6");
        let mark = server.mark();
        let id = order_id(&checkout(&mut c, "cart-6", "key-6").unwrap());
        signal(pid, "SIGKILL");
        let dead = format!("pid {pid} exited");
        server.expect_log(mark, "the killed worker's exit", |l| l.contains(&dead), LONG);
        let audit = audit(&server);
        let sku = audit["stock"].as_array().unwrap().iter().find(|s| s["sku"] == "sku-0001").unwrap().clone();
        let (initial, left, sold) =
            (sku["initial"].as_i64().unwrap(), sku["left"].as_i64().unwrap(), sku["sold"].as_i64().unwrap());
        if defect {
            assert!(!audited_ids(&audit).contains(&id), "acknowledged order {id} survived the kill: {audit}");
            assert_eq!((initial - left, sold), (1, 0), "the reserved unit should be sold to nobody: {sku}");
        } else {
            assert_eq!(audited_ids(&audit), vec![id], "the acknowledged order is lost without the defect");
            assert_eq!(initial, left + sold, "{sku}");
        }
    }
}

/// The control the harness relies on: with the flag but no kill, every
/// acknowledged order is committed (write-behind delay later).
#[test]
fn defect6_ack_before_commit_without_a_kill_commits_every_order() {
    let server = start("1", &["--unsafe-ack-before-commit"]);
    let mut c = Conn::open(server.public).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let cart = format!("cart-{i}");
        fill_cart(&mut c, &cart);
        ids.push(order_id(&checkout(&mut c, &cart, &format!("key-{i}")).unwrap()));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while audited_ids(&audit(&server)) != ids {
        assert!(Instant::now() < until, "acknowledged orders {ids:?} never committed: {}", audit(&server));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two keep-alive connections served by two different workers.
fn conns_on_two_workers(server: &Server) -> (Conn, Conn) {
    let mut first = Conn::open(server.public).unwrap();
    first.get("/healthz").unwrap();
    for _ in 0..200 {
        let mut other = Conn::open(server.public).unwrap();
        other.get("/healthz").unwrap();
        if other.worker != first.worker {
            return (first, other);
        }
    }
    panic!("200 connections all went to worker {:?}", first.worker);
}

/// Defect 7, `--unsafe-idempotency-outside-tx`: a retry (same
/// Idempotency-Key) racing its first attempt on another worker passes the
/// key check while the first is still pricing, and makes a second order;
/// the audit lists two orders with one key. Without the flag the retry
/// gets the first attempt's answer.
#[test]
fn defect7_idempotency_outside_tx_makes_a_duplicate_order_for_one_key() {
    for defect in [true, false] {
        let mut flags = vec!["--pricing-cost", PRICING_SLOW];
        if defect {
            flags.push("--unsafe-idempotency-outside-tx");
        }
        let server = start("2", &flags);
        server.wait_ready(2);
        let (mut a, mut b) = conns_on_two_workers(&server);
        fill_cart(&mut a, "cart-7");
        // Both attempts are read at once, so the retry's key check runs while
        // the first attempt prices (a few hundred ms of CPU on its worker).
        let first = std::thread::spawn(move || checkout(&mut a, "cart-7", "key-7").unwrap());
        let retry = std::thread::spawn(move || checkout(&mut b, "cart-7", "key-7").unwrap());
        let (first, retry) = (first.join().unwrap(), retry.join().unwrap());
        let audit = audit(&server);
        let with_key: Vec<&Value> =
            audit["orders"].as_array().unwrap().iter().filter(|o| o["idempotency_key"] == "key-7").collect();
        if defect {
            assert_ne!(order_id(&first), order_id(&retry), "the retry should have made its own order");
            assert_eq!(with_key.len(), 2, "expected a duplicate order for key-7: {audit}");
        } else {
            assert_eq!(order_id(&first), order_id(&retry), "the retry must get the first attempt's order");
            assert_eq!(with_key.len(), 1, "{audit}");
        }
    }
}

/// Defect 2, `--unsafe-close-idle`: when its drain starts, the worker closes
/// a keep-alive connection that has nothing in flight, although it never
/// said `Connection: close` on it; the client's next request on it gets no
/// response. Without the flag the connection stays open and that request is
/// answered (with `Connection: close`, the drain's way to end it).
#[test]
fn defect2_close_idle_closes_a_keepalive_connection_under_the_client() {
    for defect in [true, false] {
        // A long keep-alive timeout: any close seen here is the drain's.
        let mut flags = vec!["--keepalive-timeout", "60s"];
        if defect {
            flags.push("--unsafe-close-idle");
        }
        let server = start("1", &flags);
        server.wait_ready(1);
        let mut idle = Conn::open(server.public).unwrap();
        let r = idle.get("/healthz").unwrap();
        assert!(r.status == 200 && !r.closes(), "{r:?}");
        let mark = server.mark();
        server.signal("SIGHUP");
        server.expect_log(mark, "the old worker's shutdown", |l| l.contains("shutdown sent (rolling)"), LONG);
        let closed = idle.closed_by_server_within(Duration::from_secs(3));
        let next = idle.get("/healthz");
        if defect {
            assert!(closed, "the drain should have closed the idle keep-alive connection");
            let e = next.expect_err("a request on the closed connection got a response");
            assert!(matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset), "{e}");
        } else {
            assert!(!closed, "the drain closed an idle keep-alive connection");
            let r = next.expect("a request on a draining worker's keep-alive connection failed");
            assert!(r.status == 200 && r.closes(), "{r:?}");
        }
    }
}

/// `n` fresh connections, each with one GET written at once (the handshake
/// completes in the kernel, accepted or not), then every answer read: the
/// number answered 200 and the errors of those that got no response.
fn burst_of_fresh_connections(server: &Server, n: usize) -> (usize, Vec<std::io::Error>) {
    use std::io::{Read, Write};
    let mut sent = Vec::new();
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(server.public).unwrap();
        s.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
        sent.push(s);
    }
    let mut ok = 0;
    let mut failed = Vec::new();
    for mut s in sent {
        let mut answer = Vec::new();
        match s.read_to_end(&mut answer) {
            Ok(_) if answer.starts_with(b"HTTP/1.1 200") => ok += 1,
            Ok(0) => failed.push(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => panic!("unexpected answer {}", String::from_utf8_lossy(&answer)),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

/// Defect 4, `--unsafe-reuseport`: every worker has its own SO_REUSEPORT
/// listener, and the kernel queues new connections on the old worker's
/// listener while it is busy; when its drain closes that listener, the
/// queued connections are reset before any response. With the shared
/// listener the replacement serves every queued connection.
#[test]
fn defect4_reuseport_resets_the_connections_queued_on_a_draining_worker() {
    for defect in [true, false] {
        let flags: &[&str] = if defect { &["--unsafe-reuseport"] } else { &[] };
        let server = start("1", flags);
        server.wait_ready(1);
        // Keep the old worker's event loop busy (no accept) through its shutdown.
        let mut busy = Conn::open(server.public).unwrap();
        let burn = std::thread::spawn(move || busy.get("/burn?ms=2500"));
        let mark = server.mark();
        server.signal("SIGHUP");
        server.expect_log(mark, "the old worker's shutdown", |l| l.contains("shutdown sent (rolling)"), LONG);
        // More than the old worker accepts in one turn of its event loop
        // (tokio's budget, 128) once it is free, before it sees the drain.
        let (ok, failed) = burst_of_fresh_connections(&server, 400);
        assert_eq!(burn.join().unwrap().unwrap().status, 200, "the in-flight request must finish");
        eprintln!("defect {defect}: {ok} answered, {} reset before any response", failed.len());
        if defect {
            assert!(!failed.is_empty(), "no connection queued on the old worker's listener was reset ({ok} ok)");
            for e in &failed {
                let reset = matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof);
                assert!(reset, "expected a reset or EOF before any response, got {e}");
            }
        } else {
            assert!(failed.is_empty(), "the shared listener dropped queued connections: {failed:?}");
        }
    }
}

/// Defect 3, `--unsafe-old-before-new`: the rolling restart drains the old
/// worker before starting its replacement, so with one worker a request
/// sent after the old one's shutdown waits (in the listen backlog) until
/// the old one has exited and a new one started. Without the flag the
/// replacement, ready before the shutdown, answers while the old one still
/// drains.
#[test]
fn defect3_old_before_new_leaves_no_worker_accepting_during_the_drain() {
    for defect in [true, false] {
        let flags: &[&str] = if defect { &["--unsafe-old-before-new"] } else { &[] };
        let server = start("1", flags);
        let [(old, _)] = server.wait_ready(1)[..] else { unreachable!() };
        // Keeps the old worker draining for a while after its shutdown.
        let mut busy = Conn::open(server.public).unwrap();
        let in_flight = std::thread::spawn(move || busy.get("/slow?ms=1500"));
        let mark = server.mark();
        server.signal("SIGHUP");
        server.expect_log(mark, "the old worker's shutdown", |l| l.contains("shutdown sent (rolling)"), LONG);
        let r = Conn::open(server.public).unwrap().get("/healthz").unwrap();
        let answered = Instant::now();
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-worker-id"), Some(old.to_string().as_str()), "the draining worker accepted");
        let old_tag = format!("worker {old} ");
        let exited =
            server.expect_log(mark, "the old worker's exit", |l| l.contains(&old_tag) && l.contains("exited"), LONG);
        assert_eq!(in_flight.join().unwrap().unwrap().status, 200, "the in-flight request must finish");
        if defect {
            assert!(answered > exited.at, "answered while the old worker still drained: someone was accepting");
        } else {
            assert!(answered < exited.at, "the request waited for the old worker's exit: nobody was accepting");
        }
    }
}

/// Defect 5, a drain timeout shorter than the longest request
/// (`--drain-timeout 50ms`): a checkout still pricing when the old worker's
/// drain times out dies with it (SIGKILL), and its client sees the
/// connection cut without a response. With the default timeout it gets its 201.
#[test]
fn defect5_short_drain_timeout_kills_a_checkout_mid_request() {
    for defect in [true, false] {
        // Seconds of pricing: longer than 50 ms by far, well within 30 s.
        let mut flags = vec!["--pricing-cost", "1500000"];
        if defect {
            flags.extend(["--drain-timeout", "50ms"]);
        }
        let server = start("1", &flags);
        server.wait_ready(1);
        let mut c = Conn::open(server.public).unwrap();
        fill_cart(&mut c, "cart-5");
        let long = std::thread::spawn(move || checkout(&mut c, "cart-5", "key-5"));
        let mark = server.mark();
        server.signal("SIGHUP");
        // The thread's end closes the client's connection, so an idle
        // keep-alive connection does not hold the control's drain.
        let answer = long.join().unwrap();
        let exited = server.expect_log(mark, "the old worker's exit", |l| l.contains("ms after shutdown"), LONG);
        if defect {
            assert!(exited.text.contains("killed at the drain timeout"), "{}", exited.text);
            let e = answer.expect_err("a checkout outliving the drain timeout got its response");
            assert!(matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset), "{e}");
        } else {
            let r = answer.expect("the checkout was cut by a drain with the default timeout");
            // No `Connection: close` promised: the worker was pricing, not
            // yet reading its shutdown, when it built this answer.
            assert_eq!(r.status, 201, "{r:?}");
        }
    }
}
