//! The report page: one self-contained `index.html` (inline CSS, inline SVG,
//! no scripts, fonts or images from anywhere) that opens offline.
//!
//! maud escapes every interpolated string; the only pre-escaped content is the
//! SVG from plotters (which escapes its own text) and the CSS below. Not for:
//! computing results (everything shown comes from [`ReportData`]).

use anyhow::Result;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::charts::{self, Charts};
use super::model::{FaultRow, HostLine, MachineData, ReportData, RunData, Status};
use crate::judge::verdict::{fmt_count, fmt_ms};
use crate::outcome::FailureClass;

const CSS: &str = r#"
:root { --pass: #1a7f37; --fail: #cf222e; --unknown: #9a6700; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px; max-width: 1440px; line-height: 1.45; background: #fff; }
h1 { margin: 0 0 4px; font-size: 28px; }
h2 { margin: 36px 0 8px; font-size: 21px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { margin: 18px 0 6px; font-size: 16px; }
.sub, .caption { color: var(--muted); font-size: 14px; }
.caption { margin: 2px 0 10px; max-width: 1100px; }
.scaling { border: 2px solid var(--unknown); background: #fff8c5; padding: 10px 14px; margin: 14px 0; border-radius: 6px; }
.verdict { border-radius: 8px; padding: 14px 18px; margin: 18px 0; color: #fff; }
.verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); } .verdict.unknown { background: var(--unknown); }
.verdict h2 { margin: 0 0 8px; border: 0; font-size: 24px; color: #fff; }
.verdict ul { margin: 0; padding-left: 0; list-style: none; }
.verdict li { margin: 3px 0; }
.badge { display: inline-block; min-width: 64px; text-align: center; font-weight: 700; font-size: 12px; padding: 1px 6px;
         border-radius: 10px; text-transform: uppercase; letter-spacing: .04em; }
.badge.pass { background: #dafbe1; color: var(--pass); } .badge.fail { background: #ffebe9; color: var(--fail); }
.badge.unknown { background: #fff8c5; color: var(--unknown); }
.headline { font-size: 18px; margin: 10px 0; max-width: 1100px; }
.row { display: flex; flex-wrap: wrap; gap: 16px; }
.row > figure { flex: 1 1 600px; margin: 0; min-width: 0; }
figcaption { font-weight: 600; font-size: 15px; margin: 0 0 4px; }
figure svg { width: 100%; height: auto; display: block; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f6f8fa; } td.l, th.l { text-align: left; }
.warn { color: var(--fail); font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; font-size: 14px; }
dt { font-weight: 600; } dd { margin: 0; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"#;

/// The whole page.
pub fn render(data: &ReportData) -> Result<String> {
    let charts = charts::draw_all(&data.runs)?;
    let overall = overall_status(data);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (data.title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (data.title) }
                    p.sub {
                        "Scenario " strong { (data.scenario.name) } " · generated " (data.generated)
                        " · " (data.machine.cpus) " CPUs, " (data.machine.cpu_model)
                    }
                    @if let Some(transport) = &data.scenario.transport {
                        p.sub.transport { "Over HTTPS: " strong { (transport) } }
                    }
                }
                @if let Some(note) = &data.scaling_note {
                    div.scaling { strong { "How the load was scaled to this machine: " } (note) }
                }
                (verdict(data, overall))
                @for line in headline(&data.runs) {
                    p.headline { (line) }
                }
                (key_numbers(&data.runs))
                (chart_sections(&data.runs, &charts))
                (super::resources::section(&data.runs, &charts.axes)?)
                (endpoint_tables(&data.runs))
                (host_tables(&data.runs))
                (address_tables(&data.runs))
                (shard_tables(&data.runs))
                (fault_tables(&data.runs))
                (audit_tables(&data.runs))
                (slip_table(&data.runs))
                (scenario_and_machine(data))
                footer {
                    "Made by the harness from this run's report.json; rebuild it with "
                    code { "harness report RUN_DIR" } ". docs/REPORT.md explains each chart and table."
                }
            }
        }
    };
    Ok(page.into_string())
}

/// Fail if any gate failed; unknown if any gate is unknown or there are no gates at all.
pub fn overall_status(data: &ReportData) -> Status {
    if data.verdict.is_empty() {
        return Status::Unknown;
    }
    Status::worst(data.verdict.iter().map(|g| g.status))
}

fn badge(status: Status) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str()) } }
}

