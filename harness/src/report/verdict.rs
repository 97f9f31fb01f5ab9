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

    // Both at zero shows nothing about the cluster: undecided, not a pass.
    rows.push(GateRow {
        gate: format!("{cl} beats {rl} on dropped requests"),
        status: if c.dropped == 0 && r.dropped == 0 {
            Status::Unknown
        } else if c.dropped < r.dropped {
            Status::Pass
        } else {
            Status::Fail
        },
        detail: if c.dropped == 0 && r.dropped == 0 {
            format!("neither run dropped a request: the scenario did not show a difference ({rl} was not hurt)")
        } else {
            format!("{} vs {}", fmt_count(c.dropped), fmt_count(r.dropped))
        },
    });
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

        let mut s = single.clone();
        s.totals.dropped = 0;
        assert_eq!(comparison_gates(&s, cluster)[3].status, Status::Unknown);
        s.totals.ok = 0;
        assert_eq!(comparison_gates(&s, cluster)[2].status, Status::Unknown);
    }
}
