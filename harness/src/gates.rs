//! Gates: the scenario's pass/fail limits evaluated against a finished run.
//! Pure (no I/O), so every gate is unit-tested without a server.
//!
//! A run whose ledger does not add up, or that was cut off, is *invalid*:
//! gates are still evaluated (for the report) but the verdict is `invalid`,
//! never `pass`. Not for computing the numbers (ledger.rs, recorder.rs).

use serde::{Deserialize, Serialize};

use crate::ledger::Totals;
use crate::recorder::Recorder;
use crate::scenario::Gates;

/// One gate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// e.g. `max_dropped`, `latency p99 step=checkout`.
    pub name: String,
    /// The limit as a number (ms for latency gates, req/s for throughput).
    pub limit: f64,
    /// The measured value, when there was one.
    pub actual: Option<f64>,
    pub passed: bool,
    /// Human-readable: what was compared, and why it failed.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// A gate failed (exit code 1).
    Fail,
    /// The run itself cannot be trusted (exit code 2).
    Invalid,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Invalid => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Invalid => "invalid",
        }
    }
}

/// What the gates look at, besides the scenario's limits.
pub struct Measured<'a> {
    pub totals: &'a Totals,
    pub recorder: &'a Recorder,
    /// Operations that ended ok or refused, per second of the run.
    pub goodput_rps: f64,
    /// The audit's result: `None` if it did not run, `Some(Err(why))` if it failed.
    pub audit: Option<&'a Result<(), String>>,
    /// Whether the scenario asked for an audit.
    pub audit_configured: bool,
}

/// Evaluates every gate of the scenario, in a stable order.
pub fn evaluate(g: &Gates, m: &Measured<'_>) -> Vec<GateResult> {
    let mut out = Vec::new();
    // A count that must stay at or below the scenario's limit.
    let at_most = |name: &str, max: u64, actual: u64, what: &str| GateResult {
        name: name.into(),
        limit: max as f64,
        actual: Some(actual as f64),
        passed: actual <= max,
        detail: format!("{actual} {what}, at most {max} allowed"),
    };
    if let Some(max) = g.max_dropped {
        out.push(at_most("max_dropped", max, m.totals.dropped, "dropped operation(s)"));
    }
    if let Some(max) = g.max_first_attempt_failures {
        out.push(at_most(
            "max_first_attempt_failures",
            max,
            m.totals.first_attempt_failures,
            "first-attempt failure(s)",
        ));
    }
    if let Some(min) = g.min_throughput_rps {
        let actual = m.goodput_rps;
        out.push(GateResult {
            name: "min_throughput_rps".into(),
            limit: min,
            actual: Some(actual),
            passed: actual >= min,
            detail: format!("{actual:.1} ok+refused operations/s, at least {min} required"),
        });
    }
    for lg in &g.latency {
        let limit_ms = lg.max.as_secs_f64() * 1000.0;
        let (name, hist) = match &lg.step {
            None => (format!("latency p{} all steps", lg.percentile), Some(m.recorder.overall())),
            Some(s) => (format!("latency p{} step={s}", lg.percentile), m.recorder.step(s)),
        };
        let r = match hist {
            Some(h) if !h.is_empty() => {
                let v = h.value_at_quantile(lg.percentile / 100.0) as f64 / 1000.0;
                GateResult {
                    name,
                    limit: limit_ms,
                    actual: Some(v),
                    passed: v <= limit_ms,
                    detail: format!(
                        "p{} = {v:.3} ms over {} attempt(s), at most {limit_ms} ms",
                        lg.percentile,
                        h.len()
                    ),
                }
            }
            // A limit on something that never ran cannot be shown to hold.
            _ => GateResult {
                name,
                limit: limit_ms,
                actual: None,
                passed: false,
                detail: "no attempts recorded for this gate".into(),
            },
        };
        out.push(r);
    }
    if g.audit_must_pass && m.audit_configured {
        let r = match m.audit {
            Some(Ok(())) => GateResult {
                name: "audit".into(),
                limit: 0.0,
                actual: Some(0.0),
                passed: true,
                detail: "the shop's audit found every acknowledged order and no oversold stock".into(),
            },
            Some(Err(why)) => {
                GateResult { name: "audit".into(), limit: 0.0, actual: Some(1.0), passed: false, detail: why.clone() }
            }
            None => GateResult {
                name: "audit".into(),
                limit: 0.0,
                actual: None,
                passed: false,
                detail: "the audit did not run".into(),
            },
        };
        out.push(r);
    }
    out
}

