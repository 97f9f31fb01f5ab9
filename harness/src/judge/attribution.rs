//! Fault attribution: place every failed attempt in the fault window it fell
//! in, or in none. A fault's window runs from its start until the target was
//! back at steady state (`recovered_ms`), or until the end of the run if it
//! never recovered. Per fault: first-attempt failures by class, retry
//! failures by class, and how many of the operations that first failed there
//! were recovered by a retry or dropped. Failures outside every window are
//! listed separately: nothing the harness did explains them.
//!
//! Pure: it takes small views of the fault records and of the ledger's
//! failed attempts, so the engine's ledger maps onto it in a few lines and the
//! rules are unit-tested here. Not the place that decides what a failure is
//! (the engine classifies) nor when a fault recovered (chaos/faults.rs measures it).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::chaos::faults::FaultWindow;
use crate::outcome::FailureClass;

/// How the operation an attempt belongs to ended in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalOutcome {
    /// A later attempt succeeded (or was an expected refusal).
    Recovered,
    /// The retry policy gave up: the operation failed.
    Dropped,
}

/// One failed attempt from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptView {
    /// The operation (one step of one shopper, across its retries).
    pub op: u64,
    pub step: String,
    /// 1-based attempt number: 1 is the first attempt, more is a retry.
    pub attempt: u32,
    /// When the attempt was sent and when it ended in failure, ms since run start.
    pub start_ms: f64,
    pub end_ms: f64,
    pub class: FailureClass,
    pub final_outcome: FinalOutcome,
}

/// Failure counts for one window (or for "outside every window").
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FailureCounts {
    pub first_attempt_failures: BTreeMap<FailureClass, u64>,
    pub retry_failures: BTreeMap<FailureClass, u64>,
    /// Operations whose first failure fell here and that a retry recovered.
    pub recovered: u64,
    /// Operations whose first failure fell here and that were dropped.
    pub dropped: u64,
}

impl FailureCounts {
    pub fn first_attempt_total(&self) -> u64 {
        self.first_attempt_failures.values().sum()
    }

    pub fn retry_total(&self) -> u64 {
        self.retry_failures.values().sum()
    }

    fn add_attempt(&mut self, a: &AttemptView) {
        let by_class = if a.attempt <= 1 { &mut self.first_attempt_failures } else { &mut self.retry_failures };
        *by_class.entry(a.class).or_default() += 1;
    }

