//! The verdict of `harness compare`: the cluster against the single process
//! (no dropped requests, a passing audit, better p99 latency and fewer drops),
//! the cluster's own gates, both runs' validity, every scheduled fault played,
//! and the baseline checks; then one [`Verdict`] and its exit code.
//!
//! The judge decides from the runs' summaries and audits; the report shows the
//! same rows but never decides, so the page and the exit code cannot differ.
//! Not for: a single run's own gates (gates.rs) or the baseline's
//! arithmetic (baseline.rs).

use crate::chaos::faults::FaultRecord;
use crate::judge::audit::AuditChecks;
use crate::judge::baseline::BaselineComparison;
use crate::judge::gates::{self, Noise};
use crate::judge::summary::Summary;
use crate::judge::verdict::{GateRow, Status, Verdict, fmt_count, fmt_ms};
use crate::scenario::FaultSpec;

/// Labels of the two runs, as every row names them.
pub const SINGLE: &str = "single process";
pub const CLUSTER: &str = "cluster";

/// What the side-by-side gates compare of one run: its ledger counts, the
/// latency of its ok requests and its audit's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures<'a> {
    pub label: &'a str,
    pub operations: u64,
    pub ok: u64,
    pub dropped: u64,
    pub first_attempt_failures: u64,
    /// p99 of the ok attempts of the whole run.
    pub ok_p99_ms: f64,
    pub audit: Option<&'a AuditChecks>,
}

impl<'a> Figures<'a> {
    pub fn of(label: &'a str, s: &Summary, audit: Option<&'a AuditChecks>) -> Self {
        Figures {
            label,
            operations: s.totals.operations,
            ok: s.totals.ok,
            dropped: s.totals.dropped,
            first_attempt_failures: s.totals.first_attempt_failures,
            ok_p99_ms: s.latency.by_outcome.get("ok").map_or(0.0, |p| p.p99_ms),
            audit,
        }
    }
}

/// Gates comparing `candidate` against `reference`, named by their labels.
pub fn comparison_gates(reference: &Figures<'_>, candidate: &Figures<'_>) -> Vec<GateRow> {
    let (r, c) = (reference, candidate);
    let (rl, cl) = (reference.label, candidate.label);
    let mut rows = Vec::new();

    rows.push(GateRow {
        gate: format!("{cl}: no dropped requests"),
        status: if c.dropped == 0 { Status::Pass } else { Status::Fail },
        detail: format!("{} of {} dropped (budget 0)", fmt_count(c.dropped), fmt_count(c.operations)),
    });

    rows.push(match &candidate.audit {
        None => GateRow {
            gate: format!("{cl}: audit passes"),
            status: Status::Unknown,
            detail: "no audit ran for this run".into(),
        },
        Some(a) => {
            let failed: Vec<&str> =
                a.rows.iter().filter(|r| r.status != Status::Pass).map(|r| r.check.as_str()).collect();
            GateRow {
                gate: format!("{cl}: audit passes"),
                status: a.status,
                detail: if failed.is_empty() {
                    "every audit check passed".into()
                } else {
                    format!("not passed: {}", failed.join("; "))
                },
            }
        }
    });

    let has_latency = |run: &Figures<'_>| run.ok > 0;
    rows.push(GateRow {
        gate: format!("{cl} beats {rl} on p99 latency"),
        status: if !has_latency(reference) || !has_latency(candidate) {
            Status::Unknown
        } else if c.ok_p99_ms < r.ok_p99_ms {
            Status::Pass
        } else {
            Status::Fail
        },
        detail: format!("{} vs {} (ok requests, whole run)", fmt_ms(c.ok_p99_ms), fmt_ms(r.ok_p99_ms)),
    });

    // Dropped = failed after the client's retries. When neither run dropped
    // anything the retries hid the difference, so the decision falls to the
    // first attempts (what a client that does not retry would have lost);
    // both at zero shows nothing about the cluster: undecided, not a pass.
    let (status, detail) = if c.dropped > 0 || r.dropped > 0 {
        (
            if c.dropped < r.dropped { Status::Pass } else { Status::Fail },
            format!("{} vs {}", fmt_count(c.dropped), fmt_count(r.dropped)),
        )
    } else if c.first_attempt_failures == 0 && r.first_attempt_failures == 0 {
        (
            Status::Unknown,
            format!(
                "neither run dropped a request or failed a first attempt: the scenario did not show a \
                 difference ({rl} was not hurt)"
            ),
        )
    } else {
        (
            if c.first_attempt_failures < r.first_attempt_failures { Status::Pass } else { Status::Fail },
            format!(
                "neither run dropped a request after retries; without them {rl} would have dropped {} \
                 (its first attempts that failed) against {} for {cl}",
                fmt_count(r.first_attempt_failures),
                fmt_count(c.first_attempt_failures)
            ),
        )
    };
    rows.push(GateRow { gate: format!("{cl} beats {rl} on dropped requests"), status, detail });
    rows
}

