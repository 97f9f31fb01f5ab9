//! The verdict against deliberately broken servers (issue 12's mutation tests): each of the reference
//! server's TEST ONLY defects, under the fault that exposes it, makes the harness FAIL with the right
//! gate and the right failure class, and the same scenario PASSES against the correct server.
//! Needs `cargo build -p reference-server` in the same target dir (docs/CHAOS.md, "Defects").
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaos_support::*;
use harness::chaos::faults::ChaosOptions;
use harness::drive::lifecycle::{self, FullRun, LifecycleOptions};
use harness::drive::run::RunOptions;
use harness::judge::gates::GateResult;
use harness::judge::verdict::Verdict;
use harness::outcome::FailureClass;
use harness::scenario::{self, ConnectionModel, FaultAction, FaultBudget, FaultSpec, Pick, Scenario};
use harness::traffic::engine::Live;

/// One live cluster at a time: they share two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn smoke() -> Scenario {
    scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.json")).unwrap()
}

/// `count` occurrences of `action`, 1.2 s apart from `at_ms`, each promising `budget`.
fn fault(name: &str, at_ms: u64, count: u32, action: FaultAction, budget: FaultBudget) -> FaultSpec {
    FaultSpec {
        name: name.into(),
        at: Duration::from_millis(at_ms),
        every: (count > 1).then_some(Duration::from_millis(1200)),
        count,
        action,
        budget,
    }
}

const ZERO: FaultBudget = FaultBudget { max_first_attempt_failures: Some(0), max_dropped: Some(0) };

fn rolling_restarts(count: u32) -> FaultSpec {
    fault("rolling restart", 1000, count, FaultAction::SignalMaster { signal: "SIGTERM".into() }, ZERO)
}

/// The smoke scenario, retrying everything, promising no failure outside
/// the faults, with `faults`, against a fresh reference server with `flags`.
fn scenario_for(dir: &Path, workers: usize, flags: &[&str], faults: Vec<FaultSpec>) -> Scenario {
    let mut s = smoke();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch = Some(reference_launch(dir, port, admin, workers, flags));
    s.audit.as_mut().unwrap().url = format!("http://127.0.0.1:{admin}/audit");
    retry_everything(&mut s);
    s.gates.max_first_attempt_failures_outside_faults = Some(0);
    // Speed is not what these runs judge: held requests queue in the pool.
    s.gates.latency.clear();
    s.chaos = faults;
    s
}

