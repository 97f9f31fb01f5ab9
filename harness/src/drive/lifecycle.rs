//! One run with everything around the traffic: launch (or attach to) the
//! target and wait until it is ready, play the traffic with the fault runner
//! alongside (a `run::SideTask` sharing the run's event log), then resume any
//! paused worker and wait until the target is healthy, attribute every failed
//! attempt to a fault window, count what each host of a fleet served, audit
//! the shop's data against the ledger, hand the audit's verdict to the gates,
//! and stop the target.
//!
//! It chains run.rs's stages (prepare -> execute -> conclude) and adds the
//! target, chaos, attribution and audit around them; it does not change how
//! traffic is played or judged. Everything after the traffic is [`judge`],
//! which `harness merge` (drive/merge.rs) calls on merged shards too, so one
//! code path judges a run and a merge. Its own results go to `chaos.json` in the run
//! folder (schema in docs/CHAOS.md) and into the event log.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::chaos::faults::FaultWindow;
use crate::chaos::faults::{ChaosError, ChaosHandle, ChaosOptions, ChaosReport, FaultRecord};
use crate::chaos::target::Target;
use crate::drive::run::{self, RunOptions, SideTask, StartError};
use crate::host::procs::Pid;
use crate::judge::affinity::{self, Affinity};
use crate::judge::attribution::{self, Attribution};
use crate::judge::audit::{self, AuditReport};
use crate::judge::budgets;
use crate::judge::hosts::{self, AddressRow, HostRow};
use crate::judge::summary::{ChaosSections, Summary};
use crate::judge::verdict::Status;
use crate::record::ledger;
use crate::scenario::{LaunchSpec, Scenario};
use crate::traffic::engine::Live;

/// File name of the chaos/attribution/audit results inside a run folder.
pub const CHAOS_FILE: &str = "chaos.json";

/// Default of [`LifecycleOptions::health_timeout`] (`harness run --health-timeout`).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Knobs beyond the scenario and `RunOptions`.
#[derive(Debug, Clone)]
pub struct LifecycleOptions {
    /// Launch command that replaces the scenario's `target.launch` (e.g. from
    /// the command line).
    pub launch: Option<LaunchSpec>,
    /// Attach to this running target (master pid) instead of launching one
    /// or reading the scenario's pid file.
    pub attach_pid: Option<Pid>,
    /// Attach to the target whose master pid is in this file (followed if a
    /// deploy replaces the master), replacing the scenario's launch and pid file.
    pub pid_file: Option<PathBuf>,
    pub chaos: ChaosOptions,
    /// How long the target may take to be healthy again after the run. A
    /// target still unhealthy then makes the run invalid (and the audit, if
    /// any, unknown): it is never a pass.
    pub health_timeout: Duration,
    /// Budget of one audit GET.
    pub audit_timeout: Duration,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        LifecycleOptions {
            launch: None,
            attach_pid: None,
            pid_file: None,
            chaos: ChaosOptions::default(),
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            audit_timeout: Duration::from_secs(30),
        }
    }
}

/// What `chaos.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosSummary {
    pub faults: Vec<FaultRecord>,
    /// Fault occurrences the run ended before ("name#n").
    pub skipped: Vec<String>,
    pub healthy_at_end: bool,
    pub end_health: String,
    pub attribution: Attribution,
    /// Changes of serving worker per shopper outside the fault windows.
    pub affinity: Affinity,
    /// None when the scenario has no audit.
    pub audit: Option<AuditReport>,
    /// How the target was stopped ("stopped gracefully (exit code 0)", ...).
    pub target_stop: String,
}

pub struct FullRun {
    pub summary: Summary,
    pub chaos: ChaosSummary,
}

/// The gate's view of an audit: only `pass` passes.
pub fn audit_gate(report: &AuditReport) -> Result<(), String> {
    match report.verdict {
        Status::Pass => Ok(()),
        Status::Fail => Err(format!("audit failed: {}", report.reason)),
        Status::Unknown => Err(format!("audit verdict unknown: {}", report.reason)),
    }
}

