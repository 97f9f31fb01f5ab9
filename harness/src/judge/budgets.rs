//! Failure budgets: each fault's promise, and the promise that nothing fails
//! where no fault was injected, checked against the attribution.
//!
//! Retries hide broken servers: a client that retries saves the requests a
//! broken drain loses, so "0 dropped" cannot tell a correct rolling restart
//! from one that resets every connection. So every fault carries its own
//! budget of first attempts that may fail (and of operations that may be
//! dropped) in its attribution window, each occurrence of a repeated fault
//! on its own, and failures outside every window have a budget of their own.
//!
//! Pure: scenario faults + fault records + attribution in, gate results out.
//! Not for: deciding which window a failure belongs to (attribution.rs) or
//! what a failure is (the engine classifies).

use std::collections::BTreeMap;

use crate::chaos::faults::{FaultRecord, occurrence_name};
use crate::judge::attribution::{Attribution, FailureCounts};
use crate::judge::gates::{GateResult, timeouts_in};
use crate::outcome::FailureClass;
use crate::scenario::{FaultBudget, FaultSpec};

/// One planned occurrence of a fault with a budget, and whether it kept it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub fault: String,
    pub occurrence: u32,
    pub budget: FaultBudget,
    /// False when a count went over, or the occurrence was not played.
    pub kept: bool,
}

/// The budgets' gates, and per occurrence whether it kept its promise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub gates: Vec<GateResult>,
    pub faults: Vec<Kept>,
}

impl Budgets {
    /// The budget of occurrence `occurrence` of `fault`, if it has one.
    pub fn of(&self, fault: &str, occurrence: u32) -> Option<&Kept> {
        self.faults.iter().find(|k| k.fault == fault && k.occurrence == occurrence)
    }
}

