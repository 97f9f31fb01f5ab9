//! The report's charts as inline SVG strings, drawn with plotters' SVG
//! backend (text is SVG `<text>`, so no font files are read).
//!
//! Time charts are drawn one per run with shared axes, so runs can be compared
//! by eye, and every fault of the run is shaded on each of them. The spectrum
//! puts all runs on one chart. Not for: deciding anything (the verdict is
//! computed elsewhere) or layout of the page (html.rs).

use std::ops::Range;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::model::{FaultRow, RunData, SecondPoint};
use crate::judge::verdict::fmt_ms;
use crate::outcome::FailureClass;

/// Size of one time chart (two sit side by side on the page).
pub const TIME_CHART: (u32, u32) = (680, 280);
/// Size of the spectrum chart (full width).
pub const SPECTRUM_CHART: (u32, u32) = (1360, 440);

pub(super) const FONT: &str = "sans-serif";
/// Room above each time chart's plotting area for three rows of fault names
/// (label_rows), so they never sit under the legend or the data. Chart
/// titles are the HTML figure captions.
const FAULT_LABEL_ROOM: u32 = 52;
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(150, 150, 150);
const FAILED: RGBColor = RGBColor(214, 39, 40);
const OK: RGBColor = RGBColor(44, 160, 44);
const REFUSED: RGBColor = RGBColor(140, 140, 200);
const FAULT: RGBColor = RGBColor(148, 103, 189);
const ACTIVE: RGBColor = RGBColor(23, 128, 140);
const OTHER_WORK: RGBColor = RGBColor(90, 90, 90);
/// Seconds in which other work took less of the machine than this are not shaded.
const OTHER_WORK_VISIBLE: f64 = 0.05;
/// One colour per run on shared charts, in run order.
pub const RUN_COLOURS: [RGBColor; 4] =
    [RGBColor(230, 85, 13), RGBColor(49, 130, 189), RGBColor(49, 163, 84), RGBColor(117, 107, 177)];

/// Failure classes in warm, distinct colours (stack order = FailureClass::ALL).
fn class_colour(class: FailureClass) -> RGBColor {
    match class {
        FailureClass::ConnectRefused => RGBColor(214, 39, 40),
        FailureClass::ConnectTimeout => RGBColor(255, 152, 150),
        FailureClass::TlsHandshakeFailed => RGBColor(148, 103, 189),
        FailureClass::TlsCertificate => RGBColor(197, 176, 213),
        FailureClass::ResetBeforeResponse => RGBColor(140, 86, 75),
        FailureClass::ClosedBeforeResponse => RGBColor(227, 119, 194),
        FailureClass::TruncatedBody => RGBColor(188, 189, 34),
        FailureClass::ResponseTimeout => RGBColor(255, 127, 14),
        FailureClass::ServerError => RGBColor(127, 39, 4),
        FailureClass::UnexpectedStatus => RGBColor(196, 156, 148),
        FailureClass::InvalidBody => RGBColor(247, 182, 210),
        FailureClass::ProtocolError => RGBColor(99, 99, 99),
        FailureClass::LocalError => RGBColor(23, 190, 207),
    }
}

