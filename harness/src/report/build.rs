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
use crate::judge::attribution::{AttemptView, Attribution, FailedViews, FinalOutcome};
use crate::judge::audit::{AuditReport, Verdict};
use crate::outcome::FailureClass;
use crate::record::ledger::{self, AttemptRecord, OutcomeKind};
use crate::record::recorder::SecondRow;

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

/// What the report takes from the ledger, gathered from its records one at a
/// time ([`ledger::for_each_record`]): per-second counts and ok latency, per
/// step counts and ok latency, the run's ok latency and slip, and the failed
/// attempts for the attribution. Memory follows seconds, steps and failures,
/// never the number of records.
pub struct LedgerStats {
    seconds: Vec<(SecondPoint, Histogram<u64>)>,
    /// In order of first appearance in the ledger.
    steps: Vec<(EndpointRow, Histogram<u64>)>,
    step_index: HashMap<String, usize>,
    ok: Histogram<u64>,
    slip: Histogram<u64>,
    failed: FailedViews,
}

impl Default for LedgerStats {
    fn default() -> Self {
        LedgerStats {
            seconds: Vec::new(),
            steps: Vec::new(),
            step_index: HashMap::new(),
            ok: histogram(),
            slip: histogram(),
            failed: FailedViews::default(),
        }
    }
}

impl LedgerStats {
    pub fn add(&mut self, r: &AttemptRecord) {
        let s = (r.end_ms.max(0.0) / 1000.0) as usize;
        while self.seconds.len() <= s {
            let t_s = self.seconds.len() as f64;
            self.seconds.push((SecondPoint { t_s, ..SecondPoint::default() }, histogram()));
        }
        let i = match self.step_index.get(r.step.as_str()) {
            Some(&i) => i,
            None => {
                self.step_index.insert(r.step.clone(), self.steps.len());
                let row = EndpointRow {
                    step: r.step.clone(),
                    request: String::new(),
                    count: 0,
                    failures: 0,
                    dropped: 0,
                    p50_ms: 0.0,
                    p90_ms: 0.0,
                    p99_ms: 0.0,
                    p999_ms: 0.0,
                    max_ms: 0.0,
                };
                self.steps.push((row, histogram()));
                self.steps.len() - 1
            }
        };
        let (point, second_ok) = &mut self.seconds[s];
        let (row, step_ok) = &mut self.steps[i];
        row.count += 1;
        match r.outcome {
            OutcomeKind::Ok => {
                point.ok += 1;
                let ms = r.latency_ms();
                record(second_ok, ms);
                record(step_ok, ms);
                record(&mut self.ok, ms);
            }
            OutcomeKind::Refused => point.refused += 1,
            OutcomeKind::Failed => {
                let class = r.class.unwrap_or(FailureClass::LocalError);
                *point.failures.entry(class).or_default() += 1;
                point.failed_ms = Some(point.failed_ms.unwrap_or(0.0).max(r.latency_ms()));
                row.failures += 1;
            }
        }
        record(&mut self.slip, r.start_ms - r.intended_ms);
        self.failed.add(r);
    }

    /// Percentiles computed, dropped operations counted per step.
    pub fn finish(self) -> FromLedger {
        let failed = self.failed.finish();
        let mut dropped_ops: HashMap<&str, Vec<u64>> = HashMap::new();
        for v in failed.iter().filter(|v| v.final_outcome == FinalOutcome::Dropped) {
            dropped_ops.entry(v.step.as_str()).or_default().push(v.op);
        }
        let endpoints = self
            .steps
            .into_iter()
            .map(|(mut row, h)| {
                if let Some(ops) = dropped_ops.get_mut(row.step.as_str()) {
                    ops.sort_unstable();
                    ops.dedup();
                    row.dropped = ops.len() as u64;
                }
                (row.p50_ms, row.p90_ms, row.p99_ms, row.p999_ms) =
                    (ms(&h, 0.5), ms(&h, 0.9), ms(&h, 0.99), ms(&h, 0.999));
                row.max_ms = max_ms(&h);
                row
            })
            .collect();
        let seconds = self
            .seconds
            .into_iter()
            .map(|(mut p, h)| {
                if !h.is_empty() {
                    p.p50_ms = Some(ms(&h, 0.50));
                    p.p99_ms = Some(ms(&h, 0.99));
                    p.max_ms = Some(max_ms(&h));
                }
                p
            })
            .collect();
        FromLedger { seconds, endpoints, ok: self.ok, slip: self.slip, failed }
    }
}

/// [`LedgerStats`] finished.
pub struct FromLedger {
    /// From second 0 to the last second an attempt ended in; `active` not set.
    seconds: Vec<SecondPoint>,
    /// `request` not set.
    endpoints: Vec<EndpointRow>,
    /// Latency of every ok attempt, microseconds.
    pub ok: Histogram<u64>,
    /// Actual start minus intended send time of every attempt, microseconds.
    slip: Histogram<u64>,
    /// The failed attempts with their operations' final outcomes.
    pub failed: Vec<AttemptView>,
}

impl FromLedger {
    /// Reads the ledger file at `path` in one pass.
    pub fn read(path: &std::path::Path) -> Result<FromLedger, String> {
        let mut stats = LedgerStats::default();
        ledger::for_each_record(path, |r| stats.add(r))?;
        Ok(stats.finish())
    }
}

