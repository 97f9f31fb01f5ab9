//! The master's state machine under random interleavings (issue 19): signals to the master, to workers and to
//! the whole group, worker crashes and slow `ready`s, with its invariants checked after every step and
//! capacity, idle CPU and service checked whenever it has settled. `RS_FUZZ_SEED` / `RS_FUZZ_STEPS` repeat a run.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, Server, cpu_share, get_new_conn, setsid};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

const LONG: Duration = Duration::from_secs(30);
const MAX_WORKERS: u64 = 4;
/// Settle and check capacity, CPU and service every this many steps.
const SETTLE_EVERY: usize = 8;

/// splitmix64: small, seedable, enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// SIGHUP to the master: a rolling restart.
    Hup,
    /// SIGTERM to the master (`--on-sigterm restart`): a rolling restart.
    TermMaster,
    /// SIGTERM to one worker: it drains itself.
    TermWorker,
    /// SIGKILL to one worker: a crash.
    KillWorker,
    /// SIGTERM to the whole process group (the trigger).
    TermGroup,
    /// SIGHUP to the whole group (a terminal hanging up).
    HupGroup,
    /// SIGTTIN / SIGTTOU to the master: one worker more / fewer.
    MoreWorkers,
    FewerWorkers,
    /// Nothing: let the master run.
    Wait,
}

const ACTIONS: [Action; 9] = [
    Action::Hup,
    Action::TermMaster,
    Action::TermWorker,
    Action::KillWorker,
    Action::TermGroup,
    Action::HupGroup,
    Action::MoreWorkers,
    Action::FewerWorkers,
    Action::Wait,
];

