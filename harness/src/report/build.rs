//! Turn one run's outputs (the ledger's attempt records, the recorder's
//! per-second rows, the fault attribution and the audit) into the report's
//! [`RunData`]. Pure: the caller reads the files and passes the data.
//!
//! The ledger is the source for everything latency-related here, because the
//! report splits ok requests from failed ones per second, which the
//! recorder's all-outcome rows do not. Not for: deciding gates or building
//! the page.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use super::model::{
    AuditData, AuditRow, EndpointRow, FaultRow, RunData, SecondPoint, Slip, Status, Totals, spectrum_from_histogram,
};
use crate::attribution::Attribution;
use crate::audit::{AuditReport, Verdict};
use crate::ledger::{self, AttemptRecord, OutcomeKind};
use crate::outcome::FailureClass;
use crate::recorder::SecondRow;

fn histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant figures, microseconds (as the recorder).
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

fn record(h: &mut Histogram<u64>, ms: f64) {
    let us = (ms.max(0.0) * 1000.0).round() as u64;
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 }
}

/// One point per second from 0 to the last second with an attempt or a
/// recorder row. Latency percentiles are of ok attempts, by the second they
/// ended in; `active` comes from the recorder's rows.
pub fn seconds(records: &[AttemptRecord], series: &[SecondRow]) -> Vec<SecondPoint> {
    let last_attempt = records.iter().map(|r| (r.end_ms.max(0.0) / 1000.0) as u64).max();
    let last_row = series.iter().map(|r| r.t_s).max();
    let Some(last) = last_attempt.max(last_row) else {
        return Vec::new();
    };
    let n = last as usize + 1;
    let mut ok_h: Vec<Histogram<u64>> = (0..n).map(|_| histogram()).collect();
    let mut points: Vec<SecondPoint> =
        (0..n).map(|s| SecondPoint { t_s: s as f64, ..SecondPoint::default() }).collect();
    for r in records {
        let s = (r.end_ms.max(0.0) / 1000.0) as usize;
        let p = &mut points[s];
        match r.outcome {
            OutcomeKind::Ok => {
                p.ok += 1;
                record(&mut ok_h[s], r.latency_ms());
            }
            OutcomeKind::Refused => p.refused += 1,
            OutcomeKind::Failed => {
                let class = r.class.unwrap_or(FailureClass::LocalError);
                *p.failures.entry(class).or_default() += 1;
                p.failed_ms = Some(p.failed_ms.unwrap_or(0.0).max(r.latency_ms()));
            }
        }
    }
    for (p, h) in points.iter_mut().zip(&ok_h) {
        if !h.is_empty() {
            p.p50_ms = Some(ms(h, 0.50));
            p.p99_ms = Some(ms(h, 0.99));
            p.max_ms = Some(max_ms(h));
        }
    }
    for row in series {
        if let Some(p) = points.get_mut(row.t_s as usize) {
            p.active = row.active_shoppers;
        }
    }
    points
}