fn verdict(data: &ReportData, overall: Status) -> Markup {
    let failed = data.verdict.iter().filter(|g| g.status == Status::Fail).count();
    let unknown = data.verdict.iter().filter(|g| g.status == Status::Unknown).count();
    let n = data.verdict.len();
    // Runs whose machine was busy with other work: why gates are unknown.
    let noisy: Vec<String> = data
        .runs
        .iter()
        .filter_map(|r| r.machine.as_ref().filter(|m| m.assessment.noisy).map(|m| (r, m)))
        .map(|(r, m)| format!("{}: {}", r.label, m.assessment.reason))
        .collect();
    let summary = match overall {
        Status::Pass => format!("PASS: all {n} gates passed"),
        Status::Fail => format!("FAIL: {failed} of {n} gates failed"),
        Status::Unknown if n == 0 => "UNKNOWN: no gates were checked".to_string(),
        Status::Unknown if !noisy.is_empty() => {
            format!("INCONCLUSIVE: {unknown} of {n} gates could not be decided on a busy machine; run it again")
        }
        Status::Unknown => format!("UNKNOWN: {unknown} of {n} gates could not be decided"),
    };
    html! {
        section class={ "verdict " (overall.as_str()) } id="verdict" {
            h2 { (summary) }
            @for why in &noisy {
                p #noise { (why) }
            }
            ul {
                @for g in &data.verdict {
                    li { (badge(g.status)) " " strong { (g.gate) } ": " (g.detail) }
                }
            }
        }
    }
}

fn fmt_pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".to_string();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if part > 0 && p < 0.01 { "<0.01%".to_string() } else { format!("{p:.2}%") }
}

/// A fault action in words, singular and plural.
fn fault_kind(action: &str) -> (String, String) {
    let a = action.to_ascii_lowercase();
    let (one, many) = if a.contains("naive") {
        ("naive restart", "naive restarts")
    } else if a.contains("kill") {
        ("worker kill", "worker kills")
    } else if a.contains("hang") || a.contains("sigstop") {
        ("hang", "hangs")
    } else if a.contains("sighup") || a.contains("sigterm") || a.contains("rolling") {
        ("rolling restart", "rolling restarts")
    } else if a.contains("signal_master") {
        ("signal to the master", "signals to the master")
    } else if a.contains("command") {
        ("fault command", "fault commands")
    } else {
        return (action.to_string(), action.to_string());
    };
    (one.to_string(), many.to_string())
}

