//! The side-by-side gates of a compare run: the candidate (the cluster) must
//! drop nothing, pass its audit, and beat the reference run (the single
//! process) on p99 latency and on dropped requests. Pure, over the report's
//! own run data, so the page and the exit code agree on the same numbers.
//!
//! Not for: a single run's own gates (gates.rs) or the baseline (baseline.rs).

use super::charts::fmt_ms;
use super::html::fmt_count;
use super::model::{GateRow, RunData, Status};

/// Gates comparing `candidate` against `reference`, named by their labels.
pub fn comparison_gates(reference: &RunData, candidate: &RunData) -> Vec<GateRow> {
    let (r, c) = (&reference.totals, &candidate.totals);
    let (rl, cl) = (&reference.label, &candidate.label);
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

    let has_latency = |run: &RunData| run.totals.ok > 0;
    rows.push(GateRow {
        gate: format!("{cl} beats {rl} on p99 latency"),
        status: if !has_latency(reference) || !has_latency(candidate) {
            Status::Unknown
        } else if c.p99_ms < r.p99_ms {
            Status::Pass
        } else {
            Status::Fail
        },
        detail: format!("{} vs {} (ok requests, whole run)", fmt_ms(c.p99_ms), fmt_ms(r.p99_ms)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::demo;
    use crate::report::model::AuditData;

    fn statuses(rows: &[GateRow]) -> Vec<Status> {
        rows.iter().map(|r| r.status).collect()
    }

    #[test]
    fn cluster_against_single() {
        let data = demo::synthetic(40, 5);
        let (single, cluster) = (&data.runs[0], &data.runs[1]);
        let rows = comparison_gates(single, cluster);
        assert_eq!(statuses(&rows), [Status::Pass; 4], "{rows:#?}");
        assert_eq!(rows[0].gate, "cluster: no dropped requests");
        assert_eq!(rows[3].gate, "cluster beats single process on dropped requests");

        // Swapped, the single process loses on everything it can.
        let rows = comparison_gates(cluster, single);
        assert_eq!(statuses(&rows), [Status::Fail, Status::Pass, Status::Fail, Status::Fail], "{rows:#?}");

        let mut c = cluster.clone();
        c.audit = None;
        assert_eq!(comparison_gates(single, &c)[1].status, Status::Unknown);
        c.audit = Some(AuditData { status: Status::Fail, rows: cluster.audit.clone().unwrap().rows });
        c.audit.as_mut().unwrap().rows[0].status = Status::Fail;
        let audit = &comparison_gates(single, &c)[1];
        assert_eq!(audit.status, Status::Fail);
        assert!(audit.detail.contains("every acknowledged order exists exactly once"), "{}", audit.detail);

        // Neither dropped: the first attempts decide, and both clean is undecided.
        let mut s = single.clone();
        s.totals.dropped = 0;
        let (mut c, mut s) = (cluster.clone(), s);
        c.totals.dropped = 0;
        c.totals.first_attempt_failures = 3;
        s.totals.first_attempt_failures = 40;
        let tie = &comparison_gates(&s, &c)[3];
        assert_eq!(tie.status, Status::Pass, "{tie:#?}");
        assert!(tie.detail.contains("would have dropped 40"), "{}", tie.detail);
        s.totals.first_attempt_failures = 3;
        assert_eq!(comparison_gates(&s, &c)[3].status, Status::Fail);
        s.totals.first_attempt_failures = 0;
        c.totals.first_attempt_failures = 0;
        assert_eq!(comparison_gates(&s, &c)[3].status, Status::Unknown);
        s.totals.ok = 0;
        assert_eq!(comparison_gates(&s, cluster)[2].status, Status::Unknown);
    }
}