/// Checks that at most one way to reach the target's process was given;
/// a pid file replaces whatever the scenario says about the target's process.
pub fn attach_options(scenario: &mut Scenario, lo: &LifecycleOptions) -> Result<(), StartError> {
    let given = [lo.launch.is_some(), lo.attach_pid.is_some(), lo.pid_file.is_some()];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(StartError::Target(
            "give one of a launch command, a pid to attach to, or a pid file, not several".into(),
        ));
    }
    if let Some(f) = &lo.pid_file {
        scenario.target.launch = None;
        scenario.target.pid_file = Some(f.clone());
    }
    Ok(())
}

/// Launches or attaches to the target, waits until it is ready, and checks
/// that every fault of the scenario can work on it.
pub async fn start_target(
    scenario: &Scenario,
    lo: &LifecycleOptions,
    dir: &std::path::Path,
) -> Result<Arc<Target>, StartError> {
    let started = match lo.attach_pid {
        Some(pid) => Target::attach_ready(&scenario.target, pid).await,
        None => Target::start(&scenario.target, lo.launch.as_ref(), dir).await,
    };
    let target = Arc::new(started.map_err(|e| StartError::Target(e.to_string()))?);
    crate::chaos::faults::validate(&scenario.chaos, &target).map_err(|e| StartError::Target(e.to_string()))?;
    Ok(target)
}

type Slot = Arc<Mutex<Option<Result<ChaosHandle, ChaosError>>>>;

/// The fault runner as a side task: it starts with the run's event log (so
/// fault times and request times share one clock) and parks its handle in
/// `slot` for `run` to finish after the traffic.
fn chaos_task(scenario: &Scenario, target: Arc<Target>, opts: ChaosOptions, slot: Slot) -> SideTask {
    let faults = scenario.chaos.clone();
    let seed = scenario.seed;
    Box::new(move |events, _live| {
        Box::pin(async move {
            let started = crate::chaos::faults::start(&faults, seed, target, events, opts);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
        })
    })
}

/// Prepare, start the target, execute with chaos, recover, attribute, audit,
/// conclude, stop the target.
pub async fn run(
    scenario: Scenario,
    opts: &RunOptions,
    lo: &LifecycleOptions,
    live: Arc<Live>,
) -> Result<FullRun, StartError> {
    let mut scenario = scenario;
    attach_options(&mut scenario, lo)?;
    let mut p = run::prepare(scenario, opts)?;
    let target = start_target(&p.scenario, lo, &p.dir).await?;
    p.target_pid = {
        let target = Arc::clone(&target);
        Arc::new(move || target.pid())
    };
    let chaos_opts = ChaosOptions { log_dir: Some(p.dir.clone()), ..lo.chaos.clone() };
    let slot: Slot = Arc::default();
    let side = chaos_task(&p.scenario, Arc::clone(&target), chaos_opts, Arc::clone(&slot));
    let mut ex = run::execute(&p, vec![side], live).await?;

    // Resume paused workers and wait until the target is healthy, before
    // anything reads the shop.
    let chaos_report = finish_faults(&slot, lo, &mut ex).await;

    let judged = judge(&p, ex, chaos_report, lo).await;
    // Stopped in order even when concluding failed (dropping it would SIGKILL).
    let target_stop = match target.stop(None).await {
        Ok(s) => s.to_string(),
        Err(e) => format!("error: {e}"),
    };
    judged.finish(&p.dir, target_stop)
}

/// What [`judge`] concluded, before the target's stop is known.
pub struct Judged {
    summary: Result<Summary, StartError>,
    chaos: ChaosSummary,
}

impl Judged {
    /// Records how the target was stopped and writes `chaos.json`.
    pub fn finish(self, dir: &std::path::Path, target_stop: String) -> Result<FullRun, StartError> {
        let summary = self.summary?;
        let chaos = ChaosSummary { target_stop, ..self.chaos };
        let path = dir.join(CHAOS_FILE);
        let text = serde_json::to_string_pretty(&chaos)
            .map_err(|e| StartError::Output { path: path.clone(), source: std::io::Error::other(e) })?;
        crate::judge::summary::write_atomically(&path, text.as_bytes())
            .map_err(|source| StartError::Output { path: path.clone(), source })?;
        Ok(FullRun { summary, chaos })
    }
}

