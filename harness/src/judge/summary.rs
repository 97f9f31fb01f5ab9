//! `summary.json`: the machine-readable result of one run. Versioned
//! (`schema_version`), documented in docs/SUMMARY.md, with a JSON Schema in
//! harness/summary.schema.json that a test checks real output against.
//! Adding a field is a minor change; renaming or removing one bumps
//! `schema_version`.
//!
//! Not for computing anything: it copies numbers from the ledger, the
//! recorder and the gates.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chaos::faults::FaultRecord;
use crate::host::machine::Assessment;
use crate::judge::attribution::{Attribution, FailureCounts};
use crate::judge::audit::AuditReport;
use crate::judge::budgets::Budgets;
use crate::judge::gates::{GateResult, Noise};
use crate::judge::hosts::{AddressRow, HostRow};
use crate::judge::verdict::{GateRow, Status, Verdict};
use crate::outcome::FailureClass;
use crate::record::ledger::Totals;
use crate::record::recorder::{self, Percentiles, Recorder, SecondRow, SpectrumPoint};

pub const SCHEMA_VERSION: u32 = 1;
pub const SUMMARY_FILE: &str = "summary.json";

/// Schedule slip above this at p99 means the harness, not the server, was
/// the bottleneck for part of the run.
pub const SLIP_P99_LIMIT_MS: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub harness_version: String,
    pub scenario: ScenarioInfo,
    pub run: RunInfo,
    pub verdict: Verdict,
    pub exit_code: i32,
    pub validity: Validity,
    pub totals: Totals,
    pub throughput: Throughput,
    pub latency: Latency,
    pub schedule_slip: Slip,
    /// https:// targets: how the certificate was checked and what the TLS
    /// connections did; null for plain http (and in older summaries).
    #[serde(default)]
    pub tls: Option<TlsOut>,
    /// Other work on the machine during the run and what it left undecided;
    /// null in summaries written before it was measured.
    #[serde(default)]
    pub environment: Option<Assessment>,
    /// Memory and open descriptors of the harness and the target over the
    /// run (host/resources.rs, samples in `resources.csv`); null in
    /// summaries written before they were sampled.
    #[serde(default)]
    pub resources: Option<crate::host::resources::Resources>,
    /// The target's Prometheus endpoints scraped during the run (scrape/):
    /// per endpoint its scrapes, gaps and the scraper's CPU time; the
    /// samples are in `server_metrics.jsonl`. Null when none was scraped.
    #[serde(default)]
    pub server_metrics: Option<ServerMetrics>,
    pub gates: Vec<GateResult>,
    pub files: Files,
    /// One row per second of the run.
    pub series: Vec<SecondRow>,
    /// Faults, attribution and audit (`faults`, `failures_outside_faults`,
    /// `audit` at the top level); empty/null for a run without the lifecycle.
    #[serde(flatten)]
    pub chaos: ChaosSections,
    /// A shard's own record (`--shard K/N`); absent in any other run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// A merged run's shards, one row each (`harness merge`); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
}

/// What a shard records about itself (`summary.json`'s `shard` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u64,
    pub count: u64,
    /// Fingerprint of the scenario file's bytes (drive/shard.rs `fnv_hex`): shards of one scenario agree.
    pub scenario_hash: String,
    pub seed: u64,
    /// The shared start instant T (Unix ms).
    pub start_at_unix_ms: f64,
    /// When this shard really began playing, in ms after T (its lateness;
    /// arrivals before it were sent late and show as slip).
    pub start_offset_ms: f64,
    /// The clock this shard used: the host's wall clock (CLOCK_REALTIME),
    /// which the shared T is read against; its offset from the other
    /// shards' clocks is not measured by the harness (keep hosts on NTP).
    pub clock: String,
    pub host: String,
    /// Shoppers of the whole scenario in this shard.
    pub shoppers: u64,
    /// The pool size this shard used (its part of the scenario's).
    #[serde(default)]
    pub pool_size: Option<u64>,
    /// A shard runs no faults and no audit; the chaos runner and the merge do.
    pub chaos: String,
    pub audit: String,
}

