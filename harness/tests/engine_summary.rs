//! summary.json from a real run matches harness/summary.schema.json (and the
//! schema can fail); the run folder holds the ledger, events and interval logs.

mod support;

use support::{Behavior, TestServer, run, scenario, summary_schema_errors, summary_validator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_summary_matches_the_schema_and_the_run_folder_is_complete() {
    let srv = TestServer::start(Behavior::Status503EveryKth(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut json = scenario(&srv.url(), 30, 50.0, r#"{"model": "pool", "size": 4}"#, r#""path": "/x""#);
    json = json.replacen(
        "\"journeys\"",
        r#""gates": {"max_dropped": 100, "min_throughput_rps": 1, "latency": [{"percentile": 99, "max": "2s"}, {"step": "s", "percentile": 50, "max": "1s"}]},
  "journeys""#,
        1,
    );
    let (s, recs) = run(&json, dir.path()).await;
    assert_eq!(s.verdict.as_str(), "pass", "{:?}", s.gates);
    assert_eq!(s.gates.len(), 4);

    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let errors = summary_schema_errors(&doc);
    assert!(errors.is_empty(), "{errors:#?}");
    // No lifecycle here: no faults, attribution or audit.
    assert_eq!(doc["faults"], serde_json::json!([]));
    assert!(doc["failures_outside_faults"].is_null() && doc["audit"].is_null(), "{doc:#}");
    let v = summary_validator();
    assert_eq!(doc["totals"]["attempts_failed_by_class"]["server_error"], 10);
    assert_eq!(doc["totals"]["attempts_failed_by_class"]["connect_refused"], 0);
    assert!(!doc["series"].as_array().unwrap().is_empty());
    // The harness's memory at the end of the traffic: a real reading (MiB).
    let rss = doc["run"]["traffic_peak_rss_mb"].as_f64().unwrap();
    assert!(rss > 1.0 && rss < 4096.0, "traffic_peak_rss_mb {rss}");

    // The machine was sampled during the run: figures in summary.json, seconds in machine.csv.
    assert_eq!(doc["environment"]["file"], "machine.csv", "{:#}", doc["environment"]);
    assert!(doc["gates"].as_array().unwrap().iter().all(|g| g["capacity_dependent"].is_boolean()));
    let machine = std::fs::read_to_string(dir.path().join("machine.csv")).unwrap();
    assert!(machine.starts_with("t_s,other_cpu,steal,"), "{machine}");

    // The schema can fail: a missing field, an unknown one, a bad verdict.
    let mut bad = doc.clone();
    bad["totals"].as_object_mut().unwrap().remove("dropped");
    bad["colour"] = serde_json::json!("blue");
    bad["verdict"] = serde_json::json!("maybe");
    bad["environment"]["noisy"] = serde_json::json!("very");
    let paths: Vec<String> = v.iter_errors(&bad).map(|e| e.instance_path().to_string()).collect();
    for p in ["/totals", "", "/verdict", "/environment"] {
        assert!(paths.contains(&p.to_string()), "{p} not flagged: {paths:?}");
    }

    // A fleet's per-host rows (judge/hosts.rs): here from this run's ledger
    // with the worker ids a fleet would send (`a-1`, `a-2`, `b-1`, or none).
    let mut fold = harness::judge::hosts::Hosts::default();
    for (i, r) in recs.iter().enumerate() {
        let mut r = r.clone();
        r.worker = [Some("a-1"), Some("a-2"), Some("b-1"), None][i % 4].map(str::to_string);
        fold.add(&r);
    }
    let rows = fold.finish();
    assert_eq!(rows.iter().map(|h| h.host.as_deref()).collect::<Vec<_>>(), [Some("a"), Some("b"), None]);
    assert_eq!(rows.iter().map(|h| h.counts.attempts).sum::<u64>(), s.totals.attempts);
    let mut with_hosts = doc.clone();
    with_hosts["hosts"] = serde_json::to_value(&rows).unwrap();
    let errors = summary_schema_errors(&with_hosts);
    assert!(errors.is_empty(), "{errors:#?}\n{:#}", with_hosts["hosts"]);
    let back: harness::judge::summary::Summary = serde_json::from_value(with_hosts.clone()).unwrap();
    assert_eq!(back.chaos.hosts, rows);
    // Without hosts the field is left out, so ordinary runs are unchanged.
    assert!(doc.get("hosts").is_none(), "{doc:#}");
    with_hosts["hosts"][0].as_object_mut().unwrap().remove("ok_p99_ms");
    with_hosts["hosts"][1]["failed_by_class"]["teapot"] = serde_json::json!(1);
    let paths: Vec<String> = v.iter_errors(&with_hosts).map(|e| e.instance_path().to_string()).collect();
    for p in ["/hosts/0", "/hosts/1/failed_by_class"] {
        assert!(paths.contains(&p.to_string()), "{p} not flagged: {paths:?}");
    }

    // Per target address (judge/hosts.rs), as a name with two answers gives.
    let mut fold = harness::judge::hosts::Addresses::default();
    for (i, r) in recs.iter().enumerate() {
        let mut r = r.clone();
        r.addr = [Some("127.0.0.1:443"), Some("[::1]:443"), None][i % 3].map(|a| a.parse().unwrap());
        fold.add(&r);
    }
    let rows = fold.finish();
    assert_eq!(rows.iter().map(|a| a.counts.attempts).sum::<u64>(), s.totals.attempts);
    let mut with_addrs = doc.clone();
    with_addrs["addresses"] = serde_json::to_value(&rows).unwrap();
    let errors = summary_schema_errors(&with_addrs);
    assert!(errors.is_empty(), "{errors:#?}\n{:#}", with_addrs["addresses"]);
    let back: harness::judge::summary::Summary = serde_json::from_value(with_addrs.clone()).unwrap();
    assert_eq!(back.chaos.addresses, rows);
    assert!(doc.get("addresses").is_none(), "{doc:#}");
    with_addrs["addresses"][0].as_object_mut().unwrap().remove("addr");
    let paths: Vec<String> = v.iter_errors(&with_addrs).map(|e| e.instance_path().to_string()).collect();
    assert!(paths.contains(&"/addresses/0".to_string()), "not flagged: {paths:?}");

    // Ledger, events and interval logs.
    assert_eq!(recs.len() as u64, s.totals.attempts);
    let events = harness::record::events::read(&dir.path().join("events.jsonl")).unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for k in ["run_start", "arrivals_start", "arrivals_end", "run_end", "verdict"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "attempt_failed").count(), 10);
    let intervals = std::fs::read_to_string(dir.path().join("latency-intervals.hlog")).unwrap();
    assert!(intervals.contains("Tag=all,") && intervals.contains("Tag=step:s,"), "{intervals}");
    let totals = std::fs::read_to_string(dir.path().join("latency-totals.hlog")).unwrap();
    assert!(totals.contains("Tag=step:s:server_error,"), "{totals}");
    // summary.json reads back into the type the report uses.
    let back = harness::judge::summary::read(&dir.path().join("summary.json")).unwrap();
    assert_eq!(back, s);
}