/// One row per step, in order of first appearance in the ledger. `requests`
/// maps a step name to how it is sent ("GET /products/{{pick.skus}}").
pub fn endpoints(records: &[AttemptRecord], requests: &BTreeMap<String, String>) -> Vec<EndpointRow> {
    let dropped = ledger::dropped_ops(records);
    let mut order: Vec<&str> = Vec::new();
    let mut rows: HashMap<&str, (EndpointRow, Histogram<u64>, Vec<u64>)> = HashMap::new();
    for r in records {
        let entry = rows.entry(r.step.as_str()).or_insert_with(|| {
            order.push(r.step.as_str());
            let row = EndpointRow {
                step: r.step.clone(),
                request: requests.get(&r.step).cloned().unwrap_or_default(),
                count: 0,
                failures: 0,
                dropped: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
            (row, histogram(), Vec::new())
        });
        entry.0.count += 1;
        match r.outcome {
            OutcomeKind::Ok => record(&mut entry.1, r.latency_ms()),
            OutcomeKind::Refused => {}
            OutcomeKind::Failed => entry.0.failures += 1,
        }
        entry.2.push(r.op);
    }
    order
        .into_iter()
        .filter_map(|step| rows.remove(step))
        .map(|(mut row, h, mut ops)| {
            ops.sort_unstable();
            ops.dedup();
            row.dropped = ops.iter().filter(|op| dropped.get(op).copied().unwrap_or(false)).count() as u64;
            (row.p50_ms, row.p90_ms, row.p99_ms, row.p999_ms) = (ms(&h, 0.5), ms(&h, 0.9), ms(&h, 0.99), ms(&h, 0.999));
            row.max_ms = max_ms(&h);
            row
        })
        .collect()
}

/// Latency of every ok attempt of the run, as a histogram of microseconds.
pub fn ok_histogram(records: &[AttemptRecord]) -> Histogram<u64> {
    let mut h = histogram();
    for r in records.iter().filter(|r| r.outcome == OutcomeKind::Ok) {
        record(&mut h, r.latency_ms());
    }
    h
}

/// Whole-run counts from the ledger's totals, latency of ok attempts, and
/// throughput as ok operations per second of `duration_s`.
pub fn totals(t: &ledger::Totals, ok: &Histogram<u64>, duration_s: f64) -> Totals {
    Totals {
        operations: t.operations,
        ok: t.ok,
        refused: t.refused,
        dropped: t.dropped,
        first_attempt_failures: t.first_attempt_failures,
        throughput_rps: if duration_s > 0.0 { t.ok as f64 / duration_s } else { 0.0 },
        p50_ms: ms(ok, 0.5),
        p99_ms: ms(ok, 0.99),
        p999_ms: ms(ok, 0.999),
        max_ms: max_ms(ok),
    }
}

/// The harness's lateness: actual start minus intended send time, per attempt.
/// `limit_ms`: a p99 slip above it means the harness was the bottleneck.
pub fn slip(records: &[AttemptRecord], limit_ms: f64) -> Slip {
    let mut h = histogram();
    for r in records {
        record(&mut h, r.start_ms - r.intended_ms);
    }
    let p99 = ms(&h, 0.99);
    let bottleneck = p99 > limit_ms;
    let detail = if bottleneck {
        format!("p99 slip above {limit_ms} ms: the harness, not only the target, limited the sending rate")
    } else {
        format!("the harness kept to the schedule (p99 slip within {limit_ms} ms)")
    };
    Slip { p99_ms: p99, max_ms: max_ms(&h), harness_bottleneck: bottleneck, detail }
}

/// What the attribution does not know about a fault, from the chaos record:
/// the action's detail (signal, pick...), when the action finished, how the
/// injector fared. One per fault, in the attribution's order.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultInfo {
    pub detail: String,
    pub end_ms: f64,
    pub outcome: String,
}

/// Fault rows from the attribution (counts, recovery) and the chaos records.
pub fn faults(attribution: &Attribution, info: &[FaultInfo]) -> Vec<FaultRow> {
    attribution
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let extra = info.get(i);
            let action = match extra {
                Some(x) if !x.detail.is_empty() => format!("{} {}", f.action, x.detail),
                _ => f.action.clone(),
            };
            FaultRow {
                name: f.name.clone(),
                action,
                start_s: f.start_ms / 1000.0,
                end_s: extra.map(|x| x.end_ms / 1000.0),
                recovered_s: f.recovered_ms.map(|r| r / 1000.0),
                outcome: extra.map(|x| x.outcome.clone()).unwrap_or_default(),
                first_attempt_failures: f.counts.first_attempt_failures.clone(),
                recovered: f.counts.recovered,
                dropped: f.counts.dropped,
                recovery_ms: f.recovery_ms,
            }
        })
        .collect()
}

fn status(v: Verdict) -> Status {
    match v {
        Verdict::Pass => Status::Pass,
        Verdict::Fail => Status::Fail,
        Verdict::Unknown => Status::Unknown,
    }
}

fn pass_if(ok: bool) -> Status {
    if ok { Status::Pass } else { Status::Fail }
}

/// Up to a few examples, so a long list does not swamp the table.
fn examples<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    const MAX: usize = 5;
    let mut parts: Vec<String> = items.iter().take(MAX).map(show).collect();
    if items.len() > MAX {
        parts.push(format!("and {} more", items.len() - MAX));
    }
    parts.join("; ")
}