/// One shard of a merged run (`summary.json`'s `shards`, the report's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRow {
    pub index: u64,
    pub host: String,
    pub shoppers: u64,
    pub operations: u64,
    pub slip_p99_ms: f64,
    /// How late the shard began after the shared start instant (ms).
    pub start_offset_ms: f64,
    /// The shard's run folder as given to the merge.
    pub dir: String,
}

/// `server_metrics`: what the scraper did (the endpoints' lines of the file, without series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    pub file: String,
    pub endpoints: Vec<ScrapedEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapedEndpoint {
    pub label: String,
    pub url: String,
    pub interval_ms: u64,
    pub scrapes: u64,
    /// Scrapes that failed, timed out or returned garbage: gaps, never zeros.
    pub gaps: u64,
    /// CPU time of the endpoint's scraper thread (off the run's runtime).
    pub scraper_cpu_ms: f64,
    /// Why scrapes failed, each distinct reason once (at most 5).
    #[serde(default)]
    pub gap_reasons: Vec<String>,
}

impl From<&crate::scrape::EndpointInfo> for ScrapedEndpoint {
    fn from(e: &crate::scrape::EndpointInfo) -> Self {
        ScrapedEndpoint {
            label: e.label.clone(),
            url: e.url.clone(),
            interval_ms: e.interval_ms,
            scrapes: e.scrapes,
            gaps: e.gaps,
            scraper_cpu_ms: e.scraper_cpu_ms,
            gap_reasons: e.gap_reasons.clone(),
        }
    }
}

/// What the lifecycle adds to the summary: per fault occurrence, the
/// failures attributed to it and its recovery time; the failures outside
/// every fault window; the audit's verdict and counts. Full lists (which
/// attempts, which orders) are in `chaos.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChaosSections {
    /// One entry per fault occurrence, in start order.
    #[serde(default)]
    pub faults: Vec<FaultOut>,
    /// Failed attempts in no fault window: nothing the harness did explains
    /// them. Null when no attribution ran (a run without the lifecycle).
    #[serde(default)]
    pub failures_outside_faults: Option<FailuresOut>,
    /// Null when the scenario has no audit.
    #[serde(default)]
    pub audit: Option<AuditOut>,
    /// Per host of a fleet (worker ids `HOST-N`), what the harness saw from
    /// it; absent when no worker id named a host (judge/hosts.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostRow>,
    /// Per target address, when connections went to several (a name's DNS
    /// answers or `target.resolve`); absent for a run that used one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultOut {
    pub name: String,
    /// The occurrence's final name (`name`, or `name#n` for a repeated
    /// fault), as the gates, the console and the report show it.
    #[serde(default)]
    pub label: String,
    /// 1-based occurrence of a periodic fault.
    pub occurrence: u32,
    pub action: String,
    pub detail: String,
    pub pids: Vec<i32>,
    /// "ok" or "error: ...".
    pub outcome: String,
    pub start_ms: f64,
    pub end_ms: f64,
    /// When the target was back at steady state; null if it never was.
    pub recovered_ms: Option<f64>,
    /// `recovered_ms - start_ms`; null if it never recovered.
    pub recovery_ms: Option<f64>,
    pub failures: FailuresOut,
    /// The scenario's budget for this occurrence, and whether it was kept;
    /// null when the fault has none (docs/CHAOS.md, "Budgets").
    #[serde(default)]
    pub budget: Option<BudgetOut>,
}

/// A fault occurrence's budget (its gates are in `gates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetOut {
    /// Null when not limited.
    pub max_first_attempt_failures: Option<u64>,
    pub max_dropped: Option<u64>,
    /// Every count within its limit (false too when the fault did not work).
    pub kept: bool,
}

/// Failures of one fault window (or of none). Every class appears in the
/// `*_by_class` maps, with 0 if none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailuresOut {
    pub first_attempt_failures: u64,
    pub first_attempt_failures_by_class: BTreeMap<String, u64>,
    pub retry_failures: u64,
    pub retry_failures_by_class: BTreeMap<String, u64>,
    /// Operations whose first failure fell here and that a retry recovered.
    pub recovered: u64,
    /// Operations whose first failure fell here and that were dropped.
    pub dropped: u64,
}

