//! The cluster beyond issue 2's numbered items: SIGTTIN/SIGTTOU, a second SIGINT, `--on-sigterm stop`, the
//! master's death, SIGTERM to a worker, long-lived responses ended by a drain, single-process mode, and
//! start-up errors.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Conn, Server, get_new_conn, signal};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn sigttin_adds_a_worker_and_sigttou_removes_one() {
    let server = Server::start(&["--workers", "2"]);
    server.wait_ready(2);
    server.signal("SIGTTIN");
    let three = server.wait_ready(3);
    let mark = server.mark();
    server.signal("SIGTTOU");
    server.expect_log(mark, "a worker retired", |l| l.contains("shutdown sent (worker count lowered)"), LONG);
    // Lowering the count retires a worker; it does not replace any.
    let two = server.wait_ready(2);
    assert!(two.iter().all(|w| three.contains(w)), "{two:?} are not two of {three:?}");
    // Never below one worker.
    for _ in 0..3 {
        server.signal("SIGTTOU");
        std::thread::sleep(Duration::from_millis(50));
    }
    let one = server.wait_ready(1);
    assert!(three.contains(&one[0]), "{one:?} is not one of {three:?}");
    assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);
}

#[test]
fn a_second_sigint_stops_at_once() {
    let mut server = Server::start(&["--workers", "1"]);
    let ready = server.wait_ready(1);
    let public = server.public;
    let stuck = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=60000"));
    std::thread::sleep(Duration::from_millis(400));
    server.signal("SIGINT");
    server.expect_log(0, "graceful stop", |l| l.contains("stopping: draining"), LONG);
    let t0 = Instant::now();
    server.signal("SIGINT");
    let status = server.wait_exit(LONG).expect("no exit after the second SIGINT");
    assert_eq!(status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(10), "the second SIGINT did not stop at once");
    assert!(stuck.join().unwrap().is_err(), "the immediate stop should cut the stuck request");
    std::thread::sleep(Duration::from_millis(100));
    assert!(!server.owns_live(ready[0].1), "worker left behind");
}

#[test]
fn on_sigterm_stop_makes_sigterm_a_graceful_stop() {
    let mut server = Server::start(&["--workers", "2", "--on-sigterm", "stop"]);
    let ready = server.wait_ready(2);
    let public = server.public;
    let inflight = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=800"));
    std::thread::sleep(Duration::from_millis(300));
    server.signal("SIGTERM");
    let r = inflight.join().unwrap().expect("in-flight request cut by a graceful stop");
    assert_eq!(r.status, 200);
    assert_eq!(server.wait_exit(LONG).expect("no exit after SIGTERM").code(), Some(0));
    assert!(!server.dump().contains("rolling restart begin"));
    std::thread::sleep(Duration::from_millis(100));
    // leftovers() looks at the pids the master logged: they must include the workers that were ready.
    let logged = server.worker_pids();
    assert!(ready.iter().all(|(_, pid)| logged.contains(pid)), "ready {ready:?}, logged {logged:?}");
    assert_eq!(server.leftovers(), Vec::<i32>::new(), "workers left behind");
}

