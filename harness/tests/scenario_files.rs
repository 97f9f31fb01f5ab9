//! The shipped scenario files (scenarios/*.json) load and validate, and the JSON
//! Schema file is valid JSON that describes every top-level field.

// Tests unwrap what they built themselves; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use harness::outcome::FailureClass;
use harness::scenario::{self, FaultAction};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("scenarios")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().ends_with(".schema.json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_validates() {
    let files = shipped();
    assert!(files.len() >= 2, "expected smoke.json and blackfriday.json, found {files:?}");
    for f in files {
        if let Err(e) = scenario::load(&f) {
            panic!("{e}");
        }
    }
}

#[test]
fn smoke_is_small_and_touches_every_shop_route() {
    let s = scenario::load(&scenarios_dir().join("smoke.json")).unwrap();
    assert!(s.shoppers >= 100 && s.shoppers <= 1000, "{}", s.shoppers);
    assert!(s.arrival_duration().as_secs_f64() <= 10.0);
    let steps: Vec<_> = s.journeys.iter().flat_map(|j| &j.steps).collect();
    let has =
        |method: &str, prefix: &str| steps.iter().any(|st| st.method == method && st.path.source().starts_with(prefix));
    assert!(has("GET", "/products?"));
    assert!(has("GET", "/products/"));
    assert!(has("POST", "/carts/"));
    assert!(has("GET", "/carts/"));
    assert!(has("DELETE", "/carts/"));
    assert!(has("POST", "/checkout"));
    assert!(has("GET", "/orders/"));
    assert!(steps.iter().any(|st| st.path.source().contains("door-")));
    let checkout = &s.journeys[s.step("checkout").unwrap().0].steps[s.step("checkout").unwrap().1];
    assert!(checkout.idempotency_key);
    assert!(checkout.retry.attempts > 1);
    assert!(checkout.retry.on.iter().any(|c| c.outcome_unknown()), "checkout retries unknown outcomes");
}

#[test]
fn blackfriday_has_the_promised_shape() {
    let s = scenario::load(&scenarios_dir().join("blackfriday.json")).unwrap();
    assert_eq!(s.shoppers, 30_000);
    assert!(s.expected_arrivals() >= 30_000.0);
    assert!(s.arrival.iter().any(|st| st.to_rate > st.from_rate), "a midnight ramp");
    assert!(s.journeys.len() >= 4);
    let kills =
        s.chaos.iter().filter(|f| matches!(f.action, FaultAction::KillWorker { .. })).map(|f| f.count).sum::<u32>();
    assert!(kills >= 2, "at least two worker kills");
    assert!(s.chaos.iter().any(|f| matches!(&f.action, FaultAction::SignalMaster { signal } if signal == "SIGTERM")));
    assert!(s.chaos.iter().any(|f| matches!(f.action, FaultAction::HangWorker { .. })));
    let audit = s.audit.as_ref().unwrap();
    assert_eq!(audit.url, "http://127.0.0.1:9090/audit");
    assert!(!audit.checkout_steps.is_empty());
    assert!(s.journeys.iter().flat_map(|j| &j.steps).any(|st| st.refuse.contains(&409)));
    // A killed worker resets the requests it was serving: every step must be
    // able to recover them, or "zero dropped" could never hold; checkouts may
    // only be retried under an idempotency key.
    for st in s.journeys.iter().flat_map(|j| &j.steps) {
        assert!(st.retry.attempts > 1 && st.retry.on.contains(&FailureClass::ResetBeforeResponse), "{}", st.name);
        if st.path.source() == "/checkout" {
            assert!(st.idempotency_key, "{} retries a checkout without an idempotency key", st.name);
        }
    }
}

/// Every top-level field a scenario may have (what raw.rs accepts).
const TOP_LEVEL: [&str; 16] = [
    "name",
    "description",
    "seed",
    "target",
    "shoppers",
    "arrival",
    "arrival_process",
    "think",
    "defaults",
    "journeys",
    "connections",
    "data",
    "gates",
    "chaos",
    "audit",
    "environment",
];

#[test]
fn the_parser_accepts_exactly_the_documented_top_level_fields() {
    // An unknown field's error lists the accepted ones: they must be TOP_LEVEL.
    let err = scenario::parse(r#"{"zzz": 1}"#).unwrap_err().to_string();
    for f in TOP_LEVEL {
        assert!(err.contains(&format!("\"{f}\"")), "parser does not list {f}: {err}");
    }
    assert_eq!(err.matches(", \"").count() + 1, TOP_LEVEL.len(), "{err}");
}

#[test]
fn the_docs_describe_every_top_level_field() {
    let doc = std::fs::read_to_string(scenarios_dir().join("../docs/SCENARIOS.md")).unwrap();
    for f in TOP_LEVEL {
        assert!(doc.contains(&format!("| `{f}` |")), "docs/SCENARIOS.md has no table row for {f}");
    }
}

#[test]
fn schema_is_json_and_names_every_top_level_field() {
    let text = std::fs::read_to_string(scenarios_dir().join("scenario.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let props = schema["properties"].as_object().expect("schema has top-level properties");
    for field in TOP_LEVEL {
        assert!(props.contains_key(field), "schema lacks top-level field {field}");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}

#[test]
fn shipped_scenarios_validate_against_the_schema() {
    let text = std::fs::read_to_string(scenarios_dir().join("scenario.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for f in shipped() {
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
    }
    // The schema can fail: an unknown field, a bad duration and a bad failure class are caught.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scenarios_dir().join("smoke.json")).unwrap()).unwrap();
    doc["colour"] = serde_json::json!("blue");
    doc["arrival"][0]["duration"] = serde_json::json!("5 parsecs");
    doc["journeys"][2]["steps"][1]["retry"]["on"][0] = serde_json::json!("teapot");
    let paths: Vec<String> = validator.iter_errors(&doc).map(|e| e.instance_path().to_string()).collect();
    assert!(paths.contains(&String::new()), "{paths:?}");
    assert!(paths.contains(&"/arrival/0/duration".to_string()), "{paths:?}");
    assert!(paths.contains(&"/journeys/2/steps/1/retry/on/0".to_string()), "{paths:?}");
}
