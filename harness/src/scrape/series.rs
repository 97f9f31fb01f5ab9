//! A run's scrapes as the report's chart data: one chart per series title,
//! one line per label set, counters as per-second rates or as markers, and
//! the failed scrapes as gaps. Pure; the report draws what this returns.
//!
//! Counters follow Prometheus' `rate()`: a value lower than the previous one
//! means the process restarted and the counter counts again from zero, so
//! the increase is the new value (never a negative rate). A rate needs two
//! scrapes in a row: after a gap the line starts again one scrape later.
//! Restart markers compare across gaps (a restart during a gap still shows,
//! at the first scrape after it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{EndpointInfo, ScrapeLog, ScrapeRecord};
use crate::scenario::{SeriesKind, SeriesSpec};

/// Beyond this many lines, lines that stayed at zero are left out (HAProxy's
/// state has one line per server and state, most of them 0).
const QUIET_LINES_KEPT: usize = 6;

/// One label set of a series over the run: (seconds since start, value); None = no value (a gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesLine {
    pub name: String,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A counter's increase between two scrapes, drawn at the later one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub t_s: f64,
    /// The label set, e.g. "reason=crash": the chart's row.
    pub row: String,
    pub count: f64,
}

/// One chart of the server's side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerChart {
    pub endpoint: String,
    pub title: String,
    /// "gauge", "rate" or "events" (of the chart's first series).
    pub kind: String,
    pub lines: Vec<SeriesLine>,
    /// Events charts: every label set seen, one row each, and the increases.
    pub rows: Vec<String>,
    pub markers: Vec<Marker>,
    /// Failed scrapes: (from, to) seconds, from the failed scrape to the next good one.
    pub gaps: Vec<(f64, f64)>,
    /// Why the scrapes failed, each reason once, e.g. "no complete answer within 1000 ms".
    pub gap_reasons: Vec<String>,
}

/// The increase of a counter from `prev` to `now`, a decrease being a reset.
pub fn increase(prev: f64, now: f64) -> f64 {
    if now >= prev { now - prev } else { now }
}