/// Hex colour of a run, for the HTML legend next to the charts.
pub fn run_colour_hex(index: usize) -> String {
    let c = RUN_COLOURS[index % RUN_COLOURS.len()];
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Axis ranges shared by the time charts of all runs.
#[derive(Debug, Clone)]
pub struct TimeAxes {
    pub duration_s: f64,
    pub latency_ms: Range<f64>,
    pub rate_max: f64,
    pub failure_rate_max: f64,
    pub active_max: f64,
}

impl TimeAxes {
    pub fn for_runs(runs: &[RunData]) -> Self {
        let points = || runs.iter().flat_map(|r| r.seconds.iter());
        let duration_s = points().map(|p| p.t_s + 1.0).fold(1.0, f64::max);
        let duration_s = runs.iter().flat_map(|r| r.faults.iter()).map(fault_end).fold(duration_s, f64::max);
        let lat = || {
            points()
                .flat_map(|p| [p.p50_ms, p.p99_ms, p.max_ms, p.failed_ms])
                .flatten()
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        let lo = lat().fold(f64::INFINITY, f64::min);
        let hi = lat().fold(0.0, f64::max);
        let latency_ms = log_range(lo, hi);
        let rate_max = points().map(|p| (p.ok + p.refused + p.failed()) as f64).fold(1.0, f64::max) * 1.1;
        // At least 5 so a run without failures still gets whole-number ticks.
        let failure_rate_max = points().map(|p| p.failed() as f64).fold(5.0, f64::max) * 1.15;
        let active_max = points().map(|p| p.active as f64).fold(1.0, f64::max) * 1.1;
        TimeAxes { duration_s, latency_ms, rate_max, failure_rate_max, active_max }
    }
}

/// A log axis range covering lo..hi from one power of ten to another, so
/// every decade gets a label and no other labels are needed (plotters fills
/// short log ranges with 200, 300, ... 900 labels that run into each other).
fn log_range(lo: f64, hi: f64) -> Range<f64> {
    if !lo.is_finite() || hi <= 0.0 {
        return 0.1..1000.0;
    }
    let lo = 10f64.powf(lo.max(0.001).log10().floor());
    let hi = 10f64.powf((hi * 1.2).log10().ceil()).max(lo * 10.0);
    lo..hi
}

/// Label count for a log axis from `log_range`: one per decade.
fn decade_labels(range: &Range<f64>) -> usize {
    (range.end / range.start).log10().round().max(1.0) as usize + 1
}

fn fault_end(f: &FaultRow) -> f64 {
    f.recovered_s.or(f.end_s).unwrap_or(f.start_s).max(f.start_s)
}

/// An axis tick: whole numbers without decimals, anything else with one.
pub fn fmt_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// The label of a percentile on the "nines" axis: 50%, 90%, 99.9%...
pub fn fmt_percentile(p: f64) -> String {
    let s = format!("{p:.5}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(super) fn svg_chart(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("chart background: {e}"))?;
        draw(&root)?;
        root.present().map_err(|e| anyhow!("chart output: {e}"))?;
    }
    Ok(svg)
}

/// Shade each fault's window and mark its start. The window runs until the
/// target served normally again; a fault that never recovered is shaded to
/// the end of the chart (as attribution closes its window at the run's end).
/// Drawn before the data so lines stay on top.
fn shade_faults<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    faults: &[FaultRow],
    y: Range<Y::ValueType>,
    duration_s: f64,
) -> Result<()>
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    let min_width = duration_s * 0.004;
    for f in faults {
        let end = f.recovered_s.unwrap_or(duration_s).max(f.start_s + min_width);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(f.start_s, y.start.clone()), (end, y.end.clone())],
                FAULT.mix(0.18).filled(),
            )))
            .map_err(|e| anyhow!("fault shading: {e}"))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(f.start_s, y.start.clone()), (f.start_s, y.end.clone())],
                FAULT.stroke_width(1),
            )))
            .map_err(|e| anyhow!("fault marker: {e}"))?;
    }
    Ok(())
}

/// Shade the seconds in which other work on the machine (other processes,
/// steal) took CPU, darker the more it took, labelled "other work on this
/// machine": a run that looks slow there may have measured a neighbour.
fn shade_other_work<Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    run: &RunData,
    y: Range<Y::ValueType>,
) -> Result<()>
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    let Some(m) = &run.machine else { return Ok(()) };
    let busy: Vec<(f64, f64)> = m
        .other_work
        .iter()
        .enumerate()
        .filter(|(_, share)| **share >= OTHER_WORK_VISIBLE)
        .map(|(t, share)| (t as f64, share.min(1.0)))
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(busy.into_iter().map(|(t, share)| {
            Rectangle::new(
                [(t, y.start.clone()), (t + 1.0, y.end.clone())],
                OTHER_WORK.mix(0.05 + 0.35 * share).filled(),
            )
        }))
        .map_err(|e| anyhow!("other work shading: {e}"))?
        .label("other work on this machine")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], OTHER_WORK.mix(0.3).filled()));
    Ok(())
}

/// Rows of fault names above a chart (FAULT_LABEL_ROOM has room for this many).
const FAULT_LABEL_ROWS: usize = 3;
/// Width of one character of a 14 px sans-serif label, generously (SVG text
/// is measured by the browser, not here).
const LABEL_CHAR_PX: i32 = 8;

/// The row of each label, given their pixel extents (start, end) in start
/// order: the first row in which the label clears the one before it by a
/// few pixels; when every row is taken, the row that frees up first (the
/// overlap is then the smallest possible).
pub fn label_rows(extents: &[(i32, i32)], rows: usize) -> Vec<usize> {
    const GAP_PX: i32 = 6;
    let mut ends: Vec<Option<i32>> = vec![None; rows.max(1)];
    extents
        .iter()
        .map(|&(start, end)| {
            let row = ends
                .iter()
                .position(|e| e.is_none_or(|e| e + GAP_PX <= start))
                .unwrap_or_else(|| (0..ends.len()).min_by_key(|&r| ends[r].unwrap_or(i32::MIN)).unwrap_or(0));
            ends[row] = Some(end);
            row
        })
        .collect()
}

