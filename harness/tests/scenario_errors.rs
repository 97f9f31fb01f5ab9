//! Bad scenario files get an error naming the JSON field path, what is wrong
//! and what was expected; never a panic.

// Tests unwrap what they built themselves; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use harness::scenario::{self, ScenarioError};
use serde_json::{Value, json};

/// A small valid scenario that the table below breaks one field at a time.
fn base() -> Value {
    json!({
        "name": "t",
        "seed": 7,
        "target": { "base_url": "http://127.0.0.1:8080" },
        "shoppers": 100,
        "arrival": [ { "duration": "5s", "rate": 10 }, { "duration": "5s", "from_rate": 10, "to_rate": 30 } ],
        "think": { "kind": "uniform", "min": "10ms", "max": "20ms" },
        "data": { "skus": ["sku-0001", "sku-0002"] },
        "journeys": [
            { "name": "browse", "weight": 2, "steps": [
                { "name": "list", "path": "/products?page={{rand.1.5}}" },
                { "name": "view", "path": "/products/{{pick.skus}}" }
            ]},
            { "name": "buy", "steps": [
                { "name": "add", "method": "POST", "path": "/carts/c-{{shopper}}/items",
                  "body": { "sku": "{{pick.skus}}", "qty": 1 } },
                { "name": "checkout", "method": "POST", "path": "/checkout", "body": { "cart_id": "c-{{shopper}}" },
                  "idempotency_key": true, "expect": [201], "refuse": [409],
                  "retry": { "attempts": 3, "on": ["connect_refused", "reset_before_response", "response_timeout"],
                             "backoff": "50ms" },
                  "extract": { "order": "/order_id" } },
                { "name": "order", "path": "/orders/{{var.order}}" }
            ]}
        ],
        "connections": { "model": "pool", "size": 8 },
        "gates": { "max_dropped": 0, "audit_must_pass": true, "latency": [ { "step": "checkout", "percentile": 99, "max": "1s" } ] },
        "chaos": [ { "name": "k", "at": "3s", "action": "kill_worker" } ],
        "audit": { "url": "http://127.0.0.1:9090/audit", "checkout_steps": ["checkout"] }
    })
}

/// Sets `value` at a JSON pointer (creating object members), or removes the member when `value` is None.
fn edit(mut doc: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = doc.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match (target, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(key.to_string(), v);
        }
        (Value::Object(m), None) => {
            m.remove(key);
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().unwrap()] = v,
        (Value::Array(a), None) => {
            a.remove(key.parse::<usize>().unwrap());
        }
        _ => panic!("cannot edit {pointer}"),
    }
    doc
}

fn error_of(doc: &Value) -> ScenarioError {
    match scenario::parse(&serde_json::to_string_pretty(doc).unwrap()) {
        Ok(_) => panic!("accepted a bad scenario:\n{doc:#}"),
        Err(e) => e,
    }
}

#[test]
fn the_base_scenario_is_valid() {
    let s = scenario::parse(&base().to_string()).unwrap();
    assert_eq!(s.journeys.len(), 2);
    assert_eq!(s.shoppers, 100);
}