fn seed() -> u64 {
    match std::env::var("RS_FUZZ_SEED") {
        Ok(s) => s.parse().expect("RS_FUZZ_SEED must be a number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    }
}

fn workers_of(snapshot: &Value) -> &Vec<Value> {
    snapshot["workers"].as_array().unwrap()
}

/// The pids of workers that are not being stopped (a signal may still find
/// them gone: they can exit any time, so errors are ignored).
fn live_pids(snapshot: &Value) -> Vec<i32> {
    workers_of(snapshot)
        .iter()
        .filter(|w| w["state"] == "ready" || w["state"] == "starting")
        .map(|w| w["pid"].as_i64().unwrap() as i32)
        .collect()
}

/// What must hold after every step, whatever happens.
fn check_always(snapshot: &Value, ctx: &str) {
    let target = snapshot["target"].as_u64().unwrap() as usize;
    let mut ready_per_slot = std::collections::BTreeMap::<u64, usize>::new();
    for w in workers_of(snapshot).iter().filter(|w| w["state"] == "ready") {
        *ready_per_slot.entry(w["slot"].as_u64().unwrap()).or_default() += 1;
    }
    for (slot, n) in ready_per_slot {
        assert!(n <= 1, "{ctx}: slot {slot} has {n} serving workers: {snapshot}");
    }
    for s in snapshot["slots"].as_array().unwrap() {
        let Some(ms) = s["respawn_in_ms"].as_i64() else {
            continue;
        };
        let slot = s["slot"].as_u64().unwrap() as usize;
        assert!(slot < target, "{ctx}: slot {slot} beyond the target {target} keeps a respawn timer: {snapshot}");
        assert!(
            s["live"].as_u64() < s["wanted"].as_u64(),
            "{ctx}: slot {slot} has the workers it wants but keeps a respawn timer: {snapshot}"
        );
        // Due timers are acted on in the same loop turn; one overdue for long
        // is a timer the loop no longer acts on (the busy loop's cause).
        assert!(ms > -1000, "{ctx}: slot {slot}'s respawn timer is {}ms overdue: {snapshot}", -ms);
    }
}

/// Wait until every wanted slot has exactly one ready worker and nothing
/// else runs; then capacity is restored, the master is idle and it serves.
fn settle_and_check(server: &Server, ctx: &str) {
    let until = Instant::now() + LONG;
    let snapshot = loop {
        let w = server.workers();
        let target = w["target"].as_u64().unwrap();
        let workers = workers_of(&w);
        let mut slots: Vec<u64> = workers.iter().map(|w| w["slot"].as_u64().unwrap()).collect();
        slots.sort_unstable();
        let settled = w["rolling_restart"] == false
            && workers.iter().all(|w| w["state"] == "ready")
            && slots == (0..target).collect::<Vec<_>>();
        if settled {
            break w;
        }
        assert!(Instant::now() < until, "{ctx}: capacity never restored; last /workers: {w}\nlog:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    };
    check_always(&snapshot, ctx);
    for s in snapshot["slots"].as_array().unwrap() {
        assert!(s["respawn_in_ms"].is_null(), "{ctx}: a settled cluster keeps a respawn timer: {snapshot}");
    }
    assert!(snapshot["next_timer_ms"].as_u64().unwrap() > 0, "{ctx}: the next poll would not sleep: {snapshot}");
    let share = cpu_share(server.pid(), Duration::from_secs(2));
    assert!(share < 0.05, "{ctx}: master used {:.0}% of a core with nothing happening", share * 100.0);
    for _ in 0..4 {
        assert_eq!(get_new_conn(server.public, "/healthz").unwrap().status, 200, "{ctx}: not serving");
    }
}

#[test]
fn random_signals_crashes_and_slow_starts_keep_the_masters_invariants() {
    let seed = seed();
    let steps: usize = std::env::var("RS_FUZZ_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(32);
    eprintln!("master_fuzz: seed {seed}, {steps} steps (repeat with RS_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let args = [
        "--workers",
        "2",
        "--test-ready-delay",
        "300ms",
        // Most crashes early (a respawn timer in the future, the state the
        // busy loop came from), backoff on a scale the steps can exercise,
        // never giving up.
        "--min-uptime",
        "1s",
        "--crash-backoff",
        "20ms",
        "--max-crashes",
        "100000",
        "--drain-timeout",
        "5s",
    ];
    let mut server = Server::start_with(Path::new(BIN), &args, setsid);
    server.wait_ready(2);
    let group = Pid::from_raw(server.pid());
    let master = Pid::from_raw(server.pid());
    for step in 1..=steps {
        let before = server.workers();
        let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
        let pids = live_pids(&before);
        let victim = (!pids.is_empty()).then(|| Pid::from_raw(pids[rng.below(pids.len() as u64) as usize]));
        let target = before["target"].as_u64().unwrap();
        let _ = match action {
            Action::Hup => kill(master, Signal::SIGHUP),
            Action::TermMaster => kill(master, Signal::SIGTERM),
            Action::TermWorker => victim.map_or(Ok(()), |p| kill(p, Signal::SIGTERM)),
            Action::KillWorker => victim.map_or(Ok(()), |p| kill(p, Signal::SIGKILL)),
            Action::TermGroup => killpg(group, Signal::SIGTERM),
            Action::HupGroup => killpg(group, Signal::SIGHUP),
            Action::MoreWorkers if target < MAX_WORKERS => kill(master, Signal::SIGTTIN),
            Action::FewerWorkers => kill(master, Signal::SIGTTOU),
            Action::MoreWorkers | Action::Wait => Ok(()),
        };
        std::thread::sleep(Duration::from_millis(rng.below(200)));
        let ctx = format!("seed {seed} step {step} ({action:?})");
        assert!(server.try_exit().is_none(), "{ctx}: the master exited; log:\n{}", server.dump());
        check_always(&server.workers(), &ctx);
        if step % SETTLE_EVERY == 0 || step == steps {
            settle_and_check(&server, &ctx);
        }
    }
    assert!(!server.dump().contains("giving up"), "seed {seed}: crash-loop protection gave up:\n{}", server.dump());
    server.signal("SIGINT");
    let status = server.wait_exit(LONG).expect("no exit after SIGINT");
    assert_eq!(status.code(), Some(0), "seed {seed}: log:\n{}", server.dump());
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.leftovers().is_empty(), "seed {seed}: processes left behind: {:?}", server.leftovers());
}
