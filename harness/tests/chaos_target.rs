//! The target's lifecycle (target.rs) with real processes: launch and wait
//! ready, a clear error when the target dies or never answers, stop (graceful,
//! then forced), kill-on-drop, attach by pid file, naive restart, and
//! "healthy again" after a worker is killed.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::time::Duration;

use chaos_support::*;
use harness::chaos::target::{Health, Stopped, Target, TargetError};
use harness::host::procs;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_a_prefork_server_finds_its_workers_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let spec = target_spec(port, Some(prefork(dir.path(), port, 2)));
    let target = Target::start(&spec, None, dir.path()).await.unwrap();
    let master = target.pid().unwrap();
    let tree = target.worker_tree().unwrap();
    assert_eq!(tree.master, master);
    assert_eq!(tree.workers.len(), 2, "{tree:?}");
    assert_eq!(target.probe().await, Ok(200));

    let stopped = target.stop(None).await.unwrap();
    assert!(matches!(stopped, Stopped::Graceful(_)), "{stopped:?}");
    assert!(!procs::is_alive(master));
    for w in tree.workers {
        assert!(!procs::is_alive(w.pid), "worker {} outlived the stop", w.pid);
    }
    assert!(dir.path().join("target-stdout.log").is_file());
}

#[tokio::test]
async fn a_target_that_exits_early_is_reported_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let spec = target_spec(free_port(), Some(launch(&["sh", "-c", "echo 'cannot bind: boom' >&2; exit 3"])));
    let err = Target::start(&spec, None, dir.path()).await.err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, TargetError::ExitedEarly { .. }), "{text}");
    assert!(text.contains("exit code 3") && text.contains("cannot bind: boom"), "{text}");
}

#[tokio::test]
async fn a_target_that_never_answers_times_out_and_is_killed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = target_spec(free_port(), None);
    spec.ready_timeout = Duration::from_millis(500);
    let target = Target::launch(&spec, &launch(&["sh", "-c", "echo starting >&2; exec sleep 60"]), dir.path()).unwrap();
    let pid = target.pid().unwrap();
    let err = target.wait_ready().await.unwrap_err().to_string();
    assert!(err.contains("did not answer") && err.contains("starting"), "{err}");
    drop(target);
    // The group was SIGKILLed; the process is at most a zombie waiting for tokio's reaper.
    let mut gone = false;
    for _ in 0..250 {
        if !procs::is_alive(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "pid {pid} survived the Target's drop");
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let spec = target_spec(free_port(), None);
    let mut l = launch(&["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]);
    l.stop_timeout = Duration::from_millis(300);
    let target = Target::launch(&spec, &l, dir.path()).unwrap();
    let pid = target.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // let the trap be set
    assert_eq!(target.stop(None).await.unwrap(), Stopped::Killed);
    assert!(!procs::is_alive(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaches_by_pid_file_and_restarts_naively() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let spec = target_spec(port, Some(prefork(dir.path(), port, 0)));
    let target = Target::start(&spec, None, dir.path()).await.unwrap();
    let first = target.pid().unwrap();
    assert!(target.worker_tree().unwrap().workers.is_empty());

    // Attach a second handle by pid file: it sees the same process, and
    // does not stop what it did not start.
    let pid_file = dir.path().join("server.pid");
    std::fs::write(&pid_file, format!("{first}\n")).unwrap();
    let mut attach_spec = target_spec(port, None);
    attach_spec.pid_file = Some(pid_file.clone());
    let attached = Target::start(&attach_spec, None, dir.path()).await.unwrap();
    assert_eq!(attached.pid(), Some(first));
    assert_eq!(attached.stop(None).await.unwrap(), Stopped::NotOurs);
    assert!(procs::is_alive(first));
    assert!(attached.restart(Duration::from_secs(1)).await.is_err());

    std::fs::write(&pid_file, "not a pid").unwrap();
    let err = Target::start(&attach_spec, None, dir.path()).await.err().unwrap().to_string();
    assert!(err.contains("server.pid") && err.contains("not a pid"), "{err}");

    // Naive restart: a new process, ready again.
    let (old, new) = target.restart(Duration::from_secs(5)).await.unwrap();
    assert_eq!(old, first);
    assert_ne!(new, first);
    assert!(!procs::is_alive(first));
    assert_eq!(target.probe().await, Ok(200));
    let log = std::fs::read_to_string(dir.path().join("target-stderr.log")).unwrap();
    assert!(log.contains("launch #2"), "{log}");
    target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_again_after_a_worker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let spec = target_spec(port, Some(prefork(dir.path(), port, 2)));
    let target = Target::start(&spec, None, dir.path()).await.unwrap();
    let before = target.worker_tree().unwrap().pids();
    assert_eq!(before.len(), 2);

    harness::chaos::target::signal(before[0], Signal::SIGKILL).unwrap();
    let health = Health { workers: 2, gone: vec![before[0]], settle: Duration::from_millis(300) };
    target.wait_healthy(&health, Duration::from_secs(20)).await.unwrap();
    let after = target.worker_tree().unwrap().pids();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]) && after.contains(&before[1]), "{before:?} -> {after:?}");

    // Asking for a worker count the target never reaches times out with the reason.
    let impossible = Health { workers: 3, gone: vec![], settle: Duration::ZERO };
    let err = target.wait_healthy(&impossible, Duration::from_millis(400)).await.unwrap_err().to_string();
    assert!(err.contains("2 workers, expected 3"), "{err}");
    target.stop(None).await.unwrap();
}

/// Helper process for the next test: launches a target, reports its pid, and
/// waits to be killed. Runs only when the next test starts it.
#[tokio::test]
#[ignore = "helper process, started by a_target_outlives_no_harness"]
async fn helper_launch_and_wait_to_be_killed() {
    let Ok(pid_file) = std::env::var("CHAOS_TEST_PID_FILE") else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = target_spec(free_port(), None);
    let target = Target::launch(&spec, &launch(&["sleep", "60"]), dir.path()).unwrap();
    std::fs::write(&pid_file, target.pid().unwrap().to_string()).unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn a_target_outlives_no_harness() {
    // A "harness" (this test binary, running the helper above) launches a
    // target and is SIGKILLed: no Drop runs, yet the kernel stops the target.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("target.pid");
    let mut harness = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_launch_and_wait_to_be_killed", "--nocapture"])
        .env("CHAOS_TEST_PID_FILE", &pid_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut target_pid = None;
    for _ in 0..500 {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            target_pid = Some(pid);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let target_pid = target_pid.expect("the helper never launched its target");
    assert!(procs::is_alive(target_pid));
    harness.kill().unwrap();
    harness.wait().unwrap();
    let mut gone = false;
    for _ in 0..500 {
        // Reparented to init (or a subreaper) and reaped, or a zombie: not alive.
        if !procs::is_alive(target_pid) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !gone {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target_pid), Signal::SIGKILL);
    }
    assert!(gone, "target {target_pid} outlived its SIGKILLed harness");
}