/// The compare verdict's rows, and how many of them are unknown only
/// because a run's machine was busy with other work.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub rows: Vec<GateRow>,
    pub undecided: usize,
}

/// The compare verdict's rows: the side-by-side gates, the cluster's own
/// gates, whether the single run is valid (its own gates are not gated: it
/// is the reference, and overloading it is the point), and the baseline
/// checks. A row that a slow machine alone can fail (the cluster's drops
/// when they were timeouts, the p99 and drop comparisons, the baseline
/// regressions) is unknown when it failed on a busy machine (gates.rs,
/// `undecided_by`); the cluster's own gates were judged the same way when
/// its run concluded.
pub fn verdict_rows(
    single: &Figures<'_>,
    single_summary: &Summary,
    cluster: &Figures<'_>,
    cluster_summary: &Summary,
    cluster_faults: Option<GateRow>,
    baseline: Option<&BaselineComparison>,
) -> Judged {
    let cluster_noise = cluster_summary.noise();
    let both = Noise::either(single_summary.noise(), cluster_noise);
    let reasons: Vec<String> = [(SINGLE, single_summary), (CLUSTER, cluster_summary)]
        .iter()
        .filter_map(|(label, s)| s.environment.as_ref().filter(|e| e.noisy).map(|e| format!("{label}: {}", e.reason)))
        .collect();
    let reason = reasons.join("; ");
    // Whether the row became unknown.
    let judge = |row: &mut GateRow, capacity_dependent: bool, noise: Noise| -> usize {
        let undecided =
            row.status != Status::Unknown && gates::undecided_by(row.status == Status::Pass, capacity_dependent, noise);
        if undecided {
            row.status = Status::Unknown;
            row.detail = format!("{}; undecided: {reason}", row.detail);
        }
        usize::from(undecided)
    };
    let mut undecided = 0;
    // comparison_gates' rows: no dropped requests, audit, p99, dropped.
    let t = &cluster_summary.totals;
    let timeouts: u64 = crate::outcome::FailureClass::ALL
        .iter()
        .filter(|c| c.is_timeout())
        .filter_map(|c| t.dropped_by_class.get(c))
        .sum();
    let drops_were_timeouts = t.dropped == timeouts;
    let mut rows = comparison_gates(single, cluster);
    for (row, capacity_dependent) in rows.iter_mut().zip([drops_were_timeouts, false, true, true]) {
        undecided += judge(row, capacity_dependent, if capacity_dependent { both } else { cluster_noise });
    }
    rows.extend(cluster_faults);
    let own = cluster_summary.gate_rows(CLUSTER);
    undecided += cluster_summary.environment.as_ref().map_or(0, |e| e.undecided_gates.len());
    rows.extend(own);
    rows.extend(single_summary.gate_rows(SINGLE).into_iter().take(1));
    if let Some(b) = baseline {
        for mut row in b.checks.iter().map(|c| c.gate()) {
            undecided += judge(&mut row, true, cluster_noise);
            rows.push(row);
        }
    }
    Judged { rows, undecided }
}