/// Fault names just above the plotting area, in up to three rows laid out
/// by [`label_rows`] so that names of faults close together stay readable.
pub(super) fn label_faults<Y: Ranged<ValueType = f64>>(
    root: &Area<'_>,
    chart: &ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    faults: &[FaultRow],
    y_top: f64,
) -> Result<()> {
    let (_, py) = chart.plotting_area().get_pixel_range();
    let starts: Vec<i32> = faults.iter().map(|f| chart.backend_coord(&(f.start_s, y_top)).0 - 2).collect();
    let extents: Vec<(i32, i32)> =
        faults.iter().zip(&starts).map(|(f, &x)| (x, x + LABEL_CHAR_PX * f.name.chars().count() as i32)).collect();
    let rows = label_rows(&extents, FAULT_LABEL_ROWS);
    for ((f, x), row) in faults.iter().zip(starts).zip(rows) {
        let pos = (x, py.start - 17 - 16 * row as i32);
        root.draw(&Text::new(f.name.clone(), pos, (FONT, 14).into_font().color(&FAULT)))
            .map_err(|e| anyhow!("fault label: {e}"))?;
    }
    Ok(())
}

/// The series' legend box at `position`, on a translucent white background.
pub(super) fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
    what: &str,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(MAX)
        .label_font((FONT, font_size))
        .draw()
        .map_err(|e| anyhow!("{what} legend: {e}"))
}

pub(super) fn no_data(root: &Area<'_>, message: &str) -> Result<()> {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(message.to_string(), (w as i32 / 2 - 120, h as i32 / 2), (FONT, 15).into_font().color(&MAX)))
        .map_err(|e| anyhow!("chart text: {e}"))
}