/// Everything after the traffic, for one run or a merge of shards (the one
/// code path that judges both): one pass over the ledger for attribution
/// against the fault windows, affinity, the audit's checkouts and the hosts;
/// the budgets; the audit; then `run::conclude` (gates, summary.json).
pub async fn judge(
    p: &run::Prepared,
    mut ex: run::Executed,
    chaos_report: ChaosReport,
    lo: &LifecycleOptions,
) -> Judged {
    let windows: Vec<FaultWindow> = chaos_report.faults.iter().map(FaultRecord::window).collect();
    let LedgerPass { failed, affinity, checkouts, hosts, addresses } = read_ledger_back(p, &mut ex, &windows);
    let attribution = attribution::attribute(&windows, &failed, ex.outcome.end_ms);
    for f in &attribution.faults {
        ex.events.emit("fault_attribution", json!(f));
    }
    ex.events.emit(
        "failures_outside_faults",
        json!({
            "first_attempt_failures": attribution.outside.counts.first_attempt_failures,
            "retry_failures": attribution.outside.counts.retry_failures,
            "recovered": attribution.outside.counts.recovered,
            "dropped": attribution.outside.counts.dropped,
        }),
    );

    ex.events.emit(
        "affinity",
        json!({"shoppers": affinity.shoppers, "breaks": affinity.breaks, "excused_changes": affinity.excused_changes}),
    );
    if let Some(max) = p.scenario.gates.max_affinity_breaks {
        ex.extra_gates.push(affinity::gate(max, &affinity));
    }
    // Each fault's promise, and the promise of no failure where none was
    // injected: retries cannot hide a broken drain from these.
    let budgets = budgets::evaluate(
        &p.scenario.chaos,
        &chaos_report.faults,
        &attribution,
        p.scenario.gates.max_first_attempt_failures_outside_faults,
    );
    ex.extra_gates.extend(budgets.gates.iter().cloned());

    let audit_report = run_audit(p, &ex, &chaos_report, &checkouts, lo).await;
    let gate = audit_report.as_ref().map(audit_gate);
    ex.chaos =
        ChaosSections::from(&chaos_report.faults, &attribution, &budgets, audit_report.as_ref(), hosts, addresses);
    let summary = run::conclude(p, ex, gate);
    let chaos = ChaosSummary {
        faults: chaos_report.faults,
        skipped: chaos_report.skipped,
        healthy_at_end: chaos_report.healthy_at_end,
        end_health: chaos_report.end_health,
        attribution,
        affinity,
        audit: audit_report,
        target_stop: String::new(),
    };
    Judged { summary, chaos }
}

/// Ends the fault runner: resumes paused workers and waits until the target
/// is healthy again; a runner that never started, or a target still
/// unhealthy, is a problem of the run.
async fn finish_faults(slot: &Slot, lo: &LifecycleOptions, ex: &mut run::Executed) -> ChaosReport {
    let started = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let chaos_report = match started {
        Some(Ok(handle)) => handle.finish(lo.health_timeout).await,
        Some(Err(e)) => {
            ex.problems.push(format!("the fault runner could not start: {e}"));
            ChaosReport::default()
        }
        None => {
            ex.problems.push("the fault runner did not start".to_string());
            ChaosReport::default()
        }
    };
    if !chaos_report.healthy_at_end && !chaos_report.end_health.is_empty() {
        // end_health says "the target was not healthy again within ...".
        ex.problems.push(format!("after the run: {}", chaos_report.end_health));
    }
    chaos_report
}

/// What the one pass over the ledger gathers.
struct LedgerPass {
    /// The failed attempts, with how their operations ended.
    failed: Vec<attribution::AttemptView>,
    affinity: Affinity,
    checkouts: Vec<audit::CheckoutView>,
    /// Per host of a fleet; empty when no worker id named a host.
    hosts: Vec<HostRow>,
    /// Per target address; empty when the run used one.
    addresses: Vec<AddressRow>,
}