/// The audit's findings as table rows, one per check.
pub fn audit(a: &AuditReport) -> AuditData {
    let count = |pairs: &[(&str, usize)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v as u64)).collect()
    };
    let key = |c: &crate::audit::CheckoutRef| {
        format!(
            "op {} ({}){}",
            c.op,
            c.step,
            c.idempotency_key.as_deref().map(|k| format!(" key {k}")).unwrap_or_default()
        )
    };
    let mut rows = Vec::new();
    if a.verdict == Verdict::Unknown && a.orders_in_audit == 0 && a.acknowledged == 0 && !a.reason.is_empty() {
        rows.push(AuditRow {
            check: "the shop's audit could be read".into(),
            status: Status::Unknown,
            counts: count(&[("checkouts", a.checkouts)]),
            detail: a.reason.clone(),
        });
        return AuditData { status: status(a.verdict), rows };
    }
    rows.push(AuditRow {
        check: "every acknowledged checkout has its order".into(),
        status: pass_if(a.lost.is_empty()),
        counts: count(&[("acknowledged", a.acknowledged), ("lost", a.lost.len())]),
        detail: examples(&a.lost, key),
    });
    rows.push(AuditRow {
        check: "no idempotency key ordered twice".into(),
        status: pass_if(a.duplicates.is_empty()),
        counts: count(&[("duplicates", a.duplicates.len())]),
        detail: examples(&a.duplicates, |d| format!("key {} -> orders {:?}", d.idempotency_key, d.order_ids)),
    });
    rows.push(AuditRow {
        check: "no order for a checkout the shopper was told failed".into(),
        status: pass_if(a.failed_but_applied.is_empty()),
        counts: count(&[("failed but applied", a.failed_but_applied.len())]),
        detail: examples(&a.failed_but_applied, key),
    });
    rows.push(AuditRow {
        check: "no stock oversold (initial = left + sold)".into(),
        status: pass_if(a.oversold.is_empty()),
        counts: count(&[("oversold skus", a.oversold.len())]),
        detail: examples(&a.oversold, |s| format!("{}: {}", s.sku, s.problem)),
    });
    rows.push(AuditRow {
        check: "acknowledged checkouts can be verified".into(),
        status: if a.unverifiable.is_empty() { Status::Pass } else { Status::Unknown },
        counts: count(&[("unverifiable", a.unverifiable.len())]),
        detail: examples(&a.unverifiable, key),
    });
    rows.push(AuditRow {
        check: "checkouts with an unknown outcome (allowed either way)".into(),
        status: Status::Pass,
        counts: count(&[
            ("applied", a.recovered),
            ("not applied", a.unknown_not_applied),
            ("orders in audit", a.orders_in_audit),
            ("unclaimed orders", a.unclaimed_orders),
        ]),
        detail: "the shopper saw no answer; the shop may or may not have acted, and either is consistent".into(),
    });
    AuditData { status: status(a.verdict), rows }
}

/// Everything for one run in one call.
pub struct RunInputs<'a> {
    pub label: &'a str,
    pub target: &'a str,
    pub records: &'a [AttemptRecord],
    pub totals: &'a ledger::Totals,
    pub series: &'a [SecondRow],
    pub requests: &'a BTreeMap<String, String>,
    pub attribution: &'a Attribution,
    pub fault_info: &'a [FaultInfo],
    pub audit: Option<&'a AuditReport>,
    pub duration_s: f64,
    pub slip_limit_ms: f64,
}

