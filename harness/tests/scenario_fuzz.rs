//! The scenario reader against hostile input (issue 18): JSON trees mutated around the shipped
//! scenarios never panic, are either a valid scenario or an error naming a field path, and take
//! bounded time; plus the regressions the adversarial probe found (a huge `chaos[].count`).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use harness::scenario::{self, ScenarioError};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn shipped(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Values a mutation puts somewhere: wrong types, edge numbers, hostile strings.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(i64::MAX), Just(i64::MIN), Just(4_000_000_000)]
            .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(1u64 << 40)].prop_map(Value::from),
        prop_oneof![Just(1e308), Just(-0.0), Just(1e-300), Just(0.5), Just(99.999)].prop_map(Value::from),
        prop_oneof![
            Just(""),
            Just("../../x"),
            Just("/tmp/abs"),
            Just("/x\r\nX-Injected: yes"),
            Just("9999999999999h"),
            Just("-5s"),
            Just("1e9ms"),
            Just("SIGKILL"),
            Just("{{var.nope}}"),
            Just("{{pick.}}"),
            Just("{{rand.9.1}}"),
            Just("http://[::1]:99999/x"),
            Just("https://user@127.0.0.1/"),
            Just("\u{0}"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        "[ -~]{0,12}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"unknown": 1})),
    ]
}

/// One mutation: where to go (a list of choices, each taken modulo the
/// children there) and what to do at the end.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    AddUnknownField,
    Duplicate,
}

fn edit() -> impl Strategy<Value = (Vec<usize>, Edit)> {
    let what = prop_oneof![
        4 => leaf().prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        1 => Just(Edit::AddUnknownField),
        1 => Just(Edit::Duplicate),
    ];
    (prop::collection::vec(any::<usize>(), 0..6), what)
}

fn children(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// Applies `e` at the node reached by following `path` (stopping early at a leaf).
fn apply(v: &mut Value, path: &[usize], e: &Edit) {
    if let Some((&first, rest)) = path.split_first()
        && children(v) > 0
    {
        let n = first % children(v);
        // Act on the child itself when the path ends there and the edit removes or duplicates it.
        if rest.is_empty() && matches!(e, Edit::Remove | Edit::Duplicate) {
            match v {
                Value::Object(m) => {
                    let key = m.keys().nth(n).unwrap().clone();
                    match e {
                        Edit::Remove => drop(m.remove(&key)),
                        _ => drop(m.insert(format!("{key}_copy"), m[&key].clone())),
                    }
                }
                Value::Array(a) => match e {
                    Edit::Remove => drop(a.remove(n)),
                    _ => a.push(a[n].clone()),
                },
                _ => {}
            }
            return;
        }
        let child = match v {
            Value::Object(m) => m.values_mut().nth(n).unwrap(),
            Value::Array(a) => &mut a[n],
            _ => unreachable!(),
        };
        return apply(child, rest, e);
    }
    match e {
        Edit::Replace(x) => *v = x.clone(),
        Edit::AddUnknownField => {
            if let Value::Object(m) = v {
                m.insert("no_such_field".into(), json!(1));
            } else {
                *v = Value::Object(Map::new());
            }
        }
        Edit::Remove | Edit::Duplicate => *v = Value::Null,
    }
}

/// What every answer must be: a scenario, or an error that says where.
fn judge(text: &str) -> Result<(), TestCaseError> {
    let started = Instant::now();
    let result = scenario::parse(text);
    // A hang detector, not a speed test: parsing a scenario takes microseconds.
    prop_assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    match result {
        Ok(s) => {
            prop_assert!(s.shoppers > 0 && !s.journeys.is_empty());
            for f in &s.chaos {
                prop_assert!(f.last_time().is_some());
            }
        }
        Err(ScenarioError::Syntax { .. }) => prop_assert!(false, "serde_json wrote invalid JSON?"),
        Err(e) => {
            let errors = e.field_errors();
            prop_assert!(!errors.is_empty(), "{e}");
            for fe in errors {
                prop_assert!(!fe.message.is_empty(), "{e}");
                // An empty path is the whole document: then the message
                // names the missing or unknown field, or says it is no object.
                prop_assert!(
                    !fe.path.is_empty() || fe.message.contains("field") || fe.message.contains("scenario object"),
                    "an error with neither a path nor a field name: {e}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_are_valid_or_name_the_bad_field(
        which in 0usize..4,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let names = ["smoke.json", "blackfriday.json", "sticky.json", "selfcheck.json"];
        let mut doc = shipped(names[which]);
        for (path, e) in &edits {
            apply(&mut doc, path, e);
        }
        judge(&doc.to_string())?;
    }
}

/// Regression (issue 18, item 3): `chaos[].count` of 4e9 listed every
/// occurrence before any check (a 64 GB allocation, exit 134); now the field
/// is named at once.
#[test]
fn a_huge_fault_count_is_named_not_allocated() {
    let mut doc = shipped("smoke.json");
    doc["chaos"] =
        json!([{"name": "k", "at": "1s", "every": "1ms", "count": 4_000_000_000u64, "action": "kill_worker"}]);
    let started = Instant::now();
    let e = scenario::parse(&doc.to_string()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.paths().contains(&"chaos[0].count"), "{e}");
    assert!(e.to_string().contains("10000"), "{e}");
}

/// Regression (issue 18, item 6): `harness validate /dev/zero` read until
/// memory ran out; now it stops at the documented cap and says so.
#[test]
fn an_endless_file_is_refused_at_the_cap() {
    let e = scenario::load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.contains("/dev/zero") && e.contains(&scenario::MAX_SCENARIO_BYTES.to_string()), "{e}");
}

/// Regression (issue 18, item 4): the scenario name is the default run
/// folder, and "../../x" or "/tmp/abs" wrote outside reports/.
#[test]
fn a_name_that_is_not_a_folder_name_is_refused() {
    for bad in ["../../x", "/tmp/abs", "..", "a\\b", "x\ny"] {
        let mut doc = shipped("smoke.json");
        doc["name"] = json!(bad);
        let e = scenario::parse(&doc.to_string()).unwrap_err();
        assert_eq!(e.paths(), ["name"], "{bad:?}: {e}");
    }
}
