//! The report of one `harness run`: reads the finished run folder (as
//! `harness compare` does for each of its sides) and writes `report.json`,
//! `index.html` and `junit.xml` next to the run's own files.
//!
//! Not for: comparing runs (drive/compare/ builds a two-run page) or judging the
//! run (the verdict rows only repeat the gates already in `summary.json`).

use std::path::Path;

use anyhow::{Context, Result};

use super::model::{self, Machine, ReportData};
use super::rundir::{self, RunDirOptions};
use super::{Written, write};
use crate::judge::audit::AuditReport;
use crate::scenario::Scenario;

/// Write the single-run report into `dir`, a run folder `harness run` has
/// just filled. `label` names the run on the page ("run"); `target` says how
/// the target was reached or started. Errors name the folder.
pub fn write_for_run(
    dir: &Path,
    scenario: &Scenario,
    label: &str,
    target: &str,
    audit: Option<&AuditReport>,
) -> Result<Written> {
    let requests = super::build::requests_of(scenario);
    let (run, summary) = rundir::run_from_dir(dir, &RunDirOptions { label, target, requests: &requests, audit })
        .with_context(|| format!("reading the run folder {}", dir.display()))?;
    // Scaling is never hidden: a --rate-scale other than 1 is said at the top.
    let rate_scale = summary.scenario.rate_scale;
    let scaling_note =
        (rate_scale != 1.0).then(|| format!("Every arrival rate multiplied by {rate_scale} (--rate-scale)."));
    let data = ReportData {
        title: format!("{}: {label}", scenario.name),
        generated: model::now_rfc3339(),
        machine: Machine::current(),
        scenario: model::ScenarioInfo {
            name: scenario.name.clone(),
            description: format!("One run of the scenario {} against {target}.", scenario.name),
            shoppers: summary.run.shoppers_arrived,
            duration_s: summary.run.arrivals_duration_s,
            seed: summary.scenario.seed,
            transport: summary.tls.as_ref().map(|t| t.header()),
        },
        scaling_note,
        verdict: summary.gate_rows(label),
        runs: vec![run],
    };
    write(dir, &data).with_context(|| format!("writing the report into {}", dir.display()))
}
