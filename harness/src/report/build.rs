//! Turn one finished run's conclusions into the report's [`RunData`]: its
//! `summary.json` (per-second rows, per-step latency, the ok spectrum, faults
//! with their attribution and budgets, totals, slip) and its audit report.
//!
//! Pure, and only a change of shape: every number was computed once, by the
//! run (record/ owns the histograms, judge/ the attribution and the audit).
//! Nothing here reads the ledger or the event log, counts, attributes or
//! builds a histogram, so the page and summary.json cannot disagree.
//! Not for: deciding gates or building the page.

use std::collections::BTreeMap;

use super::model::{EndpointRow, FaultRow, HostLine, KeyNumbers, RunData, SecondPoint, Slip};
use crate::judge::audit::AuditReport;
use crate::judge::hosts::Counts;
use crate::judge::summary::{self, FaultOut, Summary};
use crate::outcome::FailureClass;
use crate::record::recorder::{Percentiles, SecondRow};

/// A `*_by_class` map of summary.json with its zero entries left out.
fn classes(m: &BTreeMap<String, u64>) -> BTreeMap<FailureClass, u64> {
    m.iter().filter(|(_, n)| **n > 0).filter_map(|(k, n)| FailureClass::from_name(k).map(|c| (c, *n))).collect()
}

/// One point per second of the recorder's series. Latency is of the ok
/// attempts that ended in the second; the slowest failure is marked apart.
pub fn seconds(series: &[SecondRow]) -> Vec<SecondPoint> {
    series
        .iter()
        .map(|r| SecondPoint {
            t_s: r.t_s as f64,
            p50_ms: r.ok_p50_ms,
            p99_ms: r.ok_p99_ms,
            max_ms: r.ok_max_ms,
            failed_ms: r.failed_max_ms,
            ok: r.ok,
            refused: r.refused,
            failures: classes(&r.failed_by_class),
            active: r.active_shoppers,
        })
        .collect()
}

/// One row per step that ran, in the scenario's order: attempts, failed
/// attempts, dropped operations and the latency of ok attempts. `requests`
/// lists every step with how it is sent ("GET /products/{{pick.skus}}").
pub fn endpoints(s: &Summary, requests: &[StepRequest]) -> Vec<EndpointRow> {
    let none = Percentiles::of(&crate::record::recorder::new_histogram());
    requests
        .iter()
        .filter_map(|r| {
            let step = s.latency.steps.get(&r.step).filter(|l| l.all.count > 0)?;
            let failures = step
                .by_outcome
                .iter()
                .filter(|(k, _)| FailureClass::from_name(k).is_some())
                .map(|(_, p)| p.count)
                .sum();
            let ok = step.by_outcome.get("ok").unwrap_or(&none);
            Some(EndpointRow {
                step: r.step.clone(),
                request: r.request.clone(),
                count: step.all.count,
                failures,
                dropped: s.totals.dropped_by_step.get(&r.step).copied().unwrap_or(0),
                p50_ms: ok.p50_ms,
                p90_ms: ok.p90_ms,
                p99_ms: ok.p99_ms,
                p999_ms: ok.p99_9_ms,
                max_ms: ok.max_ms,
            })
        })
        .collect()
}

/// One line per host of a fleet or per target address, in summary.json's
/// order (the keyless row last); empty for a run without them.
pub fn breakdown<'a>(rows: impl Iterator<Item = (&'a Option<String>, &'a Counts)>) -> Vec<HostLine> {
    rows.map(|(key, c)| HostLine {
        key: key.clone(),
        attempts: c.attempts,
        ok: c.ok,
        refused: c.refused,
        failures: c.failed_by_class.iter().filter(|(_, n)| **n > 0).map(|(c, n)| (*c, *n)).collect(),
        p99_ms: c.ok_p99_ms,
    })
    .collect()
}

/// A step of the scenario and how it is sent, for the per-endpoint table.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    pub step: String,
    /// "METHOD path template".
    pub request: String,
}

/// Every step of the scenario in journey order (a step in two journeys once).
pub fn requests_of(scenario: &crate::scenario::Scenario) -> Vec<StepRequest> {
    let mut out: Vec<StepRequest> = Vec::new();
    for s in scenario.journeys.iter().flat_map(|j| &j.steps) {
        if !out.iter().any(|r| r.step == s.name) {
            out.push(StepRequest { step: s.name.clone(), request: format!("{} {}", s.method, s.path.source()) });
        }
    }
    out
}

/// Whole-run counts, latency of ok attempts, and throughput as ok
/// operations per second of the run.
pub fn totals(s: &Summary) -> KeyNumbers {
    let t = &s.totals;
    let duration_s = s.run.duration_s;
    let ok = s.latency.by_outcome.get("ok");
    let at = |f: fn(&Percentiles) -> f64| ok.map_or(0.0, f);
    KeyNumbers {
        operations: t.operations,
        ok: t.ok,
        refused: t.refused,
        dropped: t.dropped,
        first_attempt_failures: t.first_attempt_failures,
        throughput_rps: if duration_s > 0.0 { t.ok as f64 / duration_s } else { 0.0 },
        p50_ms: at(|p| p.p50_ms),
        p99_ms: at(|p| p.p99_ms),
        p999_ms: at(|p| p.p99_9_ms),
        max_ms: at(|p| p.max_ms),
    }
}