async fn play(s: Scenario, dir: &Path) -> FullRun {
    let opts = RunOptions { out: Some(dir.join("run")), ..Default::default() };
    let lo = LifecycleOptions {
        chaos: ChaosOptions { settle: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    let r = lifecycle::run(s, &opts, &lo, Arc::new(Live::default())).await.unwrap();
    eprintln!("{}", describe(&r));
    r
}

fn describe(r: &FullRun) -> String {
    let gates: Vec<String> = r
        .summary
        .gates
        .iter()
        .map(|g| format!("  {} {}: {}", if g.passed { "pass" } else { "FAIL" }, g.name, g.detail))
        .collect();
    format!(
        "verdict {:?}; totals: {:?}\nproblems: {:?}\nfaults: {:#?}\noutside: {:?}\naudit: {:?}\ngates:\n{}",
        r.summary.verdict,
        r.summary.totals,
        r.summary.validity.problems,
        r.chaos.attribution.faults,
        r.chaos.attribution.outside.counts,
        r.chaos.audit.as_ref().map(|a| (&a.verdict, &a.reason, a.acknowledged, a.orders_in_audit, a.checkouts)),
        gates.join("\n")
    )
}

fn failed_gates(r: &FullRun) -> Vec<&GateResult> {
    r.summary.gates.iter().filter(|g| !g.passed).collect()
}

/// The run failed (exit 1, not invalid), and only gates named with `prefix`
/// failed: the defect is caught by the gate meant for it.
fn assert_caught_by(r: &FullRun, prefix: &str) {
    let d = describe(r);
    let failed = failed_gates(r);
    assert!(!failed.is_empty() && failed.iter().all(|g| g.name.starts_with(prefix)), "expected {prefix}:\n{d}");
    if r.summary.verdict != Verdict::Fail {
        assert_busy_machine(r, &d);
    }
}

/// A verdict other than the expected one is acceptable only as
/// inconclusive on a machine busy with other work (issue 20): timeouts are
/// then the machine's as much as the server's, and the harness says so
/// rather than deciding. A defect that shows as resets or in the audit
/// decides whatever the machine does.
fn assert_busy_machine(r: &FullRun, d: &str) {
    let env = r.summary.environment.as_ref();
    assert!(
        r.summary.verdict == Verdict::Inconclusive && env.is_some_and(|e| e.noisy),
        "verdict {:?} on a machine that was not busy:\n{d}",
        r.summary.verdict
    );
    eprintln!("note: inconclusive, the machine was busy: {}", env.map(|e| e.reason.as_str()).unwrap_or_default());
}

/// The failure classes of the first attempts attributed to the faults named `fault` (all occurrences).
/// (The attribution names each occurrence by its label, `name#n` for a repeated
/// fault; the fault records, in the same order, carry the scenario's name.)
fn classes_in(r: &FullRun, fault: &str) -> BTreeSet<FailureClass> {
    r.chaos
        .faults
        .iter()
        .zip(&r.chaos.attribution.faults)
        .filter(|(record, _)| record.name == fault)
        .flat_map(|(_, f)| f.counts.first_attempt_failures.iter().filter(|(_, n)| **n > 0).map(|(c, _)| *c))
        .collect()
}

/// Every class seen is one of `allowed`, and there was at least one.
fn assert_classes(r: &FullRun, fault: &str, allowed: &[FailureClass]) {
    let seen = classes_in(r, fault);
    assert!(!seen.is_empty() && seen.iter().all(|c| allowed.contains(c)), "{fault}: {seen:?}\n{}", describe(r));
}

fn assert_passes(r: &FullRun) {
    if r.summary.verdict != Verdict::Pass {
        assert_busy_machine(r, &format!("the correct server did not pass:\n{}", describe(r)));
    }
    assert!(r.chaos.attribution.faults.iter().all(|f| f.recovered_ms.is_some()), "{}", describe(r));
}

use FailureClass::{ClosedBeforeResponse, ResetBeforeResponse, TruncatedBody};
const CUT: [FailureClass; 3] = [ResetBeforeResponse, ClosedBeforeResponse, TruncatedBody];

/// `scenarios/selfcheck.json` (what `make blackfriday` checks itself with)
/// against a fresh reference server with `flags`: a rolling restart that
/// promises zero, two SIGKILLs that may cost the pool's 16 connections, and
/// an audit.
fn selfcheck(dir: &Path, flags: &[&str]) -> Scenario {
    let mut s = scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/selfcheck.json")).unwrap();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch = Some(reference_launch(dir, port, admin, 2, flags));
    s.audit.as_mut().unwrap().url = format!("http://127.0.0.1:{admin}/audit");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_1_a_drain_that_drops_every_connection_fails_its_budget_though_retries_saved_all() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(selfcheck(dir.path(), &["--unsafe-drain"]), dir.path()).await;
    assert_caught_by(&r, "fault rolling restart:");
    assert_classes(&r, "rolling restart", &CUT);
    // What made this a hole: the retries saved every request.
    assert_eq!(r.summary.totals.dropped, 0, "{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_6_an_order_acknowledged_before_commit_and_lost_to_a_kill_fails_the_audit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(selfcheck(dir.path(), &["--unsafe-ack-before-commit"]), dir.path()).await;
    assert_caught_by(&r, "audit");
    let audit = r.chaos.audit.as_ref().unwrap();
    assert!(!audit.lost.is_empty(), "no lost order reported:\n{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_correct_server_passes_the_selfcheck() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(selfcheck(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
}

/// Two rolling restarts while every journey opens with a 300 ms request.
fn drain_scenario(dir: &Path, flags: &[&str]) -> Scenario {
    let mut s = scenario_for(dir, 2, flags, vec![rolling_restarts(2)]);
    hold_requests_in_flight(&mut s, 0, 300);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_correct_drain_passes_the_drain_scenario() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(drain_scenario(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
    assert_eq!(r.summary.totals.first_attempt_failures, 0, "{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_5_a_drain_timeout_shorter_than_a_request_cuts_it_and_fails_the_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(drain_scenario(dir.path(), &["--drain-timeout", "100ms"]), dir.path()).await;
    assert_caught_by(&r, "fault rolling restart#");
    assert_classes(&r, "rolling restart", &CUT);
}

/// Three rolling restarts of one worker whose event loop is often busy
/// pricing checkouts, so pooled connections often hold a request the worker
/// has not read yet when its drain starts.
fn busy_pool_scenario(dir: &Path, flags: &[&str]) -> Scenario {
    let mut all = vec!["--pricing-cost", "20000"];
    all.extend_from_slice(flags);
    scenario_for(dir, 1, &all, vec![rolling_restarts(3)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_2_closing_idle_keepalive_connections_at_drain_fails_the_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(busy_pool_scenario(dir.path(), &["--unsafe-close-idle"]), dir.path()).await;
    assert_caught_by(&r, "fault rolling restart#");
    assert_classes(&r, "rolling restart", &[ResetBeforeResponse, ClosedBeforeResponse]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_correct_drain_passes_the_busy_pool() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(busy_pool_scenario(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
}

/// One worker, a connection per shopper, every journey opening with a
/// 1.5 s request (so a drain lasts that long) and every other step allowed
/// 1 s: a replacement that starts only after the old worker left makes new
/// connections wait past that.
fn capacity_gap_scenario(dir: &Path, flags: &[&str]) -> Scenario {
    let mut s = scenario_for(dir, 1, flags, vec![rolling_restarts(1)]);
    s.connections = ConnectionModel::PerShopper { idle_timeout: Duration::from_secs(2) };
    for j in &mut s.journeys {
        for step in &mut j.steps {
            step.timeout = Duration::from_secs(1);
        }
    }
    // Second, so that a new shopper's first request is one that may wait only 1 s.
    hold_requests_in_flight(&mut s, 1, 1500);
    for j in &mut s.journeys {
        j.steps[1].timeout = Duration::from_secs(5);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_3_old_before_new_leaves_a_capacity_gap_that_fails_the_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(capacity_gap_scenario(dir.path(), &["--unsafe-old-before-new"]), dir.path()).await;
    assert_caught_by(&r, "fault rolling restart");
    assert_classes(&r, "rolling restart", &[FailureClass::ResponseTimeout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_new_before_old_has_no_capacity_gap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(capacity_gap_scenario(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
}

/// A connection per shopper at three times the smoke rate, one worker
/// stopped for 3 s (its accept queue fills: more than the ~128 connections a
/// worker accepts in one turn) while a rolling restart replaces it.
fn queued_connections_scenario(dir: &Path, flags: &[&str]) -> Scenario {
    let hang = fault(
        "hang",
        1000,
        1,
        FaultAction::HangWorker { pick: Pick::Oldest, duration: Duration::from_millis(3000) },
        ZERO,
    );
    let mut roll = rolling_restarts(1);
    roll.at = Duration::from_millis(1200);
    let mut s = scenario_for(dir, 1, flags, vec![hang, roll]);
    s.connections = ConnectionModel::PerShopper { idle_timeout: Duration::from_secs(2) };
    for st in &mut s.arrival {
        for r in [&mut st.from_rate, &mut st.to_rate] {
            *r *= 3.0;
        }
    }
    s.shoppers = 1200;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_4_a_reuseport_listener_closed_at_drain_resets_its_queue_and_fails_the_budget() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut r = play(queued_connections_scenario(dir.path(), &["--unsafe-reuseport"]), dir.path()).await;
    // The defect needs connections queued on the hung worker's own socket
    // when it closes it, so the master's shutdown must reach the worker
    // before the hang ends. Once in many runs under `make test` (never
    // alone, nor with both cores busy) the old worker accepted its whole
    // queue first and the run saw not one failed attempt: a run with
    // nothing to find, not a defect the gates missed (341 resets when it
    // takes). Such a run is played once more; the second must catch it.
    if r.summary.totals.attempts_failed == 0 {
        eprintln!("defect 4 was not provoked (no attempt failed); playing once more");
        let again = tempfile::tempdir().unwrap();
        r = play(queued_connections_scenario(again.path(), &["--unsafe-reuseport"]), again.path()).await;
    }
    assert_caught_by(&r, "fault ");
    let mut seen = classes_in(&r, "rolling restart");
    seen.extend(classes_in(&r, "hang"));
    assert!(
        !seen.is_empty() && seen.iter().all(|c| [ResetBeforeResponse, ClosedBeforeResponse].contains(c)),
        "{seen:?}\n{}",
        describe(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_the_shared_listener_keeps_its_queue_through_the_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(queued_connections_scenario(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
}

/// Buyers only, whose checkout gives up after 100 ms and retries at once on
/// whatever pooled connection is free, while pricing takes about 200 ms on
/// one of two workers: the retry races its own first attempt.
fn racing_retries_scenario(dir: &Path, flags: &[&str]) -> Scenario {
    let (port, admin) = (free_port(), free_port());
    let mut all = vec!["--pricing-cost", "150000"];
    all.extend_from_slice(flags);
    let launch = reference_launch(dir, port, admin, 2, &all);
    let doc = serde_json::json!({
        "name": "racing retries",
        "seed": 7,
        "target": {"base_url": format!("http://127.0.0.1:{port}"), "ready_path": "/healthz", "launch": launch_json(&launch)},
        "shoppers": 40,
        "arrival": [{"duration": "4s", "rate": 10}],
        "journeys": [{"name": "buyer", "steps": [
            {"name": "add", "method": "POST", "path": "/carts/race-{{shopper}}/items",
             "headers": {"content-type": "application/json"}, "body": {"sku": "sku-0001", "qty": 1},
             "timeout": "5s"},
            {"name": "checkout", "method": "POST", "path": "/checkout",
             "headers": {"content-type": "application/json"}, "body": {"cart_id": "race-{{shopper}}"},
             "idempotency_key": true, "expect": [201], "refuse": [409], "timeout": "100ms",
             "retry": {"attempts": 3, "on": ["response_timeout"], "backoff": "0ms"}}
        ]}],
        "connections": {"model": "pool", "size": 8, "idle_timeout": "2s"},
        "audit": {"url": format!("http://127.0.0.1:{admin}/audit"), "checkout_steps": ["checkout"]}
    });
    scenario::parse(&doc.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defect_7_an_idempotency_key_checked_outside_the_transaction_makes_duplicates_the_audit_fails() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(racing_retries_scenario(dir.path(), &["--unsafe-idempotency-outside-tx"]), dir.path()).await;
    assert_caught_by(&r, "audit");
    let audit = r.chaos.audit.as_ref().unwrap();
    assert!(!audit.duplicates.is_empty(), "no duplicate reported:\n{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_racing_retries_replay_the_first_order() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let r = play(racing_retries_scenario(dir.path(), &[]), dir.path()).await;
    assert_passes(&r);
    assert!(r.summary.totals.first_attempt_failures > 0, "no retry raced anything:\n{}", describe(&r));
}