/// One pass over the ledger file, flushed first, feeds the attribution,
/// the affinity check, the audit and the per-host breakdown; none of them
/// holds the whole ledger.
fn read_ledger_back(p: &run::Prepared, ex: &mut run::Executed, windows: &[FaultWindow]) -> LedgerPass {
    let affinity_windows: Vec<affinity::Window> = windows.iter().map(affinity::Window::from).collect();
    let no_steps = Vec::new();
    let checkout_steps = p.scenario.audit.as_ref().map_or(&no_steps, |a| &a.checkout_steps);
    let mut failed = attribution::FailedViews::default();
    let mut affinity = affinity::Tracker::new(&affinity_windows);
    let mut checkouts = audit::Checkouts::new(checkout_steps);
    let mut hosts = hosts::Hosts::default();
    let mut addresses = hosts::Addresses::default();
    let read = ex.outcome.book.ledger.finish().and_then(|()| {
        ledger::for_each_record(&ex.ledger_path, |r| {
            failed.add(r);
            affinity.add_record(r);
            checkouts.add(r);
            hosts.add(r);
            addresses.add(r);
        })
    });
    if let Err(e) = read {
        ex.problems.push(format!("cannot read the ledger back for attribution and audit: {e}"));
    }
    LedgerPass {
        failed: failed.finish(),
        affinity: affinity.finish(),
        checkouts: checkouts.finish(),
        hosts: hosts.finish(),
        addresses: addresses.finish(),
    }
}

/// The audit of the shop's data against the checkouts the ledger saw, if
/// the scenario has one, logged as an `audit` event.
async fn run_audit(
    p: &run::Prepared,
    ex: &run::Executed,
    chaos_report: &ChaosReport,
    checkouts: &[audit::CheckoutView],
    lo: &LifecycleOptions,
) -> Option<AuditReport> {
    match &p.scenario.audit {
        None => None,
        Some(spec) => {
            let totals = ex.outcome.book.ledger.totals();
            // A cut-off or interrupted run, open attempts, or a target that is
            // not healthy: whatever the audit finds cannot make it a pass.
            let complete = ex.problems.is_empty()
                && totals.open_attempts == 0
                && totals.open_operations == 0
                && chaos_report.healthy_at_end;
            let report = audit::run(&spec.url, checkouts, complete, lo.audit_timeout).await;
            ex.events.emit(
                "audit",
                json!({
                    "verdict": report.verdict.as_str(), "reason": report.reason,
                    "orders": report.orders_in_audit, "checkouts": report.checkouts,
                    "acknowledged": report.acknowledged, "lost": report.lost.len(),
                    "duplicates": report.duplicates.len(), "failed_but_applied": report.failed_but_applied.len(),
                    "oversold": report.oversold.len(), "recovered": report.recovered,
                }),
            );
            Some(report)
        }
    }
}

/// `run` on its own runtime, with Ctrl-C or SIGTERM stopping the traffic (the
/// run is then invalid; paused workers are resumed and the target is still
/// stopped in order).
pub fn run_blocking(scenario: Scenario, opts: &RunOptions, lo: &LifecycleOptions) -> Result<FullRun, StartError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Limits(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let live = Arc::new(Live::default());
        let stopper = {
            let live = live.clone();
            tokio::spawn(async move {
                // SIGTERM too (a CI job's timeout): stop in order, so the
                // target is stopped and no worker is left frozen.
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                let terminated = async {
                    match term.as_mut() {
                        Some(t) => t.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let got = tokio::select! {
                    r = tokio::signal::ctrl_c() => r.is_ok(),
                    _ = terminated => true,
                };
                if got {
                    eprintln!("\nharness: interrupted; stopping (the run will be marked invalid)");
                    live.stop.store(true, Ordering::Relaxed);
                }
            })
        };
        let result = run(scenario, opts, lo, live).await;
        stopper.abort();
        result
    })
}