/// "34 reset_before_response, 6 closed_before_response": largest first.
pub fn by_class(counts: &BTreeMap<FailureClass, u64>) -> String {
    let mut v: Vec<(&FailureClass, &u64)> = counts.iter().filter(|(_, n)| **n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter().map(|(c, n)| format!("{n} {}", c.as_str())).collect::<Vec<_>>().join(", ")
}

/// The first-attempt failures of `counts` against `max`, as a gate named
/// `name`, described as `who` ("rolling restart at peak", "outside every
/// fault window").
/// First attempts that failed in `counts` for a reason a slow machine cannot
/// cause (anything but a timeout): these decide even on a noisy machine.
fn not_timeouts(counts: &FailureCounts) -> u64 {
    counts.first_attempt_total().saturating_sub(timeouts_in(&counts.first_attempt_failures))
}

fn first_attempts_gate(name: String, who: &str, max: u64, counts: &FailureCounts) -> GateResult {
    let seen = counts.first_attempt_total();
    let mut detail = format!("{who}: {max} first-attempt failure(s) allowed, {seen} seen");
    if seen > 0 {
        detail.push_str(&format!(": {}", by_class(&counts.first_attempt_failures)));
    }
    GateResult {
        name,
        limit: max as f64,
        actual: Some(seen as f64),
        passed: seen <= max,
        detail,
        // A reset or a refused connection is the server's doing whatever
        // else ran on the machine; timeouts alone may be the machine's.
        capacity_dependent: not_timeouts(counts) <= max,
    }
}

fn dropped_gate(name: String, who: &str, max: u64, counts: &FailureCounts) -> GateResult {
    let seen = counts.dropped;
    GateResult {
        name,
        limit: max as f64,
        actual: Some(seen as f64),
        passed: seen <= max,
        detail: format!(
            "{who}: {max} dropped operation(s) allowed, {seen} dropped ({} saved by a retry)",
            counts.recovered
        ),
        // Dropped operations are not counted by class per window; if the
        // window's non-timeout failures could not exceed the budget on their
        // own, timeouts (maybe the machine's) are part of the excess.
        capacity_dependent: not_timeouts(counts) <= max,
    }
}

/// A budget that could not be checked: the fault did not happen, or did not
/// work. Its promise was not tested, so it is not a pass.
fn untested(name: String, limit: u64, why: String) -> GateResult {
    GateResult { name, limit: limit as f64, actual: None, passed: false, detail: why, capacity_dependent: false }
}

/// Every budget of the scenario against what the run did. `played` and
/// `attribution.faults` are in the same order (one window per record);
/// `outside_max` is `gates.max_first_attempt_failures_outside_faults`.
pub fn evaluate(
    planned: &[FaultSpec],
    played: &[FaultRecord],
    attribution: &Attribution,
    outside_max: Option<u64>,
) -> Budgets {
    let mut out = Budgets::default();
    for spec in planned.iter().filter(|s| s.budget.is_set()) {
        for occurrence in 1..=spec.count {
            let who = occurrence_name(&spec.name, occurrence, spec.count > 1);
            let found =
                played.iter().zip(&attribution.faults).find(|(r, _)| r.name == spec.name && r.occurrence == occurrence);
            let before = out.gates.len();
            let b = spec.budget;
            let limits = [
                (b.max_first_attempt_failures, format!("fault {who}: first-attempt failures")),
                (b.max_dropped, format!("fault {who}: dropped")),
            ];
            match found {
                None => {
                    for (max, name) in limits {
                        if let Some(max) = max {
                            let why = format!(
                                "{who} was not injected (the run ended first, or the fault runner failed): its budget was not tested"
                            );
                            out.gates.push(untested(name, max, why));
                        }
                    }
                }
                Some((r, _)) if r.outcome != "ok" => {
                    for (max, name) in limits {
                        if let Some(max) = max {
                            let why = format!("{who} did not work ({}): its budget was not tested", r.outcome);
                            out.gates.push(untested(name, max, why));
                        }
                    }
                }
                Some((_, a)) => {
                    if let (Some(max), name) = (b.max_first_attempt_failures, limits[0].1.clone()) {
                        out.gates.push(first_attempts_gate(name, &who, max, &a.counts));
                    }
                    if let (Some(max), name) = (b.max_dropped, limits[1].1.clone()) {
                        out.gates.push(dropped_gate(name, &who, max, &a.counts));
                    }
                }
            }
            let kept = out.gates[before..].iter().all(|g| g.passed);
            out.faults.push(Kept { fault: spec.name.clone(), occurrence, budget: b, kept });
        }
    }
    if let Some(max) = outside_max {
        out.gates.push(first_attempts_gate(
            "first-attempt failures outside every fault window".into(),
            "outside every fault window",
            max,
            &attribution.outside.counts,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::faults::FaultWindow;
    use crate::judge::attribution::{AttemptView, FinalOutcome, attribute};
    use crate::scenario::{FaultAction, Pick};
    use FailureClass::*;
    use std::time::Duration;

    fn spec(name: &str, count: u32, first: Option<u64>, dropped: Option<u64>) -> FaultSpec {
        FaultSpec {
            name: name.into(),
            at: Duration::from_secs(1),
            every: (count > 1).then_some(Duration::from_secs(2)),
            count,
            action: FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random },
            budget: FaultBudget { max_first_attempt_failures: first, max_dropped: dropped },
        }
    }

    fn record(name: &str, occurrence: u32, start_ms: f64, outcome: &str) -> FaultRecord {
        FaultRecord {
            name: name.into(),
            label: format!("{name}#{occurrence}"),
            action: "kill_worker".into(),
            detail: String::new(),
            occurrence,
            start_ms,
            end_ms: start_ms + 1.0,
            recovered_at_ms: Some(start_ms + 500.0),
            pids: vec![1],
            outcome: outcome.into(),
        }
    }

    fn failed(op: u64, attempt: u32, at: f64, class: FailureClass, fin: FinalOutcome) -> AttemptView {
        AttemptView { op, step: "s".into(), attempt, start_ms: at - 1.0, end_ms: at, class, final_outcome: fin }
    }

    fn judge(planned: &[FaultSpec], played: &[FaultRecord], fails: &[AttemptView], outside: Option<u64>) -> Budgets {
        let windows: Vec<FaultWindow> = played.iter().map(FaultRecord::window).collect();
        evaluate(planned, played, &attribute(&windows, fails, 10_000.0), outside)
    }

    fn gate<'a>(b: &'a Budgets, name: &str) -> &'a GateResult {
        b.gates.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no gate {name:?} in {:?}", b.gates))
    }

    #[test]
    fn a_graceful_fault_that_cost_first_attempts_fails_even_when_retries_saved_them() {
        let planned = [spec("rolling restart at peak", 1, Some(0), Some(0))];
        let played = [record("rolling restart at peak", 1, 1000.0, "ok")];
        let mut fails: Vec<AttemptView> =
            (0..34).map(|i| failed(i, 1, 1100.0, ResetBeforeResponse, FinalOutcome::Recovered)).collect();
        fails.extend((34..40).map(|i| failed(i, 1, 1200.0, ClosedBeforeResponse, FinalOutcome::Recovered)));
        let b = judge(&planned, &played, &fails, None);
        let g = gate(&b, "fault rolling restart at peak: first-attempt failures");
        assert!(!g.passed);
        assert_eq!(
            g.detail,
            "rolling restart at peak: 0 first-attempt failure(s) allowed, 40 seen: 34 reset_before_response, \
             6 closed_before_response"
        );
        assert_eq!(g.actual, Some(40.0));
        let d = gate(&b, "fault rolling restart at peak: dropped");
        assert!(d.passed, "retries saved every one: {d:?}");
        assert!(!b.of("rolling restart at peak", 1).unwrap().kept);

        // The control: the same fault with nothing lost keeps its promise.
        let b = judge(&planned, &played, &[], None);
        assert!(b.gates.iter().all(|g| g.passed), "{:?}", b.gates);
        assert!(b.of("rolling restart at peak", 1).unwrap().kept);
    }

    #[test]
    fn each_occurrence_of_a_repeated_fault_has_its_own_budget() {
        let planned = [spec("kill", 2, Some(3), None)];
        let played = [record("kill", 1, 1000.0, "ok"), record("kill", 2, 3000.0, "ok")];
        // 3 in the first window (within budget), 4 in the second (over).
        let mut fails: Vec<AttemptView> =
            (0..3).map(|i| failed(i, 1, 1100.0, ResetBeforeResponse, FinalOutcome::Recovered)).collect();
        fails.extend((3..7).map(|i| failed(i, 1, 3100.0, ResetBeforeResponse, FinalOutcome::Recovered)));
        // A retry's failure is not a first attempt.
        fails.push(failed(0, 2, 1150.0, ConnectRefused, FinalOutcome::Recovered));
        let b = judge(&planned, &played, &fails, None);
        assert!(gate(&b, "fault kill#1: first-attempt failures").passed);
        assert!(!gate(&b, "fault kill#2: first-attempt failures").passed);
        assert_eq!(b.gates.len(), 2, "no dropped budget was set: {:?}", b.gates);
        assert_eq!(b.faults.iter().map(|k| k.kept).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn a_fault_that_did_not_happen_or_did_not_work_never_passes_its_budget() {
        let planned = [spec("deploy", 1, Some(0), Some(0)), spec("kill", 2, Some(5), None)];
        let played = [record("kill", 1, 1000.0, "error: the target has no workers to pick from")];
        let b = judge(&planned, &played, &[], None);
        assert_eq!(b.gates.len(), 4, "{:?}", b.gates);
        assert!(b.gates.iter().all(|g| !g.passed && g.actual.is_none()), "{:?}", b.gates);
        assert!(gate(&b, "fault deploy: dropped").detail.contains("was not injected"));
        assert!(gate(&b, "fault kill#1: first-attempt failures").detail.contains("did not work (error: the target"));
        assert!(gate(&b, "fault kill#2: first-attempt failures").detail.contains("kill#2 was not injected"));
    }

    #[test]
    fn only_timeouts_over_a_budget_may_be_the_machines_fault() {
        let planned = [spec("deploy", 1, Some(1), Some(5))];
        let played = [record("deploy", 1, 1000.0, "ok")];
        let timeouts: Vec<AttemptView> =
            (0..3).map(|i| failed(i, 1, 1100.0, ResponseTimeout, FinalOutcome::Recovered)).collect();
        let b = judge(&planned, &played, &timeouts, None);
        let g = gate(&b, "fault deploy: first-attempt failures");
        assert!(!g.passed && g.capacity_dependent, "three timeouts over a budget of one: {g:?}");
        let mut resets = timeouts.clone();
        resets.extend((3..5).map(|i| failed(i, 1, 1100.0, ResetBeforeResponse, FinalOutcome::Recovered)));
        let b = judge(&planned, &played, &resets, None);
        let g = gate(&b, "fault deploy: first-attempt failures");
        assert!(!g.passed && !g.capacity_dependent, "two resets over a budget of one decide: {g:?}");
        assert!(gate(&b, "fault deploy: dropped").capacity_dependent);
    }

    #[test]
    fn failures_outside_every_window_have_their_own_budget() {
        let planned = [spec("kill", 1, None, None)];
        let played = [record("kill", 1, 1000.0, "ok")];
        let fails = [
            failed(1, 1, 1100.0, ResetBeforeResponse, FinalOutcome::Recovered),
            failed(2, 1, 5000.0, ServerError, FinalOutcome::Dropped),
            failed(3, 1, 6000.0, ResponseTimeout, FinalOutcome::Recovered),
        ];
        let b = judge(&planned, &played, &fails, Some(1));
        assert_eq!(b.gates.len(), 1, "a fault without a budget makes no gate: {:?}", b.gates);
        let g = &b.gates[0];
        assert_eq!(g.name, "first-attempt failures outside every fault window");
        assert!(!g.passed);
        assert_eq!(
            g.detail,
            "outside every fault window: 1 first-attempt failure(s) allowed, 2 seen: 1 response_timeout, 1 server_error"
        );
        assert!(judge(&planned, &played, &fails, Some(2)).gates[0].passed);
        assert!(judge(&planned, &played, &fails, None).gates.is_empty());
    }
}
