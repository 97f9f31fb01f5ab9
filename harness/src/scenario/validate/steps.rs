//! Validation of journeys and their steps: names, methods, templates and
//! what they refer to, statuses, retry policies, extracts. Part of
//! `validate`; not for the other sections.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::super::raw::{RawScenario, RawStep, RawStream};
use super::super::template::{Escape, Template};
use super::super::*;
use super::{V, join_or_none};

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// Settings from `defaults` that steps inherit.
pub(super) struct StepDefaults {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub headers: Vec<(String, Template)>,
}

/// Validates every journey; returns them and the scenario's step names, each
/// with the path where it is defined.
pub(super) fn journeys(v: &mut V, raw: &RawScenario, d: &StepDefaults) -> (Vec<Journey>, BTreeMap<String, String>) {
    if raw.journeys.is_empty() {
        v.err("journeys", "needs at least one journey");
    }
    let mut journey_names = HashSet::new();
    let mut step_names: BTreeMap<String, String> = BTreeMap::new();
    let mut journeys = Vec::new();
    for (ji, j) in raw.journeys.iter().enumerate() {
        let jp = format!("journeys[{ji}]");
        if j.name.trim().is_empty() {
            v.err(format!("{jp}.name"), "must not be empty");
        } else if !journey_names.insert(j.name.clone()) {
            v.err(format!("{jp}.name"), format!("journey name {:?} is used twice", j.name));
        }
        if !(j.weight.is_finite() && j.weight > 0.0) {
            v.err(format!("{jp}.weight"), format!("{} is not a weight (expected a number > 0)", j.weight));
        }
        if j.steps.is_empty() {
            v.err(format!("{jp}.steps"), "needs at least one step");
        }
        let mut extracted: HashSet<String> = HashSet::new();
        let mut steps = Vec::new();
        for (si, s) in j.steps.iter().enumerate() {
            let sp = format!("{jp}.steps[{si}]");
            if s.name.trim().is_empty() {
                v.err(format!("{sp}.name"), "must not be empty");
            } else if let Some(other) = step_names.get(&s.name) {
                v.err(
                    format!("{sp}.name"),
                    format!("step name {:?} is already used at {other} (step names are unique per scenario)", s.name),
                );
            } else {
                step_names.insert(s.name.clone(), sp.clone());
            }
            steps.push(step(v, raw, d, &sp, &j.name, s, &extracted));
            // Extracted after this step's response: usable from the next step on.
            extracted.extend(s.extract.keys().cloned());
        }
        journeys.push(Journey { name: j.name.clone(), weight: j.weight, steps });
    }
    (journeys, step_names)
}

/// One step of journey `journey` at field path `sp`; `extracted` holds the
/// variables earlier steps of the journey extract.
fn step(
    v: &mut V,
    raw: &RawScenario,
    d: &StepDefaults,
    sp: &str,
    journey: &str,
    s: &RawStep,
    extracted: &HashSet<String>,
) -> Step {
    let method = s.method.clone().unwrap_or_else(|| "GET".to_string());
    if !METHODS.contains(&method.as_str()) {
        v.err(format!("{sp}.method"), format!("unknown method {method:?} (expected one of {})", METHODS.join(", ")));
    }
    if !s.path.starts_with('/') {
        v.err(format!("{sp}.path"), format!("{:?} must start with \"/\"", s.path));
    }
    let path = v.template(&format!("{sp}.path"), &s.path, Escape::Path);
    // Step headers override defaults of the same name (case-insensitively).
    let mut headers: Vec<(String, Template)> =
        d.headers.iter().filter(|(k, _)| !s.headers.keys().any(|sk| sk.eq_ignore_ascii_case(k))).cloned().collect();
    headers.extend(v.headers(&format!("{sp}.headers"), &s.headers));
    let body = match &s.body {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => v.template(&format!("{sp}.body"), text, Escape::None),
        Some(value) => v.template(&format!("{sp}.body"), &value.to_string(), Escape::JsonString),
    };
    references(v, raw, sp, journey, s, &path, &headers, &body, extracted);
    let expect = statuses(v, sp, s);
    let timeout = s.timeout.map_or(d.timeout, |t| v.positive(&format!("{sp}.timeout"), t.0));
    let retry = s.retry.as_ref().map_or_else(|| d.retry.clone(), |r| v.retry(&format!("{sp}.retry"), r));
    let stream = s.stream.as_ref().and_then(|st| stream(v, &format!("{sp}.stream"), st));
    if stream.is_some() {
        if !s.extract.is_empty() {
            v.err(
                format!("{sp}.extract"),
                "a stream step's body is a series of events, not a JSON document: extract from another step",
            );
        }
        for (k, _) in &headers {
            if k.eq_ignore_ascii_case("last-event-id") {
                let hp = if s.headers.contains_key(k) {
                    format!("{sp}.headers.{k}")
                } else {
                    format!("defaults.headers.{k}")
                };
                v.err(hp, "Last-Event-ID is set by the harness on a stream step's reconnects and retries");
            }
        }
    }
    let extract = extracts(v, sp, s);
    Step {
        name: s.name.clone(),
        method,
        path: path.unwrap_or_else(|| Template::literal(&s.path, Escape::Path)),
        headers,
        body,
        expect,
        refuse: s.refuse.clone(),
        timeout,
        retry,
        extract,
        idempotency_key: s.idempotency_key,
        stream,
    }
}

