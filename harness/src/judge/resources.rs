//! The soak's gates: the target's resident memory and open descriptors must
//! stay flat, judged by the slope host/resources.rs fitted through the run's
//! samples. Pure, unit-tested.
//!
//! A limit the run could not observe fails and says why (an external target
//! has no process tree to read; a run too short has too few samples after
//! the warm-up): a soak that measured nothing has shown nothing flat.

use crate::host::resources::{Resources, Trend};
use crate::judge::gates::GateResult;
use crate::scenario::Gates;

pub const RSS_GATE: &str = "max_server_rss_growth_mib_per_hour";
pub const FDS_GATE: &str = "max_server_fd_growth_per_hour";

/// The resource gates the scenario sets, in a stable order.
pub fn evaluate(g: &Gates, r: &Resources) -> Vec<GateResult> {
    let server = r.server.as_ref();
    let mut out = Vec::new();
    if let Some(max) = g.max_server_rss_growth_mib_per_hour {
        out.push(gate(
            RSS_GATE,
            max,
            server,
            |t| t.rss_slope_mib_per_hour,
            |t, slope| {
                format!(
                    "the server's resident memory grew {slope:.1} MiB/h (least squares over {} samples from {:.0} s; \
                 {:.1} MiB then, {:.1} MiB at the end, peak {:.1}), at most {max} allowed",
                    t.samples, t.from_s, t.rss_first_mib, t.rss_last_mib, t.rss_max_mib
                )
            },
        ));
    }
    if let Some(max) = g.max_server_fd_growth_per_hour {
        out.push(gate(
            FDS_GATE,
            max,
            server,
            |t| t.fds_slope_per_hour,
            |t, slope| {
                format!(
                    "the server's open file descriptors grew {slope:.1}/h (least squares over {} samples from {:.0} s; \
                 {} then, {} at the end, peak {}), at most {max} allowed",
                    t.samples, t.from_s, t.fds_first, t.fds_last, t.fds_max
                )
            },
        ));
    }
    out
}

/// One slope gate: passes when `slope` of the server's trend is at most
/// `max`; fails, saying why, when there is no slope to judge.
fn gate(
    name: &str,
    max: f64,
    server: Option<&Trend>,
    slope: impl Fn(&Trend) -> Option<f64>,
    detail: impl Fn(&Trend, f64) -> String,
) -> GateResult {
    let (actual, passed, detail) = match server.and_then(|t| slope(t).map(|s| (t, s))) {
        Some((t, s)) => (Some(s), s <= max, detail(t, s)),
        None => (None, false, unobserved(server)),
    };
    GateResult { name: name.into(), limit: max, actual, passed, detail, capacity_dependent: false }
}

fn unobserved(t: Option<&Trend>) -> String {
    match t {
        None => "not observed: the harness had no target process to read (an external target, or /proc unreadable)"
            .to_string(),
        Some(t) => format!(
            "not observed: {} sample(s) after the warm-up, at least {} needed (a longer run, or a shorter interval)",
            t.samples,
            crate::host::resources::MIN_SAMPLES
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trend(rss: Option<f64>, fds: Option<f64>) -> Trend {
        Trend {
            samples: 20,
            from_s: 3.0,
            rss_first_mib: 10.0,
            rss_last_mib: 12.0,
            rss_max_mib: 14.0,
            rss_slope_mib_per_hour: rss,
            fds_first: 10,
            fds_last: 10,
            fds_max: 12,
            fds_slope_per_hour: fds,
        }
    }

    fn gates() -> Gates {
        Gates {
            max_server_rss_growth_mib_per_hour: Some(50.0),
            max_server_fd_growth_per_hour: Some(20.0),
            ..Gates::default()
        }
    }

    #[test]
    fn flat_passes_growth_fails() {
        let r = Resources { interval_s: 1.0, harness: None, server: Some(trend(Some(4.0), Some(-1.0))) };
        let out = evaluate(&gates(), &r);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|g| g.passed), "{out:?}");
        let r = Resources { interval_s: 1.0, harness: None, server: Some(trend(Some(900.0), Some(3600.0))) };
        let out = evaluate(&gates(), &r);
        assert!(out.iter().all(|g| !g.passed), "{out:?}");
        assert!(out[0].detail.contains("900.0 MiB/h"), "{}", out[0].detail);
    }

    #[test]
    fn what_was_not_observed_fails() {
        let r = Resources { interval_s: 1.0, harness: None, server: None };
        let out = evaluate(&gates(), &r);
        assert!(out.iter().all(|g| !g.passed && g.detail.contains("no target process")), "{out:?}");
        let r = Resources { interval_s: 1.0, harness: None, server: Some(trend(None, None)) };
        let out = evaluate(&gates(), &r);
        assert!(out.iter().all(|g| !g.passed && g.detail.contains("sample(s) after the warm-up")), "{out:?}");
    }

    #[test]
    fn no_limit_no_gate() {
        let r = Resources { interval_s: 1.0, harness: None, server: None };
        assert!(evaluate(&Gates::default(), &r).is_empty());
    }
}