/// "2 worker kills, 1 rolling restart and 1 hang".
pub fn describe_faults(faults: &[FaultRow]) -> String {
    let mut kinds: Vec<((String, String), u64)> = Vec::new();
    for f in faults {
        let kind = fault_kind(&f.action);
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let parts: Vec<String> = kinds
        .into_iter()
        .map(|((one, many), n)| format!("{} {}", fmt_count(n), if n == 1 { one } else { many }))
        .collect();
    match parts.len() {
        0 => "no injected faults".to_string(),
        1 => parts[0].clone(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

/// Plain-language sentences for a stakeholder, one per run, then a comparison.
pub fn headline(runs: &[RunData]) -> Vec<String> {
    let mut lines = Vec::new();
    for run in runs {
        let t = &run.totals;
        let saved = t.first_attempt_failures.saturating_sub(t.dropped);
        let during = if run.faults.is_empty() {
            "with no faults injected".to_string()
        } else {
            format!("during {}", describe_faults(&run.faults))
        };
        let mut line = format!(
            "The {} dropped {} of {} requests ({}) {during}",
            run.label,
            fmt_count(t.dropped),
            fmt_count(t.operations),
            fmt_pct(t.dropped, t.operations),
        );
        if t.first_attempt_failures > 0 {
            line.push_str(&format!(
                "; {} first attempts failed and a retry saved {} of them",
                fmt_count(t.first_attempt_failures),
                fmt_count(saved)
            ));
        }
        line.push_str(&format!(
            ". Half the requests took under {}, 99 in 100 under {}, the slowest {}.",
            fmt_ms(t.p50_ms),
            fmt_ms(t.p99_ms),
            fmt_ms(t.max_ms)
        ));
        lines.push(line);
    }
    if let [first, .., last] = runs {
        let (a, b) = (first.totals.p99_ms, last.totals.p99_ms);
        let comparison = if a > 0.0 && b > 0.0 && (a / b >= 1.1 || b / a >= 1.1) {
            if b < a { format!("{:.1} times lower than", a / b) } else { format!("{:.1} times higher than", b / a) }
        } else {
            "about the same as".to_string()
        };
        lines.push(format!(
            "The {}'s p99 latency ({}) is {} the {}'s ({}).",
            last.label,
            fmt_ms(b),
            comparison,
            first.label,
            fmt_ms(a)
        ));
    }
    lines
}

fn key_numbers(runs: &[RunData]) -> Markup {
    type Getter = fn(&RunData) -> String;
    let rows: [(&str, Getter); 11] = [
        ("requests (operations)", |r| fmt_count(r.totals.operations)),
        ("ok", |r| fmt_count(r.totals.ok)),
        ("refused (sold out)", |r| fmt_count(r.totals.refused)),
        ("dropped (failed after retries)", |r| fmt_count(r.totals.dropped)),
        ("first attempts that failed", |r| fmt_count(r.totals.first_attempt_failures)),
        ("throughput (ok/s)", |r| format!("{:.1}", r.totals.throughput_rps)),
        ("p50 latency (ok requests)", |r| fmt_ms(r.totals.p50_ms)),
        ("p99 latency (ok requests)", |r| fmt_ms(r.totals.p99_ms)),
        ("p99.9 latency (ok requests)", |r| fmt_ms(r.totals.p999_ms)),
        ("max latency (ok requests)", |r| fmt_ms(r.totals.max_ms)),
        ("injected faults", |r| fmt_count(r.faults.len() as u64)),
    ];
    html! {
        h2 { "Key numbers" }
        table #key-numbers {
            tr { th.l { "" } @for r in runs { th { (r.label) } } }
            @for (name, get) in rows {
                tr { td.l { (name) } @for r in runs { td { (get(r)) } } }
            }
        }
    }
}

fn figure_row(runs: &[RunData], charts: &Charts, index: usize, title: &str) -> Markup {
    html! {
        div.row {
            @for (run, svgs) in runs.iter().zip(&charts.per_run) {
                figure data-run=(run.label) {
                    figcaption { (run.label) ": " (title) }
                    (PreEscaped(&svgs[index]))
                }
            }
        }
    }
}

fn chart_sections(runs: &[RunData], charts: &Charts) -> Markup {
    html! {
        h2 { "Latency over time" }
        p.caption {
            "Each second: the median (p50), the 99th percentile (p99) and the slowest (max) of the requests that \
             succeeded, on a log scale. Red crosses are failed requests (the slowest failure that second; a \
             timeout shows as the time the harness waited). Shaded bands are the injected faults, from the \
             moment each started until the target served normally again. Both runs share the same axes."
        }
        (figure_row(runs, charts, 0, "latency per second"))
        (server_sections(runs, charts))
        h2 { "Throughput and failures" }
        p.caption {
            "Requests finished per second, stacked: ok, refused as sold out (an expected answer), then failures \
             by class. The second row shows only the failures, on their own scale, so a handful is visible."
        }
        (figure_row(runs, charts, 1, "requests per second by result"))
        (figure_row(runs, charts, 2, "failed attempts per second by class"))
        h2 { "Active shoppers" }
        p.caption {
            "Shoppers who have arrived and not finished their journey. Arrivals follow the schedule whatever \
             the server does, so a slow server shows as shoppers piling up."
        }
        (figure_row(runs, charts, 3, "active shoppers"))
        h2 { "Latency by percentile" }
        p.caption {
            "How slow the slowest requests were, for the whole run: read across to a percentile, up to the \
             latency. The x axis stretches the tail (each step is one more nine), as HdrHistogram plots do; \
             lower is better. The maximum is in the legend."
        }
        figure #spectrum {
            figcaption { "Latency by percentile, ok requests, whole run" }
            (PreEscaped(&charts.spectrum))
        }
    }
}

/// What the servers did, under the latency chart: the target's own metrics.
fn server_sections(runs: &[RunData], charts: &Charts) -> Markup {
    if charts.server.is_empty() {
        return html! {};
    }
    let gaps: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.scrapers.iter().filter(|e| e.gaps > 0).map(move |e| {
                format!(
                    "{}: {} of {} scrapes of {} failed ({})",
                    r.label,
                    e.gaps,
                    e.scrapes,
                    e.label,
                    e.gap_reasons.join("; ")
                )
            })
        })
        .collect();
    html! {
        h2 #server { "What the servers did" }
        p.caption {
            "The target's own Prometheus metrics, scraped during the run (every second by default) on the same \
             time axis and with the same fault bands as the latency chart above. Workers up and draining: a \
             rolling restart that starts each replacement before draining the old worker never dips below the \
             configured count. Restarts are markers by reason (crash: a worker exited on its own or was \
             killed; hang: its heartbeats stopped and the master replaced it; rolling: replaced by a rolling \
             restart). Counters are drawn as rates per second; a counter that went down (a process restarted) \
             counts from zero again, as Prometheus' rate() does. Red bands are scrapes that failed or timed \
             out: no data there, never zero."
        }
        @for g in &gaps { p.warn.scrape-gaps { (g) } }
        @for (title, svgs) in &charts.server {
            div.row.server {
                @for (run, svg) in runs.iter().zip(svgs) {
                    figure data-run=(run.label) data-server-chart=(title) {
                        figcaption { (run.label) ": " (title) }
                        (PreEscaped(svg))
                    }
                }
            }
        }
    }
}

