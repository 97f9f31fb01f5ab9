//! Regression (issue 19): SIGTERM to the master's whole process group (what `timeout(1)`, a terminal and
//! systemd's `KillMode=control-group` do) left the master spinning in `poll(.., 0)` at 70% of a core, forever;
//! pinned in both `--on-sigterm` modes by the master's CPU time, the workers it keeps and what it serves.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, Conn, Server, cpu_share, get_new_conn, setsid, signal_group};

const LONG: Duration = Duration::from_secs(30);
/// The master's share of a core while nothing happens: it wakes for
/// heartbeats only. The bug used 0.7; a busy machine cannot add to a
/// process's own CPU time, so this bound holds on a shared box.
const IDLE_SHARE: f64 = 0.05;
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// Wait until `n` ready workers serve, none of them in `old`, with no
/// rolling restart running and no old worker left in the table.
fn wait_replaced(server: &Server, old: &BTreeSet<i32>, n: usize) -> BTreeSet<i32> {
    let until = Instant::now() + LONG;
    loop {
        let w = server.workers();
        let workers = w["workers"].as_array().unwrap();
        let pids: BTreeSet<i32> = workers.iter().map(|w| w["pid"].as_i64().unwrap() as i32).collect();
        let all_ready = workers.iter().all(|w| w["state"] == "ready");
        if pids.len() == n && all_ready && pids.is_disjoint(old) && w["rolling_restart"] == false {
            return pids;
        }
        assert!(Instant::now() < until, "workers never replaced; last /workers: {w}\nlog:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn group_sigterm_with_on_sigterm_restart_leaves_an_idle_master_and_a_full_cluster() {
    let server = Server::start_with(Path::new(BIN), &["--workers", "2"], setsid);
    let old: BTreeSet<i32> = server.wait_ready(2).into_iter().map(|(_, pid)| pid).collect();
    let mark = server.mark();
    // The master leads its own session: its pid is the group id.
    signal_group(server.pid(), "SIGTERM");
    wait_replaced(&server, &old, 2);
    // Each old worker drained itself and exited 0: a drain, not an early crash.
    for pid in &old {
        let exit = format!("pid {pid} exited (exit code 0)");
        server.expect_log(mark, &exit, |l| l.contains(&exit) && l.contains("on its own (sigterm)"), LONG);
    }
    assert!(!server.dump().contains("early crash"), "a worker's own SIGTERM counted as a crash:\n{}", server.dump());
    assert_eq!(server.metric("reference_worker_restarts_total{reason=\"crash\"}"), 0.0);
    assert_eq!(server.metric("reference_worker_restarts_total{reason=\"sigterm\"}"), 2.0);

    let share = cpu_share(server.pid(), IDLE_WINDOW);
    assert!(share < IDLE_SHARE, "master used {:.0}% of a core while idle; log:\n{}", share * 100.0, server.dump());
    let w = server.workers();
    for slot in w["slots"].as_array().unwrap() {
        assert!(slot["respawn_in_ms"].is_null(), "a served slot kept its respawn timer: {w}");
    }
    assert!(w["next_timer_ms"].as_u64().unwrap() > 0, "the next poll would not sleep: {w}");
    for _ in 0..10 {
        assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);
    }
}

#[test]
fn group_sigterm_with_on_sigterm_stop_drains_with_an_idle_master_and_exits() {
    let mut server = Server::start_with(Path::new(BIN), &["--workers", "2", "--on-sigterm", "stop"], setsid);
    server.wait_ready(2);
    let public = server.public;
    let inflight = std::thread::spawn(move || Conn::open(public).unwrap().get("/slow?ms=5000"));
    let until = Instant::now() + LONG;
    while server.metric_sum("reference_in_flight_requests") < 1.0 {
        assert!(Instant::now() < until, "the slow request never showed as in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mark = server.mark();
    signal_group(server.pid(), "SIGTERM");
    server.expect_log(mark, "a graceful stop", |l| l.contains("stopping: draining"), LONG);

    // The slow request holds one drain open; the master waits for it, idle.
    let share = cpu_share(server.pid(), Duration::from_secs(2));
    assert!(share < IDLE_SHARE, "master used {:.0}% of a core while draining; log:\n{}", share * 100.0, server.dump());
    let r = inflight.join().unwrap().expect("the in-flight request was cut by the stop");
    assert_eq!(r.status, 200);
    let status = server.wait_exit(LONG).expect("the master never exited");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.dump());
    let started_after: Vec<_> =
        server.lines().into_iter().skip(mark).filter(|l| l.text.contains(" started")).map(|l| l.text).collect();
    assert!(started_after.is_empty(), "a stopping master started workers: {started_after:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.leftovers().is_empty(), "processes left behind: {:?}", server.leftovers());
}
