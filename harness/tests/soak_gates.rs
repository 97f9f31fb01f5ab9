//! The soak's gates (issue 18): the target's memory and file descriptors,
//! sampled over the run (host/resources.rs), must grow no faster than the
//! scenario allows. A server that leaks on every request (the reference
//! server's TEST ONLY `--unsafe-leak`, defect 8 in docs/CLUSTER.md) fails
//! both gates; the correct server, same traffic, passes them; a target the
//! harness cannot read fails them as not observed. Short steady runs stand
//! in for the 30-minute `make soak`: the leak is sized to show in seconds.
//! Needs `cargo build -p reference-server` in the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaos_support::*;
use harness::drive::lifecycle::{self, FullRun, LifecycleOptions};
use harness::drive::run::RunOptions;
use harness::host::resources;
use harness::judge::resources::{FDS_GATE, RSS_GATE};
use harness::judge::verdict::Verdict;
use harness::scenario::{self, Scenario, Stage};
use harness::traffic::engine::Live;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bounds far from both servers: the correct one's slope after warm-up is
/// a few hundred MiB/h at most over 12 s (noise extrapolated to an hour);
/// the leaky one grows 64 KiB and one descriptor per request, at 60
/// shoppers/s of 3 requests about 40 GiB and 650,000 descriptors an hour.
const RSS_LIMIT: f64 = 4096.0;
const FDS_LIMIT: f64 = 7200.0;

/// The smoke journeys at a steady 60 shoppers/s for 12 s, two workers.
fn steady(dir: &Path, flags: &[&str]) -> Scenario {
    let mut s = scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.json")).unwrap();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch = Some(reference_launch(dir, port, admin, 2, flags));
    s.audit.as_mut().unwrap().url = format!("http://127.0.0.1:{admin}/audit");
    s.arrival = vec![Stage { duration: Duration::from_secs(12), from_rate: 60.0, to_rate: 60.0 }];
    s.shoppers = 720;
    s.gates.latency.clear();
    s.gates.max_server_rss_growth_mib_per_hour = Some(RSS_LIMIT);
    s.gates.max_server_fd_growth_per_hour = Some(FDS_LIMIT);
    s
}

async fn play(s: Scenario, dir: &Path) -> FullRun {
    let _one = ONE_AT_A_TIME.lock().await;
    let opts = RunOptions { out: Some(dir.join("run")), ..Default::default() };
    let r = lifecycle::run(s, &opts, &LifecycleOptions::default(), Arc::new(Live::default())).await.unwrap();
    for g in &r.summary.gates {
        eprintln!("{} {}: {}", if g.passed { "pass" } else { "FAIL" }, g.name, g.detail);
    }
    r
}

fn gate<'a>(r: &'a FullRun, name: &str) -> &'a harness::judge::gates::GateResult {
    r.summary.gates.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no gate {name}: {:?}", r.summary.gates))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_server_fails_both_resource_gates() {
    let dir = tempfile::tempdir().unwrap();
    let r = play(steady(dir.path(), &["--unsafe-leak"]), dir.path()).await;
    assert!(r.summary.validity.valid, "{:?}", r.summary.validity.problems);
    for name in [RSS_GATE, FDS_GATE] {
        let g = gate(&r, name);
        assert!(!g.passed && g.actual.unwrap() > g.limit, "{name} should fail: {g:?}");
    }
    assert_eq!(r.summary.verdict, Verdict::Fail);
    assert_eq!(r.summary.exit_code, 1);
    // The samples behind the verdict are in the run folder, and grow.
    let samples = resources::read_csv(&dir.path().join("run"));
    let server: Vec<_> = samples.iter().filter_map(|s| s.server).collect();
    assert!(server.len() >= 8, "{samples:?}");
    assert!(server.last().unwrap().fds > server[1].fds + 300, "{server:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_server_passes_them_and_the_harness_is_sampled_too() {
    let dir = tempfile::tempdir().unwrap();
    let r = play(steady(dir.path(), &[]), dir.path()).await;
    for name in [RSS_GATE, FDS_GATE] {
        assert!(gate(&r, name).passed, "{:?}", gate(&r, name));
    }
    let res = r.summary.resources.as_ref().unwrap();
    assert_eq!(res.interval_s, 1.0);
    let (server, harness) = (res.server.as_ref().unwrap(), res.harness.as_ref().unwrap());
    // Master and two workers; the harness's own process.
    assert!(server.rss_max_mib > 1.0 && server.fds_max >= 10, "{server:?}");
    assert!(harness.rss_max_mib > 1.0 && harness.samples >= 5, "{harness:?}");
    assert!(harness.rss_slope_mib_per_hour.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_the_harness_cannot_read_fails_them_as_not_observed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = steady(dir.path(), &[]);
    // The same server, started outside the harness: no process tree to read.
    let launch = s.target.launch.take().unwrap();
    let mut child = std::process::Command::new(&launch.argv[0]).args(&launch.argv[1..]).spawn().unwrap();
    s.arrival = vec![Stage { duration: Duration::from_secs(3), from_rate: 30.0, to_rate: 30.0 }];
    s.shoppers = 90;
    let r = play(s, dir.path()).await;
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT);
    let _ = child.wait();
    for name in [RSS_GATE, FDS_GATE] {
        let g = gate(&r, name);
        assert!(!g.passed && g.actual.is_none() && g.detail.contains("not observed"), "{g:?}");
    }
    assert_ne!(r.summary.verdict, Verdict::Pass);
}
