//! `target.metrics`: the Prometheus endpoints scraped during the run. Only
//! the shape is checked here (URL, unique labels, interval bounds, series
//! names); whether a URL is loopback needs name resolution, so the run's
//! preparation checks that (drive/run.rs), like the target's own address.

use std::collections::BTreeSet;
use std::time::Duration;

use super::V;
use crate::scenario::duration::format_duration;
use crate::scenario::raw::{RawMetricsEndpoint, RawSeries};
use crate::scenario::{MetricsEndpoint, SeriesKind, SeriesSpec, default_series};

/// Scrapes closer together than this measure the scraper more than the server.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Scrapes further apart than this miss whole faults.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name_ok(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn label_name_ok(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub(super) fn endpoints(v: &mut V, raw: &[RawMetricsEndpoint]) -> Vec<MetricsEndpoint> {
    let mut labels = BTreeSet::new();
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let path = format!("target.metrics[{i}]");
        if e.url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")) {
            // The scraper (scrape/fetch.rs) is a plain-HTTP client of its own,
            // off the shoppers' runtime; admin endpoints are plain HTTP.
            v.err(
                format!("{path}.url"),
                format!("{:?} is not an http:// URL (metrics are scraped over plain HTTP)", e.url),
            );
        } else {
            v.http_url(&format!("{path}.url"), &e.url);
        }
        let label = e.label.trim();
        if label.is_empty() || label.chars().any(char::is_control) {
            v.err(format!("{path}.label"), "must be a non-empty name without control characters, e.g. \"cluster\"");
        } else if !labels.insert(label.to_string()) {
            v.err(format!("{path}.label"), format!("{label:?} is used by another endpoint; labels must be unique"));
        }
        let interval = e.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            v.err(
                format!("{path}.interval"),
                format!(
                    "{} is outside {}..={}",
                    format_duration(interval),
                    format_duration(MIN_INTERVAL),
                    format_duration(MAX_INTERVAL)
                ),
            );
        }
        let series = match &e.series {
            None => default_series(),
            Some(list) => series(v, &path, list),
        };
        out.push(MetricsEndpoint { url: e.url.clone(), label: label.to_string(), interval, series });
    }
    out
}

fn series(v: &mut V, path: &str, list: &[RawSeries]) -> Vec<SeriesSpec> {
    if list.is_empty() {
        v.err(format!("{path}.series"), "is empty; leave it out for the default series, or list some");
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (j, s) in list.iter().enumerate() {
        let p = format!("{path}.series[{j}]");
        if !metric_name_ok(&s.name) {
            v.err(
                format!("{p}.name"),
                format!("{:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", s.name),
            );
        }
        for k in s.labels.keys() {
            if !label_name_ok(k) {
                v.err(format!("{p}.labels.{k}"), "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)");
            }
        }
        let Some(kind) = SeriesKind::from_name(&s.kind) else {
            v.err(format!("{p}.as"), format!("{:?} is not one of {}", s.kind, SeriesKind::NAMES.join(", ")));
            continue;
        };
        if !seen.insert((s.name.clone(), s.labels.clone())) {
            v.err(p.clone(), format!("{:?} with these labels is listed twice", s.name));
        }
        let title = s.title.clone().unwrap_or_else(|| s.name.clone());
        if title.trim().is_empty() {
            v.err(format!("{p}.title"), "must not be empty (leave it out to use the series name)");
        }
        out.push(SeriesSpec { name: s.name.clone(), labels: s.labels.clone(), kind, title });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_grammar() {
        assert!(metric_name_ok("reference_workers_up") && metric_name_ok("a:b") && metric_name_ok("_x1"));
        assert!(!metric_name_ok("") && !metric_name_ok("1x") && !metric_name_ok("a-b") && !metric_name_ok("a b"));
        assert!(label_name_ok("slot") && !label_name_ok("a:b") && !label_name_ok("9"));
    }
}
