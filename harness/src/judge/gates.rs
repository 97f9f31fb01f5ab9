//! Gates: the scenario's pass/fail limits evaluated against a finished run.
//! Pure (no I/O), so every gate is unit-tested without a server.
//!
//! A run whose ledger does not add up, or that was cut off, is *invalid*:
//! gates are still evaluated (for the report) but the verdict is `invalid`,
//! never `pass`. Not for computing the numbers (ledger.rs, recorder.rs).

use serde::{Deserialize, Serialize};

use crate::judge::verdict::Verdict;
use crate::record::ledger::Totals;
use crate::record::recorder::Recorder;
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
    /// True when a slow machine alone could have failed this gate (latency,
    /// throughput, drops that were timeouts): on a machine busy with other
    /// work such a failure is unknown, not a fail (see [`verdict_under`]).
    /// False for gates that do not depend on speed (audit, correctness).
    #[serde(default)]
    pub capacity_dependent: bool,
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
    // A count that must stay at or below the scenario's limit; a slow
    // machine can fail it only if its failures that are not timeouts fit.
    let at_most = |name: &str, max: u64, actual: u64, timeouts: u64, what: &str| GateResult {
        name: name.into(),
        limit: max as f64,
        actual: Some(actual as f64),
        passed: actual <= max,
        detail: format!("{actual} {what}, at most {max} allowed"),
        capacity_dependent: actual.saturating_sub(timeouts) <= max,
    };
    if let Some(max) = g.max_dropped {
        let timeouts = timeouts_in(&m.totals.dropped_by_class);
        out.push(at_most("max_dropped", max, m.totals.dropped, timeouts, "dropped operation(s)"));
    }
    if let Some(max) = g.max_first_attempt_failures {
        out.push(at_most(
            "max_first_attempt_failures",
            max,
            m.totals.first_attempt_failures,
            timeouts_in(&m.totals.first_attempt_failures_by_class),
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
            capacity_dependent: true,
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
                    capacity_dependent: true,
                }
            }
            // A limit on something that never ran cannot be shown to hold.
            _ => GateResult {
                name,
                limit: limit_ms,
                actual: None,
                passed: false,
                detail: "no attempts recorded for this gate".into(),
                capacity_dependent: false,
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
                capacity_dependent: false,
            },
            Some(Err(why)) => GateResult {
                name: "audit".into(),
                limit: 0.0,
                actual: Some(1.0),
                passed: false,
                detail: why.clone(),
                capacity_dependent: false,
            },
            None => GateResult {
                name: "audit".into(),
                limit: 0.0,
                actual: None,
                passed: false,
                detail: "the audit did not run".into(),
                capacity_dependent: false,
            },
        };
        out.push(r);
    }
    out
}

pub(crate) fn timeouts_in(by_class: &std::collections::BTreeMap<crate::outcome::FailureClass, u64>) -> u64 {
    by_class.iter().filter(|(c, _)| c.is_timeout()).map(|(_, n)| n).sum()
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

/// What the machine did during a run, as far as the verdict cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Noise {
    /// Other work exceeded the scenario's `environment.max_other_cpu`
    /// (machine.rs, `Assessment::noisy`).
    pub noisy: bool,
    /// The harness kept its own schedule (slip p99 within a tenth of a
    /// second): its requests went out in the second they were planned for,
    /// so a server that passed did so under the full load.
    pub kept_schedule: bool,
}

impl Noise {
    /// From the machine's verdict and the harness's p99 schedule slip
    /// (kept when within [`crate::host::machine::KEPT_SCHEDULE_SLIP_P99_MS`]).
    pub fn new(noisy: bool, slip_p99_ms: f64) -> Noise {
        Noise { noisy, kept_schedule: slip_p99_ms <= crate::host::machine::KEPT_SCHEDULE_SLIP_P99_MS }
    }

    /// Either of two runs (a comparison involves both).
    pub fn either(a: Noise, b: Noise) -> Noise {
        Noise { noisy: a.noisy || b.noisy, kept_schedule: a.kept_schedule && b.kept_schedule }
    }
}

/// Whether `g` cannot be decided under `noise`: a capacity-dependent gate
/// that failed on a noisy machine (the noise may be why), or that passed on
/// a noisy machine whose harness fell behind (the load may not have been
/// offered as planned). A gate that passed while the harness kept the
/// schedule stands: other work only makes a server look worse.
pub fn undecided(g: &GateResult, noise: Noise) -> bool {
    undecided_by(g.passed, g.capacity_dependent, noise)
}

/// [`undecided`] for a gate that is not a `GateResult` (compare's rows).
pub fn undecided_by(passed: bool, capacity_dependent: bool, noise: Noise) -> bool {
    noise.noisy && capacity_dependent && (!passed || !noise.kept_schedule)
}