    fn add_operation(&mut self, outcome: FinalOutcome) {
        match outcome {
            FinalOutcome::Recovered => self.recovered += 1,
            FinalOutcome::Dropped => self.dropped += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAttribution {
    pub name: String,
    pub action: String,
    pub start_ms: f64,
    pub recovered_ms: Option<f64>,
    /// `recovered_ms - start_ms`; None if the target never recovered.
    pub recovery_ms: Option<f64>,
    #[serde(flatten)]
    pub counts: FailureCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outside {
    #[serde(flatten)]
    pub counts: FailureCounts,
    /// Every failed attempt outside all windows, in time order.
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Attribution {
    /// One entry per fault, in the order given.
    pub faults: Vec<FaultAttribution>,
    pub outside: Outside,
}

/// Which window an attempt belongs to: the windows its interval
/// `[start_ms, end_ms]` overlaps (a request sent before a kill fails during
/// it; a request sent into a hang fails by timeout after it), and among those
/// the one that started last, since the most recent fault is the likeliest
/// cause. Ties go to the window listed first.
fn window_of(windows: &[FaultWindow], run_end_ms: f64, a: &AttemptView) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, w) in windows.iter().enumerate() {
        let end = w.recovered_ms.unwrap_or(run_end_ms).max(w.start_ms);
        let overlaps = a.start_ms <= end && a.end_ms >= w.start_ms;
        if overlaps && best.is_none_or(|b| w.start_ms > windows[b].start_ms) {
            best = Some(i);
        }
    }
    best
}

/// Attribute each failed attempt to a fault window or to none. An operation
/// (for recovered/dropped) belongs where its first failed attempt does.
/// `run_end_ms` closes the windows of faults that never recovered.
pub fn attribute(windows: &[FaultWindow], failed: &[AttemptView], run_end_ms: f64) -> Attribution {
    let mut faults: Vec<FaultAttribution> = windows
        .iter()
        .map(|w| FaultAttribution {
            name: w.name.clone(),
            action: w.action.clone(),
            start_ms: w.start_ms,
            recovered_ms: w.recovered_ms,
            // Rounded to the microsecond like the event log's times.
            recovery_ms: w.recovered_ms.map(|r| ((r - w.start_ms) * 1000.0).round() / 1000.0),
            counts: FailureCounts::default(),
        })
        .collect();
    let mut outside = Outside::default();

    let mut in_time_order: Vec<&AttemptView> = failed.iter().collect();
    in_time_order.sort_by(|x, y| x.end_ms.total_cmp(&y.end_ms).then(x.attempt.cmp(&y.attempt)));
    // op -> where its first failure went (None = outside).
    let mut first_failure: HashMap<u64, (Option<usize>, u32)> = HashMap::new();
    for a in in_time_order {
        let slot = window_of(windows, run_end_ms, a);
        match slot {
            Some(i) => faults[i].counts.add_attempt(a),
            None => {
                outside.counts.add_attempt(a);
                outside.attempts.push(a.clone());
            }
        }
        let entry = first_failure.entry(a.op).or_insert((slot, a.attempt));
        if a.attempt < entry.1 {
            *entry = (slot, a.attempt);
        }
    }

    // One count per operation; its final outcome is the same on every one of
    // its attempts, take it from any.
    let mut outcome_of: HashMap<u64, FinalOutcome> = HashMap::new();
    for a in failed {
        outcome_of.entry(a.op).or_insert(a.final_outcome);
    }
    for (op, (slot, _)) in first_failure {
        let outcome = outcome_of[&op];
        match slot {
            Some(i) => faults[i].counts.add_operation(outcome),
            None => outside.counts.add_operation(outcome),
        }
    }
    Attribution { faults, outside }
}

/// The failed attempts of a ledger, as views, gathered from its records one
/// at a time ([`crate::record::ledger::for_each_record`]): memory follows the
/// failures, not the run. An operation's final outcome is that of its last
/// attempt (highest attempt number): failed means dropped, ok or refused
/// means recovered. Operations still open (a cut-off run) count as dropped:
/// nothing recovered them.
#[derive(Debug, Default)]
pub struct FailedViews {
    views: Vec<AttemptView>,
    ops: crate::record::ledger::FailedOps,
}

impl FailedViews {
    pub fn add(&mut self, r: &crate::record::ledger::AttemptRecord) {
        self.ops.add(r);
        if let crate::outcome::Outcome::Failed(class) = r.outcome() {
            self.views.push(AttemptView {
                op: r.op,
                step: r.step.clone(),
                attempt: r.attempt,
                start_ms: r.start_ms,
                end_ms: r.end_ms,
                class,
                // Settled in `finish`, once every attempt has been seen.
                final_outcome: FinalOutcome::Dropped,
            });
        }
    }

    pub fn finish(mut self) -> Vec<AttemptView> {
        for v in &mut self.views {
            v.final_outcome = if self.ops.dropped(v.op) { FinalOutcome::Dropped } else { FinalOutcome::Recovered };
        }
        self.views
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::record::ledger::AttemptRecord;
    use FailureClass::*;

    fn record(op: u64, attempt: u32, o: Outcome, end: f64) -> AttemptRecord {
        AttemptRecord::for_test(op, "checkout", attempt, o, (end - 2.0, end - 1.0, end))
    }

    #[test]
    fn ledger_records_map_to_views_with_final_outcomes() {
        let recs = [
            record(1, 1, Outcome::Failed(ResetBeforeResponse), 10.0),
            record(2, 1, Outcome::Ok, 11.0),
            record(1, 2, Outcome::Ok, 12.0),
            record(3, 1, Outcome::Failed(ConnectRefused), 13.0),
            record(3, 2, Outcome::Failed(ConnectRefused), 14.0),
            record(4, 1, Outcome::Failed(ServerError), 15.0),
            record(4, 2, Outcome::Refused, 16.0),
        ];
        let mut f = FailedViews::default();
        recs.iter().for_each(|r| f.add(r));
        let views = f.finish();
        let got: Vec<(u64, u32, FinalOutcome)> = views.iter().map(|v| (v.op, v.attempt, v.final_outcome)).collect();
        assert_eq!(
            got,
            vec![
                (1, 1, FinalOutcome::Recovered),
                (3, 1, FinalOutcome::Dropped),
                (3, 2, FinalOutcome::Dropped),
                (4, 1, FinalOutcome::Recovered),
            ]
        );
        assert_eq!(views[0].start_ms, 9.0);
    }

    fn w(name: &str, start: f64, recovered: Option<f64>) -> FaultWindow {
        FaultWindow { name: name.into(), action: "kill_worker".into(), start_ms: start, recovered_ms: recovered }
    }

    fn a(op: u64, attempt: u32, start: f64, end: f64, class: FailureClass, fin: FinalOutcome) -> AttemptView {
        AttemptView { op, step: "checkout".into(), attempt, start_ms: start, end_ms: end, class, final_outcome: fin }
    }

    #[test]
    fn failures_go_to_their_window_or_outside() {
        let windows = [w("kill-1", 1000.0, Some(1500.0)), w("hang", 5000.0, Some(9000.0))];
        let failed = [
            // sent before the kill, reset by it: kill-1
            a(1, 1, 900.0, 1001.0, ResetBeforeResponse, FinalOutcome::Recovered),
            // retry of op 1 refused while the worker was respawning: kill-1, a retry failure
            a(1, 2, 1010.0, 1011.0, ConnectRefused, FinalOutcome::Recovered),
            // long after recovery: outside
            a(2, 1, 3000.0, 3001.0, ServerError, FinalOutcome::Dropped),
            // sent into the hang, timed out after it: hang
            a(3, 1, 8000.0, 10000.0, ResponseTimeout, FinalOutcome::Dropped),
            a(3, 2, 10000.0, 12000.0, ResponseTimeout, FinalOutcome::Dropped),
        ];
        let r = attribute(&windows, &failed, 20_000.0);
        let kill = &r.faults[0];
        assert_eq!(kill.counts.first_attempt_failures, BTreeMap::from([(ResetBeforeResponse, 1)]));
        assert_eq!(kill.counts.retry_failures, BTreeMap::from([(ConnectRefused, 1)]));
        assert_eq!((kill.counts.recovered, kill.counts.dropped), (1, 0));
        assert_eq!(kill.recovery_ms, Some(500.0));

        let hang = &r.faults[1];
        assert_eq!(hang.counts.first_attempt_failures, BTreeMap::from([(ResponseTimeout, 1)]));
        // The retry ended after recovery and started after it: outside.
        assert_eq!(hang.counts.retry_total(), 0);
        assert_eq!((hang.counts.recovered, hang.counts.dropped), (0, 1));

        assert_eq!(r.outside.counts.first_attempt_failures, BTreeMap::from([(ServerError, 1)]));
        assert_eq!(r.outside.counts.retry_failures, BTreeMap::from([(ResponseTimeout, 1)]));
        // Op 2 dropped outside; op 3's first failure was in the hang, so the op counts there only.
        assert_eq!((r.outside.counts.recovered, r.outside.counts.dropped), (0, 1));
        assert_eq!(r.outside.attempts.len(), 2);
        assert!(r.outside.attempts[0].end_ms <= r.outside.attempts[1].end_ms);
    }

    #[test]
    fn unrecovered_fault_lasts_to_run_end_and_latest_start_wins() {
        let windows = [w("restart", 1000.0, None), w("kill", 4000.0, Some(4200.0))];
        let failed = [
            a(1, 1, 3000.0, 3000.5, ConnectRefused, FinalOutcome::Dropped),
            a(2, 1, 4100.0, 4100.5, ConnectRefused, FinalOutcome::Dropped),
            a(3, 1, 9000.0, 9001.0, ConnectRefused, FinalOutcome::Dropped),
        ];
        let r = attribute(&windows, &failed, 10_000.0);
        // Both windows cover t=4100: the kill started later, it gets it.
        assert_eq!(r.faults[0].counts.first_attempt_total(), 2);
        assert_eq!(r.faults[1].counts.first_attempt_total(), 1);
        assert_eq!(r.faults[0].counts.dropped, 2);
        assert_eq!(r.faults[0].recovery_ms, None);
        assert!(r.outside.attempts.is_empty());
    }

    #[test]
    fn no_faults_means_everything_is_outside() {
        let failed = [a(7, 1, 10.0, 20.0, ClosedBeforeResponse, FinalOutcome::Recovered)];
        let r = attribute(&[], &failed, 100.0);
        assert!(r.faults.is_empty());
        assert_eq!(r.outside.counts.first_attempt_total(), 1);
        assert_eq!(r.outside.counts.recovered, 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outside"]["first_attempt_failures"]["closed_before_response"], 1);
    }

    #[test]
    fn empty_input_counts_nothing() {
        let r = attribute(&[w("k", 0.0, Some(1.0))], &[], 10.0);
        assert_eq!(r.faults[0].counts, FailureCounts::default());
        assert_eq!(r.outside, Outside::default());
    }
}
