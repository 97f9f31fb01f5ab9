//! summary.json of real runs with faults matches harness/summary.schema.json,
//! and its `faults`, `failures_outside_faults` and `audit` sections carry the
//! same numbers as chaos.json: a foreign pre-fork server (Python) with a
//! worker kill and an unreachable audit (verdict unknown), and the reference
//! cluster with a worker kill and a passing audit (needs
//! `cargo build -p reference-server` in the same target dir).
#![allow(clippy::unwrap_used)]

mod chaos_support;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chaos_support::*;
use harness::chaos::faults::ChaosOptions;
use harness::drive::lifecycle::{self, FullRun, LifecycleOptions};
use harness::drive::run::RunOptions;
use harness::scenario::{self, FaultAction, FaultSpec, Pick, Scenario};
use harness::traffic::engine::Live;
use serde_json::Value;
use support::summary_schema_errors;

async fn play(s: Scenario, out: &Path) -> (FullRun, Value) {
    let opts = RunOptions { out: Some(out.to_path_buf()), ..Default::default() };
    let lo = LifecycleOptions {
        chaos: ChaosOptions { settle: Duration::from_millis(300), ..Default::default() },
        ..Default::default()
    };
    let r = lifecycle::run(s, &opts, &lo, Arc::new(Live::default())).await.unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let errors = summary_schema_errors(&doc);
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    // What was written reads back into the type, equal to what the run returned.
    assert_eq!(harness::judge::summary::read(&out.join("summary.json")).unwrap(), r.summary);
    (r, doc)
}

/// The summary's per-fault and outside counts are chaos.json's attribution.
fn same_as_chaos_json(r: &FullRun, doc: &Value) {
    let a = &r.chaos.attribution;
    let faults = doc["faults"].as_array().unwrap();
    assert_eq!(faults.len(), a.faults.len());
    for (f, fa) in faults.iter().zip(&a.faults) {
        assert_eq!(f["label"], fa.name.as_str(), "the attribution names each occurrence by its label");
        assert_eq!(f["failures"]["first_attempt_failures"], fa.counts.first_attempt_total());
        assert_eq!(f["failures"]["retry_failures"], fa.counts.retry_total());
        assert_eq!(f["failures"]["recovered"], fa.counts.recovered);
        assert_eq!(f["failures"]["dropped"], fa.counts.dropped);
        for (class, n) in &fa.counts.first_attempt_failures {
            assert_eq!(f["failures"]["first_attempt_failures_by_class"][class.as_str()], *n);
        }
        assert_eq!(f["recovery_ms"].as_f64(), fa.recovery_ms);
    }
    let out = &doc["failures_outside_faults"];
    assert_eq!(out["first_attempt_failures"], a.outside.counts.first_attempt_total());
    assert_eq!(out["dropped"], a.outside.counts.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_server_with_a_kill_and_an_unreachable_audit() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut doc = foreign_scenario(port, 100, 40.0);
    doc["target"]["launch"] = launch_json(&prefork(dir.path(), port, 2));
    doc["audit"] =
        serde_json::json!({ "url": format!("http://127.0.0.1:{}/audit", free_port()), "checkout_steps": ["home"] });
    let (r, doc) = play(harness::scenario::parse(&doc.to_string()).unwrap(), &dir.path().join("run")).await;
    same_as_chaos_json(&r, &doc);
    assert_eq!(doc["faults"][0]["action"], "kill_worker");
    assert_eq!(doc["faults"][0]["outcome"], "ok");
    // Worker ids that are pids name no host: no per-host section.
    assert!(doc.get("hosts").is_none() && r.summary.chaos.hosts.is_empty(), "{:#}", doc["hosts"]);
    assert!(doc["faults"][0]["recovery_ms"].as_f64().unwrap() >= 0.0, "{doc:#}");
    // Unreachable audit: unknown, never a pass.
    assert_eq!(doc["audit"]["verdict"], "unknown", "{doc:#}");
    assert_ne!(doc["verdict"], "pass");
    assert_ne!(r.summary.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_cluster_with_kills_and_a_passing_audit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.json")).unwrap();
    let (port, admin) = (free_port(), free_port());
    s.target.base_url = format!("http://127.0.0.1:{port}");
    s.target.launch = Some(reference_launch(dir.path(), port, admin, 2, &[]));
    s.audit.as_mut().unwrap().url = format!("http://127.0.0.1:{admin}/audit");
    s.chaos = vec![FaultSpec {
        name: "kill".into(),
        at: Duration::from_millis(1000),
        every: Some(Duration::from_millis(1500)),
        count: 2,
        action: FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Random },
        budget: Default::default(),
    }];
    let (r, doc) = play(s, &dir.path().join("run")).await;
    same_as_chaos_json(&r, &doc);
    let faults = doc["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{doc:#}");
    assert_eq!((faults[0]["occurrence"].as_u64(), faults[1]["occurrence"].as_u64()), (Some(1), Some(2)));
    let audit = &doc["audit"];
    let chaos_audit = r.chaos.audit.as_ref().unwrap();
    assert_eq!(audit["verdict"], chaos_audit.verdict.as_str(), "{doc:#}");
    assert_eq!(audit["acknowledged"], chaos_audit.acknowledged as u64);
    assert_eq!(audit["lost"], chaos_audit.lost.len() as u64);
    assert_eq!(audit["duplicates"], chaos_audit.duplicates.len() as u64);
    assert!(chaos_audit.acknowledged > 0, "{doc:#}");
    assert_eq!(audit["verdict"], "pass", "{:#}", doc["audit"]);
}
