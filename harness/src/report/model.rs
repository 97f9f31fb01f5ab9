//! What the report shows, as plain serde data: one or more runs side by side
//! plus the verdict. The run folder keeps it as `report.json`, so the page can
//! be rebuilt without re-running (`harness report RUN_DIR`).
//!
//! This is the report's own input type, filled by build.rs from what the run
//! concluded (`summary.json`, the audit). It is not the machine-readable
//! summary for CI (that is `summary.json`), and it does no measuring itself,
//! apart from reading the CPU model.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::judge::audit::{AuditCheck, AuditChecks};
pub use crate::judge::verdict::{GateRow, Status};
use crate::outcome::FailureClass;
pub use crate::record::recorder::SpectrumPoint;

/// Everything one report page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub title: String,
    /// When the data was produced, RFC 3339 UTC (see [`now_rfc3339`]).
    pub generated: String,
    pub machine: Machine,
    pub scenario: ScenarioInfo,
    /// How the load was scaled to this machine (e.g. a calibration of one
    /// worker's capacity). Shown at the top of the page: scaling is never hidden.
    #[serde(default)]
    pub scaling_note: Option<String>,
    /// Gate results, in the order they should be listed.
    pub verdict: Vec<GateRow>,
    /// One entry per run, shown side by side in this order (e.g. "single
    /// process" first, then "cluster").
    pub runs: Vec<RunData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs the OS reports.
    pub cpus: usize,
    pub cpu_model: String,
    /// e.g. "linux x86_64".
    pub os: String,
}

impl Machine {
    /// This machine: CPU count from the OS, model name from /proc/cpuinfo
    /// ("unknown" where there is no such file, e.g. not Linux).
    pub fn current() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let cpu_model = std::fs::read_to_string(Path::new("/proc/cpuinfo"))
            .ok()
            .and_then(|text| cpu_model_from_cpuinfo(&text))
            .unwrap_or_else(|| "unknown".to_string());
        Machine { cpus, cpu_model, os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH) }
    }
}

/// The first `model name` (x86) or `Model`/`Processor` (some ARM kernels) line.
pub fn cpu_model_from_cpuinfo(text: &str) -> Option<String> {
    for key in ["model name", "Model", "Processor", "cpu model"] {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':')
                && k.trim() == key
                && !v.trim().is_empty()
            {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

/// Now, as RFC 3339 UTC to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    /// One or two sentences a stakeholder understands.
    pub description: String,
    /// Shoppers that arrived (after any scaling).
    pub shoppers: u64,
    /// Planned length of the arrival schedule, seconds.
    pub duration_s: f64,
    pub seed: u64,
    /// https:// targets: "TLS, resumption on, certificate verified ..."
    /// (summary.json's `tls`), shown in the header; None for plain http.
    #[serde(default)]
    pub transport: Option<String>,
}

/// One run (one target) of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunData {
    /// Short name used in legends and headings: "single process", "cluster".
    pub label: String,
    /// What was run, e.g. "reference-server --workers 2".
    pub target: String,
    /// One point per second of the run, in time order.
    pub seconds: Vec<SecondPoint>,
    /// Latency of ok requests by percentile, ascending, from the run's histogram
    /// (the recorder's [`crate::record::recorder::spectrum`]).
    pub spectrum: Vec<SpectrumPoint>,
    pub endpoints: Vec<EndpointRow>,
    /// Per host of a fleet; empty (and no table) for a run without hosts.
    #[serde(default)]
    pub hosts: Vec<HostLine>,
    /// Per target address when connections went to several; empty (and no
    /// table) otherwise.
    #[serde(default)]
    pub addresses: Vec<HostLine>,
    /// A merged run's shards (`harness merge`); empty (and no table) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<crate::judge::summary::ShardRow>,
    pub faults: Vec<FaultRow>,
    #[serde(default)]
    pub audit: Option<AuditChecks>,
    pub slip: Slip,
    pub totals: KeyNumbers,
    /// Other work on the machine during the run; None for runs recorded
    /// before it was measured.
    #[serde(default)]
    pub machine: Option<MachineData>,
    /// Memory and descriptors of the target and the harness (resources.rs);
    /// None for runs recorded before they were sampled.
    #[serde(default)]
    pub resources: Option<super::resources::ResourceData>,
    /// The server's side from `server_metrics.jsonl` (scrape/series.rs);
    /// empty when the run scraped nothing.
    #[serde(default)]
    pub server: Vec<crate::scrape::series::ServerChart>,
    /// What scraping cost and how often it failed, per endpoint (summary.json `server_metrics`).
    #[serde(default)]
    pub scrapers: Vec<crate::judge::summary::ScrapedEndpoint>,
}

/// What else the machine did during a run (machine.rs): the band on the
/// time charts and the line under the slip table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineData {
    /// Other processes + steal, as a share of the machine's CPU (0..=1), per
    /// second from the run's start (index = second).
    pub other_work: Vec<f64>,
    pub assessment: crate::host::machine::Assessment,
}