/// One point per second from 0 to the last second with an attempt or a
/// recorder row. Latency percentiles are of ok attempts, by the second they
/// ended in; `active` comes from the recorder's rows.
pub fn seconds(l: &FromLedger, series: &[SecondRow]) -> Vec<SecondPoint> {
    let mut points = l.seconds.clone();
    if let Some(last) = series.iter().map(|r| r.t_s as usize).max() {
        while points.len() <= last {
            points.push(SecondPoint { t_s: points.len() as f64, ..SecondPoint::default() });
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
pub fn endpoints(l: &FromLedger, requests: &BTreeMap<String, String>) -> Vec<EndpointRow> {
    let mut rows = l.endpoints.clone();
    for row in &mut rows {
        row.request = requests.get(&row.step).cloned().unwrap_or_default();
    }
    rows
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
pub fn slip(l: &FromLedger, limit_ms: f64) -> Slip {
    let h = &l.slip;
    let p99 = ms(h, 0.99);
    let bottleneck = p99 > limit_ms;
    let detail = if bottleneck {
        format!("p99 slip above {limit_ms} ms: the harness, not only the target, limited the sending rate")
    } else {
        format!("the harness kept to the schedule (p99 slip within {limit_ms} ms)")
    };
    Slip { p99_ms: p99, max_ms: max_ms(h), harness_bottleneck: bottleneck, detail }
}

/// What the attribution does not know about a fault, from the chaos record:
/// the action's detail (signal, pick...), when the action finished, how the
/// injector fared. One per fault, in the attribution's order.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultInfo {
    pub detail: String,
    pub end_ms: f64,
    pub outcome: String,
    /// The occurrence's budget and whether it was kept, as the run's summary says.
    pub budget: Option<crate::judge::summary::BudgetOut>,
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
                budget: extra.and_then(|x| x.budget.clone()),
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
    let key = |c: &crate::judge::audit::CheckoutRef| {
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
    pub ledger: &'a FromLedger,
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
    RunData {
        label: i.label.to_string(),
        target: i.target.to_string(),
        seconds: seconds(i.ledger, i.series),
        spectrum: spectrum_from_histogram(&i.ledger.ok, 1000.0),
        endpoints: endpoints(i.ledger, i.requests),
        faults: faults(i.attribution, i.fault_info),
        audit: i.audit.map(audit),
        slip: slip(i.ledger, i.slip_limit_ms),
        totals: totals(i.totals, &i.ledger.ok, i.duration_s),
        machine: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::attribution::{FailureCounts, FaultAttribution};
    use crate::outcome::Outcome;

    fn rec(op: u64, step: &str, attempt: u32, intended_ms: f64, end_ms: f64, o: Outcome) -> AttemptRecord {
        AttemptRecord::for_test(op, step, attempt, o, (intended_ms, intended_ms + 0.5, end_ms))
    }

    fn digest(records: &[AttemptRecord]) -> FromLedger {
        let mut stats = LedgerStats::default();
        records.iter().for_each(|r| stats.add(r));
        stats.finish()
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
        let s = seconds(&digest(&sample()), &series);
        assert_eq!(s.len(), 5, "up to the recorder's last row");
        assert_eq!((s[0].ok, s[0].refused, s[0].failed()), (2, 0, 1));
        assert!((s[0].max_ms.unwrap() - 30.0).abs() < 0.1 && (s[0].p50_ms.unwrap() - 10.0).abs() < 0.1, "{:?}", s[0]);
        assert_eq!(s[0].failed_ms, Some(1.0));
        assert_eq!(s[0].active, 3);
        assert_eq!((s[1].ok, s[1].refused, s[1].failed()), (1, 1, 2));
        assert_eq!(s[1].failures.get(&FailureClass::ResetBeforeResponse), Some(&1));
        assert_eq!(s[2], SecondPoint { t_s: 2.0, ..Default::default() }, "a quiet second has no latency");
        assert_eq!(s[3].ok, 1);
        assert!(seconds(&digest(&[]), &[]).is_empty());
    }

    #[test]
    fn endpoints_count_attempts_failures_and_dropped_operations() {
        let requests: BTreeMap<String, String> = [("checkout".to_string(), "POST /checkout".to_string())].into();
        let e = endpoints(&digest(&sample()), &requests);
        assert_eq!(e.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["browse", "checkout"]);
        assert_eq!((e[0].count, e[0].failures, e[0].dropped), (3, 0, 0));
        assert_eq!((e[1].count, e[1].failures, e[1].dropped), (5, 3, 1));
        assert_eq!(e[1].request, "POST /checkout");
        assert!((e[1].max_ms - 50.0).abs() < 0.1, "ok latency only: {:?}", e[1]);
        assert_eq!(e[0].request, "");
    }

    #[test]
    fn slip_and_totals() {
        let s = slip(&digest(&sample()), 10.0);
        assert!((s.p99_ms - 0.5).abs() < 0.01 && !s.harness_bottleneck, "{s:?}");
        let mut late = sample();
        late[0].start_ms += 50.0;
        late[1].start_ms += 50.0;
        assert!(slip(&digest(&late), 10.0).harness_bottleneck);
        let t = ledger::Totals {
            operations: 6,
            ok: 4,
            refused: 1,
            dropped: 1,
            first_attempt_failures: 2,
            ..Default::default()
        };
        let out = totals(&t, &digest(&sample()).ok, 4.0);
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
        let info = [FaultInfo { detail: "SIGHUP".into(), end_ms: 3000.0, outcome: "ok".into(), budget: None }];
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
        a.oversold
            .push(crate::judge::audit::StockProblem { sku: "door-1".into(), problem: "sold 101 > initial 100".into() });
        let d = audit(&a);
        assert_eq!(d.status, Status::Fail);
        let by_check: BTreeMap<&str, Status> = d.rows.iter().map(|r| (r.check.as_str(), r.status)).collect();
        assert_eq!(by_check["no stock oversold (initial = left + sold)"], Status::Fail);
        assert_eq!(by_check["every acknowledged checkout has its order"], Status::Pass);
        assert!(d.rows.iter().any(|r| r.detail.contains("door-1: sold 101 > initial 100")));
    }
}
