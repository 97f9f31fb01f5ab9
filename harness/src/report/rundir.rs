//! Read a finished run folder (`ledger.csv`, `events.jsonl`, `summary.json`,
//! as written by `harness run`) into the report's [`RunData`], and turn the
//! summary's gates into verdict rows. This is the I/O edge of the report;
//! the conversions themselves are in build.rs.
//!
//! Not for: running anything, or the audit (its report is passed in, since
//! the run folder does not keep it).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use super::build::{self, FaultInfo, FromLedger, RunInputs};
use super::model::{GateRow, MachineData, RunData, Status};
use crate::chaos::faults::FaultWindow;
use crate::host::machine;
use crate::judge::attribution;
use crate::judge::audit::AuditReport;
use crate::judge::summary::{self, SUMMARY_FILE, Summary};
use crate::record::events::EVENTS_FILE;
use crate::record::ledger::LEDGER_FILE;

/// What the run folder does not say.
pub struct RunDirOptions<'a> {
    /// "single process", "cluster".
    pub label: &'a str,
    /// How the target was started, for the page.
    pub target: &'a str,
    /// Step name -> "METHOD path template", for the per-endpoint table.
    pub requests: &'a BTreeMap<String, String>,
    pub audit: Option<&'a AuditReport>,
}

/// Step name -> "METHOD path template" for every step of the scenario, for
/// [`RunDirOptions::requests`].
pub fn requests_of(scenario: &crate::scenario::Scenario) -> BTreeMap<String, String> {
    scenario
        .journeys
        .iter()
        .flat_map(|j| &j.steps)
        .map(|s| (s.name.clone(), format!("{} {}", s.method, s.path.source())))
        .collect()
}

