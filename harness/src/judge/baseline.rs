//! Compare a run's `summary.json` against a stored baseline `summary.json`:
//! fail when dropped requests increased, or when a chosen percentile got
//! slower by more than a threshold, and say which. Pure apart from [`read`]:
//! the comparison takes parsed JSON.
//!
//! It reads the summary by the key paths below (the summary schema is
//! docs/SUMMARY.md); they are kept in this one place so a schema change is a
//! one-line change here. Not for: the run's own gates (judge/gates.rs does those).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::judge::verdict::{GateRow, Status};

/// The `kind` of a compare command's `summary.json` (a plain run's has none).
pub const COMPARE_KIND: &str = "compare";

/// The run summary a baseline file stands for: a compare summary's cluster
/// run, or a plain run's summary as it is.
pub fn baseline_run(doc: Value, path: &Path) -> Result<Value> {
    if doc.get("kind").and_then(Value::as_str) == Some(COMPARE_KIND) {
        return doc
            .pointer("/runs/cluster/summary")
            .cloned()
            .ok_or_else(|| anyhow!("{}: a compare summary without runs.cluster.summary", path.display()));
    }
    if doc.get("totals").is_none() {
        bail!("{}: not a summary.json of `harness run` or `harness compare` (no `totals`)", path.display());
    }
    Ok(doc)
}

/// Read a baseline file: the run summary it stands for ([`baseline_run`]);
/// errors name the file.
pub fn read(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the baseline {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    baseline_run(doc, path)
}

/// Dropped operations of the whole run.
pub const DROPPED: &[&str] = &["totals", "dropped"];
/// Whole-run latency percentiles (all attempts), keyed `<percentile>_ms`.
pub const OVERALL_PERCENTILES: &[&str] = &["latency", "overall"];
/// Per-step objects, keyed by step name; each has [`STEP_PERCENTILES`].
pub const STEPS: &[&str] = &["latency", "steps"];
pub const STEP_PERCENTILES: &[&str] = &["all"];

/// The summary's field for a percentile name: "p99" -> "p99_ms", "p99_9" -> "p99_9_ms".
pub fn percentile_field(percentile: &str) -> String {
    format!("{percentile}_ms")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineOptions {
    /// Percentile name as in the summary's fields without `_ms`: "p50", "p90",
    /// "p99" (default), "p99_9" or "max".
    pub percentile: String,
    /// Largest allowed slowdown as a fraction: 0.20 (default) lets p99 grow by 20 %.
    pub max_regression: f64,
    /// Differences at or below this many milliseconds never count as a
    /// regression, so sub-millisecond noise on a fast endpoint cannot fail CI.
    pub min_delta_ms: f64,
    /// Also compare each step present in both summaries, not only the whole run.
    pub per_step: bool,
}

impl Default for BaselineOptions {
    fn default() -> Self {
        BaselineOptions { percentile: "p99".into(), max_regression: 0.20, min_delta_ms: 1.0, per_step: false }
    }
}

/// One comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineCheck {
    /// e.g. "baseline: dropped did not increase", "baseline: p99 (checkout)".
    pub name: String,
    /// The key path read, e.g. "latency.overall.p99_ms".
    pub key: String,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    pub status: Status,
    pub detail: String,
}

impl BaselineCheck {
    pub fn gate(&self) -> GateRow {
        GateRow { gate: self.name.clone(), status: self.status, detail: self.detail.clone() }
    }

    /// As one of a run's own gates (`harness run` and `harness merge`
    /// `--baseline`): only a pass passes; an unknown (a value missing on
    /// either side) fails, saying so. A latency regression can be the
    /// machine's doing, so it counts as capacity-dependent.
    pub fn run_gate(&self) -> crate::judge::gates::GateResult {
        crate::judge::gates::GateResult {
            name: self.name.clone(),
            limit: self.baseline.unwrap_or(f64::NAN),
            actual: self.current,
            passed: self.status == Status::Pass,
            detail: match self.status {
                Status::Unknown => format!("unknown: {}", self.detail),
                _ => self.detail.clone(),
            },
            capacity_dependent: self.key != dotted(DROPPED),
        }
    }
}

/// A baseline to gate a run against: the old summary and the options.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub old: Value,
    pub options: BaselineOptions,
}

