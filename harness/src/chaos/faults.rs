//! The fault runner: plays the scenario's faults against the target at their
//! times (from run start; `every` + `count` repeat them), alongside the
//! engine, as tokio tasks. Kill a worker, signal the master, hang a worker
//! (SIGSTOP, wait, SIGCONT), run the user's own command, or restart a
//! single-process target naively. Every fault writes `fault_start` and
//! `fault_end` (and then `fault_recovered` or `fault_unrecovered`) into the
//! run's event log, and becomes a [`FaultRecord`]: start, end, when the target
//! was back at steady state, the pids touched, the outcome.
//!
//! Picks (which worker) are deterministic for a seed: the n-th candidate of
//! the current workers sorted by pid, n drawn from an rng derived from the
//! scenario seed, the fault's index and the occurrence. `oldest` and
//! `busiest` read /proc (procs.rs).
//!
//! When the run ends, [`ChaosHandle::finish`] first resumes every process
//! this runner paused, then stops the faults not yet started, waits for the
//! ones in progress, and waits until the target is healthy again, so the audit
//! reads a shop at rest. Not here: what a failure is attributed to
//! (attribution.rs), starting and stopping the target (target.rs).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::chaos::target::{self, Health, Target};
use crate::host::procs::{self, Pid, ProcInfo};
use crate::record::events::EventLog;
use crate::scenario::{FaultAction, FaultSpec, Pick};

/// Tunables of the runner; the defaults suit the reference server.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// How long a fault may take to recover before it is recorded as unrecovered.
    pub recovery_timeout: Duration,
    /// How long the worker set must stay unchanged to count as steady.
    pub settle: Duration,
    /// CPU sampling window for the `busiest` pick.
    pub busiest_window: Duration,
    /// Where `command` faults write their output (`fault-<name>-<n>.log`); None: not kept.
    pub log_dir: Option<PathBuf>,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            recovery_timeout: Duration::from_secs(60),
            settle: Duration::from_millis(500),
            busiest_window: Duration::from_millis(250),
            log_dir: None,
        }
    }
}

/// Milliseconds to the microsecond, as the event log writes times
/// (a difference of two such times carries float noise otherwise).
fn ms3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One executed fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The scenario's name of the fault.
    pub name: String,
    /// This occurrence's final name, the one the attribution, the budgets,
    /// the summary, the console and the report all use: `name`, or `name#n`
    /// when the scenario repeats the fault ([`occurrence_name`]).
    pub label: String,
    /// "kill_worker", "signal_master", ...
    pub action: String,
    /// Signal, pick, duration or command, for people reading the report.
    pub detail: String,
    /// 1-based occurrence of a periodic fault.
    pub occurrence: u32,
    /// Ms since run start.
    pub start_ms: f64,
    /// When the action finished (the hang released, the command exited).
    pub end_ms: f64,
    /// When the target was back at steady state; None if it never was.
    pub recovered_at_ms: Option<f64>,
    pub pids: Vec<Pid>,
    /// "ok" or "error: ...".
    pub outcome: String,
}

/// The window a fault's failures are attributed to (judge/attribution.rs): from its start until the target was back at steady state, in ms since run start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWindow {
    pub name: String,
    pub action: String,
    pub start_ms: f64,
    /// When the target was back at steady state; None if it never was.
    pub recovered_ms: Option<f64>,
}

impl FaultRecord {
    /// `recovered_at_ms - start_ms`.
    pub fn recovery_ms(&self) -> Option<f64> {
        self.recovered_at_ms.map(|r| ms3(r - self.start_ms))
    }

    /// The attribution window of this fault.
    pub fn window(&self) -> FaultWindow {
        FaultWindow {
            name: self.label.clone(),
            action: self.action.clone(),
            start_ms: self.start_ms,
            recovered_ms: self.recovered_at_ms,
        }
    }
}

/// How the report, the gates and the budgets name one occurrence of a
/// fault: `name` alone, or `name#n` when the fault repeats.
pub fn occurrence_name(name: &str, occurrence: u32, repeated: bool) -> String {
    if repeated { format!("{name}#{occurrence}") } else { name.to_string() }
}

