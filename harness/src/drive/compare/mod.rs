//! `harness compare`: the same scenario against one process and against a
//! cluster, one report with both side by side, one verdict for CI.
//!
//! By default both targets are the reference server found next to the
//! harness binary: `--single` first, then `--workers <CPUs>`, each on fresh
//! loopback ports with a fresh database in its own run folder (`OUT/single`,
//! `OUT/cluster`), each through the full lifecycle (launch, traffic with
//! faults, recovery, attribution, audit, stop). Then `OUT/index.html` (+
//! `report.json`, `junit.xml`) shows both runs, and `OUT/summary.json` holds
//! both runs' summaries, the comparison, the scaling and the gates
//! (docs/SUMMARY.md, "Compare").
//!
//! The scenario's faults apply to both runs. A single process has no workers
//! and no master, so for it worker kills, hangs and master signals become
//! naive restarts, the only thing one process can do (plan.rs).
//!
//! Scaling (`--rate-scale X` or `--calibrate`, see calibrate.rs) plays the
//! arrival profile X times denser AND X times faster: every rate times X,
//! every stage and fault time divided by X, so the same shoppers arrive in
//! the same shape. The report and summary.json say so.
//!
//! Not for: playing or judging one run (lifecycle.rs, run.rs) or drawing the
//! page (report/).

pub mod plan;
mod sides;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drive::calibrate::{self, Calibration};
use crate::drive::lifecycle::{self, LifecycleOptions};
use crate::drive::run::RunOptions;
use crate::judge::baseline::{self, BaselineComparison, BaselineOptions};
use crate::judge::summary::{self, Summary};
use crate::judge::verdict::Verdict;
use crate::judge::versus::{self, CLUSTER, Figures, SINGLE};
use crate::report::model::{self, GateRow, Machine, ReportData, RunData};
use crate::report::rundir::{self, RunDirOptions};
use crate::scenario::Scenario;
use crate::traffic::schedule;
use plan::{FaultMapping, compress, single_process_faults};
use sides::{Side, side};

pub const SINGLE_DIR: &str = "single";
pub const CLUSTER_DIR: &str = "cluster";
pub const CALIBRATION_DIR: &str = "calibration";
/// The reference server's binary name, looked up next to the harness's.
pub const SERVER_BIN: &str = "reference-server";

/// Command line of `harness compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The scenario file (JSON).
    pub scenario: PathBuf,
    /// Output folder (default reports/<scenario name>): single/, cluster/,
    /// index.html, summary.json, junit.xml.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Command that starts the single-process target (default: the reference
    /// server next to this binary with --single, fresh ports and database).
    /// A custom command must serve the scenario's base_url (and audit URL).
    #[arg(long)]
    pub single_cmd: Option<String>,
    /// Command that starts the clustered target (default: the reference
    /// server with one worker per CPU).
    #[arg(long)]
    pub cluster_cmd: Option<String>,
    /// Workers of the default cluster (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Play the arrival profile this many times denser and faster (rates x
    /// X, stage lengths and fault times / X): same shoppers, same shape.
    #[arg(long, conflicts_with = "calibrate")]
    pub rate_scale: Option<f64>,
    /// Measure one process's capacity for the scenario's mix first and scale
    /// the peak to 1.5x that (within the cluster's expected capacity).
    #[arg(long)]
    pub calibrate: bool,
    /// Calibrate (as --calibrate), write OUT/calibration.json with both
    /// capacities and stop without playing the scenario: how `make soak`
    /// sizes its load to this machine.
    #[arg(long, conflicts_with_all = ["rate_scale", "baseline"])]
    pub calibrate_only: bool,
    /// A previous summary.json (of `harness compare` or `harness run`) to
    /// compare the cluster run against: fails when dropped requests increased
    /// or the chosen percentile regressed by more than --max-regression.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Percentile the baseline check compares: p50, p90, p99, p99_9 or max.
    #[arg(long, default_value = "p99")]
    pub baseline_percentile: String,
    /// Largest allowed slowdown against the baseline, as a fraction (0.2 = 20%).
    #[arg(long, default_value_t = 0.20)]
    pub max_regression: f64,
    /// Slowdowns of at most this many ms never count (noise on fast steps).
    #[arg(long, default_value_t = 1.0)]
    pub min_delta_ms: f64,
    /// Also compare every step's percentile against the baseline.
    #[arg(long)]
    pub per_step: bool,
    /// Replace the scenario's random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Allow a target that is not on loopback (custom commands only).
    #[arg(long)]
    pub allow_remote: bool,
    /// Serve HTTPS from the default reference servers with this certificate
    /// chain (PEM; passed as their --tls-cert): both sides run over TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; passed as --tls-key).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA to verify the servers' certificate against (the scenario's
    /// target.ca_file); without it, the system's roots.
    #[arg(long, requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Every new TLS connection pays a full handshake (the scenario's
    /// connections.tls_resumption: false).
    #[arg(long)]
    pub no_tls_resumption: bool,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// How the arrival profile is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaling {
    AsWritten,
    Fixed(f64),
    Calibrate,
}