/// The verdict: invalid beats everything; otherwise fail if any gate failed.
pub fn verdict(valid: bool, gates: &[GateResult]) -> Verdict {
    if !valid {
        Verdict::Invalid
    } else if gates.iter().all(|g| g.passed) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;
    use crate::scenario::LatencyGate;
    use std::time::Duration;

    fn gates() -> Gates {
        Gates {
            max_dropped: Some(0),
            max_first_attempt_failures: Some(2),
            min_throughput_rps: Some(10.0),
            latency: vec![
                LatencyGate { step: None, percentile: 99.0, max: Duration::from_millis(50) },
                LatencyGate { step: Some("checkout".into()), percentile: 50.0, max: Duration::from_millis(5) },
                LatencyGate { step: Some("never".into()), percentile: 50.0, max: Duration::from_millis(5) },
            ],
            audit_must_pass: true,
            max_affinity_breaks: None,
            max_first_attempt_failures_outside_faults: None,
        }
    }

    #[test]
    fn each_gate_compares_its_own_number() {
        let mut rec = Recorder::new(vec!["browse".into(), "checkout".into(), "never".into()]);
        for _ in 0..99 {
            rec.record(0, Outcome::Ok, 10_000, 0, 1.0);
        }
        rec.record(1, Outcome::Ok, 40_000, 0, 1.0);
        let totals = Totals { dropped: 1, first_attempt_failures: 2, ..Default::default() };
        let audit = Err("order 7 missing".to_string());
        let m = Measured {
            totals: &totals,
            recorder: &rec,
            goodput_rps: 12.0,
            audit: Some(&audit),
            audit_configured: true,
        };
        let r = evaluate(&gates(), &m);
        let by = |n: &str| r.iter().find(|g| g.name == n).unwrap().clone();
        assert!(!by("max_dropped").passed);
        assert!(by("max_first_attempt_failures").passed);
        assert!(by("min_throughput_rps").passed);
        assert!(by("latency p99 all steps").passed, "{r:?}");
        let co = by("latency p50 step=checkout");
        assert!(!co.passed);
        assert!((co.actual.unwrap() - 40.0).abs() < 0.1);
        assert!(!by("latency p50 step=never").passed);
        assert_eq!(by("audit").detail, "order 7 missing");
        assert_eq!(verdict(true, &r), Verdict::Fail);
        assert_eq!(verdict(false, &r), Verdict::Invalid);
        let passing: Vec<_> = r.into_iter().filter(|g| g.passed).collect();
        assert_eq!(verdict(true, &passing), Verdict::Pass);
        assert_eq!(Verdict::Invalid.exit_code(), 2);
    }

    #[test]
    fn audit_gate_fails_when_the_audit_did_not_run() {
        let rec = Recorder::new(vec![]);
        let totals = Totals::default();
        let g = Gates {
            max_dropped: None,
            max_first_attempt_failures: None,
            min_throughput_rps: None,
            latency: vec![],
            audit_must_pass: true,
            max_affinity_breaks: None,
            max_first_attempt_failures_outside_faults: None,
        };
        let m = Measured { totals: &totals, recorder: &rec, goodput_rps: 0.0, audit: None, audit_configured: true };
        let r = evaluate(&g, &m);
        assert_eq!(r.len(), 1);
        assert!(!r[0].passed);
        let m = Measured { audit_configured: false, ..m };
        assert!(evaluate(&g, &m).is_empty());
    }
}