/// What happened in one second of a run. Attempts are counted in the second
/// in which they ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SecondPoint {
    /// Start of the second, seconds from run start.
    pub t_s: f64,
    /// Latency of ok attempts that ended this second; None when there were none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The slowest failed attempt that ended this second (a timeout shows as
    /// the time it took to give up); None when nothing failed.
    pub failed_ms: Option<f64>,
    /// Attempts that ended ok / as an expected business refusal (409 sold out).
    pub ok: u64,
    pub refused: u64,
    /// Failed attempts that ended this second, by class.
    #[serde(default)]
    pub failures: BTreeMap<FailureClass, u64>,
    /// Shoppers that had arrived and not yet finished their journey.
    pub active: u64,
}

impl SecondPoint {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// One step (endpoint) of the journeys. Latency is of ok attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRow {
    pub step: String,
    /// e.g. "GET /products/{sku}".
    #[serde(default)]
    pub request: String,
    /// Attempts.
    pub count: u64,
    /// Failed attempts (first attempts and retries).
    pub failures: u64,
    /// Operations that still failed after their last retry.
    #[serde(default)]
    pub dropped: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One host of a fleet, or one target address, as the harness saw it
/// (attempt-level). Latency is of ok attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostLine {
    /// The host or the address; None: the attempts no host answered (they
    /// failed before any response), or that never had a connection.
    #[serde(alias = "host")]
    pub key: Option<String>,
    pub attempts: u64,
    pub ok: u64,
    pub refused: u64,
    /// Failed attempts by class, zero classes left out.
    pub failures: BTreeMap<FailureClass, u64>,
    /// None when the host answered no attempt ok.
    pub p99_ms: Option<f64>,
}

impl HostLine {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// One injected fault and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    pub name: String,
    /// The chaos action, e.g. "kill_worker", "signal_master SIGHUP", "hang_worker".
    pub action: String,
    pub start_s: f64,
    /// When the fault's action finished (e.g. the hang was released); None if it never did.
    #[serde(default)]
    pub end_s: Option<f64>,
    /// When the target was serving normally again; None if it never recovered.
    #[serde(default)]
    pub recovered_s: Option<f64>,
    /// "ok" or "error: ..." as logged by the injector.
    #[serde(default)]
    pub outcome: String,
    /// First attempts that failed and are attributed to this fault, by class.
    #[serde(default)]
    pub first_attempt_failures: BTreeMap<FailureClass, u64>,
    /// Of those operations, how many a retry saved / how many were dropped.
    pub recovered: u64,
    pub dropped: u64,
    /// From the fault's start to the target serving normally again.
    #[serde(default)]
    pub recovery_ms: Option<f64>,
    /// The scenario's budget for this occurrence and whether it was kept.
    #[serde(default)]
    pub budget: Option<crate::judge::summary::BudgetOut>,
}

impl FaultRow {
    pub fn first_attempt_failed(&self) -> u64 {
        self.first_attempt_failures.values().sum()
    }
}

/// How late the harness sent requests compared with the schedule (its own
/// lateness, which would otherwise hide server latency: coordinated omission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Slip {
    pub p99_ms: f64,
    pub max_ms: f64,
    /// True when the harness, not the target, limited the sending rate; the
    /// run's latency figures are then not trustworthy.
    pub harness_bottleneck: bool,
    #[serde(default)]
    pub detail: String,
}

/// The page's key numbers of one run: a few of the ledger's totals (summary.json
/// `totals`, the one totals type) with the throughput and the ok latency next
/// to them. An operation is one step of one shopper, with its retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KeyNumbers {
    pub operations: u64,
    pub ok: u64,
    pub refused: u64,
    /// Operations that failed after every retry: the shopper's request was lost.
    pub dropped: u64,
    /// Operations whose first attempt failed (retried or not).
    pub first_attempt_failures: u64,
    /// Ok operations per second over the run.
    #[serde(default)]
    pub throughput_rps: f64,
    /// Whole-run latency of ok operations.
    #[serde(default)]
    pub p50_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
    #[serde(default)]
    pub p999_ms: f64,
    #[serde(default)]
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_is_read_from_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model_from_cpuinfo(text).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model_from_cpuinfo("processor : 0\n"), None);
        assert!(Machine::current().cpus >= 1);
    }

    #[test]
    fn worst_status() {
        assert_eq!(Status::worst([Status::Pass, Status::Pass]), Status::Pass);
        assert_eq!(Status::worst([Status::Pass, Status::Unknown]), Status::Unknown);
        assert_eq!(Status::worst([Status::Unknown, Status::Fail, Status::Pass]), Status::Fail);
        assert_eq!(Status::worst([]), Status::Pass);
    }
}