#[test]
fn each_bad_field_is_named_by_its_path() {
    // (what to change, new value (None = remove), expected path, words the message must contain)
    let table: Vec<(&str, Option<Value>, &str, &str)> = vec![
        // shape errors found while deserializing
        (
            "/journeys/1/steps/1/retry/on/2",
            Some(json!("teapot")),
            "journeys[1].steps[1].retry.on[2]",
            "unknown failure class \"teapot\" (expected one of connect_refused,",
        ),
        (
            "/arrival/0/duration",
            Some(json!("5 parsecs")),
            "arrival[0].duration",
            "\"5 parsecs\" is not a duration (use a number and a unit: 250ms, 5s, 2m",
        ),
        ("/arrival/0/duration", Some(json!(5)), "arrival[0].duration", "expected a duration string"),
        ("/journeys/0/steps/0/methd", Some(json!("GET")), "journeys[0].steps[0].methd", "unknown field \"methd\""),
        ("/colour", Some(json!("blue")), "colour", "unknown field \"colour\""),
        ("/shoppers", Some(json!("many")), "shoppers", "invalid type: string \"many\", expected u64"),
        ("/shoppers", Some(json!(-5)), "shoppers", "invalid value"),
        ("/journeys/0/weight", Some(json!("heavy")), "journeys[0].weight", "invalid type"),
        ("/target/base_url", None, "target", "missing field \"base_url\""),
        ("/journeys/1/steps/0/expect", Some(json!([200, 70000])), "journeys[1].steps[0].expect[1]", "invalid value"),
        ("/chaos/0/at", Some(json!("soon")), "chaos[0].at", "\"soon\" is not a duration"),
        ("/gates/latency/0/max", Some(json!(null)), "gates.latency[0].max", "expected a duration string"),
        // semantic errors found by validation
        ("/journeys/0/weight", Some(json!(0)), "journeys[0].weight", "not a weight (expected a number > 0)"),
        ("/journeys/0/weight", Some(json!(-1.5)), "journeys[0].weight", "not a weight"),
        (
            "/journeys/1/steps/2/name",
            Some(json!("list")),
            "journeys[1].steps[2].name",
            "step name \"list\" is already used at journeys[0].steps[0]",
        ),
        ("/journeys/1/name", Some(json!("browse")), "journeys[1].name", "journey name \"browse\" is used twice"),
        (
            "/journeys/0/steps/1/path",
            Some(json!("/products/{{pick.colours}}")),
            "journeys[0].steps[1].path",
            "no data list \"colours\" (data has: skus)",
        ),
        (
            "/journeys/1/steps/0/path",
            Some(json!("/carts/{{var.order}}/items")),
            "journeys[1].steps[0].path",
            "{{var.order}} is not extracted by an earlier step of journey \"buy\"",
        ),
        (
            "/journeys/1/steps/0/body",
            Some(json!({"sku": "{{teapot}}"})),
            "journeys[1].steps[0].body",
            "unknown placeholder {{teapot}}",
        ),
        (
            "/journeys/1/steps/0/body",
            Some(json!({"k": "{{idem}}"})),
            "journeys[1].steps[0].body",
            "{{idem}} needs \"idempotency_key\": true",
        ),
        ("/journeys/0/steps/0/path", Some(json!("/products?page={{rand.9.1}}")), "journeys[0].steps[0].path", "A <= B"),
        ("/journeys/0/steps/0/path", Some(json!("/x/{{shopper")), "journeys[0].steps[0].path", "never closed"),
        ("/journeys/0/steps/0/path", Some(json!("products")), "journeys[0].steps[0].path", "must start with \"/\""),
        ("/journeys/0/steps/0/method", Some(json!("FETCH")), "journeys[0].steps[0].method", "unknown method \"FETCH\""),
        (
            "/journeys/0/steps/0/headers",
            Some(json!({"Content-Length": "5"})),
            "journeys[0].steps[0].headers.Content-Length",
            "is set by the harness",
        ),
        (
            "/journeys/0/steps/0/headers",
            Some(json!({"bad header": "x"})),
            "journeys[0].steps[0].headers.bad header",
            "not a valid header name",
        ),
        ("/journeys/1/steps/1/refuse", Some(json!([201])), "journeys[1].steps[1].refuse[0]", "201 is also in expect"),
        ("/journeys/1/steps/1/expect", Some(json!([])), "journeys[1].steps[1].expect", "at least one status"),
        ("/journeys/1/steps/1/expect", Some(json!([99])), "journeys[1].steps[1].expect[0]", "not an HTTP status"),
        ("/journeys/1/steps/1/retry/attempts", Some(json!(0)), "journeys[1].steps[1].retry.attempts", "at least 1"),
        (
            "/journeys/1/steps/1/retry/on",
            Some(json!(["server_error", "server_error"])),
            "journeys[1].steps[1].retry.on[1]",
            "listed twice",
        ),
        ("/journeys/1/steps/1/retry/on", Some(json!([])), "journeys[1].steps[1].retry.on", "no failure class"),
        (
            "/journeys/1/steps/1/extract/order",
            Some(json!("order_id")),
            "journeys[1].steps[1].extract.order",
            "not a JSON pointer",
        ),
        ("/journeys/1/steps/1/timeout", Some(json!("0ms")), "journeys[1].steps[1].timeout", "greater than 0s"),
        ("/journeys/0/steps", Some(json!([])), "journeys[0].steps", "at least one step"),
        ("/journeys", Some(json!([])), "journeys", "at least one journey"),
        ("/shoppers", Some(json!(0)), "shoppers", "greater than 0"),
        ("/shoppers", Some(json!(1000)), "arrival", "the stages bring about 150 shoppers"),
        ("/arrival", Some(json!([])), "arrival", "at least one stage"),
        ("/arrival/0/rate", Some(json!(-3)), "arrival[0].rate", "not a rate"),
        ("/arrival/1/to_rate", None, "arrival[1].to_rate", "a ramp needs both"),
        ("/arrival/0/from_rate", Some(json!(1)), "arrival[0]", "not both"),
        ("/arrival/0/duration", Some(json!("0s")), "arrival[0].duration", "greater than 0s"),
        ("/arrival_process", Some(json!("bursty")), "arrival_process", "expected poisson or uniform"),
        ("/think/kind", Some(json!("nap")), "think.kind", "unknown think time \"nap\""),
        ("/think/min", None, "think.min", "required for kind \"uniform\""),
        ("/think/mean", Some(json!("1s")), "think.mean", "not used by kind \"uniform\""),
        ("/think/max", Some(json!("1ms")), "think.max", "below min"),
        ("/connections/size", Some(json!(0)), "connections.size", "greater than 0"),
        ("/connections/model", Some(json!("telepathy")), "connections.model", "expected pool or per_shopper"),
        ("/connections", Some(json!({"model": "per_shopper", "size": 4})), "connections.size", "only the pool model"),
        ("/data/skus", Some(json!([])), "data.skus", "must not be empty"),
        (
            "/gates/latency/0/percentile",
            Some(json!(100)),
            "gates.latency[0].percentile",
            "not a percentile in (0, 100)",
        ),
        ("/gates/latency/0/percentile", Some(json!(0)), "gates.latency[0].percentile", "not a percentile"),
        ("/gates/latency/0/step", Some(json!("chekout")), "gates.latency[0].step", "no step named \"chekout\""),
        ("/gates/min_throughput_rps", Some(json!(-1)), "gates.min_throughput_rps", "not a rate"),
        ("/audit/checkout_steps", Some(json!(["checkout", "pay"])), "audit.checkout_steps[1]", "no step named \"pay\""),
        ("/audit/url", Some(json!("ftp://x/audit")), "audit.url", "not an http:// or https:// URL"),
        ("/audit", None, "gates.audit_must_pass", "no audit section"),
        ("/environment", Some(json!({"max_other_cpu": 0})), "environment.max_other_cpu", "in (0, 1]"),
        ("/environment", Some(json!({"max_other_cpu": 1.5})), "environment.max_other_cpu", "e.g. 0.15 for 15%"),
        ("/environment", Some(json!({"max_other": 0.2})), "environment.max_other", "expected \"max_other_cpu\""),
        ("/target/base_url", Some(json!("127.0.0.1:8080")), "target.base_url", "not an http:// or https:// URL"),
        ("/target/base_url", Some(json!("http://127.0.0.1:99999")), "target.base_url", "not a number in 1..=65535"),
        ("/target/ready_path", Some(json!("ready")), "target.ready_path", "must start with \"/\""),
        ("/target/ca_file", Some(json!("")), "target.ca_file", "must not be empty"),
        (
            "/target/resolve",
            Some(json!({"shop.example": ["10.0.0.1", "shop"]})),
            "target.resolve.shop.example[1]",
            "not an IP address",
        ),
        ("/target/resolve", Some(json!({"shop.example": []})), "target.resolve.shop.example", "at least one address"),
        (
            "/target/resolve",
            Some(json!({"shop.example:443": ["::1"]})),
            "target.resolve.shop.example:443",
            "without a port",
        ),
        (
            "/target",
            Some(json!({"base_url": "https://127.0.0.1:8443", "ca_file": "ca.pem", "insecure_skip_verify": true})),
            "target.insecure_skip_verify",
            "not both",
        ),
        (
            "/journeys/1/steps/1/retry/on",
            Some(json!(["tls_handshake_failed", "tls_certificate"])),
            "journeys[1].steps[1].retry.on[1]",
            "tls_certificate is never retried",
        ),
        ("/target/launch", Some(json!({"argv": []})), "target.launch.argv", "must name the program"),
        (
            "/target/launch",
            Some(json!({"argv": ["x"], "stop_signal": "SIGNAP"})),
            "target.launch.stop_signal",
            "unknown signal \"SIGNAP\"",
        ),
        ("/target/pid_file", Some(json!("")), "target.pid_file", "must not be empty"),
        ("/chaos/0/action", Some(json!("meteor")), "chaos[0].action", "unknown action \"meteor\""),
        ("/chaos/0/at", Some(json!("10s")), "chaos[0].at", "arrivals end at 10s"),
        ("/chaos/0/signal", Some(json!("SIGBOGUS")), "chaos[0].signal", "unknown signal \"SIGBOGUS\""),
        ("/chaos/0/pick", Some(json!("youngest")), "chaos[0].pick", "expected random, oldest or busiest"),
        ("/chaos/0/duration", Some(json!("1s")), "chaos[0].duration", "not used by action \"kill_worker\""),
        ("/chaos/0/count", Some(json!(3)), "chaos[0].every", "required when count > 1"),
        (
            "/chaos/0",
            Some(json!({"name": "h", "at": "1s", "action": "hang_worker"})),
            "chaos[0].duration",
            "required for action \"hang_worker\"",
        ),
        (
            "/chaos/0",
            Some(json!({"name": "m", "at": "1s", "action": "signal_master"})),
            "chaos[0].signal",
            "required for action \"signal_master\"",
        ),
        (
            "/chaos/0",
            Some(json!({"name": "c", "at": "1s", "action": "command"})),
            "chaos[0].argv",
            "required for action \"command\"",
        ),
        (
            "/chaos/0",
            Some(json!({"name": "r", "at": "2s", "every": "4s", "count": 3, "action": "naive_restart"})),
            "chaos[0].count",
            "fires at 10s but arrivals end at 10s",
        ),
        ("/name", Some(json!("  ")), "name", "must not be empty"),
        // target.metrics (issue 17)
        (
            "/target/metrics",
            Some(json!([{"url": "https://127.0.0.1:9090/metrics", "label": "a"}])),
            "target.metrics[0].url",
            "is not an http:// URL",
        ),
        (
            "/target/metrics",
            Some(
                json!([{"url": "http://127.0.0.1:1/metrics", "label": "a"}, {"url": "http://127.0.0.1:2/metrics", "label": "a"}]),
            ),
            "target.metrics[1].label",
            "\"a\" is used by another endpoint",
        ),
        (
            "/target/metrics",
            Some(json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "interval": "10ms"}])),
            "target.metrics[0].interval",
            "10ms is outside 100ms..=60s",
        ),
        (
            "/target/metrics",
            Some(json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "interval": "2m"}])),
            "target.metrics[0].interval",
            "is outside 100ms..=60s",
        ),
        (
            "/target/metrics",
            Some(json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "scrape_every": "1s"}])),
            "target.metrics[0].scrape_every",
            "unknown field \"scrape_every\"",
        ),
        (
            "/target/metrics",
            Some(json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "series": [{"name": "up", "as": "sum"}]}])),
            "target.metrics[0].series[0].as",
            "\"sum\" is not one of gauge, rate, events",
        ),
        (
            "/target/metrics",
            Some(
                json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "series": [{"name": "up-now", "as": "gauge"}]}]),
            ),
            "target.metrics[0].series[0].name",
            "is not a Prometheus metric name",
        ),
        (
            "/target/metrics",
            Some(json!([{"url": "http://127.0.0.1:1/metrics", "label": "a", "series": []}])),
            "target.metrics[0].series",
            "is empty",
        ),
    ];
    let mut failures = Vec::new();
    for (pointer, value, path, words) in table {
        let doc = edit(base(), pointer, value.clone());
        let Err(err) = scenario::parse(&serde_json::to_string_pretty(&doc).unwrap()) else {
            failures.push(format!("edit {pointer} = {value:?}\n  want {path}: ...{words}...\n  got  accepted"));
            continue;
        };
        let text = err.to_string();
        if std::env::var_os("SHOW_ERRORS").is_some() {
            eprintln!("{text}");
        }
        let named = err.paths().contains(&path) && text.contains(&format!("{path}: "));
        if !named || !text.contains(words) {
            failures.push(format!("edit {pointer} = {value:?}\n  want {path}: ...{words}...\n  got  {text}"));
        }
    }
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    let text = "{\n  \"name\": \"t\",\n  \"shoppers\": 10,,\n}";
    let err = scenario::parse(text).unwrap_err();
    assert!(matches!(err, ScenarioError::Syntax { line: 3, .. }), "{err:?}");
    assert!(err.to_string().starts_with("line 3 column 18: invalid JSON"), "{err}");
    // The offending line, with a caret under column 18.
    assert!(err.to_string().ends_with("\n  3 |   \"shoppers\": 10,,\n    |                  ^"), "{err}");
    let err = scenario::parse("").unwrap_err();
    assert!(err.to_string().contains("line 1 column 0"), "{err}");
    let err = scenario::parse(&format!("{} trailing", base())).unwrap_err();
    assert!(matches!(err, ScenarioError::Syntax { .. }), "{err:?}");
}

