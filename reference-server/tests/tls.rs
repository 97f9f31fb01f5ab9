//! HTTPS on the public address (issue 14): every mode serves TLS with ALPN http/1.1 while admin stays plain, a
//! SIGTERM rolling restart over TLS drops nothing and ends drained connections with close_notify, a rolling
//! restart rotates the certificate, a bad new certificate aborts the roll with the old workers serving, and a
//! handshake that never starts does not hold a drain; a session resumes on
//! any worker and across a rolling restart (one ticket key per cluster).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::tls::{Issued, TestPki, flags};
use common::{BIN, Conn, Server, Traffic};

const LONG: Duration = Duration::from_secs(30);
const PATHS: &[&str] = &["/healthz", "/slow?ms=30", "/version", "/slow?ms=5"];

fn start(issued: &Issued, args: &[&str]) -> Server {
    let tls = issued.flags();
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    Server::start(&all)
}

/// Wait until the cluster has counted `n` more requests than `from`.
fn wait_requests(server: &Server, from: f64, n: f64) {
    let until = Instant::now() + LONG;
    while server.metric_sum("reference_requests_total") < from + n {
        assert!(Instant::now() < until, "traffic never reached {n} more requests; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests on `conn` (whose worker was just told to drain) until one is
/// answered with `Connection: close`: the master logs `shutdown sent` before
/// the worker has read it. Every answer must be a 200.
fn request_until_close(conn: &mut Conn, server: &Server) -> common::Resp {
    let until = Instant::now() + LONG;
    loop {
        let r = conn.get("/healthz").unwrap();
        assert_eq!(r.status, 200);
        if r.closes() {
            return r;
        }
        assert!(Instant::now() < until, "the draining worker never said Connection: close; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_mode_serves_https_with_alpn_http11_and_plain_admin() {
    let pki = TestPki::new();
    let cert = pki.issue("server");
    for mode in [&["--workers", "2"][..], &["--single"], &["--workers", "2", "--balance", "sticky"]] {
        let server = start(&cert, mode);
        // The admin address is plain HTTP (wait_ready reads /workers with the plain client).
        if mode[0] == "--workers" {
            server.wait_ready(2);
        }
        let mut conn = Conn::open_tls(server.public, &pki.client).unwrap();
        let tls = conn.tls().unwrap();
        assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]), "{mode:?}");
        assert_eq!(conn.peer_cert().as_deref(), Some(&cert.der[..]), "{mode:?}");
        for _ in 0..3 {
            let r = conn.get("/healthz").unwrap();
            assert_eq!(r.status, 200, "{mode:?}");
            assert!(r.header("x-worker-id").is_some(), "{mode:?}");
        }
        // Plain HTTP on the TLS port gets no HTTP answer.
        let plain = common::get_new_conn(server.public, "/healthz");
        assert!(plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 200), "{mode:?}: {plain:?}");
        assert!(server.dump().contains("(https)"), "{mode:?}: the first line says https:\n{}", server.dump());
    }
}

/// New connections of one client, one request each: (worker id, resumed?) per connection.
fn resumptions(server: &Server, client: &std::sync::Arc<rustls::ClientConfig>, n: usize) -> Vec<(String, bool)> {
    (0..n)
        .map(|_| {
            let mut conn = Conn::open_tls(server.public, client).unwrap();
            let resumed = conn.tls().unwrap().handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let r = conn.get("/healthz").unwrap();
            assert_eq!(r.status, 200);
            (r.header("x-worker-id").unwrap().to_string(), resumed)
        })
        .collect()
}

#[test]
fn a_session_resumes_on_any_worker_and_across_a_rolling_restart() {
    // A browser resumes its TLS session on its next connection; behind a
    // shared listener that connection lands on any worker, so the workers
    // share the ticket key (the master's), as nginx's workers do.
    let pki = TestPki::new();
    let cert = pki.issue("server");
    for mode in [&["--workers", "2"][..], &["--workers", "2", "--balance", "sticky"]] {
        let server = start(&cert, mode);
        server.wait_ready(2);
        let seen = resumptions(&server, &pki.client, 30);
        let workers: BTreeSet<&str> = seen.iter().map(|(w, _)| w.as_str()).collect();
        let resumed_on: BTreeSet<&str> = seen.iter().filter(|(_, r)| *r).map(|(w, _)| w.as_str()).collect();
        // The first connection has nothing to resume; every later one does.
        assert!(!seen[0].1, "{mode:?}: the very first handshake resumed");
        assert!(seen[1..].iter().all(|(_, r)| *r), "{mode:?}: a connection paid a full handshake: {seen:?}");
        if mode.len() == 2 {
            // The shared listener spread 30 connections over both workers.
            assert_eq!(workers.len(), 2, "{mode:?}: one worker took every connection: {seen:?}");
            assert_eq!(resumed_on.len(), 2, "{mode:?}: sessions resumed on one worker only: {seen:?}");
        }
        // A deploy replaces every worker; the sessions survive it.
        let before: BTreeSet<String> = seen.iter().map(|(w, _)| w.clone()).collect();
        let mark = server.mark();
        server.signal("SIGHUP");
        server.expect_log(mark, "rolling restart end", |l| l.contains("rolling restart end"), LONG);
        server.wait_ready(2);
        let after = resumptions(&server, &pki.client, 10);
        assert!(after.iter().all(|(w, _)| !before.contains(w)), "{mode:?}: an old worker answered: {after:?}");
        assert!(after.iter().all(|(_, r)| *r), "{mode:?}: a session did not survive the rolling restart: {after:?}");
    }
    // A single process resumes its own sessions (stateless tickets: no
    // cache to outgrow).
    let server = start(&cert, &["--single"]);
    let seen = resumptions(&server, &pki.client, 5);
    assert!(seen[1..].iter().all(|(_, r)| *r), "--single: {seen:?}");
}

#[test]
fn sigterm_rolling_restart_over_tls_drops_nothing_and_drained_connections_end_with_close_notify() {
    rolling_restart_over_tls(&[]);
}

#[test]
fn sticky_sigterm_rolling_restart_over_tls_drops_nothing() {
    // The master passes the TCP connection; the worker does the handshake.
    rolling_restart_over_tls(&["--balance", "sticky"]);
}

fn rolling_restart_over_tls(extra: &[&str]) {
    let pki = TestPki::new();
    let cert = pki.issue("server");
    // A keep-alive timeout longer than the test, so the watched connection
    // below stays open, idle, until its worker drains.
    let mut args = vec!["--workers", "2", "--keepalive-timeout", "60s"];
    args.extend_from_slice(extra);
    let server = start(&cert, &args);
    let old: BTreeSet<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    // A keep-alive connection we drive by hand, to see its drain up close.
    let mut watched = Conn::open_tls(server.public, &pki.client).unwrap();
    assert_eq!(watched.get("/healthz").unwrap().status, 200);
    let watched_worker = watched.worker.clone().unwrap();
    let traffic = Traffic::start_tls(server.public, Some(pki.client.clone()), 4, 2, PATHS);
    wait_requests(&server, 0.0, 50.0);
    let mark = server.mark();
    server.signal("SIGTERM");
    // The watched connection's worker drains: the next request on it is
    // answered with Connection: close, then the stream ends with
    // close_notify (and that lets the drain finish).
    let draining = format!("worker {watched_worker} slot");
    server.expect_log(mark, "its drain", |l| l.contains(&draining) && l.contains("shutdown sent"), LONG);
    request_until_close(&mut watched, &server);
    watched.expect_clean_end().expect("close_notify after the Connection: close response");
    let end = server.expect_log(mark, "rolling restart end", |l| l.contains("rolling restart end"), LONG);
    let at_end = server.metric_sum("reference_requests_total");
    wait_requests(&server, at_end, 50.0);
    let tally = traffic.stop();
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests failed over TLS during the rolling restart; first: {:#?}",
        tally.failures.len(),
        tally.ok + tally.failures.len() as u64,
        &tally.failures[..tally.failures.len().min(5)]
    );
    eprintln!("{extra:?}: {} requests over TLS through the rolling restart, none failed", tally.ok);
    let new: BTreeSet<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    assert!(old.is_disjoint(&new), "not every worker was replaced: before {old:?}, after {new:?}");
    // Sticky: every client here is 127.0.0.1, so one slot serves them all.
    let served_by_new = new.iter().filter(|id| tally.workers.contains(&id.to_string())).count();
    let wanted = if extra.contains(&"sticky") { 1 } else { new.len() };
    assert!(served_by_new >= wanted, "new workers {new:?}, served by {:?}", tally.workers);
    assert!(tally.oks.iter().any(|(t, _)| *t > end.at), "nothing served after the restart");
}

#[test]
fn an_idle_tls_connection_is_closed_with_close_notify() {
    let pki = TestPki::new();
    let cert = pki.issue("server");
    let server = start(&cert, &["--single", "--keepalive-timeout", "300ms"]);
    let mut conn = Conn::open_tls(server.public, &pki.client).unwrap();
    assert_eq!(conn.get("/healthz").unwrap().status, 200);
    conn.expect_clean_end().expect("close_notify when the keep-alive timeout closes an idle connection");
}

#[test]
fn a_rolling_restart_rotates_the_certificate_and_a_bad_one_aborts_it_with_the_old_workers_serving() {
    let pki = TestPki::new();
    let (first, second) = (pki.issue("first"), pki.issue("second"));
    // The live files, replaced in place as a deploy does.
    let (cert, key) = (pki.path("live.crt"), pki.path("live.key"));
    first.install_at(&cert, &key);
    let tls = flags(&cert, &key);
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    // A long keep-alive timeout: `kept` idles through both rolls.
    args.extend_from_slice(&["--workers", "2", "--max-crashes", "2", "--crash-backoff", "10ms"]);
    args.extend_from_slice(&["--keepalive-timeout", "60s"]);
    let server = Server::start(&args);
    let before: BTreeSet<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    let mut kept = Conn::open_tls(server.public, &pki.client).unwrap();
    assert_eq!(kept.peer_cert().as_deref(), Some(&first.der[..]));
    assert_eq!(kept.get("/healthz").unwrap().status, 200);

    // A broken certificate file: the replacement cannot start, the roll is
    // aborted (saying why) and the old workers keep serving the old one.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    let mark = server.mark();
    server.signal("SIGHUP");
    let aborted = server.expect_log(mark, "the roll aborted", |l| l.contains("rolling restart aborted"), LONG);
    assert!(
        aborted.text.contains("--tls-cert") && aborted.text.contains("live.crt"),
        "the abort must say the certificate is why: {}",
        aborted.text
    );
    let serving: BTreeSet<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    assert_eq!(serving, before, "the old workers must keep serving after the abort");
    assert_eq!(server.metric("reference_rolling_restarts_aborted_total"), 1.0);
    assert_eq!(kept.get("/healthz").unwrap().status, 200, "a kept-alive connection survives the aborted roll");
    let mut fresh = Conn::open_tls(server.public, &pki.client).unwrap();
    assert_eq!(fresh.peer_cert().as_deref(), Some(&first.der[..]));
    assert_eq!(fresh.get("/healthz").unwrap().status, 200);
    // Closed by the client: an idle keep-alive connection holds its worker's
    // drain until the keep-alive timeout (60 s here), by design (CLUSTER.md,
    // "Drain rules"), and the roll below must not wait for it.
    drop(fresh);

    // The fixed deploy: a good new certificate, another rolling restart.
    second.install_at(&cert, &key);
    let mark = server.mark();
    server.signal("SIGHUP");
    // The connection from before the rotation is drained, not cut.
    let draining = format!("worker {} slot", kept.worker.clone().unwrap());
    server.expect_log(mark, "its drain", |l| l.contains(&draining) && l.contains("shutdown sent"), LONG);
    request_until_close(&mut kept, &server);
    kept.expect_clean_end().expect("close_notify after Connection: close");
    server.expect_log(mark, "rolling restart end", |l| l.contains("rolling restart end"), LONG);
    let after: BTreeSet<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    assert!(before.is_disjoint(&after), "not every worker was replaced: before {before:?}, after {after:?}");
    for _ in 0..6 {
        let mut conn = Conn::open_tls(server.public, &pki.client).unwrap();
        assert_eq!(conn.peer_cert().as_deref(), Some(&second.der[..]), "a new connection gets the new certificate");
        assert_eq!(conn.get("/healthz").unwrap().status, 200);
    }
}

#[test]
fn a_client_that_never_starts_its_handshake_does_not_hold_the_drain() {
    let pki = TestPki::new();
    let cert = pki.issue("server");
    // Idle and drain limits far beyond the handshake's, so only the
    // handshake's own drain rule can end that connection.
    let mut server = start(&cert, &["--single", "--keepalive-timeout", "60s", "--drain-timeout", "60s"]);
    let silent = std::net::TcpStream::connect(server.public).unwrap();
    let until = Instant::now() + LONG;
    while server.workers()["workers"][0]["connections"] != 1 {
        assert!(Instant::now() < until, "the silent connection was never accepted: {}", server.workers());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mark = server.mark();
    server.signal("SIGTERM");
    server.expect_log(mark, "drain start", |l| l.contains("SIGTERM: draining"), LONG);
    // Well inside the 10 s handshake timeout: the drain ended it.
    let status = server.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some_and(|s| s.success()),
        "a silent pre-handshake connection held the drain: {status:?}\n{}",
        server.dump()
    );
    drop(silent);
}

#[test]
fn a_bad_certificate_or_key_is_a_start_up_error_naming_the_file() {
    let pki = TestPki::new();
    let (good, other) = (pki.issue("good"), pki.issue("other"));
    let missing = pki.path("missing.crt");
    let cases: [(&std::path::Path, &std::path::Path, &str); 2] =
        [(&missing, &good.key, "missing.crt"), (&good.cert, &other.key, "not a usable pair")];
    for mode in [&["--workers", "1"][..], &["--single"]] {
        for (cert, key, says) in cases {
            let out = std::process::Command::new(BIN)
                .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
                .args(flags(cert, key))
                .args(mode)
                .current_dir(tempfile::tempdir().unwrap().path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{mode:?} {says}: {stderr}");
            assert!(stderr.contains(says), "{mode:?}: the error must say {says:?}: {stderr}");
        }
    }
    // The flags go together.
    let out = std::process::Command::new(BIN).args(["--single", "--tls-cert", "x.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