/// The audit's verdict and the size of each finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditOut {
    /// `pass`, `fail` or `unknown` (never a pass).
    pub verdict: String,
    pub reason: String,
    pub orders_in_audit: u64,
    pub checkouts: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub failed_but_applied: u64,
    pub oversold: u64,
    pub recovered: u64,
    pub unknown_not_applied: u64,
    pub unverifiable: u64,
    pub unclaimed_orders: u64,
}

/// Every failure class with its count, 0 if absent (the keys of the
/// `*_by_class` maps).
pub fn all_classes(m: &BTreeMap<FailureClass, u64>) -> BTreeMap<String, u64> {
    FailureClass::ALL.iter().map(|c| (c.as_str().to_string(), m.get(c).copied().unwrap_or(0))).collect()
}

impl FailuresOut {
    pub fn from(c: &FailureCounts) -> Self {
        FailuresOut {
            first_attempt_failures: c.first_attempt_total(),
            first_attempt_failures_by_class: all_classes(&c.first_attempt_failures),
            retry_failures: c.retry_total(),
            retry_failures_by_class: all_classes(&c.retry_failures),
            recovered: c.recovered,
            dropped: c.dropped,
        }
    }
}

impl AuditOut {
    pub fn from(r: &AuditReport) -> Self {
        let n = |x: usize| x as u64;
        AuditOut {
            verdict: r.verdict.as_str().to_string(),
            reason: r.reason.clone(),
            orders_in_audit: n(r.orders_in_audit),
            checkouts: n(r.checkouts),
            acknowledged: n(r.acknowledged),
            lost: n(r.lost.len()),
            duplicates: n(r.duplicates.len()),
            failed_but_applied: n(r.failed_but_applied.len()),
            oversold: n(r.oversold.len()),
            recovered: n(r.recovered),
            unknown_not_applied: n(r.unknown_not_applied),
            unverifiable: n(r.unverifiable.len()),
            unclaimed_orders: n(r.unclaimed_orders),
        }
    }
}

impl ChaosSections {
    /// `faults` and `attribution.faults` are in the same order (one window per record).
    pub fn from(
        faults: &[FaultRecord],
        attribution: &Attribution,
        budgets: &Budgets,
        audit: Option<&AuditReport>,
        hosts: Vec<HostRow>,
        addresses: Vec<AddressRow>,
    ) -> Self {
        let faults = faults
            .iter()
            .zip(&attribution.faults)
            .map(|(f, a)| FaultOut {
                name: f.name.clone(),
                label: f.label.clone(),
                occurrence: f.occurrence,
                action: f.action.clone(),
                detail: f.detail.clone(),
                pids: f.pids.clone(),
                outcome: f.outcome.clone(),
                start_ms: f.start_ms,
                end_ms: f.end_ms,
                recovered_ms: f.recovered_at_ms,
                recovery_ms: a.recovery_ms,
                failures: FailuresOut::from(&a.counts),
                budget: budgets.of(&f.name, f.occurrence).map(|k| BudgetOut {
                    max_first_attempt_failures: k.budget.max_first_attempt_failures,
                    max_dropped: k.budget.max_dropped,
                    kept: k.kept,
                }),
            })
            .collect();
        ChaosSections {
            faults,
            failures_outside_faults: Some(FailuresOut::from(&attribution.outside.counts)),
            audit: audit.map(AuditOut::from),
            hosts,
            addresses,
        }
    }
}

/// summary.json's `tls` section (docs/SUMMARY.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsOut {
    /// Certificate verification was off (`target.insecure_skip_verify`).
    pub insecure_skip_verify: bool,
    /// `target.ca_file`, or null: the system's roots.
    pub ca_file: Option<String>,
    /// Session resumption was on (`connections.tls_resumption`).
    pub resumption: bool,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// Connections the server ended without close_notify after a complete
    /// response: counted, not failures (docs/LEDGER.md).
    pub unclean_closes: u64,
    /// Connections the harness saw the server end with close_notify.
    pub clean_closes: u64,
    /// The first certificate the harness refused, in words (e.g.
    /// "certificate expired ..."); null when none was.
    pub certificate_problem: Option<String>,
}