/// What the runner did, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChaosReport {
    /// Executed faults in start order.
    pub faults: Vec<FaultRecord>,
    /// Occurrences not started because the run ended first ("name#n").
    pub skipped: Vec<String>,
    /// Whether the target was healthy again after the run (before the audit).
    pub healthy_at_end: bool,
    /// Why not, when it was not.
    pub end_health: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("fault {fault}: {why}")]
    Invalid { fault: String, why: String },
    #[error("chaos needs the target's processes: {0}")]
    Target(#[from] target::TargetError),
}

/// One planned occurrence of a fault.
#[derive(Debug, Clone)]
struct Planned {
    index: usize,
    occurrence: u32,
    at: Duration,
    spec: FaultSpec,
}

/// The occurrences of all faults in time order (ties: scenario order).
fn plan(faults: &[FaultSpec]) -> Vec<Planned> {
    let mut out: Vec<Planned> = faults
        .iter()
        .enumerate()
        .flat_map(|(index, spec)| {
            spec.times().into_iter().enumerate().map(move |(i, at)| Planned {
                index,
                occurrence: i as u32 + 1,
                at,
                spec: spec.clone(),
            })
        })
        .collect();
    out.sort_by_key(|p| (p.at, p.index, p.occurrence));
    out
}

/// The rng for one occurrence's pick: same seed, fault and occurrence, same pick.
fn pick_rng(seed: u64, index: usize, occurrence: u32) -> crate::scenario::rng::Rng {
    const CHAOS_STREAM: u64 = 0xC4A0_5000_0000_0000;
    crate::scenario::rng::rng_for(seed, CHAOS_STREAM | ((index as u64) << 20) | u64::from(occurrence))
}

/// Choose among `workers` (any order): `random` takes the n-th by pid with n
/// from `rng`; `oldest` the earliest started; `busiest` needs the CPU sample
/// taken `window` earlier (`before`).
fn choose(pick: Pick, workers: &[ProcInfo], before: &[ProcInfo], rng: &mut crate::scenario::rng::Rng) -> Option<Pid> {
    let mut sorted: Vec<&ProcInfo> = workers.iter().collect();
    sorted.sort_by_key(|p| p.pid);
    if sorted.is_empty() {
        return None;
    }
    // Drawn whatever the pick, so one fault's pick does not shift another's.
    let n = rng.random_range(0..sorted.len());
    match pick {
        Pick::Random => Some(sorted[n].pid),
        Pick::Oldest => procs::oldest(workers),
        // Nobody measurable (all replaced during the window): fall back to random.
        Pick::Busiest => procs::busiest(before, workers).or(Some(sorted[n].pid)),
    }
}

/// Signals after which the worker is expected to be gone (and replaced).
fn kills(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGABRT | Signal::SIGSEGV
    )
}

/// Signals that make a pre-fork master replace its workers (rolling restart).
fn replaces_workers(sig: Signal) -> bool {
    matches!(sig, Signal::SIGHUP | Signal::SIGTERM)
}

struct Shared {
    target: Arc<Target>,
    log: EventLog,
    seed: u64,
    opts: ChaosOptions,
    /// Worker count at steady state, measured when chaos started.
    baseline_workers: usize,
    /// Processes this runner stopped (SIGSTOP) and has not resumed yet.
    paused: Mutex<BTreeSet<Pid>>,
    records: Mutex<Vec<FaultRecord>>,
    skipped: Mutex<Vec<String>>,
}

