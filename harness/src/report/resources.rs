//! The report's "Memory and file descriptors" section: per run, the
//! target's and the harness's resident memory and open descriptors over
//! time (from `resources.csv`), on the same time axis and fault bands as the
//! other time charts, with the slope per hour the judge fitted and the
//! bound the scenario set. A soak reads flat here, or shows what grew.
//!
//! Not for: sampling or judging (host/resources.rs, judge/resources.rs).

use anyhow::{Result, anyhow};
use maud::{Markup, PreEscaped, html};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::charts::{self, TIME_CHART, TimeAxes};
use super::model::RunData;
use crate::host::resources::{Resources, Sample, Trend};

/// One run's samples and trends, carried in report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceData {
    /// `(t_s, harness rss MiB, harness fds, server rss MiB, server fds)`.
    pub samples: Vec<ResourcePoint>,
    pub summary: Resources,
    /// The scenario's bounds, when it gated them (MiB/h, descriptors/h).
    #[serde(default)]
    pub rss_limit: Option<f64>,
    #[serde(default)]
    pub fds_limit: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResourcePoint {
    pub t_s: f64,
    pub harness_rss_mib: f64,
    pub harness_fds: u64,
    pub server_rss_mib: Option<f64>,
    pub server_fds: Option<u64>,
}

impl ResourcePoint {
    pub fn from_sample(s: &Sample) -> ResourcePoint {
        let mib = |kib: u64| kib as f64 / 1024.0;
        ResourcePoint {
            t_s: s.t_s,
            harness_rss_mib: mib(s.harness.rss_kib),
            harness_fds: s.harness.fds,
            server_rss_mib: s.server.map(|u| mib(u.rss_kib)),
            server_fds: s.server.map(|u| u.fds),
        }
    }
}

const SERVER: RGBColor = RGBColor(49, 130, 189);
const HARNESS: RGBColor = RGBColor(230, 85, 13);

/// `memory == true`: resident MiB; else open descriptors. Both sides.
pub fn chart(run: &RunData, axes: &TimeAxes, memory: bool) -> Result<String> {
    let Some(data) = &run.resources else { return Ok(String::new()) };
    let pick = |p: &ResourcePoint| -> (Option<f64>, f64) {
        if memory {
            (p.server_rss_mib, p.harness_rss_mib)
        } else {
            (p.server_fds.map(|v| v as f64), p.harness_fds as f64)
        }
    };
    let top = data.samples.iter().map(|p| pick(p).0.unwrap_or(0.0).max(pick(p).1)).fold(1.0, f64::max) * 1.15;
    let (what, unit) = if memory { ("memory", "MiB resident") } else { ("descriptors", "open files") };
    charts::svg_chart(TIME_CHART, |root| {
        let mut chart = charts::linear_time_chart(root, run, axes, what, unit, top)?;
        type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
        let lines: [Line<'_>; 2] = [
            (
                "server (all its processes)",
                SERVER,
                data.samples.iter().filter_map(|p| pick(p).0.map(|v| (p.t_s, v))).collect(),
            ),
            ("harness", HARNESS, data.samples.iter().map(|p| (p.t_s, pick(p).1)).collect()),
        ];
        for (name, colour, points) in lines {
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| anyhow!("{what} series {name}: {e}"))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        charts::legend(&mut chart, SeriesLabelPosition::LowerRight, 14, what)?;
        charts::label_faults(root, &chart, &run.faults, top)
    })
}

/// "grew 3.1 MiB/h (bound 50)" / "no slope (too few samples)".
fn slope_text(slope: Option<f64>, unit: &str, limit: Option<f64>) -> String {
    let bound = limit.map(|l| format!(", bound {l} {unit}")).unwrap_or_default();
    match slope {
        Some(s) => format!("{s:+.1} {unit}{bound}"),
        None => format!("no slope: too few samples after the warm-up{bound}"),
    }
}

fn trend_line(who: &str, t: Option<&Trend>, d: &ResourceData) -> Markup {
    html! {
        li {
            strong { (who) } ": "
            @match t {
                Some(t) => {
                    "memory " (format!("{:.1}", t.rss_first_mib)) " → " (format!("{:.1}", t.rss_last_mib))
                    " MiB (peak " (format!("{:.1}", t.rss_max_mib)) "), slope "
                    (slope_text(t.rss_slope_mib_per_hour, "MiB/h", if who == "server" { d.rss_limit } else { None }))
                    "; descriptors " (t.fds_first) " → " (t.fds_last) " (peak " (t.fds_max) "), slope "
                    (slope_text(t.fds_slope_per_hour, "/h", if who == "server" { d.fds_limit } else { None }))
                }
                None => "not sampled (no process the harness could read)",
            }
        }
    }
}

/// The section, or nothing when no run has samples (older run folders).
pub fn section(runs: &[RunData], axes: &TimeAxes) -> Result<Markup> {
    if runs.iter().all(|r| r.resources.is_none()) {
        return Ok(html! {});
    }
    let mut rows = Vec::new();
    for run in runs {
        rows.push((chart(run, axes, true)?, chart(run, axes, false)?));
    }
    Ok(html! {
        h2 { "Memory and file descriptors" }
        p.caption {
            "The target's processes together (master and workers) and the harness, sampled every few seconds \
             (resources.csv). A worker replaced by a fault starts small, so a cluster's memory saw-tooths; what \
             matters is the slope, a least-squares line through every sample after the first tenth of the run \
             (warm-up). A soak passes when both slopes stay within the scenario's bounds."
        }
        @for (run, (memory, fds)) in runs.iter().zip(&rows) {
            @if let Some(d) = &run.resources {
                div.row {
                    figure data-run=(run.label) data-chart="memory" {
                        figcaption { (run.label) ": resident memory" }
                        (PreEscaped(memory))
                    }
                    figure data-run=(run.label) data-chart="descriptors" {
                        figcaption { (run.label) ": open file descriptors" }
                        (PreEscaped(fds))
                    }
                }
                ul.trends {
                    (trend_line("server", d.summary.server.as_ref(), d))
                    (trend_line("harness", d.summary.harness.as_ref(), d))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_text_says_the_bound_and_the_missing() {
        assert_eq!(slope_text(Some(3.04), "MiB/h", Some(50.0)), "+3.0 MiB/h, bound 50 MiB/h");
        assert_eq!(slope_text(Some(-2.0), "/h", None), "-2.0 /h");
        assert!(slope_text(None, "/h", None).starts_with("no slope"));
    }
}
