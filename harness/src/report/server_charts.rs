//! The server's side of the report: one chart per series title from the
//! run's `server_metrics.jsonl` (scrape/series.rs made the lines, markers
//! and gaps), on the same time axis and with the same fault bands as the
//! shoppers' charts above them. Failed scrapes are shaded as gaps and the
//! lines break there, so a missing value is never drawn as zero.
//!
//! Not for: computing rates or restarts (scrape/series.rs) nor the page (html.rs).

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::charts::{
    self, FONT, LinearTimeChart, TIME_CHART, TimeAxes, label_faults, legend, linear_time_chart, no_data, segments,
    svg_chart, time_chart,
};
use super::model::RunData;
use crate::scrape::series::ServerChart;

const GAP: RGBColor = RGBColor(214, 39, 40);
const LINE_COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// A restart reason's colour: crash red, hang orange, rolling blue, a drain on its own green.
fn row_colour(row: &str, i: usize) -> RGBColor {
    match row.rsplit('=').next().unwrap_or(row) {
        "crash" => RGBColor(214, 39, 40),
        "hang" => RGBColor(255, 127, 14),
        "rolling" => RGBColor(31, 119, 180),
        "sigterm" => RGBColor(44, 160, 44),
        _ => LINE_COLOURS[i % LINE_COLOURS.len()],
    }
}

/// The charts' titles in page order: as the runs list them, each once.
pub fn titles(runs: &[RunData]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in runs.iter().flat_map(|r| &r.server) {
        if !out.contains(&c.title) {
            out.push(c.title.clone());
        }
    }
    out
}

/// The largest value of a title's lines over every run, so both runs share the y axis.
fn y_max(runs: &[RunData], title: &str) -> f64 {
    let hi = runs
        .iter()
        .flat_map(|r| &r.server)
        .filter(|c| c.title == title)
        .flat_map(|c| &c.lines)
        .flat_map(|l| &l.points)
        .filter_map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    (hi * 1.15).ceil().max(1.0)
}

/// Shade the failed scrapes (drawn after the fault bands, before the data).
fn shade_gaps(chart: &mut LinearTimeChart<'_, '_>, c: &ServerChart, y_max: f64) -> Result<()> {
    if c.gaps.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(c.gaps.iter().map(|&(a, b)| Rectangle::new([(a, 0.0), (b, y_max)], GAP.mix(0.15).filled())))
        .map_err(|e| anyhow!("scrape gaps: {e}"))?
        .label("no data (scrape failed)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], GAP.mix(0.3).filled()));
    Ok(())
}

/// One chart of one run: lines (gauges, rates) or restart markers.
pub fn server_chart(
    run: &RunData,
    c: Option<&ServerChart>,
    title: &str,
    axes: &TimeAxes,
    y_max: f64,
) -> Result<String> {
    svg_chart(TIME_CHART, |root| {
        let Some(c) = c else {
            let chart = linear_time_chart(root, run, axes, title, "", 1.0)?;
            no_data(root, "not scraped for this run")?;
            return label_faults(root, &chart, &run.faults, 1.0);
        };
        if c.kind == "events" {
            return markers(root, run, c, axes);
        }
        let y_desc = if c.kind == "rate" { "per second" } else { "" };
        let mut chart = linear_time_chart(root, run, axes, title, y_desc, y_max)?;
        shade_gaps(&mut chart, c, y_max)?;
        for (i, line) in c.lines.iter().enumerate() {
            let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
            let style = colour.stroke_width(2);
            let segs = segments(line.points.iter().copied(), 0.0);
            let mut labelled = false;
            for seg in segs {
                // A lone value between gaps is a dot, not an invisible line.
                let drawn = if seg.len() == 1 {
                    chart.draw_series(seg.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                } else {
                    chart.draw_series(LineSeries::new(seg, style))
                }
                .map_err(|e| anyhow!("{title} series {}: {e}", line.name))?;
                if !labelled {
                    labelled = true;
                    drawn
                        .label(line.name.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                }
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight, 13, title)?;
        label_faults(root, &chart, &run.faults, y_max)
    })
}

/// A counter's increases as markers, one row per label set (restart reason).
fn markers(root: &charts::Area<'_>, run: &RunData, c: &ServerChart, axes: &TimeAxes) -> Result<()> {
    let rows = c.rows.len().max(1) as f64;
    let y_max = rows + 0.5;
    let mut chart = time_chart(root, run, axes, &c.title, "", y_max, false)?;
    shade_gaps(&mut chart, c, y_max)?;
    for (i, row) in c.rows.iter().enumerate() {
        let y = rows - i as f64;
        let colour = row_colour(row, i);
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(0.0, y), (axes.duration_s, y)], colour.mix(0.25))))
            .map_err(|e| anyhow!("marker row: {e}"))?;
        let (px, py) = chart.backend_coord(&(0.0, y));
        root.draw(&Text::new(row.clone(), (px + 4, py - 16), (FONT, 13).into_font().color(&colour)))
            .map_err(|e| anyhow!("marker row label: {e}"))?;
        let here: Vec<_> = c.markers.iter().filter(|m| &m.row == row).collect();
        chart
            .draw_series(here.iter().map(|m| TriangleMarker::new((m.t_s, y), 7, colour.filled())))
            .map_err(|e| anyhow!("markers: {e}"))?;
        for m in here.iter().filter(|m| m.count > 1.0) {
            let (mx, my) = chart.backend_coord(&(m.t_s, y));
            root.draw(&Text::new(format!("×{}", m.count), (mx + 6, my - 4), (FONT, 12).into_font().color(&colour)))
                .map_err(|e| anyhow!("marker count: {e}"))?;
        }
    }
    if c.markers.is_empty() {
        let (w, _) = root.dim_in_pixel();
        root.draw(&Text::new("none", (w as i32 / 2, 60), (FONT, 14).into_font().color(&BLACK.mix(0.5))))
            .map_err(|e| anyhow!("chart text: {e}"))?;
    }
    if !c.gaps.is_empty() {
        legend(&mut chart, SeriesLabelPosition::LowerRight, 13, &c.title)?;
    }
    label_faults(root, &chart, &run.faults, y_max)
}

/// Per title (page order), one SVG per run.
pub fn draw(runs: &[RunData], axes: &TimeAxes) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for title in titles(runs) {
        let y = y_max(runs, &title);
        let mut svgs = Vec::with_capacity(runs.len());
        for run in runs {
            let c = run.server.iter().find(|c| c.title == title);
            svgs.push(server_chart(run, c, &title, axes, y)?);
        }
        out.push((title, svgs));
    }
    Ok(out)
}