fn endpoint_tables(runs: &[RunData]) -> Markup {
    html! {
        h2 { "Per endpoint" }
        p.caption {
            "Each step of the shoppers' journeys. Attempts include retries; dropped are requests that still \
             failed after their last retry. Latency is of ok requests."
        }
        @for run in runs {
            h3 { (run.label) }
            table.endpoints {
                tr {
                    th.l { "step" } th.l { "request" } th { "attempts" } th { "failed" } th { "dropped" }
                    th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" }
                }
                @for e in &run.endpoints {
                    tr {
                        td.l { (e.step) } td.l { code { (e.request) } } td { (fmt_count(e.count)) }
                        td { (fmt_count(e.failures)) }
                        td class=@if e.dropped > 0 { "warn" } { (fmt_count(e.dropped)) }
                        td { (fmt_ms(e.p50_ms)) } td { (fmt_ms(e.p90_ms)) } td { (fmt_ms(e.p99_ms)) }
                        td { (fmt_ms(e.p999_ms)) } td { (fmt_ms(e.max_ms)) }
                    }
                }
            }
        }
    }
}

/// Only for runs against a fleet (worker ids that name a host); nothing otherwise.
fn host_tables(runs: &[RunData]) -> Markup {
    breakdown_tables(
        runs,
        |r| &r.hosts[..],
        Breakdown {
            title: "Per host",
            caption: "What the harness saw from each host of the fleet, by the host named in the worker id of \
                      each response. Attempts include retries; latency is of ok attempts. \"no response\" are \
                      attempts that failed before any host answered.",
            column: "host",
            keyless: "no response",
        },
    )
}

