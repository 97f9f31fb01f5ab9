//! Issue 19's master binary upgrade judged by the harness: the reference cluster, started by the
//! test with `--pid-file` and attached to by the harness through it, is upgraded with SIGUSR2 in
//! the middle of load; the fault's budget is zero first-attempt failures, the harness follows the
//! new master through the pid file, and the old master is gone afterwards.
//! Needs `cargo build -p reference-server` in the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaos_support::*;
use harness::chaos::faults::ChaosOptions;
use harness::drive::lifecycle::{self, LifecycleOptions};
use harness::drive::run::RunOptions;
use harness::judge::verdict::Verdict;
use harness::scenario::{self, FaultAction, FaultBudget, FaultSpec};
use harness::traffic::engine::Live;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The cluster in its own process group (the upgraded master is a child of
/// the old one, so it stays in the group): killed, group and all, on drop.
struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn alive(pid: i32) -> bool {
    // Signal "none" only checks that the process exists.
    kill(Pid::from_raw(pid), None).is_ok()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigusr2_master_upgrade_under_load_costs_no_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let pid_file = dir.path().join("master.pid");
    let launch = reference_launch(dir.path(), port, admin, 2, &["--pid-file", pid_file.to_str().unwrap()]);
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(&launch.argv[0])
        .args(&launch.argv[1..])
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut cluster = Cluster(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let old = loop {
        if let Some(pid) = read_pid(&pid_file) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no pid file after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut s = scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/selfcheck.json")).unwrap();
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.audit.as_mut().unwrap().url = format!("http://127.0.0.1:{admin}/audit");
    let zero = FaultBudget { max_first_attempt_failures: Some(0), max_dropped: Some(0) };
    s.chaos = vec![FaultSpec {
        name: "master upgrade".into(),
        at: Duration::from_millis(1500),
        every: None,
        count: 1,
        action: FaultAction::SignalMaster { signal: "SIGUSR2".into() },
        budget: zero,
    }];
    let opts = RunOptions { out: Some(dir.path().join("run")), ..Default::default() };
    let lo = LifecycleOptions {
        pid_file: Some(pid_file.clone()),
        chaos: ChaosOptions { settle: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    let r = lifecycle::run(s, &opts, &lo, Arc::new(Live::default())).await.unwrap();
    let server_log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    let d = format!(
        "verdict {:?}, problems {:?}\nfaults {:#?}\ngates {:#?}\nserver log tail:\n{}",
        r.summary.verdict,
        r.summary.validity.problems,
        r.chaos.faults,
        r.summary.gates,
        server_log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let budget = r.summary.gates.iter().find(|g| g.name == "fault master upgrade: first-attempt failures");
    assert_eq!(budget.map(|g| (g.passed, g.actual)), Some((true, Some(0.0))), "{d}");
    let on_busy_machine =
        r.summary.verdict == Verdict::Inconclusive && r.summary.environment.as_ref().is_some_and(|e| e.noisy);
    assert!(r.summary.verdict == Verdict::Pass || on_busy_machine, "{d}");

    // The new master serves; the old one is gone.
    let new = read_pid(&pid_file).unwrap();
    assert_ne!(new, old, "the pid file still names the old master:\n{d}");
    // The old master is this test's child: it has exited once it can be reaped.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = cluster.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the old master {old} is still running:\n{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "the old master exited badly:\n{d}");
    assert!(alive(new), "{d}");
}