/// Checks `--baseline-percentile` and `--max-regression`; errors name the flag.
pub fn check_options(b: &BaselineOptions) -> Result<()> {
    if !["p50", "p90", "p99", "p99_9", "max"].contains(&b.percentile.as_str()) {
        bail!("--baseline-percentile {:?}: expected one of p50, p90, p99, p99_9, max", b.percentile);
    }
    if !(b.max_regression.is_finite() && b.max_regression >= 0.0) {
        bail!("--max-regression {}: must be a fraction >= 0 (0.2 = 20%)", b.max_regression);
    }
    if !(b.min_delta_ms.is_finite() && b.min_delta_ms >= 0.0) {
        bail!("--min-delta-ms {}: must be >= 0", b.min_delta_ms);
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    pub options: BaselineOptions,
    pub checks: Vec<BaselineCheck>,
}

impl BaselineComparison {
    pub fn status(&self) -> Status {
        Status::worst(self.checks.iter().map(|c| c.status))
    }

    /// The checks that failed, for the exit message.
    pub fn failures(&self) -> impl Iterator<Item = &BaselineCheck> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn number(v: &Value, path: &[&str]) -> Option<f64> {
    get(v, path).and_then(Value::as_f64)
}

fn dotted(path: &[&str]) -> String {
    path.join(".")
}

/// Compare `current` against `baseline` (both parsed summary.json).
/// A value missing from either side makes that check unknown, naming the key.
pub fn compare(current: &Value, baseline: &Value, options: &BaselineOptions) -> BaselineComparison {
    let mut checks = vec![check_dropped(current, baseline)];
    let pct = options.percentile.as_str();
    let field = percentile_field(pct);
    let mut overall: Vec<&str> = OVERALL_PERCENTILES.to_vec();
    overall.push(&field);
    checks.push(check_percentile(format!("baseline: {pct} latency"), &overall, current, baseline, options));
    if options.per_step {
        let names = |v: &Value| -> Vec<String> {
            get(v, STEPS).and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
        };
        let base_steps = names(baseline);
        for step in names(current) {
            if !base_steps.contains(&step) {
                continue; // a new step has nothing to regress from
            }
            let mut path: Vec<&str> = STEPS.to_vec();
            path.push(&step);
            path.extend_from_slice(STEP_PERCENTILES);
            path.push(&field);
            checks.push(check_percentile(
                format!("baseline: {pct} latency of {step}"),
                &path,
                current,
                baseline,
                options,
            ));
        }
    }
    BaselineComparison { options: options.clone(), checks }
}

fn missing(name: String, key: String, baseline: Option<f64>, current: Option<f64>) -> BaselineCheck {
    let which = match (baseline.is_none(), current.is_none()) {
        (true, true) => "neither summary",
        (true, false) => "the baseline summary",
        _ => "the current summary",
    };
    let detail = format!("{which} has no number at `{key}`; cannot compare");
    BaselineCheck { name, key, baseline, current, status: Status::Unknown, detail }
}

fn check_dropped(current: &Value, baseline: &Value) -> BaselineCheck {
    let name = "baseline: dropped requests did not increase".to_string();
    let key = dotted(DROPPED);
    let (b, c) = (number(baseline, DROPPED), number(current, DROPPED));
    let (Some(bv), Some(cv)) = (b, c) else {
        return missing(name, key, b, c);
    };
    let (status, detail) = if cv > bv {
        (Status::Fail, format!("dropped requests increased from {bv} to {cv}"))
    } else {
        (Status::Pass, format!("{cv} dropped (baseline {bv})"))
    };
    BaselineCheck { name, key, baseline: b, current: c, status, detail }
}

fn check_percentile(
    name: String,
    path: &[&str],
    current: &Value,
    baseline: &Value,
    options: &BaselineOptions,
) -> BaselineCheck {
    let key = dotted(path);
    let (b, c) = (number(baseline, path), number(current, path));
    let (Some(bv), Some(cv)) = (b, c) else {
        return missing(name, key, b, c);
    };
    let limit = bv * (1.0 + options.max_regression);
    let change = if bv > 0.0 { format!("{:+.1}%", (cv / bv - 1.0) * 100.0) } else { "n/a".to_string() };
    let regressed = cv > limit && cv - bv > options.min_delta_ms;
    let (status, detail) = if regressed {
        (
            Status::Fail,
            format!(
                "`{key}` regressed from {bv:.1} ms to {cv:.1} ms ({change}), more than the allowed {:.0}%",
                options.max_regression * 100.0
            ),
        )
    } else {
        (
            Status::Pass,
            format!("{cv:.1} ms vs baseline {bv:.1} ms ({change}; allowed +{:.0}%)", options.max_regression * 100.0),
        )
    };
    BaselineCheck { name, key, baseline: b, current: c, status, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_is_a_compare_summarys_cluster_run_or_a_plain_summary() {
        let p = Path::new("old/summary.json");
        let plain = serde_json::json!({"totals": {"dropped": 3}});
        assert_eq!(baseline_run(plain.clone(), p).unwrap(), plain);
        let joint = serde_json::json!({"kind": "compare", "runs": {"cluster": {"summary": plain.clone()}}});
        assert_eq!(baseline_run(joint, p).unwrap(), plain);
        let e = baseline_run(serde_json::json!({"kind": "compare"}), p).unwrap_err().to_string();
        assert!(e.contains("runs.cluster.summary") && e.contains("old/summary.json"), "{e}");
        assert!(baseline_run(serde_json::json!({"x": 1}), p).is_err());
    }
    use serde_json::json;

    fn summary(dropped: Option<u64>, p99: Option<f64>, steps: &[(&str, f64)]) -> Value {
        // The shape of summary.rs's `Summary` (only the fields compared).
        let mut v = json!({"totals": {}, "latency": {"overall": {"p50_ms": 1.0}, "steps": {}}});
        if let Some(d) = dropped {
            v["totals"]["dropped"] = json!(d);
        }
        if let Some(p) = p99 {
            v["latency"]["overall"]["p99_ms"] = json!(p);
        }
        for (name, p) in steps {
            v["latency"]["steps"][*name] = json!({"all": {"p99_ms": p}});
        }
        v
    }

    /// (case, current, baseline, options, expected statuses of the checks in order)
    #[test]
    fn comparison_table() {
        let per_step = BaselineOptions { per_step: true, ..Default::default() };
        let strict = BaselineOptions { max_regression: 0.05, ..Default::default() };
        let p50 = BaselineOptions { percentile: "p50".into(), ..Default::default() };
        use Status::{Fail, Pass, Unknown};
        let cases: Vec<(&str, Value, Value, BaselineOptions, Vec<Status>)> = vec![
            (
                "same",
                summary(Some(0), Some(100.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                Default::default(),
                vec![Pass, Pass],
            ),
            (
                "fewer dropped, faster",
                summary(Some(1), Some(80.0), &[]),
                summary(Some(5), Some(100.0), &[]),
                Default::default(),
                vec![Pass, Pass],
            ),
            (
                "dropped increased",
                summary(Some(3), Some(100.0), &[]),
                summary(Some(2), Some(100.0), &[]),
                Default::default(),
                vec![Fail, Pass],
            ),
            (
                "p99 +19% is within 20%",
                summary(Some(0), Some(119.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                Default::default(),
                vec![Pass, Pass],
            ),
            (
                "p99 +21% regressed",
                summary(Some(0), Some(121.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                Default::default(),
                vec![Pass, Fail],
            ),
            (
                "threshold is configurable",
                summary(Some(0), Some(106.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                strict,
                vec![Pass, Fail],
            ),
            (
                "sub-ms noise is not a regression",
                summary(Some(0), Some(0.9), &[]),
                summary(Some(0), Some(0.3), &[]),
                Default::default(),
                vec![Pass, Pass],
            ),
            (
                "zero baseline, real slowdown",
                summary(Some(0), Some(5.0), &[]),
                summary(Some(0), Some(0.0), &[]),
                Default::default(),
                vec![Pass, Fail],
            ),
            (
                "baseline lacks p99",
                summary(Some(0), Some(100.0), &[]),
                summary(Some(0), None, &[]),
                Default::default(),
                vec![Pass, Unknown],
            ),
            (
                "current lacks dropped",
                summary(None, Some(100.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                Default::default(),
                vec![Unknown, Pass],
            ),
            (
                "other percentile key",
                summary(Some(0), Some(500.0), &[]),
                summary(Some(0), Some(100.0), &[]),
                p50,
                vec![Pass, Pass],
            ),
            (
                "per step: one step regressed, new step ignored",
                summary(Some(0), Some(100.0), &[("browse", 10.0), ("checkout", 300.0), ("new", 1e6)]),
                summary(Some(0), Some(100.0), &[("browse", 10.0), ("checkout", 100.0)]),
                per_step,
                vec![Pass, Pass, Pass, Fail],
            ),
        ];
        for (case, current, baseline, options, expected) in cases {
            let cmp = compare(&current, &baseline, &options);
            let got: Vec<Status> = cmp.checks.iter().map(|c| c.status).collect();
            assert_eq!(got, expected, "case {case:?}: {:#?}", cmp.checks);
            assert_eq!(cmp.status(), Status::worst(expected.iter().copied()), "case {case:?}");
        }
    }

    /// The key paths must find numbers in what summary.rs really writes.
    #[test]
    fn key_paths_match_the_summary_types() {
        use crate::judge::summary::{Latency, StepLatency};
        use crate::record::recorder::Percentiles;
        let p = |v: f64| Percentiles { count: 10, p50_ms: v, p90_ms: v, p99_ms: v, p99_9_ms: v, max_ms: v, mean_ms: v };
        let totals = |dropped| crate::record::ledger::Totals { dropped, ..Default::default() };
        let latency = |v: f64| Latency {
            overall: p(v),
            by_outcome: Default::default(),
            steps: [("checkout".to_string(), StepLatency { all: p(v), by_outcome: Default::default() })].into(),
            ok_spectrum: Vec::new(),
        };
        let summary = |dropped, v| json!({"totals": totals(dropped), "latency": latency(v)});
        let options = BaselineOptions { per_step: true, ..Default::default() };
        let cmp = compare(&summary(1, 200.0), &summary(0, 100.0), &options);
        let got: Vec<(Status, Option<f64>, Option<f64>)> =
            cmp.checks.iter().map(|c| (c.status, c.baseline, c.current)).collect();
        assert_eq!(
            got,
            [
                (Status::Fail, Some(0.0), Some(1.0)),
                (Status::Fail, Some(100.0), Some(200.0)),
                (Status::Fail, Some(100.0), Some(200.0))
            ]
        );
        for name in ["p50", "p90", "p99_9", "max"] {
            let o = BaselineOptions { percentile: name.into(), ..Default::default() };
            assert_eq!(compare(&summary(0, 1.0), &summary(0, 1.0), &o).status(), Status::Pass, "{name}");
        }
    }

    #[test]
    fn failures_say_which_and_by_how_much() {
        let cmp = compare(
            &summary(Some(7), Some(150.0), &[]),
            &summary(Some(2), Some(100.0), &[]),
            &BaselineOptions::default(),
        );
        let msgs: Vec<&str> = cmp.failures().map(|c| c.detail.as_str()).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0], "dropped requests increased from 2 to 7");
        assert!(msgs[1].contains("latency.overall.p99_ms") && msgs[1].contains("+50.0%"), "{}", msgs[1]);
        let missing = compare(&json!({}), &summary(Some(0), Some(1.0), &[]), &BaselineOptions::default());
        assert!(missing.checks[0].detail.contains("current summary has no number at `totals.dropped`"));
    }
}
