//! The master binary upgrade (issue 19, SIGUSR2): under load it fails no request and leaves a new master of the new build serving, named by --pid-file; a new master that exits or hangs leaves the old one serving, unchanged, and a later upgrade still works and keeps the worker count.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, Traffic, alive, deploy, get_new_conn, patch_build_id, ppid, signal};

const LONG: Duration = Duration::from_secs(30);

/// The load loops of `tests/cluster.rs`'s rolling restarts: fast requests and
/// ones still in flight for a while, so a drain always finds work to finish.
const PATHS: &[&str] = &["/healthz", "/slow?ms=30", "/version", "/slow?ms=5"];

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// Wait until the server (any master) has counted `n` requests more than
/// `from`: traffic is flowing, without a fixed sleep.
fn wait_requests(server: &Server, from: f64, n: f64) {
    let until = Instant::now() + LONG;
    while server.metric_sum("reference_requests_total") < from + n {
        assert!(Instant::now() < until, "traffic never reached {n} requests; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ready workers' pids, checking they are exactly `n` (wait_ready).
fn worker_pids(server: &Server, n: usize) -> BTreeSet<i32> {
    server.wait_ready(n).into_iter().map(|(_, pid)| pid).collect()
}

/// A copy of the binary in a temp dir (so the test can replace it), with a
/// pid file next to it.
struct Deploy {
    dir: tempfile::TempDir,
    exe: PathBuf,
    pid_file: PathBuf,
}

impl Deploy {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = common::copy_binary(dir.path());
        let pid_file = dir.path().join("master.pid");
        Self { dir, exe, pid_file }
    }

    fn start(&self, extra: &[&str]) -> Server {
        let mut args = vec!["--workers", "2", "--pid-file", self.pid_file.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start_exe(&self.exe, &args)
    }

    fn script(&self, body: &str) {
        deploy(&self.exe, format!("#!/bin/sh\n{body}\n").as_bytes());
    }
}

/// Stop the master that is no longer the test's child (it was started by
/// the old master, which has exited): SIGINT, then wait for it and its
/// workers to be gone. Server's drop SIGKILLs whatever is left either way.
fn stop_adopted_master(server: &Server, pid: i32, pid_file: &Path) {
    signal(pid, "SIGINT");
    let until = Instant::now() + LONG;
    while alive(pid) || !server.leftovers().is_empty() {
        assert!(Instant::now() < until, "master {pid} or its workers outlived SIGINT; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "the stopped master left its pid file behind");
}

#[test]
fn sigusr2_under_load_hands_over_to_a_new_master_of_the_new_build_without_a_failed_request() {
    let d = Deploy::new();
    let mut server = d.start(&[]);
    let old_workers = worker_pids(&server, 2);
    let old_master = server.pid();
    assert_eq!(read_pid(&d.pid_file), old_master, "the pid file does not name the master");

    // Deploy a different build on disk.
    let before = get_new_conn(server.public, "/version").unwrap().json();
    let mut bytes = std::fs::read(&d.exe).unwrap();
    let new_id = if before["build_id"] == "0123456789abcdef" { "fedcba9876543210" } else { "0123456789abcdef" };
    assert_eq!(before["build_id"], patch_build_id(&mut bytes, new_id).as_str());
    deploy(&d.exe, &bytes);

    let traffic = Traffic::start(server.public, 4, 2, PATHS);
    wait_requests(&server, 0.0, 50.0);
    let mark = server.mark();
    server.signal("SIGUSR2");
    // The old master hands over and exits 0 once its workers drained.
    let status = server.wait_exit(LONG).expect("the old master never exited after the upgrade");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.dump());
    server.expect_log(
        mark,
        "the hand-over",
        |l| l.contains("upgrade: new master pid") && l.contains("handing over"),
        LONG,
    );

    let new_master = read_pid(&d.pid_file);
    assert_ne!(new_master, old_master, "the pid file still names the old master");
    assert!(alive(new_master), "the new master {new_master} is not running; log:\n{}", server.dump());
    let new_workers = worker_pids(&server, 2);
    let table = server.workers();
    assert_eq!(table["master_pid"], new_master, "the admin address is not served by the new master: {table}");
    assert!(new_workers.is_disjoint(&old_workers), "old workers still serve: {old_workers:?} -> {new_workers:?}");
    for w in table["workers"].as_array().unwrap() {
        assert_eq!(w["build_id"], new_id, "a worker of the new master runs the old build: {table}");
        let pid = w["pid"].as_i64().unwrap() as i32;
        assert_eq!(ppid(pid), Some(new_master), "worker {pid} is not the new master's child");
    }
    for pid in &old_workers {
        assert!(!alive(*pid), "old worker {pid} outlived the old master");
    }

    // Load keeps running on the new master's workers, then stops.
    wait_requests(&server, 0.0, 50.0);
    let tally = traffic.stop();
    tally.assert_no_failures("SIGUSR2 master upgrade");
    let new_ids: BTreeSet<String> = table["workers"].as_array().unwrap().iter().map(|w| w["id"].to_string()).collect();
    assert!(
        !tally.workers.is_disjoint(&new_ids),
        "no request reached the new workers {new_ids:?}: {:?}",
        tally.workers
    );
    for _ in 0..10 {
        let v = get_new_conn(server.public, "/version").unwrap().json();
        assert_eq!(v["build_id"], new_id, "served by the old build: {v}");
        assert_eq!(ppid(v["pid"].as_i64().unwrap() as i32), Some(new_master), "served outside the new master: {v}");
    }
    stop_adopted_master(&server, new_master, &d.pid_file);
    drop(d.dir);
}

#[test]
fn a_new_master_that_fails_or_hangs_leaves_the_old_one_serving_and_a_later_upgrade_keeps_the_worker_count() {
    let d = Deploy::new();
    let real = std::fs::read(&d.exe).unwrap();
    let server = d.start(&["--upgrade-timeout", "5s"]);
    let workers = worker_pids(&server, 2);
    let master = server.pid();

    // 1. The binary on disk cannot start: the new master exits 1.
    d.script("echo 'reference-server: error: this build cannot start (upgrade test)' >&2\nexit 1");
    let traffic = Traffic::start(server.public, 4, 2, PATHS);
    wait_requests(&server, 0.0, 50.0);
    let mark = server.mark();
    server.signal("SIGUSR2");
    let failed = server.expect_log(mark, "the failed upgrade", |l| l.contains("upgrade failed"), LONG);
    assert!(failed.text.contains("exited (exit code 1) before it was ready"), "{}", failed.text);
    assert!(failed.text.contains("keeps serving"), "{}", failed.text);
    // Why it failed is in the log too: the new master's own stderr.
    server.expect_log(mark, "the new master's own error", |l| l.contains("this build cannot start"), LONG);
    let served = server.metric_sum("reference_requests_total");
    wait_requests(&server, served, 30.0);
    let tally = traffic.stop();
    tally.assert_no_failures("an upgrade whose new master exits 1");
    assert_eq!(worker_pids(&server, 2), workers, "a failed upgrade changed the workers");
    assert_eq!(server.workers()["master_pid"], master);
    assert_eq!(read_pid(&d.pid_file), master, "a failed upgrade changed the pid file");

    // 2. The new master hangs: killed at --upgrade-timeout; a second SIGUSR2
    //    meanwhile starts no second upgrade.
    d.script("exec sleep 60");
    let mark = server.mark();
    server.signal("SIGUSR2");
    let begun = server.expect_log(mark, "the upgrade's start", |l| l.contains("upgrade begin"), LONG);
    let hung = begun.pid().unwrap();
    server.signal("SIGUSR2");
    server.expect_log(
        mark,
        "the second SIGUSR2 ignored",
        |l| l.contains("SIGUSR2 ignored: a master upgrade is already in progress"),
        LONG,
    );
    let killed = server.expect_log(mark, "the hung new master killed", |l| l.contains("upgrade failed"), LONG);
    assert!(killed.text.contains("not ready within --upgrade-timeout 5s: SIGKILL"), "{}", killed.text);
    server.expect_log(
        mark,
        "the hung new master reaped",
        |l| l.contains("exited (signal SIGKILL) after SIGKILL"),
        LONG,
    );
    assert!(!alive(hung), "the hung new master {hung} is still running");
    let starts = server.lines().iter().skip(mark).filter(|l| l.text.contains("upgrade begin")).count();
    assert_eq!(starts, 1, "a second SIGUSR2 started a second upgrade; log:\n{}", server.dump());
    assert_eq!(worker_pids(&server, 2), workers, "a failed upgrade changed the workers");
    assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);

    // 3. With a working binary back on disk, the next SIGUSR2 upgrades, and
    //    keeps the worker count SIGTTIN changed since --workers was read.
    deploy(&d.exe, &real);
    let mut server = server;
    server.signal("SIGTTIN");
    let workers = worker_pids(&server, 3);
    server.signal("SIGUSR2");
    let status = server.wait_exit(LONG).expect("the old master never exited after the upgrade");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.dump());
    let new_master = read_pid(&d.pid_file);
    assert_ne!(new_master, master);
    assert!(worker_pids(&server, 3).is_disjoint(&workers));
    assert_eq!(server.workers()["target"], 3);
    assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200);
    stop_adopted_master(&server, new_master, &d.pid_file);
}