#[test]
fn a_worker_whose_master_dies_drains_and_exits() {
    let mut server = Server::start(&["--workers", "2"]);
    let ready = server.wait_ready(2);
    let public = server.public;
    let inflight = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=700"));
    std::thread::sleep(Duration::from_millis(300));
    signal(server.pid(), "SIGKILL");
    server.wait_exit(LONG).expect("master did not die");
    let r = inflight.join().unwrap().expect("the orphaned worker cut its in-flight request");
    assert_eq!(r.status, 200);
    let until = Instant::now() + LONG;
    while ready.iter().any(|(_, pid)| server.owns_live(*pid)) {
        assert!(Instant::now() < until, "orphaned workers never exited; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.dump().contains("lost the master; draining"), "{}", server.dump());
}

#[test]
fn an_orphaned_worker_ends_its_own_drain_at_the_drain_timeout() {
    let mut server = Server::start(&["--workers", "1", "--drain-timeout", "1s"]);
    let ready = server.wait_ready(1);
    let public = server.public;
    // A request that outlives the drain timeout by far.
    let stuck = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=60000"));
    std::thread::sleep(Duration::from_millis(300));
    signal(server.pid(), "SIGKILL");
    server.wait_exit(LONG).expect("master did not die");
    let orphaned = Instant::now();
    let until = orphaned + LONG;
    while server.owns_live(ready[0].1) {
        assert!(Instant::now() < until, "the orphan outlived its drain timeout; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = orphaned.elapsed();
    assert!(took >= Duration::from_millis(900), "exited {took:?} after the master died: before the timeout");
    assert!(stuck.join().unwrap().is_err(), "the stuck request cannot have completed");
    assert!(server.dump().contains("drain timeout (1s) without the master; exiting"), "{}", server.dump());
}

#[test]
fn sigterm_to_a_worker_drains_it_and_the_master_respawns_the_slot() {
    let server = Server::start(&["--workers", "2"]);
    let ready = server.wait_ready(2);
    let (id, pid) = ready[0];
    let public = server.public;
    // Park a request on each worker; the one on the victim must complete.
    let inflight: Vec<_> =
        (0..4).map(|_| std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=700"))).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mark = server.mark();
    signal(pid, "SIGTERM");
    for h in inflight {
        assert_eq!(h.join().unwrap().expect("request cut by a worker's SIGTERM").status, 200);
    }
    server.expect_log(
        mark,
        "the worker's exit",
        |l| l.contains(&format!("worker {id} ")) && l.contains("exited"),
        LONG,
    );
    let now: Vec<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    assert!(!now.contains(&id), "worker {id} was not replaced: {now:?}");
    // A drain it did on its own, not a crash (issue 19): no backoff, its own reason.
    server.expect_log(mark, "a self-drain", |l| l.contains(&format!("worker {id} ")) && l.contains("on its own"), LONG);
    assert_eq!(server.metric("reference_worker_restarts_total{reason=\"sigterm\"}"), 1.0);
    assert_eq!(server.metric("reference_worker_restarts_total{reason=\"crash\"}"), 0.0);
}

#[test]
fn a_long_lived_response_is_ended_cleanly_by_the_drain() {
    let server = Server::start(&["--workers", "1"]);
    let ready = server.wait_ready(1);
    let public = server.public;
    let stream = std::thread::spawn(move || Conn::open(public).unwrap().get("/stream?ms=50"));
    std::thread::sleep(Duration::from_millis(400));
    let mark = server.mark();
    server.signal("SIGHUP");
    let r = stream.join().unwrap().expect("the long-lived response was cut");
    let body = String::from_utf8(r.body).unwrap();
    assert!(body.starts_with("data: tick 0\n\n"), "{body}");
    assert!(body.ends_with("event: drain\ndata: bye\n\n"), "{body}");
    let old = format!("worker {} ", ready[0].0);
    let exit = server.expect_log(mark, "the old worker's exit", |l| l.contains(&old) && l.contains("exited"), LONG);
    assert!(!exit.text.contains("killed"), "the drain waited for the stream until the timeout: {}", exit.text);
}

#[test]
fn single_process_mode_serves_admin_and_drains_on_sigterm() {
    let mut server = Server::start(&["--single"]);
    assert!(server.dump().contains("[single]"), "{}", server.dump());
    let r = get_new_conn(server.public, "/version").unwrap();
    assert_eq!(r.header("x-worker-id"), Some("single"));
    assert_eq!(r.json()["worker_id"], "single");
    for _ in 0..5 {
        assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);
    }
    assert_eq!(server.metric("reference_requests_total{slot=\"0\"}"), 6.0);
    assert_eq!(server.metric("reference_workers_up"), 1.0);
    assert_eq!(server.metric("reference_workers_draining"), 0.0);
    assert_eq!(server.workers()["mode"], "single");
    let public = server.public;
    let inflight = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=600"));
    std::thread::sleep(Duration::from_millis(200));
    server.signal("SIGTERM");
    let r = inflight.join().unwrap().expect("single mode cut an in-flight request");
    assert_eq!(r.status, 200);
    assert!(r.closes());
    assert_eq!(server.wait_exit(LONG).expect("single mode did not exit").code(), Some(0));
}

#[test]
fn workers_zero_is_single_process_mode() {
    let server = Server::start(&["--workers", "0"]);
    assert_eq!(get_new_conn(server.public, "/healthz").unwrap().header("x-worker-id"), Some("single"));
}

#[test]
fn startup_errors_are_one_line_and_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--listen", addr.as_str(), "--admin", "127.0.0.1:0", "--workers", "1"],
        vec!["--listen", addr.as_str(), "--admin", "127.0.0.1:0", "--single"],
        vec!["--listen", "127.0.0.1:0", "--admin", addr.as_str(), "--workers", "1"],
        vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--backlog", "0"],
        vec!["--drain-timeout", "5 parsecs"],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--hang-timeout",
            "200ms",
            "--heartbeat-interval",
            "100ms",
        ],
    ] {
        let out = Command::new(BIN).args(&args).current_dir(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let errors: Vec<_> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: want one error line, got:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_restart_signal_during_a_rolling_restart_does_not_start_a_second_one() {
    let server = Server::start(&["--workers", "2"]);
    server.wait_ready(2);
    let public = server.public;
    // Requests in flight on both workers keep each drain busy for a while.
    let inflight: Vec<_> =
        (0..4).map(|_| std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=1200"))).collect();
    std::thread::sleep(Duration::from_millis(300));
    server.signal("SIGHUP");
    server.expect_log(0, "the first restart", |l| l.contains("rolling restart begin"), LONG);
    server.signal("SIGTERM");
    std::thread::sleep(Duration::from_millis(100));
    server.signal("SIGHUP");
    let until = Instant::now() + LONG;
    let mut most = 0;
    while !server.dump().contains("rolling restart end") {
        let n = server.workers()["workers"].as_array().unwrap().len();
        most = most.max(n);
        assert!(Instant::now() < until, "the rolling restart never ended:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most <= 3, "{most} workers at once: a second restart ran concurrently");
    for h in inflight {
        assert_eq!(h.join().unwrap().expect("request cut by the restart").status, 200);
    }
    let log = server.dump();
    assert_eq!(log.matches("rolling restart begin").count(), 1, "{log}");
    assert_eq!(log.matches("ignored: a rolling restart is already in progress").count(), 2, "{log}");
    assert_eq!(server.metric("reference_rolling_restarts_total"), 1.0);
    assert_eq!(server.metric("reference_worker_restarts_total{reason=\"rolling\"}"), 2.0);
}

#[test]
fn a_broken_binary_deployed_by_sighup_aborts_the_rolling_restart_and_the_old_workers_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let exe = common::copy_binary(dir.path());
    let mut server = Server::start_exe(
        &exe,
        &["--workers", "2", "--crash-backoff", "20ms", "--max-crashes", "3", "--min-uptime", "5s"],
    );
    let before: Vec<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    let staged = dir.path().join("broken");
    std::fs::write(&staged, "#!/bin/sh\necho broken build >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, &exe).unwrap();
    let mark = server.mark();
    server.signal("SIGHUP");
    server.expect_log(mark, "the deploy aborted", |l| l.contains("rolling restart aborted"), LONG);
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "a failed deploy stopped the master:\n{}",
        server.dump()
    );
    let after: Vec<u64> = server.wait_ready(2).into_iter().map(|(id, _)| id).collect();
    assert_eq!(before, after, "the old workers must keep serving");
    for _ in 0..10 {
        assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);
    }
    assert_eq!(server.metric("reference_rolling_restarts_aborted_total"), 1.0);
}

#[test]
fn sigquit_stops_at_once() {
    let mut server = Server::start(&["--workers", "2"]);
    let ready = server.wait_ready(2);
    let public = server.public;
    let stuck = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=60000"));
    std::thread::sleep(Duration::from_millis(300));
    server.signal("SIGQUIT");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).expect("no exit after SIGQUIT").code(), Some(0));
    assert!(stuck.join().unwrap().is_err(), "SIGQUIT should cut the in-flight request");
    assert!(server.dump().contains("stopping now: SIGKILL to every worker"), "{}", server.dump());
    // leftovers() looks at the pids the master logged: they must include the workers that were ready.
    let logged = server.worker_pids();
    assert!(ready.iter().all(|(_, pid)| logged.contains(pid)), "ready {ready:?}, logged {logged:?}");
    assert_eq!(server.leftovers(), Vec::<i32>::new(), "workers left behind");
}