/// Everything `compare` needs besides the scenario.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub out: PathBuf,
    pub single_cmd: Option<String>,
    pub cluster_cmd: Option<String>,
    /// The reference server binary for the default commands.
    pub server_bin: PathBuf,
    pub workers: usize,
    pub scaling: Scaling,
    pub baseline: Option<PathBuf>,
    pub baseline_options: BaselineOptions,
    pub seed: Option<u64>,
    pub allow_remote: bool,
    pub progress: bool,
    /// The scenario file's `description`, for the page.
    pub description: String,
    /// `--tls-cert`/`--tls-key`: flags for the default reference servers,
    /// whose targets then are https:// (empty: plain http).
    pub server_tls: Vec<String>,
}

/// The scaling applied, for the summary and the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingInfo {
    /// "as written", "rate_scale" or "calibrated".
    pub source: String,
    /// Rates x scale; stage lengths and fault times / scale.
    pub scale: f64,
    pub peak_rate: f64,
    pub peak_rate_as_written: f64,
    pub planned_shoppers: u64,
    /// Length of the arrival schedule as played, and as written.
    pub arrivals_s: f64,
    pub arrivals_as_written_s: f64,
    pub note: Option<String>,
    pub calibration: Option<Calibration>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    pub label: String,
    /// The run folder, relative to the compare folder.
    pub dir: String,
    /// The command that started the target.
    pub command: String,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    pub single: RunEntry,
    pub cluster: RunEntry,
}

/// The report's whole-run figures of both runs (ok-request latency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub single: model::KeyNumbers,
    pub cluster: model::KeyNumbers,
}

/// `OUT/summary.json` of a compare run (docs/SUMMARY.md, "Compare").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    pub schema_version: u32,
    /// Always "compare" (a plain run's summary.json has no `kind`).
    pub kind: String,
    pub harness_version: String,
    pub scenario: String,
    pub verdict: Verdict,
    pub exit_code: i32,
    /// The verdict's gates, in the report's order.
    pub gates: Vec<GateRow>,
    pub scaling: ScalingInfo,
    pub single_process_faults: Vec<FaultMapping>,
    pub comparison: Comparison,
    pub baseline: Option<BaselineComparison>,
    pub runs: Runs,
}