/// Only for runs whose connections went to several target addresses (a
/// name's DNS answers, `target.resolve`); nothing otherwise.
fn address_tables(runs: &[RunData]) -> Markup {
    breakdown_tables(
        runs,
        |r| &r.addresses[..],
        Breakdown {
            title: "Per target address",
            caption: "Where each attempt's connection went: the target name's addresses, new connections \
                      spread over them in turn. Attempts include retries; latency is of ok attempts. \"no \
                      connection\" are attempts that never had one (a full pool).",
            column: "address",
            keyless: "no connection",
        },
    )
}

struct Breakdown {
    title: &'static str,
    caption: &'static str,
    column: &'static str,
    keyless: &'static str,
}

fn breakdown_tables(runs: &[RunData], rows: impl Fn(&RunData) -> &[HostLine], b: Breakdown) -> Markup {
    html! {
        @if runs.iter().any(|r| !rows(r).is_empty()) {
            h2 { (b.title) }
            p.caption { (b.caption) }
            @for run in runs.iter().filter(|r| !rows(r).is_empty()) {
                h3 { (run.label) }
                table.endpoints.hosts {
                    tr {
                        th.l { (b.column) } th { "attempts" } th { "ok" } th { "refused" } th { "failed" }
                        th.l { "failed by class" } th { "p99" }
                    }
                    @for h in rows(run) {
                        tr {
                            td.l { @if let Some(name) = &h.key { code { (name) } } @else { (b.keyless) } }
                            td { (fmt_count(h.attempts)) } td { (fmt_count(h.ok)) } td { (fmt_count(h.refused)) }
                            td class=@if h.failed() > 0 { "warn" } { (fmt_count(h.failed())) }
                            td.l { (by_class(&h.failures)) }
                            td { (h.p99_ms.map_or_else(|| "-".to_string(), fmt_ms)) }
                        }
                    }
                }
            }
        }
    }
}

/// Only for a merged run (`harness merge`): one row per shard.
fn shard_tables(runs: &[RunData]) -> Markup {
    html! {
        @if runs.iter().any(|r| !r.shards.is_empty()) {
            h2 { "Shards" }
            p.caption {
                "The processes that played this run, each its own part of the shoppers, on one start \
                 instant. Start offset: how late the shard began after it (its arrivals before then were \
                 sent late and count as slip). Slip p99: the shard's own lateness against its schedule."
            }
            @for run in runs.iter().filter(|r| !r.shards.is_empty()) {
                table.endpoints.shards {
                    tr {
                        th { "shard" } th.l { "host" } th { "shoppers" } th { "operations" }
                        th { "slip p99" } th { "start offset" }
                    }
                    @for sh in &run.shards {
                        tr {
                            td { (sh.index) } td.l { code { (sh.host) } }
                            td { (fmt_count(sh.shoppers)) } td { (fmt_count(sh.operations)) }
                            td { (fmt_ms(sh.slip_p99_ms)) } td { (fmt_ms(sh.start_offset_ms)) }
                        }
                    }
                }
            }
        }
    }
}

fn fmt_s(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "never".to_string())
}

fn by_class(counts: &std::collections::BTreeMap<FailureClass, u64>) -> String {
    let parts: Vec<String> =
        counts.iter().filter(|(_, n)| **n > 0).map(|(c, n)| format!("{} {}", fmt_count(*n), c.as_str())).collect();
    if parts.is_empty() { "none".to_string() } else { parts.join(", ") }
}