/// Placeholders must refer to data lists that exist and to variables
/// extracted by an earlier step of the same journey.
#[allow(clippy::too_many_arguments)] // one step's parts, each checked against the scenario
fn references(
    v: &mut V,
    raw: &RawScenario,
    sp: &str,
    journey: &str,
    s: &RawStep,
    path: &Option<Template>,
    headers: &[(String, Template)],
    body: &Option<Template>,
    extracted: &HashSet<String>,
) {
    let mut templates: Vec<(String, &Template)> = Vec::new();
    if let Some(t) = path {
        templates.push((format!("{sp}.path"), t));
    }
    for (k, t) in headers {
        let hp = if s.headers.contains_key(k) { format!("{sp}.headers.{k}") } else { format!("defaults.headers.{k}") };
        templates.push((hp, t));
    }
    if let Some(t) = body {
        templates.push((format!("{sp}.body"), t));
    }
    for (tp, t) in templates {
        let refs = t.references();
        for var in refs.vars {
            if !extracted.contains(&var) {
                v.err(
                    &tp,
                    format!(
                        "{{{{var.{var}}}}} is not extracted by an earlier step of journey {:?} \
                         (add \"extract\": {{\"{var}\": \"/json/pointer\"}} to an earlier step)",
                        journey
                    ),
                );
            }
        }
        for list in refs.lists {
            if !raw.data.contains_key(&list) {
                let known: Vec<&str> = raw.data.keys().map(String::as_str).collect();
                v.err(&tp, format!("{{{{pick.{list}}}}}: no data list {list:?} (data has: {})", join_or_none(&known)));
            }
        }
        if refs.idem && !s.idempotency_key {
            v.err(&tp, "{{idem}} needs \"idempotency_key\": true on the step");
        }
    }
}

/// `expect` and `refuse`: HTTP statuses, none in both.
fn statuses(v: &mut V, sp: &str, s: &RawStep) -> Vec<u16> {
    let expect = s.expect.clone().unwrap_or_else(|| vec![200]);
    if expect.is_empty() {
        v.err(format!("{sp}.expect"), "must list at least one status");
    }
    for (field, list) in [("expect", &expect), ("refuse", &s.refuse)] {
        for (i, code) in list.iter().enumerate() {
            if !(100..=599).contains(code) {
                v.err(format!("{sp}.{field}[{i}]"), format!("{code} is not an HTTP status (100..=599)"));
            }
        }
    }
    for (i, code) in s.refuse.iter().enumerate() {
        if expect.contains(code) {
            v.err(format!("{sp}.refuse[{i}]"), format!("{code} is also in expect; a status is ok or a refusal"));
        }
    }
    expect
}

/// `extract`: variable names and the JSON pointers they are read from.
fn extracts(v: &mut V, sp: &str, s: &RawStep) -> Vec<Extract> {
    let mut extract = Vec::new();
    for (var, pointer) in &s.extract {
        let ep = format!("{sp}.extract.{var}");
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            v.err(&ep, "variable names may use letters, digits, _ and - only");
        }
        if !valid_pointer(pointer) {
            v.err(&ep, format!("{pointer:?} is not a JSON pointer (RFC 6901), e.g. \"/order_id\" or \"/lines/0/sku\""));
        }
        extract.push(Extract { var: var.clone(), json_pointer: pointer.clone() });
    }
    extract
}

/// Most reconnects a stream step may allow (each may hold a connection for
/// up to the step's timeout, which the drain timeout has to cover).
const MAX_RECONNECTS: u32 = 10_000;
const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_millis(100);
const DEFAULT_MAX_RECONNECTS: u32 = 10;

fn stream(v: &mut V, path: &str, st: &RawStream) -> Option<StreamSpec> {
    let kind = StreamKind::ALL.iter().copied().find(|k| k.as_str() == st.kind);
    if kind.is_none() {
        let all: Vec<&str> = StreamKind::ALL.iter().map(|k| k.as_str()).collect();
        v.err(
            format!("{path}.kind"),
            format!("unknown stream kind {:?} (expected one of {})", st.kind, all.join(", ")),
        );
    }
    let watch = v.positive(&format!("{path}.watch"), st.watch.0);
    let max_reconnects = st.max_reconnects.unwrap_or(DEFAULT_MAX_RECONNECTS);
    if max_reconnects > MAX_RECONNECTS {
        v.err(format!("{path}.max_reconnects"), format!("{max_reconnects}: must be 0..={MAX_RECONNECTS}"));
    }
    Some(StreamSpec {
        kind: kind?,
        watch,
        reconnect_delay: st.reconnect_delay.map_or(DEFAULT_RECONNECT_DELAY, |d| d.0),
        max_reconnects,
    })
}

fn valid_pointer(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    if !p.starts_with('/') {
        return false;
    }
    let b = p.as_bytes();
    b.iter().enumerate().all(|(i, &c)| c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}