/// Contiguous stretches of Some values, so lines break where there is no data.
pub(super) fn segments(points: impl Iterator<Item = (f64, Option<f64>)>, floor: f64) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (x, y) in points {
        match y {
            Some(y) if y.is_finite() => current.push((x, y.max(floor))),
            _ => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Latency per second of one run: p50, p99 and max of ok attempts, failed
/// attempts as their own series, faults shaded. Log y axis.
pub fn latency_over_time(run: &RunData, axes: &TimeAxes) -> Result<String> {
    svg_chart(TIME_CHART, |root| {
        let y = axes.latency_ms.clone();
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .margin_top(FAULT_LABEL_ROOM)
            .x_label_area_size(32)
            .y_label_area_size(62)
            .build_cartesian_2d(0.0..axes.duration_s, y.clone().log_scale())
            .map_err(|e| anyhow!("latency chart: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_labels(decade_labels(&y))
            .y_label_formatter(&|v| fmt_ms(*v))
            .light_line_style(WHITE.mix(0.0))
            .label_style((FONT, 15))
            .draw()
            .map_err(|e| anyhow!("latency axes: {e}"))?;
        shade_faults(&mut chart, &run.faults, y.clone(), axes.duration_s)?;
        shade_other_work(&mut chart, run, y.clone())?;
        let mid = |p: &SecondPoint| p.t_s + 0.5;
        type Get = fn(&SecondPoint) -> Option<f64>;
        let series: [(&str, RGBColor, u32, Get); 3] =
            [("max", MAX, 1, |p| p.max_ms), ("p99", P99, 2, |p| p.p99_ms), ("p50", P50, 2, |p| p.p50_ms)];
        for (name, colour, width, get) in series {
            let segs = segments(run.seconds.iter().map(|p| (mid(p), get(p))), y.start);
            for (i, seg) in segs.into_iter().enumerate() {
                let drawn = chart
                    .draw_series(LineSeries::new(seg, colour.stroke_width(width)))
                    .map_err(|e| anyhow!("latency series {name}: {e}"))?;
                if i == 0 {
                    drawn
                        .label(name)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(width)));
                }
            }
        }
        let failed: Vec<(f64, f64)> =
            run.seconds.iter().filter_map(|p| p.failed_ms.map(|v| (mid(p), v.max(y.start)))).collect();
        if !failed.is_empty() {
            chart
                .draw_series(failed.into_iter().map(|c| Cross::new(c, 4, FAILED.stroke_width(2))))
                .map_err(|e| anyhow!("failed series: {e}"))?
                .label("failed (slowest)")
                .legend(|(x, y)| Cross::new((x + 9, y), 4, FAILED.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft, 15, "latency")?;
        label_faults(root, &chart, &run.faults, y.end)
    })
}

/// One layer of a stacked per-second chart.
struct Layer {
    name: String,
    colour: RGBColor,
    value: Box<dyn Fn(&SecondPoint) -> u64>,
}

pub(super) type LinearTimeChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A time chart with a linear y axis from 0 to `y_max`: axes drawn, fault
/// windows shaded. `what` names the chart in errors.
pub(super) fn linear_time_chart<'a, 'b>(
    root: &'a Area<'b>,
    run: &RunData,
    axes: &TimeAxes,
    what: &str,
    y_desc: &str,
    y_max: f64,
) -> Result<LinearTimeChart<'a, 'b>> {
    time_chart(root, run, axes, what, y_desc, y_max, true)
}

/// [`linear_time_chart`], with or without numbers on the y axis (a chart of
/// rows of markers labels its rows itself).
pub(super) fn time_chart<'a, 'b>(
    root: &'a Area<'b>,
    run: &RunData,
    axes: &TimeAxes,
    what: &str,
    y_desc: &str,
    y_max: f64,
    y_numbers: bool,
) -> Result<LinearTimeChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .margin_top(FAULT_LABEL_ROOM)
        .x_label_area_size(32)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..axes.duration_s, 0.0..y_max)
        .map_err(|e| anyhow!("{what} chart: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .x_label_formatter(&|v| fmt_tick(*v))
        .y_desc(y_desc)
        .y_labels(if y_numbers { 10 } else { 0 })
        .y_label_formatter(&|v| fmt_tick(*v))
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, 15))
        .draw()
        .map_err(|e| anyhow!("{what} axes: {e}"))?;
    shade_faults(&mut chart, &run.faults, 0.0..y_max, axes.duration_s)?;
    shade_other_work(&mut chart, run, 0.0..y_max)?;
    Ok(chart)
}

/// Stacked step areas, one layer per entry (bottom first).
fn stacked(
    run: &RunData,
    axes: &TimeAxes,
    title: &str,
    y_max: f64,
    layers: Vec<Layer>,
    empty_message: &str,
) -> Result<String> {
    svg_chart(TIME_CHART, |root| {
        let mut chart = linear_time_chart(root, run, axes, title, "per second", y_max)?;
        let layers: Vec<Layer> = layers.into_iter().filter(|l| run.seconds.iter().any(|p| (l.value)(p) > 0)).collect();
        if layers.is_empty() {
            no_data(root, empty_message)?;
        }
        // Draw cumulative tops from the highest layer down, each covering the
        // ones below it, so every band shows its own layer's count.
        for top in (0..layers.len()).rev() {
            let layer = &layers[top];
            let mut pts = Vec::with_capacity(run.seconds.len() * 2);
            for p in &run.seconds {
                let v: u64 = layers[..=top].iter().map(|l| (l.value)(p)).sum();
                pts.push((p.t_s, v as f64));
                pts.push((p.t_s + 1.0, v as f64));
            }
            let colour = layer.colour;
            chart
                .draw_series(AreaSeries::new(pts, 0.0, colour.mix(0.85)).border_style(colour.stroke_width(1)))
                .map_err(|e| anyhow!("{title} layer {}: {e}", layer.name))?
                .label(layer.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        }
        if !layers.is_empty() {
            legend(&mut chart, SeriesLabelPosition::UpperLeft, 15, title)?;
        }
        label_faults(root, &chart, &run.faults, y_max)
    })
}

fn failure_layers() -> Vec<Layer> {
    FailureClass::ALL
        .into_iter()
        .map(|c| Layer {
            name: c.as_str().to_string(),
            colour: class_colour(c),
            value: Box::new(move |p: &SecondPoint| p.failures.get(&c).copied().unwrap_or(0)),
        })
        .collect()
}

/// Attempts ending per second, stacked: ok, refused, then each failure class.
pub fn throughput_over_time(run: &RunData, axes: &TimeAxes) -> Result<String> {
    let mut layers = vec![
        Layer { name: "ok".into(), colour: OK, value: Box::new(|p: &SecondPoint| p.ok) },
        Layer { name: "refused (sold out)".into(), colour: REFUSED, value: Box::new(|p: &SecondPoint| p.refused) },
    ];
    layers.extend(failure_layers());
    stacked(run, axes, "throughput and failures", axes.rate_max, layers, "no requests")
}

/// Failed attempts per second by class, on their own scale so a handful is visible.
pub fn failures_over_time(run: &RunData, axes: &TimeAxes) -> Result<String> {
    stacked(run, axes, "failed attempts by class", axes.failure_rate_max, failure_layers(), "no failed attempts")
}

/// Shoppers in the middle of a journey, per second.
pub fn active_over_time(run: &RunData, axes: &TimeAxes) -> Result<String> {
    svg_chart(TIME_CHART, |root| {
        let mut chart = linear_time_chart(root, run, axes, "active", "shoppers", axes.active_max)?;
        chart
            .draw_series(
                AreaSeries::new(run.seconds.iter().map(|p| (p.t_s + 0.5, p.active as f64)), 0.0, ACTIVE.mix(0.25))
                    .border_style(ACTIVE.stroke_width(2)),
            )
            .map_err(|e| anyhow!("active series: {e}"))?;
        label_faults(root, &chart, &run.faults, axes.active_max)
    })
}

/// x on the "nines" axis for a percentile: 1/(1-q). 50% -> 2, 99% -> 100.
fn nines_x(percentile: f64) -> f64 {
    1.0 / (1.0 - percentile / 100.0)
}

/// Latency by percentile for all runs on one chart, x on a log "nines" axis
/// (as HdrHistogram plots do), y log. The maximum (100 %) cannot sit on that
/// axis; it is given in the legend.
pub fn spectrum(runs: &[RunData]) -> Result<String> {
    svg_chart(SPECTRUM_CHART, |root| {
        let finite = || runs.iter().flat_map(|r| r.spectrum.iter()).filter(|p| p.percentile < 100.0);
        let x_hi = finite().map(|p| nines_x(p.percentile)).fold(100.0, f64::max);
        let x_hi = 10f64.powf(x_hi.log10().ceil());
        let lo = runs.iter().flat_map(|r| r.spectrum.iter()).map(|p| p.latency_ms).fold(f64::INFINITY, f64::min);
        let hi = runs.iter().flat_map(|r| r.spectrum.iter()).map(|p| p.latency_ms).fold(0.0, f64::max);
        let y = log_range(lo, hi);
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((2.0..x_hi).log_scale(), y.clone().log_scale())
            .map_err(|e| anyhow!("spectrum chart: {e}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .x_desc("percentile (log scale of nines)")
            .y_labels(decade_labels(&y))
            .y_label_formatter(&|v| fmt_ms(*v))
            .light_line_style(WHITE.mix(0.0))
            .label_style((FONT, 15))
            .draw()
            .map_err(|e| anyhow!("spectrum axes: {e}"))?;
        // Our own ticks at the median and each nine: 50%, 90%, 99%, 99.9%...
        let mut ticks = vec![2.0];
        let mut t = 10.0;
        while t <= x_hi * 1.0001 {
            ticks.push(t);
            t *= 10.0;
        }
        for x in ticks {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, y.start), (x, y.end)],
                    BLACK.mix(0.12).stroke_width(1),
                )))
                .map_err(|e| anyhow!("spectrum grid: {e}"))?;
            let (px, _) = chart.backend_coord(&(x, y.start));
            let (_, py) = chart.plotting_area().get_pixel_range();
            let label = fmt_percentile(100.0 * (1.0 - 1.0 / x));
            // Keep the last label inside the picture.
            let px = px.min(SPECTRUM_CHART.0 as i32 - 60);
            root.draw(&Text::new(label, (px - 14, py.end + 6), (FONT, 16).into_font()))
                .map_err(|e| anyhow!("spectrum tick: {e}"))?;
        }
        let mut any = false;
        for (i, run) in runs.iter().enumerate() {
            let colour = RUN_COLOURS[i % RUN_COLOURS.len()];
            let pts: Vec<(f64, f64)> = run
                .spectrum
                .iter()
                .filter(|p| p.percentile < 100.0 && p.latency_ms.is_finite())
                .map(|p| (nines_x(p.percentile), p.latency_ms.max(y.start)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            any = true;
            let max = run.spectrum.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(3)))
                .map_err(|e| anyhow!("spectrum series: {e}"))?
                .label(format!("{} (max {})", run.label, fmt_ms(max)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
        }
        if any {
            // Lower right: percentile curves rise to the right, so it is the emptiest corner.
            legend(&mut chart, SeriesLabelPosition::LowerRight, 17, "spectrum")?;
        } else {
            no_data(root, "no ok requests recorded")?;
        }
        Ok(())
    })
}

/// Every chart of the page, in page order.
pub struct Charts {
    /// Per run: latency, throughput, failures, active shoppers.
    pub per_run: Vec<[String; 4]>,
    /// The server's side (server_charts.rs): per chart title, one SVG per run.
    pub server: Vec<(String, Vec<String>)>,
    pub spectrum: String,
    /// The axes every time chart of the page shares (resources.rs draws with them too).
    pub axes: TimeAxes,
}

pub fn draw_all(runs: &[RunData]) -> Result<Charts> {
    let axes = TimeAxes::for_runs(runs);
    let mut per_run = Vec::with_capacity(runs.len());
    for run in runs {
        per_run.push([
            latency_over_time(run, &axes)?,
            throughput_over_time(run, &axes)?,
            failures_over_time(run, &axes)?,
            active_over_time(run, &axes)?,
        ]);
    }
    let server = super::server_charts::draw(runs, &axes)?;
    Ok(Charts { per_run, server, spectrum: spectrum(runs)?, axes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_ms(0.25), "0.25 ms");
        assert_eq!(fmt_ms(3.0), "3 ms");
        assert_eq!(fmt_ms(3.45), "3.5 ms");
        assert_eq!(fmt_ms(0.1), "0.1 ms");
        assert_eq!(fmt_ms(1000.0), "1 s");
        assert_eq!(fmt_ms(0.0), "0 ms");
        assert_eq!(fmt_ms(120.0), "120 ms");
        assert_eq!(fmt_ms(1500.0), "1.5 s");
        assert_eq!(fmt_ms(25_000.0), "25 s");
        assert_eq!(fmt_tick(2.0), "2");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(250.0), "250");
        assert_eq!(fmt_percentile(50.0), "50%");
        assert_eq!(fmt_percentile(99.9), "99.9%");
        assert_eq!(fmt_percentile(100.0 * (1.0 - 1.0 / 10_000.0)), "99.99%");
        assert_eq!(fmt_percentile(0.0), "0%");
    }

    #[test]
    fn log_ranges_run_from_decade_to_decade() {
        assert_eq!(log_range(7.0, 833.0), 1.0..1000.0);
        assert_eq!(log_range(7.0, 900.0), 1.0..10_000.0, "room above the highest value");
        assert_eq!(log_range(150.0, 160.0), 100.0..1000.0);
        assert_eq!(log_range(f64::INFINITY, 0.0), 0.1..1000.0);
        assert_eq!(decade_labels(&(1.0..1000.0)), 4);
    }

    #[test]
    fn fault_labels_close_together_take_separate_rows() {
        // Regression (issue 17): the blackfriday report drew "kill the busiest
        // worker#1" over "hang a worker" (rows alternated by index, so the
        // first and third label shared a row whatever their distance).
        let ext = [(100, 260), (180, 300), (250, 450), (330, 430)];
        assert_eq!(label_rows(&ext, 3), vec![0, 1, 2, 0]);
        // Far apart: all on the first row.
        assert_eq!(label_rows(&[(0, 50), (100, 150), (200, 250)], 3), vec![0, 0, 0]);
        // A few pixels of space are needed between two labels of one row.
        assert_eq!(label_rows(&[(0, 50), (52, 90)], 3), vec![0, 1]);
        // More collisions than rows: the row that frees up first.
        assert_eq!(label_rows(&[(0, 500), (10, 100), (20, 300), (30, 60)], 3), vec![0, 1, 2, 1]);
        // No row is laid out twice over: every label's extent is clear of the
        // previous label of its row whenever a free row existed.
        let many: Vec<(i32, i32)> = (0..20).map(|i| (i * 40, i * 40 + 100)).collect();
        let rows = label_rows(&many, 3);
        for (i, r) in rows.iter().enumerate() {
            if let Some(j) = (0..i).rev().find(|&j| rows[j] == *r) {
                assert!(many[j].1 + 6 <= many[i].0, "label {i} overlaps {j} in row {r}");
            }
        }
        assert!(label_rows(&[], 3).is_empty());
    }

    #[test]
    fn segments_break_at_gaps() {
        let s = segments([(0.0, Some(1.0)), (1.0, None), (2.0, Some(0.0)), (3.0, Some(2.0))].into_iter(), 0.5);
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(2.0, 0.5), (3.0, 2.0)]]);
    }
}