impl Shared {
    fn resume_all(&self) {
        let pids: Vec<Pid> =
            std::mem::take(&mut *self.paused.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
        for pid in pids {
            // ESRCH: the master already replaced it.
            let _ = target::signal(pid, Signal::SIGCONT);
        }
    }

    fn health(&self, gone: Vec<Pid>) -> Health {
        Health { workers: self.baseline_workers, gone, settle: self.opts.settle }
    }
}

/// The running fault runner. Dropping it without `finish` still resumes any
/// paused process.
pub struct ChaosHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

/// Check, before the run, that every fault can work on this target: known
/// signals, a pid to signal, a launched target for a naive restart.
pub fn validate(faults: &[FaultSpec], target: &Target) -> Result<(), ChaosError> {
    for f in faults {
        let bad = |why: String| ChaosError::Invalid { fault: f.name.clone(), why };
        match &f.action {
            FaultAction::KillWorker { signal, .. } | FaultAction::SignalMaster { signal } => {
                target::parse_signal(signal).map_err(bad)?;
            }
            FaultAction::NaiveRestart { .. } if !target.is_launched() => {
                return Err(bad("naive_restart needs a target the harness launches (target.launch)".into()));
            }
            FaultAction::Command { argv, .. } if argv.is_empty() => return Err(bad("empty command".into())),
            _ => {}
        }
        let needs_pid = !matches!(f.action, FaultAction::Command { .. } | FaultAction::NaiveRestart { .. });
        if needs_pid && target.pid().is_none() {
            return Err(bad(format!(
                "{} needs the target's pid: launch the target or give target.pid_file",
                f.action.as_str()
            )));
        }
    }
    Ok(())
}

/// Validate the faults against the target and start the runner. The target
/// must be ready: its current worker count is the steady state faults
/// recover to. Must be called inside a tokio runtime.
pub fn start(
    faults: &[FaultSpec],
    seed: u64,
    target: Arc<Target>,
    log: EventLog,
    opts: ChaosOptions,
) -> Result<ChaosHandle, ChaosError> {
    validate(faults, &target)?;
    let baseline_workers = if target.pid().is_some() { target.worker_tree()?.workers.len() } else { 0 };
    log.emit("chaos_ready", json!({"faults": faults.len(), "baseline_workers": baseline_workers}));
    let shared = Arc::new(Shared {
        target,
        log,
        seed,
        opts,
        baseline_workers,
        paused: Mutex::new(BTreeSet::new()),
        records: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
    });
    let (stop, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(schedule(Arc::clone(&shared), plan(faults), stop_rx));
    Ok(ChaosHandle { shared, stop, scheduler: Some(scheduler) })
}

/// Wait until `at` (from run start) or until stopped; true if stopped.
async fn sleep_until_or_stop(log: &EventLog, at: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let when = tokio::time::Instant::from_std(log.start() + at);
    // A dropped sender (the handle is gone) also means stop.
    let stopped = tokio::select! {
        _ = tokio::time::sleep_until(when) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

async fn schedule(shared: Arc<Shared>, planned: Vec<Planned>, mut stop: watch::Receiver<bool>) {
    let mut running = JoinSet::new();
    let mut rest = planned.into_iter();
    while let Some(p) = rest.next() {
        if sleep_until_or_stop(&shared.log, p.at, &mut stop).await {
            let mut skipped = shared.skipped.lock().unwrap_or_else(|e| e.into_inner());
            let label = |p: &Planned| occurrence_name(&p.spec.name, p.occurrence, p.spec.count > 1);
            skipped.push(label(&p));
            skipped.extend(rest.map(|p| label(&p)));
            break;
        }
        // Each occurrence runs on its own: a long hang does not delay a kill.
        running.spawn(execute(Arc::clone(&shared), p, stop.clone()));
    }
    while running.join_next().await.is_some() {}
}

/// What an action did: pids touched, pids that must be gone for recovery,
/// and the outcome.
struct Done {
    pids: Vec<Pid>,
    gone: Vec<Pid>,
    outcome: Result<(), String>,
}

async fn execute(shared: Arc<Shared>, p: Planned, stop: watch::Receiver<bool>) {
    let log = &shared.log;
    let name = p.spec.name.clone();
    let label = occurrence_name(&name, p.occurrence, p.spec.count > 1);
    let action = p.spec.action.as_str();
    let detail = detail_of(&p.spec.action);
    let mut rng = pick_rng(shared.seed, p.index, p.occurrence);
    // fault_start is written by the action itself once it knows its pids.
    let started: Mutex<Option<f64>> = Mutex::new(None);
    let emit_start = |pids: &[Pid]| {
        let t = log.now_ms();
        *started.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        log.emit_at(
            t,
            "fault_start",
            json!({"fault": name, "label": label, "action": action, "detail": detail, "occurrence": p.occurrence, "pids": pids}),
        );
    };
    let done = run_action(&shared, &p.spec, &mut rng, &emit_start, stop).await;
    let end_ms = log.now_ms();
    let started_at = *started.lock().unwrap_or_else(|e| e.into_inner());
    let start_ms = started_at.unwrap_or_else(|| {
        // The action failed before it touched anything: still one start event.
        emit_start(&done.pids);
        end_ms
    });
    let outcome = match &done.outcome {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    log.emit_at(
        end_ms,
        "fault_end",
        json!({"fault": name, "action": action, "occurrence": p.occurrence, "pids": done.pids, "outcome": outcome}),
    );

    let health = shared.health(done.gone.clone());
    let recovered_at_ms = match shared.target.wait_healthy(&health, shared.opts.recovery_timeout).await {
        Ok(since) => {
            let at = log.ms_at(since).max(end_ms);
            log.emit(
                "fault_recovered",
                json!({"fault": name, "occurrence": p.occurrence, "recovered_ms": at, "recovery_ms": ms3(at - start_ms)}),
            );
            Some(at)
        }
        Err(e) => {
            log.emit("fault_unrecovered", json!({"fault": name, "occurrence": p.occurrence, "why": e.to_string()}));
            None
        }
    };
    let record = FaultRecord {
        name: name.clone(),
        label,
        action: action.to_string(),
        detail,
        occurrence: p.occurrence,
        start_ms,
        end_ms,
        recovered_at_ms,
        pids: done.pids,
        outcome,
    };
    shared.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
}

fn detail_of(action: &FaultAction) -> String {
    match action {
        FaultAction::KillWorker { signal, pick } => format!("{signal} to the {} worker", pick.as_str()),
        FaultAction::SignalMaster { signal } => format!("{signal} to the master"),
        FaultAction::HangWorker { pick, duration } => format!("SIGSTOP the {} worker for {duration:?}", pick.as_str()),
        FaultAction::Command { argv, timeout } => format!("{argv:?} (timeout {timeout:?})"),
        FaultAction::NaiveRestart { stop_timeout } => format!("stop (timeout {stop_timeout:?}) and start again"),
    }
}

/// Pick a worker of the target.
async fn pick_worker(shared: &Shared, pick: Pick, rng: &mut crate::scenario::rng::Rng) -> Result<Pid, String> {
    let tree = shared.target.worker_tree().map_err(|e| e.to_string())?;
    let before = tree.workers;
    let after = if pick == Pick::Busiest {
        tokio::time::sleep(shared.opts.busiest_window).await;
        shared.target.worker_tree().map_err(|e| e.to_string())?.workers
    } else {
        before.clone()
    };
    choose(pick, &after, &before, rng).ok_or_else(|| "the target has no workers to pick from".to_string())
}

async fn run_action(
    shared: &Shared,
    spec: &FaultSpec,
    rng: &mut crate::scenario::rng::Rng,
    emit_start: &impl Fn(&[Pid]),
    mut stop: watch::Receiver<bool>,
) -> Done {
    let fail = |pids: Vec<Pid>, e: String| Done { pids, gone: vec![], outcome: Err(e) };
    match &spec.action {
        FaultAction::KillWorker { signal, pick } => {
            let sig = match target::parse_signal(signal) {
                Ok(s) => s,
                Err(e) => return fail(vec![], e),
            };
            let victim = match pick_worker(shared, *pick, rng).await {
                Ok(p) => p,
                Err(e) => return fail(vec![], e),
            };
            emit_start(&[victim]);
            match target::signal(victim, sig) {
                Ok(()) => {
                    Done { pids: vec![victim], gone: if kills(sig) { vec![victim] } else { vec![] }, outcome: Ok(()) }
                }
                Err(e) => fail(vec![victim], e.to_string()),
            }
        }
        FaultAction::SignalMaster { signal } => {
            let sig = match target::parse_signal(signal) {
                Ok(s) => s,
                Err(e) => return fail(vec![], e),
            };
            let Some(master) = shared.target.pid() else {
                return fail(vec![], "the target is not running".into());
            };
            let old = if replaces_workers(sig) {
                shared.target.worker_tree().map(|t| t.pids()).unwrap_or_default()
            } else {
                vec![]
            };
            emit_start(&[master]);
            match target::signal(master, sig) {
                Ok(()) => Done { pids: vec![master], gone: old, outcome: Ok(()) },
                Err(e) => fail(vec![master], e.to_string()),
            }
        }
        FaultAction::HangWorker { pick, duration } => {
            let victim = match pick_worker(shared, *pick, rng).await {
                Ok(p) => p,
                Err(e) => return fail(vec![], e),
            };
            // Registered before the signal: a finish() racing with us resumes it.
            shared.paused.lock().unwrap_or_else(|e| e.into_inner()).insert(victim);
            emit_start(&[victim]);
            if let Err(e) = target::signal(victim, Signal::SIGSTOP) {
                shared.paused.lock().unwrap_or_else(|e| e.into_inner()).remove(&victim);
                return fail(vec![victim], e.to_string());
            }
            tokio::select! {
                _ = tokio::time::sleep(*duration) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            shared.paused.lock().unwrap_or_else(|e| e.into_inner()).remove(&victim);
            // SIGCONT even if finish() already sent one: its SIGCONT may have
            // gone out between our registration and our SIGSTOP. A second
            // SIGCONT is harmless; a worker left stopped is not.
            let outcome = if procs::is_alive(victim) {
                target::signal(victim, Signal::SIGCONT).map_err(|e| e.to_string())
            } else {
                // The master killed it as hung (and replaced it): fine.
                Ok(())
            };
            Done { pids: vec![victim], gone: vec![], outcome }
        }
        FaultAction::Command { argv, timeout } => {
            let log_path = shared.opts.log_dir.as_ref().map(|d| {
                let safe: String =
                    spec.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
                d.join(format!("fault-{safe}.log"))
            });
            run_command(shared, argv, *timeout, log_path, emit_start).await
        }
        FaultAction::NaiveRestart { stop_timeout } => {
            let old = shared.target.pid();
            emit_start(&old.into_iter().collect::<Vec<_>>());
            match shared.target.restart(*stop_timeout).await {
                Ok((old, new)) => Done { pids: vec![old, new], gone: vec![], outcome: Ok(()) },
                Err(e) => fail(old.into_iter().collect(), e.to_string()),
            }
        }
    }
}

/// Run the user's command (their deploy or restart script) in its own process
/// group, with the target's pid and URL in its environment; kill the group
/// if it outlives `timeout`.
async fn run_command(
    shared: &Shared,
    argv: &[String],
    timeout: Duration,
    log_path: Option<PathBuf>,
    emit_start: &impl Fn(&[Pid]),
) -> Done {
    let Some((prog, args)) = argv.split_first() else {
        return Done { pids: vec![], gone: vec![], outcome: Err("empty command".into()) };
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env("HARNESS_TARGET_URL", shared.target.base_url())
        .env("HARNESS_TARGET_PID", shared.target.pid().map(|p| p.to_string()).unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    match log_path.as_ref().map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p)) {
        Some(Ok(f)) => {
            let (out, err) = match f.try_clone() {
                Ok(f2) => (std::process::Stdio::from(f), std::process::Stdio::from(f2)),
                Err(_) => (std::process::Stdio::from(f), std::process::Stdio::null()),
            };
            cmd.stdout(out).stderr(err);
        }
        _ => {
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            emit_start(&[]);
            return Done { pids: vec![], gone: vec![], outcome: Err(format!("cannot run {prog}: {e}")) };
        }
    };
    let pid = child.id().map_or(0, |p| p as Pid);
    emit_start(&[pid]);
    let outcome = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => {
            let tail = log_path.as_deref().map(target::file_tail).unwrap_or_default();
            let tail = tail.trim();
            Err(if tail.is_empty() { format!("{status}") } else { format!("{status}: {tail}") })
        }
        Ok(Err(e)) => Err(format!("waiting for {prog}: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            let _ = child.wait().await;
            Err(format!("timed out after {timeout:?} and was killed"))
        }
    };
    Done { pids: vec![pid], gone: vec![], outcome }
}

impl ChaosHandle {
    /// The worker count faults recover to.
    pub fn baseline_workers(&self) -> usize {
        self.shared.baseline_workers
    }

    /// End of the run: resume every paused process (before anything else),
    /// skip faults not started yet, wait for the ones in progress (their
    /// recovery included, bounded by `recovery_timeout`), then wait until the
    /// target is healthy again (at most `health_timeout`).
    pub async fn finish(mut self, health_timeout: Duration) -> ChaosReport {
        self.shared.resume_all();
        let _ = self.stop.send(true);
        if let Some(task) = self.scheduler.take() {
            let _ = task.await;
        }
        // A hang that ended between resume_all and the stop: resume again.
        self.shared.resume_all();
        let (healthy_at_end, end_health) =
            match self.shared.target.wait_healthy(&self.shared.health(vec![]), health_timeout).await {
                Ok(_) => (true, String::new()),
                Err(e) => (false, e.to_string()),
            };
        self.shared.log.emit("chaos_end", json!({"healthy": healthy_at_end, "why": end_health}));
        let mut faults = std::mem::take(&mut *self.shared.records.lock().unwrap_or_else(|e| e.into_inner()));
        faults.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        let skipped = std::mem::take(&mut *self.shared.skipped.lock().unwrap_or_else(|e| e.into_inner()));
        ChaosReport { faults, skipped, healthy_at_end, end_health }
    }
}

impl Drop for ChaosHandle {
    fn drop(&mut self) {
        // A harness that stops early must not leave a worker frozen.
        self.shared.resume_all();
        let _ = self.stop.send(true);
    }
}

/// When the last planned fault starts (for sizing a run so every fault fits).
pub fn last_fault_at(faults: &[FaultSpec]) -> Option<Duration> {
    plan(faults).last().map(|p| p.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pid: Pid, start: u64, cpu: u64) -> ProcInfo {
        ProcInfo { pid, ppid: 1, comm: "w".into(), state: 'S', start_ticks: start, cpu_ticks: cpu }
    }

    fn fault(name: &str, at_ms: u64, every_ms: Option<u64>, count: u32) -> FaultSpec {
        FaultSpec {
            name: name.into(),
            at: Duration::from_millis(at_ms),
            every: every_ms.map(Duration::from_millis),
            count,
            action: FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random },
            budget: Default::default(),
        }
    }

    #[test]
    fn periodic_faults_expand_in_time_order() {
        let p = plan(&[fault("a", 1000, Some(2000), 3), fault("b", 2000, None, 1)]);
        let got: Vec<(String, u32, u128)> =
            p.iter().map(|p| (p.spec.name.clone(), p.occurrence, p.at.as_millis())).collect();
        assert_eq!(
            got,
            vec![("a".into(), 1, 1000), ("b".into(), 1, 2000), ("a".into(), 2, 3000), ("a".into(), 3, 5000)]
        );
        assert_eq!(last_fault_at(&[fault("a", 1000, Some(2000), 3)]), Some(Duration::from_millis(5000)));
        assert_eq!(last_fault_at(&[]), None);
    }

    #[test]
    fn random_pick_is_deterministic_for_a_seed_and_varies_across_occurrences() {
        let workers: Vec<ProcInfo> = (0..8).map(|i| info(100 + i, 0, 0)).collect();
        let pick = |seed, occ| choose(Pick::Random, &workers, &workers, &mut pick_rng(seed, 0, occ)).unwrap();
        for occ in 1..5 {
            assert_eq!(pick(42, occ), pick(42, occ));
        }
        // The order the workers are listed in does not matter, only the set.
        let mut reversed = workers.clone();
        reversed.reverse();
        assert_eq!(choose(Pick::Random, &reversed, &reversed, &mut pick_rng(42, 0, 1)), Some(pick(42, 1)));
        let picks: BTreeSet<Pid> = (1..40).map(|occ| pick(42, occ)).collect();
        assert!(picks.len() > 1, "every occurrence picked the same worker: {picks:?}");
    }

    #[test]
    fn oldest_and_busiest_picks() {
        let before = vec![info(10, 500, 0), info(11, 100, 0), info(12, 300, 0)];
        let after = vec![info(10, 500, 90), info(11, 100, 5), info(12, 300, 20)];
        let mut rng = pick_rng(1, 0, 1);
        assert_eq!(choose(Pick::Oldest, &after, &before, &mut rng), Some(11));
        assert_eq!(choose(Pick::Busiest, &after, &before, &mut rng), Some(10));
        assert_eq!(choose(Pick::Random, &[], &before, &mut rng), None);
        // All replaced during the sampling window: still picks one of the current ones.
        let fresh = vec![info(20, 900, 1)];
        assert_eq!(choose(Pick::Busiest, &fresh, &before, &mut rng), Some(20));
    }

    #[test]
    fn which_signals_kill_and_which_restart() {
        assert!(kills(Signal::SIGKILL) && kills(Signal::SIGTERM));
        assert!(!kills(Signal::SIGUSR1) && !kills(Signal::SIGSTOP));
        assert!(replaces_workers(Signal::SIGHUP) && replaces_workers(Signal::SIGTERM));
        assert!(!replaces_workers(Signal::SIGUSR2));
    }
}