/// The compare verdict: invalid if either run was; fail if a row failed;
/// inconclusive (exit 2) if every row that is not a pass is unknown only
/// because a machine was busy; otherwise any unknown fails (unknown is never a pass).
pub fn compare_verdict(valid: bool, judged: &Judged) -> Verdict {
    let status = |s: Status| judged.rows.iter().filter(|r| r.status == s).count();
    if !valid {
        Verdict::Invalid
    } else if status(Status::Fail) > 0 {
        Verdict::Fail
    } else if status(Status::Unknown) == 0 {
        Verdict::Pass
    } else if judged.undecided > 0 && status(Status::Unknown) <= judged.undecided {
        Verdict::Inconclusive
    } else {
        Verdict::Fail
    }
}

/// Whether every fault the scenario schedules was played against `label`'s
/// target and worked: a chaos run whose faults did not happen shows nothing
/// about surviving them. None when the scenario has no faults.
pub fn faults_gate(label: &str, planned: &[FaultSpec], played: &[FaultRecord], skipped: &[String]) -> Option<GateRow> {
    let want: usize = planned.iter().map(|f| f.times().len()).sum();
    if want == 0 {
        return None;
    }
    let failed: Vec<String> = played
        .iter()
        .filter(|f| f.outcome != "ok")
        .map(|f| format!("{}#{}: {}", f.name, f.occurrence, f.outcome))
        .collect();
    let ok = played.len() - failed.len();
    let mut problems = failed;
    if !skipped.is_empty() {
        problems.push(format!("not started before the run ended: {}", skipped.join(", ")));
    }
    let status = if ok == want && problems.is_empty() { Status::Pass } else { Status::Fail };
    let mut detail = format!("{ok} of {want} scheduled fault(s) ran and worked");
    if !problems.is_empty() {
        detail.push_str(&format!("; {}", problems.join("; ")));
    }
    Some(GateRow { gate: format!("{label}: every scheduled fault was injected"), status, detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::audit::AuditCheck;
    use crate::scenario::{FaultAction, Pick};
    use std::time::Duration;

    fn fault(name: &str, at_s: u64, action: FaultAction) -> FaultSpec {
        FaultSpec::once(name, Duration::from_secs(at_s), action)
    }

    fn statuses(rows: &[GateRow]) -> Vec<Status> {
        rows.iter().map(|r| r.status).collect()
    }

    fn figures(
        label: &'static str,
        dropped: u64,
        first: u64,
        p99: f64,
        audit: Option<&'static AuditChecks>,
    ) -> Figures<'static> {
        Figures {
            label,
            operations: 1000,
            ok: 1000 - dropped,
            dropped,
            first_attempt_failures: first,
            ok_p99_ms: p99,
            audit,
        }
    }

    fn audit(status: Status) -> &'static AuditChecks {
        let row = AuditCheck {
            check: "every acknowledged order exists exactly once".into(),
            status,
            counts: Default::default(),
            detail: String::new(),
        };
        Box::leak(Box::new(AuditChecks { status, rows: vec![row] }))
    }

    #[test]
    fn cluster_against_single() {
        let single = figures(SINGLE, 40, 60, 900.0, Some(audit(Status::Pass)));
        let cluster = figures(CLUSTER, 0, 3, 80.0, Some(audit(Status::Pass)));
        let rows = comparison_gates(&single, &cluster);
        assert_eq!(statuses(&rows), [Status::Pass; 4], "{rows:#?}");
        assert_eq!(rows[0].gate, "cluster: no dropped requests");
        assert_eq!(rows[3].gate, "cluster beats single process on dropped requests");

        // Swapped, the single process loses on everything it can.
        let rows = comparison_gates(&cluster, &single);
        assert_eq!(statuses(&rows), [Status::Fail, Status::Pass, Status::Fail, Status::Fail], "{rows:#?}");

        let c = Figures { audit: None, ..cluster.clone() };
        assert_eq!(comparison_gates(&single, &c)[1].status, Status::Unknown);
        let c = Figures { audit: Some(audit(Status::Fail)), ..cluster.clone() };
        let row = &comparison_gates(&single, &c)[1];
        assert_eq!(row.status, Status::Fail);
        assert!(row.detail.contains("every acknowledged order exists exactly once"), "{}", row.detail);

        // Neither dropped: the first attempts decide, and both clean is undecided.
        let (mut s, mut c) = (Figures { dropped: 0, ..single.clone() }, Figures { dropped: 0, ..cluster.clone() });
        (c.first_attempt_failures, s.first_attempt_failures) = (3, 40);
        let tie = &comparison_gates(&s, &c)[3];
        assert_eq!(tie.status, Status::Pass, "{tie:#?}");
        assert!(tie.detail.contains("would have dropped 40"), "{}", tie.detail);
        s.first_attempt_failures = 3;
        assert_eq!(comparison_gates(&s, &c)[3].status, Status::Fail);
        (s.first_attempt_failures, c.first_attempt_failures) = (0, 0);
        assert_eq!(comparison_gates(&s, &c)[3].status, Status::Unknown);
        s.ok = 0;
        assert_eq!(comparison_gates(&s, &cluster)[2].status, Status::Unknown);
    }

    #[test]
    fn the_compare_verdict_is_inconclusive_only_when_noise_explains_every_unknown() {
        let row = |status| GateRow { gate: "g".into(), status, detail: String::new() };
        let judged =
            |statuses: &[Status], undecided| Judged { rows: statuses.iter().map(|s| row(*s)).collect(), undecided };
        use Status::{Fail, Pass, Unknown};
        assert_eq!(compare_verdict(true, &judged(&[Pass, Pass], 0)), Verdict::Pass);
        assert_eq!(compare_verdict(true, &judged(&[Pass, Unknown], 1)), Verdict::Inconclusive);
        // An unknown that the noise does not explain (e.g. neither run dropped anything) is a fail.
        assert_eq!(compare_verdict(true, &judged(&[Unknown, Unknown], 1)), Verdict::Fail);
        assert_eq!(compare_verdict(true, &judged(&[Unknown], 0)), Verdict::Fail);
        // A decided failure (an audit) beats the noise; invalid beats everything.
        assert_eq!(compare_verdict(true, &judged(&[Fail, Unknown], 1)), Verdict::Fail);
        assert_eq!(compare_verdict(false, &judged(&[Pass, Unknown], 1)), Verdict::Invalid);
    }

    #[test]
    fn every_scheduled_fault_must_have_run_and_worked() {
        let mut kill = fault("kill", 1, FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Busiest });
        kill.count = 2;
        kill.every = Some(Duration::from_secs(1));
        let planned = vec![kill, fault("deploy", 5, FaultAction::SignalMaster { signal: "SIGTERM".into() })];
        let rec = |name: &str, occurrence: u32, outcome: &str| FaultRecord {
            name: name.into(),
            label: format!("{name}#{occurrence}"),
            action: "kill_worker".into(),
            detail: String::new(),
            occurrence,
            start_ms: 0.0,
            end_ms: 1.0,
            recovered_at_ms: Some(2.0),
            pids: vec![1],
            outcome: outcome.into(),
        };
        let all = [rec("kill", 1, "ok"), rec("kill", 2, "ok"), rec("deploy", 1, "ok")];
        let g = faults_gate(CLUSTER, &planned, &all, &[]).unwrap();
        assert_eq!((g.status, g.gate.as_str()), (Status::Pass, "cluster: every scheduled fault was injected"));
        assert_eq!(g.detail, "3 of 3 scheduled fault(s) ran and worked");
        let broken = [rec("kill", 1, "ok"), rec("kill", 2, "error: the target has no workers to pick from")];
        let g = faults_gate(CLUSTER, &planned, &broken, &["deploy#1".to_string()]).unwrap();
        assert_eq!(g.status, Status::Fail);
        assert!(g.detail.contains("1 of 3") && g.detail.contains("kill#2: error") && g.detail.contains("deploy#1"));
        assert_eq!(faults_gate(CLUSTER, &[], &[], &[]), None);
    }
}