/// One fault occurrence as the event log tells it.
#[derive(Debug, Clone, PartialEq)]
struct FaultEvents {
    /// As the report shows it (`name#n` for a repeated fault).
    name: String,
    /// As the scenario names it.
    fault: String,
    occurrence: u64,
    action: String,
    detail: String,
    start_ms: f64,
    end_ms: Option<f64>,
    outcome: String,
    recovered_ms: Option<f64>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Faults from `fault_start` / `fault_end` / `fault_recovered` events, in
/// start order. A periodic fault's occurrences are named `name#2`, `name#3`...
fn faults_from_events(events: &[Value]) -> Vec<FaultEvents> {
    let mut faults: Vec<FaultEvents> = Vec::new();
    let mut index: HashMap<(String, u64), usize> = HashMap::new();
    for e in events {
        let kind = e.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some(name) = e.get("fault").and_then(Value::as_str) else { continue };
        let occurrence = e.get("occurrence").and_then(Value::as_u64).unwrap_or(1);
        let key = (name.to_string(), occurrence);
        let t = num(e, "t_ms").unwrap_or(0.0);
        match kind {
            "fault_start" => {
                index.insert(key, faults.len());
                faults.push(FaultEvents {
                    name: name.to_string(),
                    fault: name.to_string(),
                    occurrence,
                    action: text(e, "action"),
                    detail: text(e, "detail"),
                    start_ms: t,
                    end_ms: None,
                    outcome: String::new(),
                    recovered_ms: None,
                });
            }
            "fault_end" => {
                if let Some(f) = index.get(&key).map(|&i| &mut faults[i]) {
                    f.end_ms = Some(t);
                    f.outcome = text(e, "outcome");
                }
            }
            "fault_recovered" => {
                if let Some(f) = index.get(&key).map(|&i| &mut faults[i]) {
                    f.recovered_ms = Some(num(e, "recovered_ms").unwrap_or(t));
                }
            }
            _ => {}
        }
    }
    let repeated: Vec<String> = faults.iter().filter(|f| f.occurrence > 1).map(|f| f.name.clone()).collect();
    for f in &mut faults {
        f.name = crate::chaos::faults::occurrence_name(&f.name, f.occurrence as u32, repeated.contains(&f.name));
    }
    faults.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    faults
}

/// Read `dir`'s summary, ledger and event log into one run of the report.
pub fn run_from_dir(dir: &Path, o: &RunDirOptions<'_>) -> Result<(RunData, Summary)> {
    let summary = summary::read(&dir.join(SUMMARY_FILE)).map_err(|e| anyhow!("reading the run's summary: {e}"))?;
    let ledger = FromLedger::read(&dir.join(LEDGER_FILE)).map_err(|e| anyhow!("reading the ledger: {e}"))?;
    let events_path = dir.join(EVENTS_FILE);
    let events =
        crate::record::events::read(&events_path).with_context(|| format!("reading {}", events_path.display()))?;
    let faults = faults_from_events(&events);
    let windows: Vec<FaultWindow> = faults
        .iter()
        .map(|f| FaultWindow {
            name: f.name.clone(),
            action: f.action.clone(),
            start_ms: f.start_ms,
            recovered_ms: f.recovered_ms,
        })
        .collect();
    let info: Vec<FaultInfo> = faults
        .iter()
        .map(|f| FaultInfo {
            detail: f.detail.clone(),
            end_ms: f.end_ms.unwrap_or(f.start_ms),
            outcome: f.outcome.clone(),
            budget: summary
                .chaos
                .faults
                .iter()
                .find(|o| o.name == f.fault && u64::from(o.occurrence) == f.occurrence)
                .and_then(|o| o.budget.clone()),
        })
        .collect();
    let run_end_ms = summary.run.duration_s * 1000.0;
    let attribution = attribution::attribute(&windows, &ledger.failed, run_end_ms);
    let totals = summary.totals.to_totals();
    let run = build::run(&RunInputs {
        label: o.label,
        target: o.target,
        ledger: &ledger,
        totals: &totals,
        series: &summary.series,
        requests: o.requests,
        attribution: &attribution,
        fault_info: &info,
        audit: o.audit,
        duration_s: summary.run.duration_s,
        slip_limit_ms: summary.schedule_slip.limit_ms,
    });
    let machine = summary.environment.clone().map(|assessment| MachineData {
        other_work: machine::read_csv(dir).into_iter().map(|(_, share)| share).collect(),
        assessment,
    });
    Ok((RunData { machine, ..run }, summary))
}

/// The run's gates as verdict rows named "<label>: <gate>", plus a row for
/// the run's validity: an invalid run (interrupted, ledger not adding up...)
/// is unknown, never a pass.
pub fn gate_rows(label: &str, summary: &Summary) -> Vec<GateRow> {
    let mut rows = Vec::new();
    let v = &summary.validity;
    rows.push(GateRow {
        gate: format!("{label}: the run is valid"),
        status: if v.valid { Status::Pass } else { Status::Unknown },
        detail: if v.valid { "every shopper finished and the ledger adds up".into() } else { v.problems.join("; ") },
    });
    // Gates the run left undecided because the machine was busy (gates.rs `undecided`).
    let noise = summary.environment.as_ref().filter(|e| !e.undecided_gates.is_empty());
    for g in &summary.gates {
        let (status, detail) = match noise {
            Some(e) if e.undecided_gates.contains(&g.name) => {
                (Status::Unknown, format!("{}; undecided: {}", g.detail, e.reason))
            }
            _ => (if g.passed { Status::Pass } else { Status::Fail }, g.detail.clone()),
        };
        rows.push(GateRow { gate: format!("{label}: {}", g.name), status, detail });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_are_read_from_events_and_repeats_numbered() {
        let events = vec![
            json!({"t_ms": 5000.0, "kind": "fault_start", "fault": "kill", "action": "kill_worker", "detail": "SIGKILL random", "occurrence": 2, "pids": [7]}),
            json!({"t_ms": 1000.0, "kind": "fault_start", "fault": "kill", "action": "kill_worker", "detail": "SIGKILL random", "occurrence": 1, "pids": [5]}),
            json!({"t_ms": 1001.0, "kind": "fault_end", "fault": "kill", "action": "kill_worker", "occurrence": 1, "pids": [5], "outcome": "ok"}),
            json!({"t_ms": 1900.0, "kind": "fault_recovered", "fault": "kill", "occurrence": 1, "recovered_ms": 1800.0, "recovery_ms": 800.0}),
            json!({"t_ms": 3000.0, "kind": "fault_start", "fault": "reload", "action": "signal_master", "detail": "SIGHUP", "pids": [1]}),
            json!({"t_ms": 3002.0, "kind": "fault_end", "fault": "reload", "action": "signal_master", "pids": [1], "outcome": "error: no such process"}),
            json!({"t_ms": 10.0, "kind": "attempt_started"}),
        ];
        let f = faults_from_events(&events);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["kill#1", "reload", "kill#2"]);
        assert_eq!((f[0].end_ms, f[0].recovered_ms, f[0].outcome.as_str()), (Some(1001.0), Some(1800.0), "ok"));
        assert_eq!((f[1].detail.as_str(), f[1].recovered_ms), ("SIGHUP", None));
        assert_eq!(f[1].outcome, "error: no such process");
        assert_eq!(f[2].end_ms, None, "no end event yet");
    }

    #[test]
    fn requests_name_method_and_path_template() {
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
        assert_eq!(r["view"], "GET /products/{{pick.skus}}");
        assert_eq!(r["buy"], "POST /checkout");
    }
}
