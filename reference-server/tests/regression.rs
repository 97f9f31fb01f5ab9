//! Regression tests for the defects issue 18's adversarial probe found in the reference server, one test per bug, each named for it.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

const LONG: Duration = Duration::from_secs(30);

/// Sum of a per-worker field of the admin `/workers` table.
fn workers_sum(server: &Server, field: &str) -> u64 {
    server.workers()["workers"].as_array().unwrap().iter().map(|w| w[field].as_u64().unwrap_or(0)).sum()
}

/// Wait until `pred` holds for the cluster's in-flight total; false on timeout.
fn wait_in_flight(server: &Server, pred: impl Fn(u64) -> bool, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if pred(workers_sum(server, "in_flight")) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A raw connection that has sent `bytes` and reads nothing yet.
fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, LONG).unwrap();
    s.set_read_timeout(Some(LONG)).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Issue 18, item 5: the in-flight gauge leaked when a client disconnected
/// mid-request (hyper drops the service future; the decrement after its
/// await never ran). Aborted `/slow` requests must leave the gauge at 0.
#[test]
fn issue18_in_flight_gauge_returns_to_zero_after_clients_abort_slow_requests() {
    for mode in [&["--workers", "1"][..], &["--single"][..]] {
        let server = Server::start(mode);
        if mode[0] == "--workers" {
            server.wait_ready(1);
        }
        let aborted: Vec<_> =
            (0..4).map(|_| send_raw(server.public, b"GET /slow?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")).collect();
        assert!(
            wait_in_flight(&server, |n| n == 4, LONG),
            "{mode:?}: the 4 slow requests never showed as in flight: {}",
            server.workers()
        );
        drop(aborted);
        assert!(
            wait_in_flight(&server, |n| n == 0, Duration::from_secs(10)),
            "{mode:?}: in-flight gauge stuck after the clients went away: {}",
            server.workers()
        );
    }
}