/// "slot=1", "reason=crash"; the labels the series does not fix, in order.
fn label_text(spec: &SeriesSpec, labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| !spec.labels.contains_key(*k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label set's sort key: numbers as numbers, so slot 10 comes after slot 9.
fn label_order(labels: &BTreeMap<String, String>) -> Vec<(&str, Option<u64>, &str)> {
    labels.iter().map(|(k, v)| (k.as_str(), v.parse::<u64>().ok(), v.as_str())).collect()
}

/// The gaps of one endpoint's records (in time order): each failed scrape until the next scrape.
fn gaps(records: &[&ScrapeRecord], interval_s: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, r) in records.iter().enumerate().filter(|(_, r)| !r.ok) {
        let from = r.t_ms / 1e3;
        let to = records.get(i + 1).map_or(from + interval_s, |n| n.t_ms / 1e3);
        match out.last_mut() {
            Some(last) if last.1 >= from => last.1 = to,
            _ => out.push((from, to)),
        }
    }
    out
}

/// Every chart of one run, in the order the endpoints list their series.
/// With several endpoints (a fleet's hosts share the default titles) each
/// title is prefixed with its endpoint's label, so no chart hides another.
pub fn charts(log: &ScrapeLog) -> Vec<ServerChart> {
    let mut out = Vec::new();
    for e in &log.endpoints {
        let mut charts = endpoint_charts(e, log);
        if log.endpoints.len() > 1 {
            for c in &mut charts {
                c.title = format!("{}: {}", e.label, c.title);
            }
        }
        out.extend(charts);
    }
    out
}

fn endpoint_charts(e: &EndpointInfo, log: &ScrapeLog) -> Vec<ServerChart> {
    let mut records: Vec<&ScrapeRecord> = log.records.iter().filter(|r| r.endpoint == e.label).collect();
    records.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
    let specs: Vec<SeriesSpec> = e.series.iter().filter_map(|s| s.spec()).collect();
    let gaps = gaps(&records, e.interval_ms as f64 / 1e3);
    let mut gap_reasons: Vec<String> = Vec::new();
    for r in records.iter().filter(|r| !r.ok) {
        let reason = r.error.clone().unwrap_or_default();
        if !gap_reasons.contains(&reason) {
            gap_reasons.push(reason);
        }
    }
    let mut titles: Vec<&str> = Vec::new();
    for s in &specs {
        if !titles.contains(&s.title.as_str()) {
            titles.push(&s.title);
        }
    }
    let mut out = Vec::new();
    for title in titles {
        let group: Vec<&SeriesSpec> = specs.iter().filter(|s| s.title == title).collect();
        let several_names = group.iter().any(|s| s.name != group[0].name);
        let mut chart = ServerChart {
            endpoint: e.label.clone(),
            title: title.to_string(),
            kind: group[0].kind.as_str().to_string(),
            lines: Vec::new(),
            rows: Vec::new(),
            markers: Vec::new(),
            gaps: gaps.clone(),
            gap_reasons: gap_reasons.clone(),
        };
        for spec in group {
            // Label sets in label order: exporters (prometheus-client's hash
            // maps) write them in any order, and the legend should not shuffle.
            let mut keys: Vec<BTreeMap<String, String>> = Vec::new();
            for s in records.iter().flat_map(|r| &r.samples).filter(|s| super::parse::picks(spec, &s.name, &s.labels)) {
                if !keys.contains(&s.labels) {
                    keys.push(s.labels.clone());
                }
            }
            keys.sort_by(|a, b| label_order(a).cmp(&label_order(b)));
            for key in keys {
                let labels = label_text(spec, &key);
                let short = spec.name.split_once('_').map_or(spec.name.as_str(), |(_, rest)| rest);
                let name = match (several_names, labels.is_empty()) {
                    (true, true) => short.to_string(),
                    (true, false) => format!("{short} {labels}"),
                    (false, true) => spec.name.clone(),
                    (false, false) => labels.clone(),
                };
                let value_at = |r: &ScrapeRecord| {
                    r.samples.iter().find(|s| s.name == spec.name && s.labels == key).map(|s| s.value)
                };
                match spec.kind {
                    SeriesKind::Gauge => {
                        let points = records.iter().map(|r| (r.t_ms / 1e3, value_at(r))).collect();
                        chart.lines.push(SeriesLine { name, points });
                    }
                    SeriesKind::Rate => {
                        let mut prev: Option<(f64, f64)> = None;
                        let mut points = Vec::with_capacity(records.len());
                        for r in &records {
                            let t = r.t_ms / 1e3;
                            let now = value_at(r);
                            let rate = match (prev, now) {
                                (Some((t0, v0)), Some(v)) if t > t0 => Some(increase(v0, v) / (t - t0)),
                                _ => None,
                            };
                            points.push((t, rate));
                            prev = now.map(|v| (t, v));
                        }
                        chart.lines.push(SeriesLine { name, points });
                    }
                    SeriesKind::Events => {
                        let row = if labels.is_empty() { spec.name.clone() } else { labels };
                        let mut prev: Option<f64> = None;
                        for r in &records {
                            let Some(v) = value_at(r) else { continue };
                            if let Some(p) = prev {
                                let n = increase(p, v);
                                if n > 0.0 {
                                    chart.markers.push(Marker { t_s: r.t_ms / 1e3, row: row.clone(), count: n });
                                }
                            }
                            prev = Some(v);
                        }
                        if !chart.rows.contains(&row) {
                            chart.rows.push(row);
                        }
                    }
                }
            }
        }
        if chart.lines.len() > QUIET_LINES_KEPT {
            chart.lines.retain(|l| l.points.iter().any(|(_, v)| v.is_some_and(|v| v != 0.0)));
        }
        if !chart.lines.is_empty() || !chart.rows.is_empty() {
            out.push(chart);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::{Sample, SeriesInfo};

    fn info(series: &[(&str, &str, &str)]) -> EndpointInfo {
        EndpointInfo {
            label: "cluster".into(),
            url: "http://127.0.0.1:1/metrics".into(),
            interval_ms: 1000,
            series: series
                .iter()
                .map(|(n, k, t)| SeriesInfo {
                    name: n.to_string(),
                    labels: BTreeMap::new(),
                    kind: k.to_string(),
                    title: t.to_string(),
                })
                .collect(),
            scrapes: 0,
            gaps: 0,
            scraper_cpu_ms: 0.0,
            gap_reasons: Vec::new(),
        }
    }

    fn scrape(t_s: f64, samples: &[(&str, &str, f64)]) -> ScrapeRecord {
        ScrapeRecord {
            t_ms: t_s * 1e3,
            endpoint: "cluster".into(),
            took_ms: 1.0,
            ok: true,
            error: None,
            samples: samples
                .iter()
                .map(|(n, reason, v)| Sample {
                    name: n.to_string(),
                    labels: if reason.is_empty() {
                        BTreeMap::new()
                    } else {
                        BTreeMap::from([("reason".to_string(), reason.to_string())])
                    },
                    value: *v,
                })
                .collect(),
        }
    }

    fn gap(t_s: f64) -> ScrapeRecord {
        ScrapeRecord { ok: false, error: Some("timed out".into()), ..scrape(t_s, &[]) }
    }

    #[test]
    fn a_counter_reset_counts_from_zero_never_negative() {
        assert_eq!(increase(10.0, 15.0), 5.0);
        assert_eq!(increase(10.0, 3.0), 3.0, "restarted process: 3 since the restart");
        let log = ScrapeLog {
            endpoints: vec![info(&[("req_total", "rate", "requests")])],
            records: vec![
                scrape(0.0, &[("req_total", "", 100.0)]),
                scrape(1.0, &[("req_total", "", 150.0)]),
                scrape(2.0, &[("req_total", "", 20.0)]),
                gap(3.0),
                scrape(4.0, &[("req_total", "", 60.0)]),
                scrape(5.0, &[("req_total", "", 90.0)]),
            ],
        };
        let c = charts(&log);
        assert_eq!(c.len(), 1);
        let values: Vec<Option<f64>> = c[0].lines[0].points.iter().map(|p| p.1).collect();
        // No rate at the start, none at the gap nor right after it (a rate needs two scrapes in a row).
        assert_eq!(values, vec![None, Some(50.0), Some(20.0), None, None, Some(30.0)]);
        assert_eq!(c[0].gaps, vec![(3.0, 4.0)]);
        assert_eq!(c[0].gap_reasons, vec!["timed out".to_string()]);
    }

    #[test]
    fn restarts_become_markers_by_reason_even_across_a_gap() {
        let r = "restarts_total";
        let log = ScrapeLog {
            endpoints: vec![info(&[
                (r, "events", "restarts"),
                ("up", "gauge", "workers"),
                ("draining", "gauge", "workers"),
            ])],
            records: vec![
                scrape(0.0, &[(r, "crash", 0.0), (r, "hang", 0.0), ("up", "", 2.0), ("draining", "", 0.0)]),
                scrape(1.0, &[(r, "crash", 1.0), (r, "hang", 0.0), ("up", "", 1.0), ("draining", "", 0.0)]),
                gap(2.0),
                gap(3.0),
                scrape(4.0, &[(r, "crash", 1.0), (r, "hang", 1.0), ("up", "", 2.0), ("draining", "", 1.0)]),
            ],
        };
        let c = charts(&log);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].rows, vec!["reason=crash", "reason=hang"]);
        assert_eq!(
            c[0].markers,
            vec![
                Marker { t_s: 1.0, row: "reason=crash".into(), count: 1.0 },
                Marker { t_s: 4.0, row: "reason=hang".into(), count: 1.0 }
            ]
        );
        assert_eq!(c[0].gaps, vec![(2.0, 4.0)]);
        // Two series on one chart; the gap is None, never 0.
        assert_eq!(c[1].lines.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["up", "draining"]);
        assert_eq!(
            c[1].lines[0].points.iter().map(|p| p.1).collect::<Vec<_>>(),
            [Some(2.0), Some(1.0), None, None, Some(2.0)]
        );
    }

    #[test]
    fn endpoints_sharing_titles_keep_a_chart_each() {
        let mut b = info(&[("up", "gauge", "workers")]);
        b.label = "host b".into();
        let mut b_scrape = scrape(0.0, &[("up", "", 3.0)]);
        b_scrape.endpoint = "host b".into();
        let log = ScrapeLog {
            endpoints: vec![info(&[("up", "gauge", "workers")]), b],
            records: vec![scrape(0.0, &[("up", "", 2.0)]), b_scrape],
        };
        let c = charts(&log);
        assert_eq!(c.iter().map(|c| c.title.as_str()).collect::<Vec<_>>(), ["cluster: workers", "host b: workers"]);
        assert_eq!(c[1].lines[0].points, vec![(0.0, Some(3.0))]);
    }

    #[test]
    fn slots_are_in_numeric_order() {
        let slot = |n: &str| BTreeMap::from([("slot".to_string(), n.to_string())]);
        let mut keys = vec![slot("10"), slot("2"), slot("x"), slot("1")];
        keys.sort_by(|a, b| label_order(a).cmp(&label_order(b)));
        assert_eq!(keys, vec![slot("x"), slot("1"), slot("2"), slot("10")]);
    }

    #[test]
    fn a_series_nobody_exposes_draws_no_chart() {
        let log = ScrapeLog {
            endpoints: vec![info(&[("haproxy_server_status", "gauge", "state"), ("up", "gauge", "workers")])],
            records: vec![scrape(0.0, &[("up", "", 1.0)])],
        };
        let c = charts(&log);
        assert_eq!(c.iter().map(|c| c.title.as_str()).collect::<Vec<_>>(), ["workers"]);
    }
}