#[test]
fn several_problems_are_all_reported() {
    let doc = edit(edit(base(), "/journeys/0/weight", Some(json!(0))), "/chaos/0/pick", Some(json!("youngest")));
    let err = error_of(&doc);
    assert_eq!(err.paths(), vec!["journeys[0].weight", "chaos[0].pick"]);
    assert!(err.to_string().starts_with("2 problems:"), "{err}");
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, edit(base(), "/shoppers", Some(json!(0))).to_string()).unwrap();
    let err = scenario::load(&path).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: shoppers: must be greater than 0", path.display())), "{err}");
    let err = scenario::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("cannot read scenario file"), "{err}");
}

#[test]
fn never_panics_on_mangled_input() {
    // Every prefix of a valid file, and every single-byte corruption of a region of it.
    let text = serde_json::to_string_pretty(&base()).unwrap();
    // Messages never leak internal type names.
    let check = |t: &str| {
        if let Err(e) = scenario::parse(t) {
            let m = e.to_string();
            assert!(!m.contains("Raw") && !m.contains("struct "), "{m}");
        }
    };
    for end in 0..text.len() {
        if text.is_char_boundary(end) {
            check(&text[..end]);
        }
    }
    let bytes = text.as_bytes();
    for i in (0..bytes.len()).step_by(3) {
        for b in [b'"', b'{', b'}', b'0', b'-', b'x', b'[', b':'] {
            let mut m = bytes.to_vec();
            m[i] = b;
            if let Ok(s) = String::from_utf8(m) {
                check(&s);
            }
        }
    }
}

#[test]
fn wrong_types_for_whole_sections_say_what_was_expected() {
    let err = scenario::parse("[]").unwrap_err().to_string();
    assert!(err.contains("expected a scenario object"), "{err}");
    assert!(!err.contains("Raw"), "no internal type names: {err}");
    for (pointer, value, path, words) in [
        ("/target", json!("http://x"), "target", "expected a target object"),
        ("/arrival/0", json!(5), "arrival[0]", "expected a stage object"),
        ("/journeys/0/steps/0", json!("GET /"), "journeys[0].steps[0]", "expected a step object"),
        ("/journeys/1/steps/1/retry", json!(3), "journeys[1].steps[1].retry", "expected a retry object"),
        ("/chaos/0", json!([]), "chaos[0]", "expected a fault object"),
    ] {
        let err = error_of(&edit(base(), pointer, Some(value)));
        let text = err.to_string();
        assert_eq!(err.paths(), vec![path], "{text}");
        assert!(text.contains(words) && !text.contains("Raw"), "{text}");
    }
}
