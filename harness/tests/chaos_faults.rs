//! The fault runner (chaos.rs) against a real foreign pre-fork server (Python):
//! kill and hang a worker, run a user command (ok, failing, timing out), a naive
//! restart of a single process, events in the shared log, recovery times, and
//! paused workers resumed when the run ends early.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

use chaos_support::*;
use harness::chaos::faults::{self as chaos, ChaosOptions};
use harness::chaos::target::Target;
use harness::host::procs;
use harness::record::events::{self, EventLog};
use harness::scenario::{FaultAction, FaultSpec, Pick};

fn fault(name: &str, at_ms: u64, action: FaultAction) -> FaultSpec {
    FaultSpec::once(name, Duration::from_millis(at_ms), action)
}

fn opts() -> ChaosOptions {
    ChaosOptions { recovery_timeout: Duration::from_secs(20), settle: Duration::from_millis(200), ..Default::default() }
}

async fn prefork_target(dir: &std::path::Path, workers: usize) -> Arc<Target> {
    let port = free_port();
    let spec = target_spec(port, Some(prefork(dir, port, workers)));
    Arc::new(Target::start(&spec, None, dir).await.unwrap())
}

fn events_of(path: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    events::read(path).unwrap().into_iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_a_worker_periodically_and_sees_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let target = prefork_target(dir.path(), 2).await;
    let log_path = dir.path().join("events.jsonl");
    let log = EventLog::create(&log_path).unwrap();
    let mut kill = fault("kill", 100, FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Oldest });
    kill.every = Some(Duration::from_millis(1500));
    kill.count = 2;
    let before = target.worker_tree().unwrap().pids();
    let handle = chaos::start(&[kill], 7, Arc::clone(&target), log.clone(), opts()).unwrap();
    assert_eq!(handle.baseline_workers(), 2);
    wait_for_events(&log, &log_path, "fault_end", 2).await;
    let report = handle.finish(Duration::from_secs(20)).await;
    log.flush().unwrap();

    assert!(report.healthy_at_end, "{}", report.end_health);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.faults.len(), 2, "{report:?}");
    for (i, f) in report.faults.iter().enumerate() {
        assert_eq!(f.outcome, "ok");
        assert_eq!(f.occurrence, i as u32 + 1);
        assert_eq!(f.pids.len(), 1);
        let recovered = f.recovered_at_ms.unwrap();
        assert!(f.start_ms <= f.end_ms && f.end_ms <= recovered, "{f:?}");
    }
    // Oldest first: the first kill took one of the original workers.
    assert!(before.contains(&report.faults[0].pids[0]));
    let after = target.worker_tree().unwrap().pids();
    assert_eq!(after.len(), 2);
    for f in &report.faults {
        assert!(!after.contains(&f.pids[0]));
    }
    let starts = events_of(&log_path, "fault_start");
    let ends = events_of(&log_path, "fault_end");
    assert_eq!((starts.len(), ends.len()), (2, 2));
    assert_eq!(starts[0]["fault"], "kill");
    assert_eq!(starts[0]["action"], "kill_worker");
    assert_eq!(ends[0]["pids"][0], report.faults[0].pids[0]);
    assert_eq!(ends[0]["outcome"], "ok");
    assert_eq!(events_of(&log_path, "fault_recovered").len(), 2);
    target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_a_worker_then_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = prefork_target(dir.path(), 2).await;
    let (log, log_path) = watched_log(dir.path());
    let hang = fault("hang", 50, FaultAction::HangWorker { pick: Pick::Random, duration: Duration::from_millis(1500) });
    let handle = chaos::start(&[hang], 1, Arc::clone(&target), log.clone(), opts()).unwrap();
    // While hung, the victim is stopped (state T).
    let mut stopped = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stopped = target.worker_tree().unwrap().workers.into_iter().find(|w| w.state == 'T').map(|w| w.pid);
        if stopped.is_some() {
            break;
        }
    }
    let victim = stopped.expect("no worker was stopped");
    wait_for_events(&log, &log_path, "fault_end", 1).await;
    let state = procs::read(victim).unwrap().unwrap().state;
    assert_ne!(state, 'T', "worker {victim} is still stopped after the hang");
    let report = handle.finish(Duration::from_secs(20)).await;
    assert_eq!(report.faults.len(), 1);
    let f = first_fault(&report);
    assert_eq!((f.outcome.as_str(), f.pids.clone()), ("ok", vec![victim]));
    assert!(f.end_ms - f.start_ms >= 1400.0, "{f:?}");
    assert!(f.recovered_at_ms.is_some());
    target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_early_resumes_the_hung_worker_and_skips_later_faults() {
    let dir = tempfile::tempdir().unwrap();
    let target = prefork_target(dir.path(), 2).await;
    let log = EventLog::discard(std::time::Instant::now());
    let faults = [
        fault("long-hang", 50, FaultAction::HangWorker { pick: Pick::Busiest, duration: Duration::from_secs(60) }),
        fault("later", 30_000, FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random }),
    ];
    let handle = chaos::start(&faults, 1, Arc::clone(&target), log, opts()).unwrap();
    let mut victim = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        victim = target.worker_tree().unwrap().workers.into_iter().find(|w| w.state == 'T').map(|w| w.pid);
        if victim.is_some() {
            break;
        }
    }
    let victim = victim.expect("no worker was stopped");
    let report = tokio::time::timeout(Duration::from_secs(30), handle.finish(Duration::from_secs(20))).await.unwrap();
    assert_ne!(procs::read(victim).unwrap().unwrap().state, 'T');
    // Skipped occurrences carry their final names: `later` is not repeated, so no `#1`.
    assert_eq!(report.skipped, vec!["later".to_string()]);
    assert_eq!(report.faults.len(), 1);
    assert!(report.faults[0].end_ms - report.faults[0].start_ms < 30_000.0);
    assert!(report.healthy_at_end, "{}", report.end_health);
    target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_ok_failing_and_timing_out() {
    let dir = tempfile::tempdir().unwrap();
    let target = prefork_target(dir.path(), 1).await;
    let (log, log_path) = watched_log(dir.path());
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let faults = [
        fault(
            "deploy",
            0,
            FaultAction::Command {
                argv: sh("test -n \"$HARNESS_TARGET_PID\" && echo deployed to $HARNESS_TARGET_URL"),
                timeout: Duration::from_secs(10),
            },
        ),
        fault(
            "broken",
            0,
            FaultAction::Command { argv: sh("echo no such host >&2; exit 2"), timeout: Duration::from_secs(10) },
        ),
        fault("stuck", 0, FaultAction::Command { argv: sh("sleep 30"), timeout: Duration::from_millis(300) }),
    ];
    let o = ChaosOptions { log_dir: Some(dir.path().to_path_buf()), ..opts() };
    let handle = chaos::start(&faults, 1, Arc::clone(&target), log.clone(), o).unwrap();
    wait_for_events(&log, &log_path, "fault_end", 3).await;
    let report = handle.finish(Duration::from_secs(20)).await;
    let by =
        |n: &str| report.faults.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("no {n}: {report:?}")).clone();
    assert_eq!(by("deploy").outcome, "ok");
    let deploy_log = std::fs::read_to_string(dir.path().join("fault-deploy.log")).unwrap();
    assert!(deploy_log.contains("deployed to http://127.0.0.1:"), "{deploy_log}");
    let broken = by("broken").outcome;
    assert!(broken.starts_with("error:") && broken.contains("no such host"), "{broken}");
    let stuck = by("stuck");
    assert!(stuck.outcome.contains("timed out"), "{}", stuck.outcome);
    assert!(!procs::is_alive(stuck.pids[0]), "the timed-out command survived");
    target.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_restart_of_a_single_process() {
    let dir = tempfile::tempdir().unwrap();
    let target = prefork_target(dir.path(), 0).await;
    let first = target.pid().unwrap();
    let (log, log_path) = watched_log(dir.path());
    let restart = fault("deploy", 0, FaultAction::NaiveRestart { stop_timeout: Duration::from_secs(5) });
    let handle = chaos::start(&[restart], 1, Arc::clone(&target), log.clone(), opts()).unwrap();
    wait_for_events(&log, &log_path, "fault_end", 1).await;
    let report = handle.finish(Duration::from_secs(20)).await;
    let f = first_fault(&report);
    assert_eq!(f.outcome, "ok", "{f:?}");
    assert_eq!(f.pids[0], first);
    assert_eq!(Some(f.pids[1]), target.pid());
    assert!(!procs::is_alive(first));
    assert!(f.recovered_at_ms.is_some());
    target.stop(None).await.unwrap();
}