/// What must hold before anything runs: valid baseline options, a cluster
/// of at least one worker, and a reference server to launch unless both
/// commands are given.
fn check_options(o: &CompareOptions) -> Result<()> {
    baseline::check_options(&o.baseline_options)?;
    if o.workers == 0 {
        bail!("--workers 0: the cluster needs at least one worker");
    }
    if o.single_cmd.is_none() || o.cluster_cmd.is_none() {
        anyhow::ensure!(
            o.server_bin.is_file(),
            "{} not found: build it (`cargo build --release -p reference-server`) or give --single-cmd and \
             --cluster-cmd",
            o.server_bin.display()
        );
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

/// Measure one process and the cluster, and plan the scale (see calibrate.rs).
fn calibrate_scale(s: &Scenario, o: &CompareOptions) -> Result<Calibration> {
    let peak = crate::host::limits::peak_rate(s, 1.0);
    let rt = runtime()?;
    let mut measured = Vec::new();
    // The calibration servers are the runs' own: the same command, or the
    // reference server on fresh ports with its own database.
    for (label, dir) in [(SINGLE, SINGLE_DIR), (CLUSTER, CLUSTER_DIR)] {
        let side = side(s, o, label, &format!("{CALIBRATION_DIR}/{dir}"))?;
        eprintln!("calibrating: {label} ({}) with the scenario's journey mix ...", side.command);
        let m = rt.block_on(calibrate::measure(&side.scenario, &side.launch, &side.dir))?;
        eprintln!(
            "calibrating: {label}: {:.0} shoppers/s ({} shoppers in {:.2} s)",
            m.capacity(),
            m.shoppers,
            m.wall_s
        );
        measured.push(m);
    }
    let cpus = Machine::current().cpus;
    calibrate::plan(&measured[0], &measured[1], cpus, o.workers, peak).map_err(|e| anyhow!("calibration: {e}"))
}

/// Run one side through the full lifecycle.
fn play(side: &Side, scale: f64, o: &CompareOptions) -> Result<lifecycle::FullRun> {
    eprintln!("== {}: {}", side.label, side.command);
    let opts = RunOptions {
        target: None,
        out: Some(side.dir.clone()),
        rate_scale: scale,
        allow_remote: o.allow_remote,
        seed: o.seed,
        progress: o.progress,
        ..RunOptions::default()
    };
    let lo = LifecycleOptions { launch: Some(side.launch.clone()), ..LifecycleOptions::default() };
    let full = lifecycle::run_blocking(side.scenario.clone(), &opts, &lo)
        .map_err(|e| anyhow!("the {} run could not run: {e}", side.label))?;
    print_run(side.label, &full.summary);
    if full.summary.run.interrupted {
        bail!("the {} run was interrupted", side.label);
    }
    Ok(full)
}

fn print_run(label: &str, s: &Summary) {
    let validity = if s.validity.valid { "valid".to_string() } else { s.validity.problems.join("; ") };
    println!("{label}: {} (all attempts); run {} ({validity})", s.totals_line(), s.verdict.as_str());
    if let Some(e) = &s.environment {
        println!("{label}: machine: {}", e.line());
    }
}

/// What `run` produced.
pub struct Compared {
    pub summary: CompareSummary,
    pub written: crate::report::Written,
    pub summary_path: PathBuf,
}

/// How the load is scaled to this machine: calibrated, a fixed
/// --rate-scale, or as written; printed, and kept for the summary and the
/// report's yellow box.
fn scaling(s: &Scenario, o: &CompareOptions) -> Result<ScalingInfo> {
    let calibration = match o.scaling {
        Scaling::Calibrate => Some(calibrate_scale(s, o)?),
        _ => None,
    };
    let (scale, source) = match (o.scaling, &calibration) {
        (_, Some(c)) => (c.scale, "calibrated"),
        (Scaling::Fixed(x), _) => (x, "rate_scale"),
        _ => (1.0, "as written"),
    };
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--rate-scale {scale}: must be a positive number");
    }
    let planned = schedule::build(&compress(s, scale), scale);
    let as_written = schedule::build(s, 1.0);
    let mut note = None;
    if scale != 1.0 {
        let mut text = match &calibration {
            Some(c) => c.describe(),
            None => format!("Scaled by --rate-scale {scale}."),
        };
        text.push_str(&format!(
            " The arrival profile was compressed in time by the same factor (every stage {scale} times shorter, \
             every fault {scale} times earlier; think times, timeouts and hang lengths unchanged), so the same {} \
             shoppers arrive in the same shape in {:.0} s instead of {:.0} s.",
            planned.shoppers.len(),
            planned.duration.as_secs_f64(),
            as_written.duration.as_secs_f64()
        ));
        note = Some(text);
    }
    if let Some(n) = &note {
        println!("scaling: {n}");
    }
    if let Some(c) = &calibration {
        println!(
            "machine: other work took {:.0}% (single-process burst) and {:.0}% (cluster burst) of this machine's \
             CPU during calibration (limit {:.0}%, environment.max_other_cpu)",
            c.single.other_work * 100.0,
            c.cluster.other_work * 100.0,
            s.environment.max_other_cpu * 100.0
        );
    }
    if let Some(c) = &calibration
        && !c.headroom
    {
        eprintln!("harness: WARNING: {}", c.warnings.join(" "));
    }
    Ok(ScalingInfo {
        source: source.into(),
        scale,
        peak_rate: crate::host::limits::peak_rate(s, scale),
        peak_rate_as_written: crate::host::limits::peak_rate(s, 1.0),
        planned_shoppers: planned.shoppers.len() as u64,
        arrivals_s: planned.duration.as_secs_f64(),
        arrivals_as_written_s: as_written.duration.as_secs_f64(),
        note,
        calibration,
    })
}

/// Scale, run both sides, build the report and the joint summary.
pub fn run(scenario: Scenario, o: &CompareOptions) -> Result<Compared> {
    check_options(o)?;
    let baseline_doc = o.baseline.as_deref().map(baseline::read).transpose()?;
    let mut s = scenario;
    if let Some(seed) = o.seed {
        s.seed = seed;
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;

    let scaling = scaling(&s, o)?;
    let scale = scaling.scale;
    let played = compress(&s, scale);

    let graceful = s.target.launch.as_ref().map_or(Duration::from_secs(10), |l| l.stop_timeout);
    let (single_faults, mapping) = single_process_faults(&played.chaos, graceful);
    let mut single = side(&played, o, SINGLE, SINGLE_DIR)?;
    single.scenario.chaos = single_faults;
    let cluster = side(&played, o, CLUSTER, CLUSTER_DIR)?;

    let single_run = play(&single, scale, o)?;
    let cluster_run = play(&cluster, scale, o)?;

    let requests = crate::report::build::requests_of(&s);
    let single_target = if mapping.is_empty() {
        single.command.clone()
    } else {
        format!("{} (worker kills, hangs and deploys played as naive restarts)", single.command)
    };
    let read = |side: &Side, target: &str, full: &lifecycle::FullRun| -> Result<(RunData, Summary)> {
        rundir::run_from_dir(
            &side.dir,
            &RunDirOptions { label: side.label, target, requests: &requests, audit: full.chaos.audit.as_ref() },
        )
        .with_context(|| format!("reading the {} run folder {}", side.label, side.dir.display()))
    };
    let (single_data, single_summary) = read(&single, &single_target, &single_run)?;
    let (cluster_data, cluster_summary) = read(&cluster, &cluster.command, &cluster_run)?;

    let baseline = match &baseline_doc {
        Some(old) => {
            let new = serde_json::to_value(&cluster_summary).context("serialising the cluster summary")?;
            Some(baseline::compare(&new, old, &o.baseline_options))
        }
        None => None,
    };
    let cluster_faults =
        versus::faults_gate(CLUSTER, &cluster.scenario.chaos, &cluster_run.chaos.faults, &cluster_run.chaos.skipped);
    // The verdict is the judge's, from the summaries and the audits; the
    // page below shows the same rows.
    let (single_audit, cluster_audit) = (single_data.audit.as_ref(), cluster_data.audit.as_ref());
    let judged = versus::verdict_rows(
        &Figures::of(SINGLE, &single_summary, single_audit),
        &single_summary,
        &Figures::of(CLUSTER, &cluster_summary, cluster_audit),
        &cluster_summary,
        cluster_faults,
        baseline.as_ref(),
    );
    let valid = single_summary.validity.valid && cluster_summary.validity.valid;
    let verdict = versus::compare_verdict(valid, &judged);
    let gates = judged.rows;

    let mut description = o.description.clone();
    if !mapping.is_empty() {
        description.push_str(
            " The single process gets the same faults, as naive restarts where the cluster would lose, hang or \
             replace a worker: one process has nothing else to offer.",
        );
    }
    let data = ReportData {
        title: format!("{}: single process vs cluster", s.name),
        generated: model::now_rfc3339(),
        machine: Machine::current(),
        scenario: model::ScenarioInfo {
            name: s.name.clone(),
            description,
            shoppers: cluster_summary.run.shoppers_arrived,
            duration_s: scaling.arrivals_s,
            seed: s.seed,
            transport: cluster_summary.tls.as_ref().map(|t| t.header()),
        },
        scaling_note: scaling.note.clone(),
        verdict: gates.clone(),
        runs: vec![single_data.clone(), cluster_data.clone()],
    };
    let written = crate::report::write(&o.out, &data)?;
    let summary = CompareSummary {
        schema_version: summary::SCHEMA_VERSION,
        kind: baseline::COMPARE_KIND.into(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        scenario: s.name.clone(),
        verdict,
        exit_code: verdict.exit_code(),
        gates,
        scaling,
        single_process_faults: mapping,
        comparison: Comparison { single: single_data.totals, cluster: cluster_data.totals },
        baseline,
        runs: Runs {
            single: RunEntry {
                label: SINGLE.into(),
                dir: SINGLE_DIR.into(),
                command: single.command.clone(),
                summary: single_summary,
            },
            cluster: RunEntry {
                label: CLUSTER.into(),
                dir: CLUSTER_DIR.into(),
                command: cluster.command.clone(),
                summary: cluster_summary,
            },
        },
    };
    let summary_path = o.out.join(summary::SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&summary).context("serialising summary.json")?;
    summary::write_atomically(&summary_path, text.as_bytes())
        .with_context(|| format!("writing {}", summary_path.display()))?;
    Ok(Compared { summary, written, summary_path })
}

/// `harness compare`: returns the exit code (docs/EXIT_CODES.md).
pub fn main(args: CompareArgs) -> i32 {
    match main_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: compare: {e:#}");
            crate::judge::verdict::EXIT_INVALID
        }
    }
}

/// The `description` of a scenario file, if it has one.
fn description_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("description").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn main_inner(a: CompareArgs) -> Result<i32> {
    let mut s = crate::scenario::load(&a.scenario).map_err(|e| anyhow!("{e}"))?;
    if let Some(ca) = &a.tls_ca {
        s.target.ca_file = Some(ca.clone());
    }
    if a.no_tls_resumption {
        s.tls_resumption = false;
    }
    let server_tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => vec![
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ],
        _ => Vec::new(),
    };
    let exe = std::env::current_exe().context("locating the harness binary")?;
    let server_bin = exe.parent().map(|d| d.join(SERVER_BIN)).unwrap_or_else(|| PathBuf::from(SERVER_BIN));
    let scaling = match (a.calibrate || a.calibrate_only, a.rate_scale) {
        (true, _) => Scaling::Calibrate,
        (false, Some(x)) => Scaling::Fixed(x),
        (false, None) => Scaling::AsWritten,
    };
    let o = CompareOptions {
        out: a.out.unwrap_or_else(|| PathBuf::from("reports").join(&s.name)),
        single_cmd: a.single_cmd,
        cluster_cmd: a.cluster_cmd,
        server_bin,
        workers: a.workers.unwrap_or_else(|| Machine::current().cpus.max(1)),
        scaling,
        baseline: a.baseline,
        baseline_options: BaselineOptions {
            percentile: a.baseline_percentile,
            max_regression: a.max_regression,
            min_delta_ms: a.min_delta_ms,
            per_step: a.per_step,
        },
        seed: a.seed,
        allow_remote: a.allow_remote,
        progress: !a.quiet,
        description: description_of(&a.scenario),
        server_tls,
    };
    if a.calibrate_only {
        check_options(&o)?;
        let c = calibrate_scale(&s, &o)?;
        std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
        let path = o.out.join("calibration.json");
        crate::judge::summary::write_atomically(&path, serde_json::to_string_pretty(&c)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", c.describe());
        println!("calibration: {}", path.display());
        return Ok(crate::judge::verdict::EXIT_PASS);
    }
    let out = run(s, &o)?;
    let sum = &out.summary;
    for g in &sum.gates {
        println!("  gate {}: {} ({})", g.gate, g.status.as_str(), g.detail);
    }
    println!(
        "verdict: {} (exit {}); report {}, summary {}, junit {}",
        sum.verdict.as_str(),
        sum.exit_code,
        out.written.index_html.display(),
        out.summary_path.display(),
        out.written.junit_xml.display()
    );
    Ok(sum.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_baseline_percentile_is_named() {
        let bad = BaselineOptions { percentile: "p42".into(), ..BaselineOptions::default() };
        assert!(baseline::check_options(&bad).unwrap_err().to_string().contains("p42"));
    }
}