fn fault_tables(runs: &[RunData]) -> Markup {
    html! {
        h2 { "Faults" }
        p.caption {
            "Each injected fault: when it started and ended (seconds since start), when the target served \
             normally again, the first attempts that failed while it was in effect (by class), how many of \
             those requests a retry saved and how many were dropped."
        }
        @for run in runs {
            h3 { (run.label) }
            @if run.faults.is_empty() {
                p.caption { "No faults were injected in this run." }
            } @else {
                table.faults {
                    tr {
                        th.l { "fault" } th.l { "action" } th { "start" } th { "end" } th { "recovered at" }
                        th { "recovery time" } th.l { "first attempts failed" } th { "saved by retry" }
                        th { "dropped" } th.l { "budget" } th.l { "injector" }
                    }
                    @for f in &run.faults {
                        tr {
                            td.l { (f.name) } td.l { (f.action) } td { (format!("{:.1} s", f.start_s)) }
                            td { (fmt_s(f.end_s)) } td { (fmt_s(f.recovered_s)) }
                            td { (f.recovery_ms.map(fmt_ms).unwrap_or_else(|| "n/a".to_string())) }
                            td.l { (by_class(&f.first_attempt_failures)) }
                            td { (fmt_count(f.recovered)) }
                            td class=@if f.dropped > 0 { "warn" } { (fmt_count(f.dropped)) }
                            td.l { (budget_cell(f)) }
                            td.l { (f.outcome) }
                        }
                    }
                }
            }
        }
    }
}

/// "kept: at most 0 first-attempt failures, 0 dropped", or "broken: ...".
fn budget_cell(f: &FaultRow) -> Markup {
    let Some(b) = &f.budget else { return html! { "none" } };
    let mut limits = Vec::new();
    if let Some(n) = b.max_first_attempt_failures {
        limits.push(format!("{} first-attempt failure(s)", fmt_count(n)));
    }
    if let Some(n) = b.max_dropped {
        limits.push(format!("{} dropped", fmt_count(n)));
    }
    let (status, word) = if b.kept { (Status::Pass, "kept") } else { (Status::Fail, "broken") };
    html! { span class={ "badge " (status.as_str()) } { (word) } " at most " (limits.join(", ")) }
}

fn audit_tables(runs: &[RunData]) -> Markup {
    html! {
        h2 { "Audit" }
        p.caption {
            "After the run the shop's own records are checked against what the harness saw: every order the \
             harness was told about exists once, no order exists that nobody asked for, and no stock was \
             oversold."
        }
        @for run in runs {
            h3 { (run.label) " " @if let Some(a) = &run.audit { (badge(a.status)) } }
            @match &run.audit {
                None => p.caption { "No audit for this run." },
                Some(a) => table.audit {
                    tr { th.l { "check" } th.l { "result" } th.l { "counts" } th.l { "detail" } }
                    @for row in &a.rows {
                        tr {
                            td.l { (row.check) } td.l { (badge(row.status)) }
                            td.l {
                                @for (i, (k, v)) in row.counts.iter().enumerate() {
                                    @if i > 0 { ", " } (k) ": " (fmt_count(*v))
                                }
                            }
                            td.l { (row.detail) }
                        }
                    }
                },
            }
        }
    }
}