impl TlsOut {
    /// The report header's and the console's words: "TLS, resumption on".
    pub fn header(&self) -> String {
        let mut s = format!("TLS, resumption {}", if self.resumption { "on" } else { "off" });
        if self.insecure_skip_verify {
            s.push_str(", certificate NOT verified (insecure_skip_verify)");
        } else if let Some(ca) = &self.ca_file {
            s.push_str(&format!(", certificate verified against {ca}"));
        } else {
            s.push_str(", certificate verified against the system's CAs");
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    pub name: String,
    pub seed: u64,
    pub rate_scale: f64,
    pub target: String,
    /// `pool` or `per_shopper`.
    pub connection_model: String,
    pub pool_size: Option<u64>,
    pub idle_timeout_ms: u64,
    pub planned_shoppers: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Wall-clock time of the run clock's zero (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// From the run clock's zero to the end of the last shopper.
    pub duration_s: f64,
    /// When the last arrival was planned (the schedule's length).
    pub arrivals_duration_s: f64,
    pub shoppers_arrived: u64,
    pub peak_active_shoppers: u64,
    pub cut_off_shoppers: u64,
    pub interrupted: bool,
    /// Local source addresses the connections were spread over (empty: one, kernel-chosen).
    pub source_addresses: Vec<String>,
    /// The harness's peak resident memory (MiB) when the traffic ended, before
    /// the ledger is read back for attribution and the report; null off Linux.
    #[serde(default)]
    pub traffic_peak_rss_mb: Option<f64>,
    /// CPU seconds (user + sys, all threads) the harness used while it
    /// played the traffic: from the first arrival to the last shopper's
    /// end, without start-up, the ledger read back and the report. What
    /// generating the load cost; null in summaries from before it was measured.
    #[serde(default)]
    pub traffic_cpu_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validity {
    pub valid: bool,
    /// Why the run is invalid (empty when valid).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Attempts ended per second of the run.
    pub attempts_per_s: f64,
    /// Operations ended ok or refused per second (what `min_throughput_rps` gates).
    pub goodput_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// All attempts of all steps, every outcome.
    pub overall: Percentiles,
    /// All steps, split by outcome key (`ok`, `refused`, or a failure class).
    pub by_outcome: BTreeMap<String, Percentiles>,
    pub steps: BTreeMap<String, StepLatency>,
    /// Ok attempts of all steps by percentile, from the median to the
    /// maximum on a "nines" axis (the report's percentile chart).
    #[serde(default)]
    pub ok_spectrum: Vec<SpectrumPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLatency {
    pub all: Percentiles,
    pub by_outcome: BTreeMap<String, Percentiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slip {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// p99 slip above `limit_ms`: the harness was the bottleneck; latency
    /// figures then include the harness's own lateness.
    pub harness_limited: bool,
    pub limit_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Files {
    pub ledger: String,
    pub events: String,
    pub latency_intervals: String,
    pub latency_totals: String,
}

pub fn latency(rec: &Recorder) -> Latency {
    let per_outcome = rec.per_outcome();
    Latency {
        overall: Percentiles::of(&rec.overall()),
        by_outcome: per_outcome.iter().map(|(k, h)| (k.to_string(), Percentiles::of(h))).collect(),
        steps: rec
            .per_step()
            .into_iter()
            .map(|s| {
                let by = s.by_outcome.iter().map(|(k, h)| (k.to_string(), Percentiles::of(h))).collect();
                (s.name.to_string(), StepLatency { all: Percentiles::of(&s.all), by_outcome: by })
            })
            .collect(),
        ok_spectrum: per_outcome.get("ok").map(recorder::spectrum).unwrap_or_default(),
    }
}

pub fn slip(rec: &Recorder) -> Slip {
    let p = Percentiles::of(rec.slip());
    Slip {
        p50_ms: p.p50_ms,
        p99_ms: p.p99_ms,
        max_ms: p.max_ms,
        harness_limited: p.p99_ms > SLIP_P99_LIMIT_MS,
        limit_ms: SLIP_P99_LIMIT_MS,
    }
}

impl Summary {
    /// The noise of this finished run (gates.rs decides what it excuses).
    pub fn noise(&self) -> Noise {
        Noise::new(self.environment.as_ref().is_some_and(|e| e.noisy), self.schedule_slip.p99_ms)
    }
    /// One line for a console: operations by outcome, first-attempt
    /// failures, and the latency of all attempts (`harness run`, `compare`).
    pub fn totals_line(&self) -> String {
        let (t, l) = (&self.totals, &self.latency.overall);
        format!(
            "{} operations: {} ok, {} refused, {} dropped; {} first-attempt failures ({} recovered); \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            t.operations,
            t.ok,
            t.refused,
            t.dropped,
            t.first_attempt_failures,
            t.recovered,
            l.p50_ms,
            l.p99_ms,
            l.max_ms
        )
    }

    /// The run's gates as verdict rows named "<label>: <gate>", plus a row for
    /// the run's validity: an invalid run (interrupted, ledger not adding up...)
    /// is unknown, never a pass.
    pub fn gate_rows(&self, label: &str) -> Vec<GateRow> {
        let summary = self;
        let mut rows = Vec::new();
        let v = &summary.validity;
        rows.push(GateRow {
            gate: format!("{label}: the run is valid"),
            status: if v.valid { Status::Pass } else { Status::Unknown },
            detail: if v.valid {
                "every shopper finished and the ledger adds up".into()
            } else {
                v.problems.join("; ")
            },
        });
        // Gates the run left undecided because the machine was busy (gates.rs `undecided`).
        let noise = summary.environment.as_ref().filter(|e| !e.undecided_gates.is_empty());
        for g in &summary.gates {
            let (status, detail) = match noise {
                Some(e) if e.undecided_gates.contains(&g.name) => {
                    (Status::Unknown, format!("{}; undecided: {}", g.detail, e.reason))
                }
                _ => (if g.passed { Status::Pass } else { Status::Fail }, g.detail.clone()),
            };
            rows.push(GateRow { gate: format!("{label}: {}", g.name), status, detail });
        }
        rows
    }
}

/// Writes `summary.json` (pretty-printed) into `dir`.
pub fn write(dir: &Path, s: &Summary) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(s).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(SUMMARY_FILE), (text + "\n").as_bytes())
}

/// Writes `path` through a temporary file in the same folder and a rename,
/// so a full disk leaves the old file or none, never a half-written one
/// (issue 18: a 0-byte summary.json after "No space left on device").
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads a `summary.json` back (report, compare).
pub fn read(path: &Path) -> Result<Summary, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_survive_the_round_trip_through_summary_json() {
        let t = Totals {
            attempts: 10,
            attempts_ok: 6,
            attempts_refused: 1,
            attempts_failed: 3,
            attempts_failed_by_class: BTreeMap::from([
                (FailureClass::ConnectRefused, 2),
                (FailureClass::ServerError, 1),
            ]),
            attempts_failed_on_reused_connection: 1,
            operations: 8,
            ok: 6,
            refused: 1,
            dropped: 1,
            dropped_by_class: BTreeMap::from([(FailureClass::ServerError, 1)]),
            dropped_by_step: BTreeMap::from([("checkout".to_string(), 1)]),
            first_attempt_failures: 2,
            first_attempt_failures_by_class: BTreeMap::from([(FailureClass::ConnectRefused, 2)]),
            recovered: 1,
            retries: 2,
            reconnects: 3,
            open_attempts: 0,
            open_operations: 0,
        };
        let doc = serde_json::to_value(&t).unwrap();
        assert_eq!(doc["attempts_failed_by_class"].as_object().unwrap().len(), FailureClass::ALL.len());
        assert_eq!(doc["attempts_failed_by_class"]["connect_timeout"], 0, "every class, 0 if none");
        assert_eq!(serde_json::from_value::<Totals>(doc).unwrap(), t);
    }
}