/// The harness's lateness as the run measured it, in words for the page.
pub fn slip(s: &summary::Slip) -> Slip {
    let limit_ms = s.limit_ms;
    let detail = if s.harness_limited {
        format!("p99 slip above {limit_ms} ms: the harness, not only the target, limited the sending rate")
    } else {
        format!("the harness kept to the schedule (p99 slip within {limit_ms} ms)")
    };
    Slip { p99_ms: s.p99_ms, max_ms: s.max_ms, harness_bottleneck: s.harness_limited, detail }
}

/// Fault rows from the run's own fault entries (names, windows,
/// attribution counts and budgets as the run concluded them).
pub fn faults(faults: &[FaultOut]) -> Vec<FaultRow> {
    faults
        .iter()
        .map(|f| FaultRow {
            // Summaries written before `label` existed: the bare name.
            name: if f.label.is_empty() { f.name.clone() } else { f.label.clone() },
            action: if f.detail.is_empty() { f.action.clone() } else { format!("{} {}", f.action, f.detail) },
            start_s: f.start_ms / 1000.0,
            end_s: Some(f.end_ms / 1000.0),
            recovered_s: f.recovered_ms.map(|r| r / 1000.0),
            outcome: f.outcome.clone(),
            first_attempt_failures: classes(&f.failures.first_attempt_failures_by_class),
            recovered: f.failures.recovered,
            dropped: f.failures.dropped,
            recovery_ms: f.recovery_ms,
            budget: f.budget.clone(),
        })
        .collect()
}

/// One run of the report from its summary, the steps of its scenario and its audit.
pub fn run(label: &str, target: &str, s: &Summary, requests: &[StepRequest], audit: Option<&AuditReport>) -> RunData {
    RunData {
        label: label.to_string(),
        target: target.to_string(),
        seconds: seconds(&s.series),
        spectrum: s.latency.ok_spectrum.clone(),
        endpoints: endpoints(s, requests),
        hosts: breakdown(s.chaos.hosts.iter().map(|h| (&h.host, &h.counts))),
        addresses: breakdown(s.chaos.addresses.iter().map(|a| (&a.addr, &a.counts))),
        shards: s.shards.clone(),
        faults: faults(&s.chaos.faults),
        audit: audit.map(crate::judge::audit::checks),
        slip: slip(&s.schedule_slip),
        totals: totals(s),
        machine: None,
        resources: None,
        server: Vec::new(),
        scrapers: s.server_metrics.as_ref().map(|m| m.endpoints.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_the_recorders_rows() {
        let series = vec![
            SecondRow {
                t_s: 0,
                ok: 2,
                failed: 1,
                failed_by_class: [("connect_refused".to_string(), 1), ("server_error".to_string(), 0)].into(),
                active_shoppers: 3,
                ok_p50_ms: Some(10.0),
                ok_max_ms: Some(30.0),
                failed_max_ms: Some(1.0),
                ..Default::default()
            },
            SecondRow { t_s: 1, active_shoppers: 2, ..Default::default() },
        ];
        let s = seconds(&series);
        assert_eq!((s[0].ok, s[0].failed(), s[0].active), (2, 1, 3));
        assert_eq!(s[0].failures, BTreeMap::from([(FailureClass::ConnectRefused, 1)]), "zero classes left out");
        assert_eq!((s[0].p50_ms, s[0].max_ms, s[0].failed_ms), (Some(10.0), Some(30.0), Some(1.0)));
        assert_eq!(s[1], SecondPoint { t_s: 1.0, active: 2, ..Default::default() }, "a quiet second has no latency");
    }

    #[test]
    fn requests_name_method_and_path_template_in_scenario_order() {
        let s = crate::scenario::parse(
            r#"{"name": "r", "target": {"base_url": "http://127.0.0.1:1"}, "shoppers": 1,
                "arrival": [{"duration": "1s", "rate": 1}],
                "journeys": [{"name": "j", "steps": [
                    {"name": "view", "path": "/products/{{pick.skus}}"},
                    {"name": "buy", "method": "POST", "path": "/checkout", "body": {"cart_id": "c"}}]}],
                "data": {"skus": ["a"]}}"#,
        )
        .unwrap();
        let r = requests_of(&s);
        assert_eq!(r.iter().map(|r| r.step.as_str()).collect::<Vec<_>>(), ["view", "buy"]);
        assert_eq!(r[0].request, "GET /products/{{pick.skus}}");
        assert_eq!(r[1].request, "POST /checkout");
    }
}
