//! HTTPS end to end: the smoke scenario over TLS against the reference
//! cluster; refused certificates (expired, wrong name) fail the run loudly
//! and are never retried; cut handshakes; insecure_skip_verify said in
//! summary.json; resumption on and off in the ledger's handshake column;
//! a close without close_notify counted, not failed; a name pinned to an
//! IPv4 and an IPv6 address gets connections on both, each attributed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos_support;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::outcome::{FailureClass, Handshake, Outcome};
use serde_json::{Value, json};
use support::tls::{Kind, TestPki, TlsServer, target_json};

/// A one-step GET scenario against `target` (a JSON object).
fn scenario(target: &str, shoppers: u64, connections: &str, retry: &str) -> String {
    format!(
        r#"{{
  "name": "tls-test",
  "seed": 3,
  "target": {target},
  "shoppers": {shoppers},
  "arrival": [{{"duration": "1s", "rate": {shoppers}}}],
  "arrival_process": "uniform",
  "connections": {connections},
  "journeys": [{{"name": "j", "steps": [{{"name": "get", "path": "/", "timeout": "3s", "retry": {retry}}}]}}]
}}"#
    )
}

/// Every retriable class: a policy that would retry anything it may.
const RETRY_ALL: &str = r#"{"attempts": 3, "backoff": "10ms", "on": ["connect_refused", "connect_timeout",
    "tls_handshake_failed", "reset_before_response", "closed_before_response", "truncated_body",
    "response_timeout", "server_error", "protocol_error", "local_error"]}"#;
const NO_RETRY: &str = r#"{"attempts": 1}"#;

fn handshakes(records: &[harness::record::ledger::AttemptRecord], h: Handshake) -> usize {
    records.iter().filter(|r| r.handshake == h).count()
}