#[tokio::test]
async fn faults_that_cannot_work_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    // An external target: no pid, not launched.
    let spec = target_spec(free_port(), None);
    let external = Arc::new(Target::launch(&spec, &launch(&["sleep", "30"]), dir.path()).unwrap());
    let log = EventLog::discard(std::time::Instant::now());
    let bad_signal = fault("x", 0, FaultAction::KillWorker { signal: "SIGNOPE".into(), pick: Pick::Random });
    let err = chaos::start(&[bad_signal], 1, Arc::clone(&external), log.clone(), opts()).err().unwrap().to_string();
    assert!(err.contains("fault x") && err.contains("SIGNOPE"), "{err}");
    external.stop(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_against_a_foreign_prefork_server() {
    // The full lifecycle (launch, traffic, a worker kill, attribution, stop)
    // on a server that is not ours: no audit, workers found from /proc only.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut doc = foreign_scenario(port, 150, 50.0);
    doc["target"]["launch"] = launch_json(&prefork(dir.path(), port, 2));
    let text = doc.to_string();
    let s = harness::scenario::parse(&text).unwrap();
    let run_opts = harness::drive::run::RunOptions { out: Some(dir.path().join("run")), ..Default::default() };
    let lo = harness::drive::lifecycle::LifecycleOptions { chaos: opts(), ..Default::default() };
    let r = harness::drive::lifecycle::run(s, &run_opts, &lo, Arc::new(harness::traffic::engine::Live::default()))
        .await
        .unwrap();
    assert_eq!(r.chaos.faults.len(), 1, "{:?}", r.chaos);
    let f = &r.chaos.faults[0];
    assert_eq!(f.outcome, "ok");
    assert!(f.recovered_at_ms.is_some(), "{f:?}");
    assert!(r.chaos.audit.is_none());
    assert!(r.summary.totals.ok > 100, "{:?}", r.summary.totals);
    // Every failure the run saw is explained by the kill.
    assert_eq!(r.chaos.attribution.outside.counts.first_attempt_total(), 0, "{:?}", r.chaos.attribution);
    assert!(r.chaos.target_stop.starts_with("stopped gracefully"), "{}", r.chaos.target_stop);
    assert!(!procs::is_alive(f.pids[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_target_is_followed_through_its_own_deploy_script() {
    // The user's deploy replaces the master (new pid in the pid file); the
    // harness, attached by pid file, follows it and sees it recover.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = dir.path().join("prefork.py");
    std::fs::write(&script, chaos_support::PREFORK_PY).unwrap();
    let pid_file = dir.path().join("server.pid");
    let mut old = std::process::Command::new("python3")
        .args([script.to_str().unwrap(), &port.to_string(), "2"])
        .process_group(0)
        .spawn()
        .unwrap();
    let old_pid = old.id() as i32;
    std::fs::write(&pid_file, old_pid.to_string()).unwrap();
    // Reap the old master when it exits, so that `kill -0` in the script sees it gone.
    let reaper = std::thread::spawn(move || old.wait());

    let mut spec = target_spec(port, None);
    spec.pid_file = Some(pid_file.clone());
    let target = Arc::new(Target::start(&spec, None, dir.path()).await.unwrap());
    assert_eq!(target.pid(), Some(old_pid));
    let deploy = format!(
        "kill -TERM {old_pid}; while kill -0 {old_pid} 2>/dev/null; do sleep 0.05; done; \
         setsid python3 {} {port} 2 >/dev/null 2>&1 & echo $! > {}",
        script.display(),
        pid_file.display()
    );
    let f = fault(
        "deploy",
        100,
        FaultAction::Command { argv: vec!["sh".into(), "-c".into(), deploy], timeout: Duration::from_secs(20) },
    );
    let (log, log_path) = watched_log(dir.path());
    let handle = chaos::start(&[f], 1, Arc::clone(&target), log.clone(), opts()).unwrap();
    wait_for_events(&log, &log_path, "fault_end", 1).await;
    let report = handle.finish(Duration::from_secs(20)).await;
    let new_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let cleanup = || {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(new_pid), nix::sys::signal::Signal::SIGKILL);
    };
    let f = first_fault(&report);
    if f.outcome != "ok" || f.recovered_at_ms.is_none() || target.pid() != Some(new_pid) {
        cleanup();
        panic!("not followed: {report:?}, pid now {:?}, file says {new_pid}", target.pid());
    }
    assert_eq!(target.worker_tree().unwrap().workers.len(), 2);
    cleanup();
    reaper.join().unwrap().unwrap();
}
