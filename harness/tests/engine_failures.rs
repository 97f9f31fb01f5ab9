//! Each server misbehaviour lands in its failure class, with
//! counts checked against what the purpose-built server itself counted.

mod support;

use support::{Behavior, Counters, TestServer, failures, run, scenario};

fn n(c: &std::sync::atomic::AtomicU64) -> u64 {
    Counters::get(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_every_third_connection_is_reset_before_response() {
    let srv = TestServer::start(Behavior::ResetEveryKthConnection(3)).await;
    let dir = tempfile::tempdir().unwrap();
    // One connection per shopper, one request per shopper: connection k = shopper k.
    let json = scenario(&srv.url(), 60, 100.0, r#"{"model": "per_shopper"}"#, r#""path": "/x""#);
    let (s, recs) = run(&json, dir.path()).await;
    let c = &srv.counters;
    assert_eq!(n(&c.connections), 60);
    assert_eq!(n(&c.resets), 20);
    assert_eq!(failures(&s), vec![("reset_before_response".to_string(), 20)]);
    assert_eq!(s.totals.ok, n(&c.ok));
    assert_eq!(s.totals.ok, 40);
    assert_eq!(s.totals.dropped, 20);
    assert_eq!(s.totals.operations, 60);
    assert!(s.validity.valid, "{:?}", s.validity);
    // The worker header is recorded on every answered attempt.
    assert!(recs.iter().filter(|r| r.class.is_none()).all(|r| r.worker.as_deref() == Some("w7")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_closed_under_the_next_request_is_closed_before_response_on_a_reused_connection() {
    let srv = TestServer::start(Behavior::CloseOnSecondRequest).await;
    let dir = tempfile::tempdir().unwrap();
    // A pool of one: every second request goes out on the connection the
    // previous one used, which the server closes instead of answering.
    let json = scenario(&srv.url(), 40, 50.0, r#"{"model": "pool", "size": 1}"#, r#""path": "/x""#);
    let (s, recs) = run(&json, dir.path()).await;
    let c = &srv.counters;
    assert_eq!(n(&c.closed_without_response), 20);
    assert_eq!(failures(&s), vec![("closed_before_response".to_string(), 20)]);
    assert_eq!(s.totals.attempts_failed_on_reused_connection, 20);
    assert!(recs.iter().filter(|r| r.class.is_some()).all(|r| r.reused));
    assert!(recs.iter().filter(|r| r.class.is_none()).all(|r| !r.reused));
    assert_eq!(s.totals.ok, n(&c.ok));
    assert_eq!(n(&c.connections), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_right_after_a_response_never_counts_a_request_the_server_did_not_answer_as_ok() {
    let srv = TestServer::start(Behavior::CloseAfterResponse).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&srv.url(), 40, 50.0, r#"{"model": "pool", "size": 1}"#, r#""path": "/x""#);
    let (s, recs) = run(&json, dir.path()).await;
    // The client checks an idle connection before reuse, so most requests
    // find it closed and reconnect; any that lose the race are failures on a
    // reused connection, never anything else, and never counted ok.
    assert_eq!(s.totals.ok, Counters::get(&srv.counters.ok));
    assert_eq!(s.totals.ok + s.totals.dropped, 40);
    for r in recs.iter().filter(|r| r.class.is_some()) {
        assert!(r.reused, "{r:?}");
        let c = r.class.unwrap().as_str();
        assert!(c == "closed_before_response" || c == "reset_before_response", "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_body_is_truncated_body_with_its_status() {
    let srv = TestServer::start(Behavior::Truncated).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&srv.url(), 20, 50.0, r#"{"model": "pool", "size": 4}"#, r#""path": "/x""#);
    let (s, recs) = run(&json, dir.path()).await;
    assert_eq!(n(&srv.counters.truncated), 20);
    assert_eq!(failures(&s), vec![("truncated_body".to_string(), 20)]);
    assert!(recs.iter().all(|r| r.status == Some(200)));
    assert_eq!(s.totals.ok, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fourth_503_is_a_server_error() {
    let srv = TestServer::start(Behavior::Status503EveryKth(4)).await;
    let dir = tempfile::tempdir().unwrap();
    let json = scenario(&srv.url(), 40, 100.0, r#"{"model": "pool", "size": 4}"#, r#""path": "/x""#);
    let (s, recs) = run(&json, dir.path()).await;
    assert_eq!(n(&srv.counters.status_503), 10);
    assert_eq!(failures(&s), vec![("server_error".to_string(), 10)]);
    assert_eq!(s.totals.ok, n(&srv.counters.ok));
    assert_eq!(s.totals.ok, 30);
    assert!(recs.iter().filter(|r| r.class.is_some()).all(|r| r.status == Some(503)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_gives_response_timeouts() {
    let srv = TestServer::start(Behavior::SilentWindow {
        from: std::time::Duration::from_millis(500),
        until: std::time::Duration::from_millis(1000),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let json =
        scenario(&srv.url(), 100, 50.0, r#"{"model": "pool", "size": 64}"#, r#""path": "/x", "timeout": "300ms""#);
    let (s, _) = run(&json, dir.path()).await;
    let silent = n(&srv.counters.silent);
    assert!(silent >= 10, "the window should catch about 25 requests, caught {silent}");
    assert_eq!(failures(&s), vec![("response_timeout".to_string(), silent)]);
    assert_eq!(s.totals.ok, n(&srv.counters.ok));
    assert_eq!(s.totals.ok + silent, 100);
    assert!(s.validity.valid, "{:?}", s.validity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_connect_refused() {
    // Bind then drop a listener to get a port with nothing on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let json =
        scenario(&format!("http://127.0.0.1:{port}"), 10, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/x""#);
    let s = harness::scenario::parse(&json).unwrap();
    let opts = harness::drive::run::RunOptions { out: Some(dir.path().to_path_buf()), ..Default::default() };
    let p = harness::drive::run::prepare(s, &opts).unwrap();
    // (That the target is not ready is said before any traffic: engine_cli.rs.)
    // Run anyway, every attempt is connect_refused.
    let ex = harness::drive::run::execute(&p, Vec::new(), Default::default()).await.unwrap();
    let s = harness::drive::run::conclude(&p, ex, None).unwrap();
    assert_eq!(failures(&s), vec![("connect_refused".to_string(), 10)]);
}