/// The verdict on a machine that may have been busy: invalid beats
/// everything; a gate that decides (not [`undecided`]) and failed fails the
/// run, so correctness gates always count; otherwise any undecided gate
/// makes the run inconclusive (exit 2, worth a retry); else pass.
pub fn verdict_under(valid: bool, gates: &[GateResult], noise: Noise) -> Verdict {
    if !valid {
        Verdict::Invalid
    } else if gates.iter().any(|g| !g.passed && !undecided(g, noise)) {
        Verdict::Fail
    } else if gates.iter().any(|g| undecided(g, noise)) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
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
            ..Gates::default()
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
            ..Gates::default()
        };
        let m = Measured { totals: &totals, recorder: &rec, goodput_rps: 0.0, audit: None, audit_configured: true };
        let r = evaluate(&g, &m);
        assert_eq!(r.len(), 1);
        assert!(!r[0].passed);
        let m = Measured { audit_configured: false, ..m };
        assert!(evaluate(&g, &m).is_empty());
    }

    fn gate(name: &str, passed: bool, capacity_dependent: bool) -> GateResult {
        GateResult { name: name.into(), limit: 0.0, actual: None, passed, detail: String::new(), capacity_dependent }
    }

    #[test]
    fn a_noisy_machine_makes_failed_speed_gates_unknown_and_nothing_else() {
        let quiet = Noise { noisy: false, kept_schedule: true };
        let noisy = Noise { noisy: true, kept_schedule: true };
        let noisy_and_late = Noise { noisy: true, kept_schedule: false };
        let latency_failed = [gate("latency p99", false, true), gate("audit", true, false)];
        assert_eq!(verdict_under(true, &latency_failed, quiet), Verdict::Fail);
        assert_eq!(verdict_under(true, &latency_failed, noisy), Verdict::Inconclusive);
        assert_eq!(Verdict::Inconclusive.exit_code(), 2);
        // A correctness gate decides whatever the machine did.
        let audit_failed = [gate("latency p99", false, true), gate("audit", false, false)];
        assert_eq!(verdict_under(true, &audit_failed, noisy), Verdict::Fail);
        // A speed gate that passed despite the noise stands...
        let passed = [gate("latency p99", true, true), gate("audit", true, false)];
        assert_eq!(verdict_under(true, &passed, noisy), Verdict::Pass);
        // ...unless the harness itself fell behind its schedule.
        assert_eq!(verdict_under(true, &passed, noisy_and_late), Verdict::Inconclusive);
        assert!(!undecided(&passed[1], noisy_and_late));
        // A late harness on a quiet machine is not this function's business.
        assert_eq!(verdict_under(true, &passed, Noise { noisy: false, kept_schedule: false }), Verdict::Pass);
        assert_eq!(verdict_under(false, &passed, quiet), Verdict::Invalid);
        // Same as the plain verdict when the machine was quiet.
        assert_eq!(verdict_under(true, &latency_failed, quiet), verdict(true, &latency_failed));
    }

    #[test]
    fn dropped_counts_depend_on_speed_only_when_timeouts_explain_the_excess() {
        use crate::outcome::FailureClass::{ConnectRefused, ResponseTimeout};
        use std::collections::BTreeMap;
        let rec = Recorder::new(vec![]);
        let g = Gates {
            max_dropped: Some(1),
            max_first_attempt_failures: Some(0),
            min_throughput_rps: Some(1.0),
            latency: vec![],
            audit_must_pass: false,
            ..Gates::default()
        };
        let totals = Totals {
            dropped: 4,
            dropped_by_class: BTreeMap::from([(ResponseTimeout, 3), (ConnectRefused, 1)]),
            first_attempt_failures: 2,
            first_attempt_failures_by_class: BTreeMap::from([(ConnectRefused, 2)]),
            ..Default::default()
        };
        let m = Measured { totals: &totals, recorder: &rec, goodput_rps: 0.5, audit: None, audit_configured: false };
        let r = evaluate(&g, &m);
        let by = |n: &str| r.iter().find(|g| g.name == n).unwrap().clone();
        // 4 dropped, 3 of them timeouts: the one refusal fits the budget of 1.
        assert!(by("max_dropped").capacity_dependent);
        // Refused connections are not slowness: over budget whatever the machine did.
        assert!(!by("max_first_attempt_failures").capacity_dependent);
        assert!(by("min_throughput_rps").capacity_dependent);
        let noisy = Noise { noisy: true, kept_schedule: true };
        assert_eq!(verdict_under(true, &r, noisy), Verdict::Fail);
    }
}