fn slip_table(runs: &[RunData]) -> Markup {
    html! {
        h2 { "The harness's own lateness (schedule slip)" }
        p.caption {
            "How late the harness sent requests compared with the schedule. Latency is measured from the \
             scheduled time, so a slow server cannot hide behind a slow harness; if the harness itself was \
             the bottleneck the run's figures are not trustworthy and it says so here. The line under each run \
             is the machine's other work (other processes and steal, share of all CPUs): above the scenario's \
             limit a failed latency, throughput or timeout gate is unknown, not failed."
        }
        table #slip {
            tr { th.l { "run" } th { "p99 slip" } th { "max slip" } th.l { "harness was the bottleneck" } th.l { "detail" } }
            @for r in runs {
                tr {
                    td.l { (r.label) } td { (fmt_ms(r.slip.p99_ms)) } td { (fmt_ms(r.slip.max_ms)) }
                    td.l class=@if r.slip.harness_bottleneck { "warn" } {
                        @if r.slip.harness_bottleneck { "yes" } @else { "no" }
                    }
                    td.l { (r.slip.detail) }
                }
                @if let Some(m) = &r.machine {
                    (other_work_row(r, m))
                }
                @for e in &r.scrapers {
                    tr.scraper {
                        td.l { (r.label) ": metrics scraper (" (e.label) ")" }
                        td colspan="2" { (format!("{:.1} ms CPU", e.scraper_cpu_ms)) }
                        td.l { "no: own thread, off the schedule's runtime" }
                        td.l {
                            (format!(
                                "{} scrapes every {} ms of {}, {} failed (gaps)",
                                e.scrapes, e.interval_ms, e.url, e.gaps
                            ))
                        }
                    }
                }
            }
        }
    }
}

/// The slip table's line for the machine: other work during the run.
fn other_work_row(r: &RunData, m: &MachineData) -> Markup {
    let a = &m.assessment;
    html! {
        tr.other-work {
            td.l { (r.label) ": other work on this machine" }
            td colspan="2" {
                (format!("{:.0}% peak, {:.0}% mean", a.interference_peak * 100.0, (a.other_cpu_mean + a.steal_mean) * 100.0))
            }
            td.l class=@if a.noisy { "warn" } { @if a.noisy { "busy" } @else { "quiet" } }
            td.l {
                (format!(
                    "busiest {} s: {:.0}% of the CPU (limit {:.0}%); steal {:.0}% mean; {} s over the limit",
                    a.window_s,
                    a.interference_peak * 100.0,
                    a.max_other_cpu * 100.0,
                    a.steal_mean * 100.0,
                    a.seconds_over
                ))
                @if !a.busiest_other.is_empty() { "; busiest: " (a.busiest_other) }
            }
        }
    }
}

fn scenario_and_machine(data: &ReportData) -> Markup {
    html! {
        h2 { "Scenario and machine" }
        dl {
            dt { "scenario" } dd { (data.scenario.name) }
            dt { "description" } dd { (data.scenario.description) }
            dt { "shoppers" } dd { (fmt_count(data.scenario.shoppers)) }
            dt { "planned duration" } dd { (format!("{:.0} s", data.scenario.duration_s)) }
            dt { "seed" } dd { (data.scenario.seed) }
            dt { "scaling" } dd { (data.scaling_note.as_deref().unwrap_or("none: the scenario ran as written")) }
            @for r in &data.runs {
                dt { "target: " (r.label) } dd { code { (r.target) } }
            }
            dt { "machine" } dd { (data.machine.cpus) " CPUs, " (data.machine.cpu_model) ", " (data.machine.os) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(action: &str) -> FaultRow {
        FaultRow {
            name: "f".into(),
            action: action.into(),
            start_s: 0.0,
            end_s: None,
            recovered_s: None,
            outcome: "ok".into(),
            first_attempt_failures: Default::default(),
            recovered: 0,
            dropped: 0,
            recovery_ms: None,
            budget: None,
        }
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(152_000), "152,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_pct(1, 1_000_000), "<0.01%");
        assert_eq!(fmt_pct(0, 0), "0%");
    }

    #[test]
    fn faults_in_words() {
        let faults = [
            fault("kill_worker SIGKILL"),
            fault("signal_master SIGHUP"),
            fault("kill_worker SIGKILL"),
            fault("hang_worker"),
        ];
        assert_eq!(describe_faults(&faults), "2 worker kills, 1 rolling restart and 1 hang");
        assert_eq!(describe_faults(&faults[..1]), "1 worker kill");
        assert_eq!(describe_faults(&[]), "no injected faults");
        assert_eq!(describe_faults(&[fault("naive_restart"), fault("teleport")]), "1 naive restart and 1 teleport");
    }
}
