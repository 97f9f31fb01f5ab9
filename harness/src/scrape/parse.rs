//! The Prometheus text format (and OpenMetrics text, which the reference
//! server's prometheus-client writes) into the samples a run keeps, with
//! the `prometheus-parse` crate.
//!
//! The crate skips lines it cannot read; Prometheus instead fails the whole
//! scrape, and so do we: an answer with a line that is neither a comment nor
//! a sample, or a sample whose value is not a number, is garbage and the
//! scrape becomes a gap. Histograms and summaries are not kept (a series
//! picks their `_sum` / `_count` samples by name if it wants them).

use std::collections::BTreeMap;

use prometheus_parse::{LineInfo, Scrape, Value};

use super::Sample;
use crate::scenario::SeriesSpec;

/// The samples of `text` that one of `series` picks, in exposition order.
pub fn samples(text: &str, series: &[SeriesSpec]) -> Result<Vec<Sample>, String> {
    let mut any = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ok = match LineInfo::parse(trimmed) {
            LineInfo::Sample { value, .. } => parse_value(value).is_some(),
            _ => false,
        };
        if !ok {
            let shown: String = trimmed.chars().take(60).collect();
            return Err(format!("line {} is not in the Prometheus text format: {shown:?}", i + 1));
        }
        any = true;
    }
    if !any {
        return Err("the answer holds no sample".into());
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in scrape.samples {
        let value = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        // NaN and infinities have no place on a chart (nor in JSON).
        if !value.is_finite() {
            continue;
        }
        let labels: BTreeMap<String, String> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if series.iter().any(|p| picks(p, &s.metric, &labels)) {
            out.push(Sample { name: s.metric, labels, value });
        }
    }
    Ok(out)
}

/// Whether `spec` picks the sample `name{labels}`.
pub fn picks(spec: &SeriesSpec, name: &str, labels: &BTreeMap<String, String>) -> bool {
    spec.name == name && spec.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A sample value as the format writes it (Go's float syntax: NaN, +Inf).
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::default_series;

    /// What the reference server's prometheus-client writes (OpenMetrics text).
    const REFERENCE: &str = "# HELP reference_workers_up Workers ready and not draining.
# TYPE reference_workers_up gauge
reference_workers_up 2
# HELP reference_worker_restarts Workers replaced, by reason.
# TYPE reference_worker_restarts counter
reference_worker_restarts_total{reason=\"crash\"} 1
reference_worker_restarts_total{reason=\"hang\"} 0
# TYPE reference_drain_duration_seconds histogram
reference_drain_duration_seconds_sum 0.0
reference_drain_duration_seconds_count 0
reference_drain_duration_seconds_bucket{le=\"0.005\"} 0
reference_drain_duration_seconds_bucket{le=\"+Inf\"} 0
# TYPE reference_in_flight_requests gauge
reference_in_flight_requests{slot=\"0\"} 3
# EOF
";

    /// HAProxy 2.6's exporter (Prometheus text), a few lines of it.
    const HAPROXY: &str = "# HELP haproxy_server_status Current status of the service, per state label value.
# TYPE haproxy_server_status gauge
haproxy_server_status{proxy=\"shop\",server=\"a\",state=\"DOWN\"} 0
haproxy_server_status{proxy=\"shop\",server=\"a\",state=\"UP\"} 1
haproxy_server_status{proxy=\"shop\",server=\"a\",state=\"DRAIN\"} 0
# TYPE haproxy_server_current_sessions gauge
haproxy_server_current_sessions{proxy=\"shop\",server=\"a\"} 17
haproxy_process_nbthread 2
";

    #[test]
    fn keeps_the_picked_samples_of_both_formats() {
        let got = samples(REFERENCE, &default_series()).unwrap();
        let names: Vec<String> = got.iter().map(|s| format!("{}{:?}={}", s.name, s.labels, s.value)).collect();
        assert_eq!(
            names,
            [
                "reference_workers_up{}=2",
                "reference_worker_restarts_total{\"reason\": \"crash\"}=1",
                "reference_worker_restarts_total{\"reason\": \"hang\"}=0",
                "reference_in_flight_requests{\"slot\": \"0\"}=3",
            ]
        );
        let got = samples(HAPROXY, &default_series()).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[1].labels.get("state").map(String::as_str), Some("UP"));
        assert_eq!(got[3].value, 17.0);
    }

    /// The whole exposition of Debian's HAProxy 2.6.12 (a backend with one
    /// server down and one up), as its exporter wrote it.
    const HAPROXY_FULL: &str = include_str!("testdata/haproxy-2.6.txt");

    #[test]
    fn reads_a_whole_haproxy_exposition() {
        let got = samples(HAPROXY_FULL, &default_series()).unwrap();
        let state = |server: &str, state: &str| {
            got.iter()
                .find(|s| {
                    s.name == "haproxy_server_status"
                        && s.labels.get("server").map(String::as_str) == Some(server)
                        && s.labels.get("state").map(String::as_str) == Some(state)
                })
                .map(|s| s.value)
        };
        assert_eq!((state("a", "DOWN"), state("a", "UP"), state("b", "UP")), (Some(1.0), Some(0.0), Some(1.0)));
        let sessions = got.iter().filter(|s| s.name == "haproxy_server_current_sessions").count();
        assert_eq!(sessions, 2);
    }

    #[test]
    fn a_series_picks_by_labels() {
        let mut spec = default_series().remove(2);
        spec.labels.insert("reason".into(), "hang".into());
        let got = samples(REFERENCE, &[spec]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, 0.0);
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_scrape() {
        let e = samples("<html><body>502 Bad Gateway</body></html>\n", &default_series()).unwrap_err();
        assert!(e.contains("line 1 is not in the Prometheus text format"), "{e}");
        let e = samples("reference_workers_up two\n", &default_series()).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(samples("# only comments\n\n", &default_series()).unwrap_err().contains("no sample"));
        // A valid answer without the picked series is fine: it keeps nothing.
        assert_eq!(samples("other_metric 1\n", &default_series()).unwrap(), vec![]);
    }
}
