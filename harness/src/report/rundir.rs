//! Read a finished run folder into the report's [`RunData`]: its
//! `summary.json` (everything the run concluded) and `machine.csv` (the grey
//! band), plus the summary's gates as verdict rows. This is the I/O edge of
//! the report; the change of shape is in build.rs.
//!
//! Not for: running or judging anything. The ledger and the event log are
//! the evidence behind the summary; the report does not read them again.
//! The audit's full report is passed in (it lives in `chaos.json`).

use std::path::Path;

use anyhow::{Result, anyhow};

use super::build::{self, StepRequest};
use super::model::{MachineData, RunData};
use super::resources::{ResourceData, ResourcePoint};
use crate::host::{machine, resources};
use crate::judge::audit::AuditReport;
use crate::judge::resources as judge_resources;
use crate::judge::summary::{self, SUMMARY_FILE, Summary};

/// What the run folder does not say.
pub struct RunDirOptions<'a> {
    /// "single process", "cluster".
    pub label: &'a str,
    /// How the target was started, for the page.
    pub target: &'a str,
    /// The scenario's steps and how each is sent, for the per-endpoint table
    /// ([`build::requests_of`]).
    pub requests: &'a [StepRequest],
    pub audit: Option<&'a AuditReport>,
}

/// Read `dir`'s summary (and machine samples) into one run of the report.
pub fn run_from_dir(dir: &Path, o: &RunDirOptions<'_>) -> Result<(RunData, Summary)> {
    let summary = summary::read(&dir.join(SUMMARY_FILE)).map_err(|e| anyhow!("reading the run's summary: {e}"))?;
    let run = build::run(o.label, o.target, &summary, o.requests, o.audit);
    let machine = summary.environment.clone().map(|assessment| MachineData {
        other_work: machine::read_csv(dir).into_iter().map(|(_, share)| share).collect(),
        assessment,
    });
    let resources = summary.resources.clone().map(|r| ResourceData {
        samples: resources::read_csv(dir).iter().map(ResourcePoint::from_sample).collect(),
        summary: r,
        rss_limit: gate_limit(&summary, judge_resources::RSS_GATE),
        fds_limit: gate_limit(&summary, judge_resources::FDS_GATE),
    });
    let scraped = crate::scrape::read(dir).map_err(|e| anyhow!("reading the run's server metrics: {e}"))?;
    let server = crate::scrape::series::charts(&scraped);
    Ok((RunData { machine, resources, server, ..run }, summary))
}

fn gate_limit(s: &Summary, name: &str) -> Option<f64> {
    s.gates.iter().find(|g| g.name == name).map(|g| g.limit)
}
