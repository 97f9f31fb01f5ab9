//! `harness chaos`: the scenario's faults and nothing else, on the shared
//! clock of a sharded run (`--start-at T`), next to the target (process
//! faults) or anywhere (`command` faults). The shards play the traffic with
//! no faults; this runner's fault windows and the target's lifecycle events
//! go to its own folder (`chaos-runner.json`, `events.jsonl`), where
//! `harness merge` finds them and attributes the shards' failures to them.
//!
//! It plays the faults until the arrivals end (or the last fault has
//! started, if later), then waits for the faults in progress to recover and
//! for the target to be healthy, as a single run does after its traffic.
//! A target it launched it keeps up for `--hold` more (default: the longest
//! journey the scenario's timeouts allow, plus 5 s, so no shard still
//! playing loses it) before stopping it.
//!
//! Not for: traffic (the shards) or judging (the merge).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::chaos::faults::{self, FaultRecord};
use crate::drive::lifecycle::{self, LifecycleOptions};
use crate::drive::run::StartError;
use crate::drive::shard;
use crate::record::events::{EVENTS_FILE, EventLog};
use crate::scenario::Scenario;
use crate::traffic::{engine, schedule};

/// The chaos runner's record in its folder; its presence marks the folder
/// as the chaos runner's for `harness merge`.
pub const CHAOS_RUNNER_FILE: &str = "chaos-runner.json";

/// What `chaos-runner.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosRunnerRecord {
    /// Fingerprint of the scenario file (drive/shard.rs), as the shards record it.
    pub scenario_hash: String,
    pub seed: u64,
    pub start_at_unix_ms: f64,
    /// How late the runner began after T (ms).
    pub start_offset_ms: f64,
    pub host: String,
    /// Executed faults in start order; times in ms since T.
    pub faults: Vec<FaultRecord>,
    /// Occurrences not started because the runner ended first ("name#n").
    pub skipped: Vec<String>,
    pub healthy_at_end: bool,
    pub end_health: String,
    /// How a launched target was stopped, or that it was not ours to stop.
    pub target_stop: String,
    /// Problems that make any merge using this folder invalid.
    pub problems: Vec<String>,
}

/// Options of `harness chaos` beyond the scenario.
#[derive(Debug, Clone)]
pub struct ChaosRunOptions {
    pub start_at: SystemTime,
    pub out: PathBuf,
    pub target: Option<String>,
    pub allow_remote: bool,
    pub scenario_hash: String,
    /// How long a launched target stays up after the faults (None: the drain bound).
    pub hold: Option<Duration>,
    pub lifecycle: LifecycleOptions,
}

/// Runs the faults; returns the record written to `OUT/chaos-runner.json`.
pub async fn run(mut scenario: Scenario, o: &ChaosRunOptions) -> Result<ChaosRunnerRecord, StartError> {
    if let Some(t) = &o.target {
        scenario.target.base_url = t.trim_end_matches('/').to_string();
    }
    crate::host::names::pin(&scenario.target.resolve);
    crate::host::limits::resolve_target(&scenario.target.base_url, o.allow_remote).map_err(StartError::Target)?;
    lifecycle::attach_options(&mut scenario, &o.lifecycle)?;
    let out_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StartError::Output { path, source }
    };
    std::fs::create_dir_all(&o.out).map_err(out_err(&o.out))?;
    let target = lifecycle::start_target(&scenario, &o.lifecycle, &o.out).await?;
    let (zero, start_offset_ms) = shard::wait_until(o.start_at).await;
    let events_path = o.out.join(EVENTS_FILE);
    let events = EventLog::create_at(&events_path, zero).map_err(out_err(&events_path))?;
    events.emit(
        "chaos_runner_start",
        json!({"scenario": scenario.name, "seed": scenario.seed, "faults": scenario.chaos.len(),
               "start_offset_ms": start_offset_ms, "target": scenario.target.base_url}),
    );
    let mut problems = Vec::new();
    let chaos_opts = faults::ChaosOptions { log_dir: Some(o.out.clone()), ..o.lifecycle.chaos.clone() };
    let handle = faults::start(&scenario.chaos, scenario.seed, Arc::clone(&target), events.clone(), chaos_opts);
    // Play until the arrivals end or the last fault has started, whichever is later.
    let arrivals = schedule::build(&scenario, 1.0).duration;
    let last = faults::last_fault_at(&scenario.chaos).unwrap_or_default();
    let until = arrivals.max(last) + Duration::from_millis(100);
    tokio::time::sleep_until(tokio::time::Instant::from_std(zero + until)).await;
    let report = match handle {
        Ok(h) => h.finish(o.lifecycle.health_timeout).await,
        Err(e) => {
            problems.push(format!("the fault runner could not start: {e}"));
            Default::default()
        }
    };
    if !report.healthy_at_end {
        problems.push(format!("after the faults: {}", report.end_health));
    }
    let target_stop = if target.is_launched() {
        let hold = o.hold.unwrap_or_else(|| engine::longest_journey(&scenario) + Duration::from_secs(5));
        events.emit("target_hold", json!({"ms": hold.as_millis() as u64}));
        tokio::time::sleep(hold).await;
        match target.stop(None).await {
            Ok(s) => s.to_string(),
            Err(e) => format!("error: {e}"),
        }
    } else {
        "not stopped: the chaos runner attached to it".to_string()
    };
    events.emit("chaos_runner_end", json!({"problems": problems, "target_stop": target_stop}));
    let _ = events.flush();
    let record = ChaosRunnerRecord {
        scenario_hash: o.scenario_hash.clone(),
        seed: scenario.seed,
        start_at_unix_ms: shard::unix_ms(o.start_at),
        start_offset_ms,
        host: shard::host_name(),
        faults: report.faults,
        skipped: report.skipped,
        healthy_at_end: report.healthy_at_end,
        end_health: report.end_health,
        target_stop,
        problems,
    };
    let path = o.out.join(CHAOS_RUNNER_FILE);
    let text = serde_json::to_string_pretty(&record)
        .map_err(|e| StartError::Output { path: path.clone(), source: std::io::Error::other(e) })?;
    crate::judge::summary::write_atomically(&path, text.as_bytes()).map_err(out_err(&path))?;
    Ok(record)
}