/// Shoppers of two steps on their own connections, which go idle (100 ms)
/// before the second step (300 ms later): each shopper connects twice.
fn reconnecting_shoppers(target: &str, shoppers: u64, resumption: bool) -> String {
    let v: Value = serde_json::from_str(&scenario(target, shoppers, "{}", NO_RETRY)).unwrap();
    let mut v = v;
    v["connections"] = json!({"model": "per_shopper", "idle_timeout": "100ms", "tls_resumption": resumption});
    v["think"] = json!({"kind": "constant", "duration": "300ms"});
    let step = v["journeys"][0]["steps"][0].clone();
    let mut second = step.clone();
    second["name"] = json!("again");
    v["journeys"][0]["steps"] = json!([step, second]);
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shopper_resumes_its_own_session_and_off_pays_a_full_handshake_every_time() {
    let pki = TestPki::new();
    let server = TlsServer::start(&pki.issue("good", Kind::Good), true).await;
    let target = target_json(&server.url(), &pki.ca_file);
    for resumption in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (s, records) = support::run(&reconnecting_shoppers(&target, 10, resumption), dir.path()).await;
        assert_eq!(s.totals.ok, 20, "resumption {resumption}: {:?}", support::failures(&s));
        let tls = s.tls.as_ref().expect("an https run has a tls section");
        assert_eq!(tls.resumption, resumption);
        let (full, resumed) = (handshakes(&records, Handshake::Full), handshakes(&records, Handshake::Resumed));
        assert_eq!(full + resumed, 20, "every step opened a connection (the first went idle)");
        assert_eq!((tls.handshakes_full, tls.handshakes_resumed), (full as u64, resumed as u64));
        for r in &records {
            // A shopper is a browser: its first connection is a full
            // handshake (it has no session, and none of the others'), and
            // its reconnect resumes its own, when resumption is on.
            let want = if r.step == "again" && resumption { Handshake::Resumed } else { Handshake::Full };
            assert_eq!(r.handshake, want, "shopper {} step {} (resumption {resumption})", r.shopper, r.step);
        }
        let addr = format!("127.0.0.1:{}", server.addr.port());
        assert!(records.iter().all(|r| r.addr.map(|a| a.to_string()) == Some(addr.clone())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_shares_its_sessions_across_its_connections() {
    // A pool is one client (a proxy in front of the shop): its second
    // connection resumes the session its first one got.
    let pki = TestPki::new();
    let server = TlsServer::start(&pki.issue("good", Kind::Good), true).await;
    let target = target_json(&server.url(), &pki.ca_file);
    let dir = tempfile::tempdir().unwrap();
    let mut v: Value =
        serde_json::from_str(&scenario(&target, 2, r#"{"model": "pool", "size": 2}"#, NO_RETRY)).unwrap();
    // Two shoppers 500 ms apart: the second finds the first's connection
    // idle past 100 ms, closes it and opens another.
    v["arrival"] = json!([{"duration": "1s", "rate": 2}]);
    v["connections"]["idle_timeout"] = json!("100ms");
    let (s, records) = support::run(&v.to_string(), dir.path()).await;
    assert_eq!(s.totals.ok, 2, "{:?}", support::failures(&s));
    let kinds: Vec<Handshake> = records.iter().map(|r| r.handshake).collect();
    assert_eq!(kinds, [Handshake::Full, Handshake::Resumed], "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuse_pays_no_handshake() {
    let pki = TestPki::new();
    let server = TlsServer::start(&pki.issue("good", Kind::Good), true).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&target_json(&server.url(), &pki.ca_file), 30, r#"{"model": "pool", "size": 2}"#, NO_RETRY);
    let (s, records) = support::run(&json, dir.path()).await;
    assert_eq!(s.totals.ok, 30, "{:?}", support::failures(&s));
    let opened = records.iter().filter(|r| r.handshake != Handshake::None).count() as u64;
    assert_eq!(opened, server.handshakes.load(std::sync::atomic::Ordering::Relaxed));
    assert!(opened <= 2, "a pool of 2 opened {opened} connections");
    assert!(records.iter().filter(|r| r.reused).all(|r| r.handshake == Handshake::None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_fails_unless_verification_is_off_and_then_says_so() {
    let pki = TestPki::new();
    let server = TlsServer::start(&pki.issue("other", Kind::WrongName), true).await;
    // Verified: every attempt refuses it, none is retried, the gate fails.
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&target_json(&server.url(), &pki.ca_file), 5, r#"{"model": "per_shopper"}"#, RETRY_ALL);
    let (s, records) = support::run(&json, dir.path()).await;
    assert_eq!(support::failures(&s), vec![("tls_certificate".to_string(), 5)]);
    assert!(records.iter().all(|r| r.attempt == 1), "a refused certificate was retried");
    let gate = s.gates.iter().find(|g| g.name == "tls_certificate").unwrap();
    assert!(!gate.passed && gate.detail.contains("certificate not valid for name"), "{gate:?}");
    assert_eq!(s.exit_code, 1);
    // Unverified: it passes, and summary.json says verification was off.
    let dir = tempfile::tempdir().unwrap();
    let target = format!(r#"{{"base_url": "{}", "insecure_skip_verify": true}}"#, server.url());
    let (s, _) = support::run(&scenario(&target, 5, r#"{"model": "per_shopper"}"#, NO_RETRY), dir.path()).await;
    assert_eq!(s.exit_code, 0, "{:?}", s.gates);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(doc["tls"]["insecure_skip_verify"], json!(true));
    assert!(support::summary_schema_errors(&doc).is_empty(), "{:?}", support::summary_schema_errors(&doc));
    let gate = s.gates.iter().find(|g| g.name == "tls_certificate").unwrap();
    assert!(gate.passed && gate.detail.contains("NOT verified"), "{gate:?}");
}

/// Runs the harness binary on `scenario` (JSON text) with no target to
/// launch; returns (exit code, output).
async fn run_attached(dir: &Path, scenario: String) -> (i32, String) {
    let file = dir.join("scenario.json");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join("run");
    // Off the runtime: the servers under test are tasks on it.
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["run", file.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_on_ipv4_and_ipv6_gets_connections_on_both_and_each_is_attributed() {
    let pki = TestPki::new();
    // The certificate names shop.example only: SNI and verification use the
    // URL's name, not the address the connection went to.
    let cert = pki.issue("shop", Kind::WrongName);
    // One server on 127.0.0.1 and one on ::1, on the same port (a name
    // whose DNS answers are an IPv4 and an IPv6 load balancer).
    let mut pair = None;
    for _ in 0..20 {
        let v4 = TlsServer::start(&cert, true).await;
        let v6_addr = std::net::SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), v4.addr.port());
        if let Some(v6) = TlsServer::start_on(&cert, v6_addr).await {
            pair = Some((v4, v6));
            break;
        }
    }
    let (v4, v6) = pair.expect("no port free on both 127.0.0.1 and ::1 in 20 tries (is IPv6 loopback disabled?)");
    let port = v4.addr.port();
    let target = |resolve: Value| {
        json!({"base_url": format!("https://shop.example:{port}"), "ca_file": pki.ca_file,
               "ready_timeout": "5s", "resolve": resolve})
        .to_string()
    };
    let both = target(json!({"shop.example": ["127.0.0.1", "::1"]}));
    let dir = tempfile::tempdir().unwrap();
    let (code, text) =
        run_attached(dir.path(), scenario(&both, 40, r#"{"model": "per_shopper", "tls_resumption": false}"#, NO_RETRY))
            .await;
    assert_eq!(code, 0, "{text}");

    // Every new connection went to the next address in turn: 20 each, and
    // each server saw its own (the readiness and health probes, one
    // address's business, go to the first: 127.0.0.1).
    let records = support::read_ledger(&dir.path().join("run/ledger.csv"));
    let (a4, a6) = (format!("127.0.0.1:{port}"), format!("[::1]:{port}"));
    let on = |a: &str| records.iter().filter(|r| r.addr.map(|x| x.to_string()).as_deref() == Some(a)).count();
    assert_eq!((on(&a4), on(&a6), records.len()), (20, 20, 40));
    assert!(records.iter().all(|r| r.outcome() == Outcome::Ok && r.handshake == Handshake::Full));
    let served = |s: &TlsServer| s.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(served(&v6), 20);
    assert!(served(&v4) > 20, "20 requests and the probes: {}", served(&v4));
    let before = served(&v4) + served(&v6);

    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    assert!(support::summary_schema_errors(&doc).is_empty(), "{:?}", support::summary_schema_errors(&doc));
    let rows: Vec<(String, u64)> = doc["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses table: {doc:#}"))
        .iter()
        .map(|r| (r["addr"].as_str().unwrap().to_string(), r["ok"].as_u64().unwrap()))
        .collect();
    assert_eq!(rows, [(a4, 20), (a6, 20)]);
    let report = std::fs::read_to_string(dir.path().join("run/index.html")).unwrap();
    assert!(report.contains("Per target address") && report.contains("[::1]:"), "no per-address table");

    // Not pinned, the name is looked up (and .example has no answer here):
    // the run cannot start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let unpinned = json!({"base_url": format!("https://shop.example:{port}"), "ca_file": pki.ca_file}).to_string();
    let (code, text) = run_attached(dir.path(), scenario(&unpinned, 2, r#"{"model": "per_shopper"}"#, NO_RETRY)).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("cannot resolve shop.example"), "{text}");
    // A pinned address is held to the loopback rule like a DNS answer.
    let remote = target(json!({"shop.example": ["::1", "192.0.2.7"]}));
    let (code, text) = run_attached(dir.path(), scenario(&remote, 2, r#"{"model": "per_shopper"}"#, NO_RETRY)).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("192.0.2.7") && text.contains("--allow-remote"), "{text}");
    assert_eq!(served(&v4) + served(&v6), before, "a run that could not start sent something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_without_close_notify_after_a_complete_response_is_counted_not_failed() {
    let pki = TestPki::new();
    let server = TlsServer::start(&pki.issue("good", Kind::Good), false).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&target_json(&server.url(), &pki.ca_file), 10, r#"{"model": "per_shopper"}"#, NO_RETRY);
    let (s, _) = support::run(&json, dir.path()).await;
    assert_eq!(s.totals.ok, 10, "{:?}", support::failures(&s));
    assert_eq!(s.tls.as_ref().unwrap().unclean_closes, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_closes_before_answering_the_client_hello_is_a_failed_handshake() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c);
        }
    });
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let (s, records) = support::run(
        &scenario(&target_json(&url, &pki.ca_file), 5, r#"{"model": "per_shopper"}"#, NO_RETRY),
        dir.path(),
    )
    .await;
    assert_eq!(support::failures(&s), vec![("tls_handshake_failed".to_string(), 5)]);
    // Nothing was sent: not an unknown outcome.
    assert!(records.iter().all(|r| r.outcome() == Outcome::Failed(FailureClass::TlsHandshakeFailed)));
    assert!(!FailureClass::TlsHandshakeFailed.outcome_unknown());
}

/// A server process that accepts and never answers, SIGKILLed while the
/// harness's handshakes wait on it: the kernel ends its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sigkilled_mid_handshake_gives_tls_handshake_failed() {
    let port = chaos_support::free_port();
    let script = format!(
        "import socket,sys,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port}))\ns.listen(64)\nheld=[]\nwhile True:\n    c,_=s.accept()\n    held.append(c)\n\
         \x20   print('accepted',flush=True)\n"
    );
    let mut child = Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    // Wait for the listener: the harness must reach it, not a closed port.
    let mut up = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "the python listener did not start");
    let json = scenario(&target_json(&url, &pki.ca_file), 3, r#"{"model": "per_shopper"}"#, NO_RETRY);
    let dir_path = dir.path().to_path_buf();
    let run = tokio::spawn(async move { support::run(&json, &dir_path).await });
    // Kill once a harness connection is in its handshake (the probe above
    // was the first accept).
    let killer = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..2 {
            lines.next();
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGKILL).unwrap();
        child.wait().unwrap();
    });
    let (s, records) = tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap();
    killer.join().unwrap();
    let cut = records.iter().filter(|r| r.class == Some(FailureClass::TlsHandshakeFailed)).count();
    assert!(cut >= 1, "no tls_handshake_failed: {:?}", support::failures(&s));
    // The rest found nothing listening any more.
    assert!(
        records
            .iter()
            .all(|r| matches!(r.class, Some(FailureClass::TlsHandshakeFailed | FailureClass::ConnectRefused))),
        "{:?}",
        support::failures(&s)
    );
}

// ---------------------------------------------------------------------------
// The harness binary against the TLS reference server
// ---------------------------------------------------------------------------

/// Runs `harness run` on `scenario` (JSON) with the reference server launched
/// with `extra` flags; returns (exit code, stdout + stderr, run folder).
fn run_binary(dir: &Path, scenario: &Value, server_flags: &[String], workers: usize) -> (i32, String) {
    let file = dir.join("scenario.json");
    std::fs::write(&file, scenario.to_string()).unwrap();
    let port = scenario["target"]["base_url"].as_str().unwrap().rsplit(':').next().unwrap().to_string();
    let admin = scenario["audit"]["url"]
        .as_str()
        .map(|u| u.trim_start_matches("http://127.0.0.1:").trim_end_matches("/audit").to_string())
        .unwrap_or_else(|| chaos_support::free_port().to_string());
    let launch = format!(
        "{} --listen 127.0.0.1:{port} --admin 127.0.0.1:{admin} --workers {workers} --db {} {}",
        chaos_support::reference_server().display(),
        dir.join("shop.db").display(),
        server_flags.join(" ")
    );
    let out = dir.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", file.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap(), "--launch", &launch])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), text)
}

#[test]
fn smoke_passes_over_https_against_the_tls_cluster() {
    let pki = TestPki::new();
    let cert = pki.issue("server", Kind::Good);
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (chaos_support::free_port(), chaos_support::free_port());
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.json");
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(smoke).unwrap()).unwrap();
    s["target"]["base_url"] = json!(format!("https://127.0.0.1:{port}"));
    s["target"]["ca_file"] = json!(pki.ca_file.display().to_string());
    s["audit"]["url"] = json!(format!("http://127.0.0.1:{admin}/audit"));
    // Latency gates follow the machine's load, not the code.
    s["gates"].as_object_mut().unwrap().remove("latency");
    let (code, text) = run_binary(dir.path(), &s, &cert.flags(), 2);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("TLS, resumption on"), "{text}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["tls"]["insecure_skip_verify"], json!(false));
    assert!(summary["tls"]["handshakes_full"].as_u64().unwrap() >= 1, "{}", summary["tls"]);
    assert!(support::summary_schema_errors(&summary).is_empty(), "{:?}", support::summary_schema_errors(&summary));
    let records = support::read_ledger(&dir.path().join("run/ledger.csv"));
    assert!(records.iter().any(|r| r.handshake == Handshake::Full));
    let report = std::fs::read_to_string(dir.path().join("run/index.html")).unwrap();
    assert!(report.contains("Over HTTPS"), "the report header does not say TLS");
}

#[test]
fn expired_and_wrong_name_certificates_fail_the_run_with_exit_1_naming_the_problem() {
    let pki = TestPki::new();
    for (kind, words) in [(Kind::Expired, "certificate expired"), (Kind::WrongName, "certificate not valid for name")] {
        let cert = pki.issue(&format!("{kind:?}"), kind);
        let dir = tempfile::tempdir().unwrap();
        let port = chaos_support::free_port();
        let url = format!("https://127.0.0.1:{port}");
        let s: Value = serde_json::from_str(&scenario(
            &target_json(&url, &pki.ca_file),
            4,
            r#"{"model": "per_shopper"}"#,
            RETRY_ALL,
        ))
        .unwrap();
        let (code, text) = run_binary(dir.path(), &s, &cert.flags(), 0);
        assert_eq!(code, 1, "{kind:?}: {text}");
        assert!(text.contains(words), "{kind:?}: the output does not say {words:?}:\n{text}");
        let records = support::read_ledger(&dir.path().join("run/ledger.csv"));
        assert_eq!(records.len(), 4, "{kind:?}: one attempt per operation, no retry");
        assert!(records.iter().all(|r| r.class == Some(FailureClass::TlsCertificate) && r.attempt == 1));
    }
}