pub fn run(i: &RunInputs<'_>) -> RunData {
    let ok = ok_histogram(i.records);
    RunData {
        label: i.label.to_string(),
        target: i.target.to_string(),
        seconds: seconds(i.records, i.series),
        spectrum: spectrum_from_histogram(&ok, 1000.0),
        endpoints: endpoints(i.records, i.requests),
        faults: faults(i.attribution, i.fault_info),
        audit: i.audit.map(audit),
        slip: slip(i.records, i.slip_limit_ms),
        totals: totals(i.totals, &ok, i.duration_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::{FailureCounts, FaultAttribution};
    use crate::outcome::Outcome;

    fn rec(op: u64, step: &str, attempt: u32, intended_ms: f64, end_ms: f64, o: Outcome) -> AttemptRecord {
        AttemptRecord::for_test(op, step, attempt, o, (intended_ms, intended_ms + 0.5, end_ms))
    }

    fn sample() -> Vec<AttemptRecord> {
        let refused = FailureClass::ConnectRefused;
        vec![
            rec(1, "browse", 1, 100.0, 110.0, Outcome::Ok),
            rec(2, "browse", 1, 200.0, 230.0, Outcome::Ok),
            rec(3, "checkout", 1, 300.0, 301.0, Outcome::Failed(refused)),
            rec(3, "checkout", 2, 1400.0, 1450.0, Outcome::Ok), // recovered by a retry
            rec(4, "checkout", 1, 1500.0, 1501.0, Outcome::Failed(refused)),
            rec(4, "checkout", 2, 1600.0, 1601.0, Outcome::Failed(FailureClass::ResetBeforeResponse)), // dropped
            rec(5, "checkout", 1, 1700.0, 1720.0, Outcome::Refused),
            rec(6, "browse", 1, 3100.0, 3105.0, Outcome::Ok),
        ]
    }

    #[test]
    fn seconds_split_ok_latency_from_failures() {
        let series = vec![
            SecondRow { t_s: 0, active_shoppers: 3, ..Default::default() },
            SecondRow { t_s: 1, active_shoppers: 2, ..Default::default() },
            SecondRow { t_s: 4, active_shoppers: 0, ..Default::default() },
        ];
        let s = seconds(&sample(), &series);
        assert_eq!(s.len(), 5, "up to the recorder's last row");
        assert_eq!((s[0].ok, s[0].refused, s[0].failed()), (2, 0, 1));
        assert!((s[0].max_ms.unwrap() - 30.0).abs() < 0.1 && (s[0].p50_ms.unwrap() - 10.0).abs() < 0.1, "{:?}", s[0]);
        assert_eq!(s[0].failed_ms, Some(1.0));
        assert_eq!(s[0].active, 3);
        assert_eq!((s[1].ok, s[1].refused, s[1].failed()), (1, 1, 2));
        assert_eq!(s[1].failures.get(&FailureClass::ResetBeforeResponse), Some(&1));
        assert_eq!(s[2], SecondPoint { t_s: 2.0, ..Default::default() }, "a quiet second has no latency");
        assert_eq!(s[3].ok, 1);
        assert!(seconds(&[], &[]).is_empty());
    }

    #[test]
    fn endpoints_count_attempts_failures_and_dropped_operations() {
        let requests: BTreeMap<String, String> = [("checkout".to_string(), "POST /checkout".to_string())].into();
        let e = endpoints(&sample(), &requests);
        assert_eq!(e.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["browse", "checkout"]);
        assert_eq!((e[0].count, e[0].failures, e[0].dropped), (3, 0, 0));
        assert_eq!((e[1].count, e[1].failures, e[1].dropped), (5, 3, 1));
        assert_eq!(e[1].request, "POST /checkout");
        assert!((e[1].max_ms - 50.0).abs() < 0.1, "ok latency only: {:?}", e[1]);
        assert_eq!(e[0].request, "");
    }

    #[test]
    fn slip_and_totals() {
        let s = slip(&sample(), 10.0);
        assert!((s.p99_ms - 0.5).abs() < 0.01 && !s.harness_bottleneck, "{s:?}");
        let mut late = sample();
        late[0].start_ms += 50.0;
        late[1].start_ms += 50.0;
        assert!(slip(&late, 10.0).harness_bottleneck);
        let t = ledger::Totals {
            operations: 6,
            ok: 4,
            refused: 1,
            dropped: 1,
            first_attempt_failures: 2,
            ..Default::default()
        };
        let out = totals(&t, &ok_histogram(&sample()), 4.0);
        assert_eq!((out.operations, out.dropped, out.first_attempt_failures), (6, 1, 2));
        assert!((out.throughput_rps - 1.0).abs() < 1e-9);
        assert!((out.max_ms - 50.0).abs() < 0.1);
    }

    #[test]
    fn faults_join_attribution_and_chaos_records() {
        let mut counts = FailureCounts::default();
        counts.first_attempt_failures.insert(FailureClass::ConnectRefused, 2);
        counts.recovered = 1;
        counts.dropped = 1;
        let attribution = Attribution {
            faults: vec![FaultAttribution {
                name: "reload".into(),
                action: "signal_master".into(),
                start_ms: 1000.0,
                recovered_ms: Some(3500.0),
                recovery_ms: Some(2500.0),
                counts,
            }],
            outside: Default::default(),
        };
        let info = [FaultInfo { detail: "SIGHUP".into(), end_ms: 3000.0, outcome: "ok".into() }];
        let rows = faults(&attribution, &info);
        assert_eq!(rows[0].action, "signal_master SIGHUP");
        assert_eq!((rows[0].start_s, rows[0].end_s, rows[0].recovered_s), (1.0, Some(3.0), Some(3.5)));
        assert_eq!((rows[0].first_attempt_failed(), rows[0].recovered, rows[0].dropped), (2, 1, 1));
        assert_eq!(faults(&attribution, &[])[0].end_s, None);
    }

    #[test]
    fn audit_rows_follow_the_findings() {
        let mut a = AuditReport::unreachable("GET http://127.0.0.1:1/audit: connection refused", 12);
        let d = audit(&a);
        assert_eq!((d.status, d.rows.len()), (Status::Unknown, 1));
        assert!(d.rows[0].detail.contains("connection refused"));

        a.verdict = Verdict::Fail;
        a.acknowledged = 10;
        a.orders_in_audit = 10;
        a.oversold.push(crate::audit::StockProblem { sku: "door-1".into(), problem: "sold 101 > initial 100".into() });
        let d = audit(&a);
        assert_eq!(d.status, Status::Fail);
        let by_check: BTreeMap<&str, Status> = d.rows.iter().map(|r| (r.check.as_str(), r.status)).collect();
        assert_eq!(by_check["no stock oversold (initial = left + sold)"], Status::Fail);
        assert_eq!(by_check["every acknowledged checkout has its order"], Status::Pass);
        assert!(d.rows.iter().any(|r| r.detail.contains("door-1: sold 101 > initial 100")));
    }
}
