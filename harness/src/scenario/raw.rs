//! The scenario file as written: serde input types that mirror the JSON, with
//! unknown fields refused. Enumerations (`kind`, `model`, `action`, ...) are
//! read as plain strings and checked in `validate`, so that a bad value gets a
//! message listing the allowed ones at its exact path. Not the validated model.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::duration::parse_duration;
use super::error::{FieldError, ScenarioError, excerpt};

/// A duration string such as "250ms", checked while deserializing so that the
/// error carries the field path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\", \"5s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a scenario object")]
pub(crate) struct RawScenario {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people; kept so the field is allowed
    pub description: Option<String>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    pub target: RawTarget,
    pub shoppers: u64,
    pub arrival: Vec<RawStage>,
    #[serde(default)]
    pub arrival_process: Option<String>,
    #[serde(default)]
    pub think: Option<RawThink>,
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    pub journeys: Vec<RawJourney>,
    #[serde(default)]
    pub connections: Option<RawConnections>,
    #[serde(default)]
    pub data: BTreeMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    pub gates: Option<RawGates>,
    #[serde(default)]
    pub chaos: Vec<RawFault>,
    #[serde(default)]
    pub audit: Option<RawAudit>,
    #[serde(default)]
    pub environment: Option<RawEnvironment>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a target object such as {\"base_url\": \"http://127.0.0.1:8080\"}")]
pub(crate) struct RawTarget {
    pub base_url: String,
    #[serde(default)]
    pub ready_path: Option<String>,
    #[serde(default)]
    pub ready_timeout: Option<Dur>,
    #[serde(default)]
    pub launch: Option<RawLaunch>,
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub metrics: Vec<RawMetricsEndpoint>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub resolve: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a metrics endpoint such as {\"url\": \"http://127.0.0.1:9090/metrics\", \"label\": \"cluster\"}"
)]
pub(crate) struct RawMetricsEndpoint {
    pub url: String,
    pub label: String,
    #[serde(default)]
    pub interval: Option<Dur>,
    #[serde(default)]
    pub series: Option<Vec<RawSeries>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a series such as {\"name\": \"reference_workers_up\", \"as\": \"gauge\", \"title\": \"workers\"}"
)]
pub(crate) struct RawSeries {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "as")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a launch object such as {\"argv\": [\"./server\"]}")]
pub(crate) struct RawLaunch {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub stop_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a stage object such as {\"duration\": \"10s\", \"rate\": 100}")]
pub(crate) struct RawStage {
    pub duration: Dur,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub from_rate: Option<f64>,
    #[serde(default)]
    pub to_rate: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a think object such as {\"kind\": \"uniform\", \"min\": \"10ms\", \"max\": \"50ms\"}"
)]
pub(crate) struct RawThink {
    pub kind: String,
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default)]
    pub min: Option<Dur>,
    #[serde(default)]
    pub max: Option<Dur>,
    #[serde(default)]
    pub mean: Option<Dur>,
}

/// Values every step gets unless it sets its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a defaults object")]
pub(crate) struct RawDefaults {
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a journey object with name, weight and steps")]
pub(crate) struct RawJourney {
    pub name: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
    pub steps: Vec<RawStep>,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a step object with at least name and path")]
pub(crate) struct RawStep {
    pub name: String,
    #[serde(default)]
    pub method: Option<String>,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub expect: Option<Vec<u16>>,
    #[serde(default)]
    pub refuse: Vec<u16>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    #[serde(default)]
    pub idempotency_key: bool,
    #[serde(default)]
    pub stream: Option<RawStream>,
}

/// A long-lived response read as an event stream (`Step::stream`).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a stream object such as {\"kind\": \"sse\", \"watch\": \"3s\", \"reconnect_delay\": \"50ms\"}"
)]
pub(crate) struct RawStream {
    pub kind: String,
    pub watch: Dur,
    #[serde(default)]
    pub reconnect_delay: Option<Dur>,
    #[serde(default)]
    pub max_reconnects: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a retry object such as {\"attempts\": 3, \"on\": [\"connect_refused\"], \"backoff\": \"100ms\"}"
)]
pub(crate) struct RawRetry {
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub on: Vec<String>,
    #[serde(default)]
    pub backoff: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a connections object such as {\"model\": \"pool\", \"size\": 64}")]
pub(crate) struct RawConnections {
    pub model: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    #[serde(default)]
    pub addresses: Option<u32>,
    #[serde(default)]
    pub tls_resumption: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a gates object")]
pub(crate) struct RawGates {
    #[serde(default)]
    pub max_dropped: Option<u64>,
    #[serde(default)]
    pub max_first_attempt_failures: Option<u64>,
    #[serde(default)]
    pub min_throughput_rps: Option<f64>,
    #[serde(default)]
    pub latency: Vec<RawLatencyGate>,
    #[serde(default)]
    pub audit_must_pass: Option<bool>,
    #[serde(default)]
    pub max_affinity_breaks: Option<u64>,
    #[serde(default)]
    pub max_first_attempt_failures_outside_faults: Option<u64>,
    #[serde(default)]
    pub max_server_rss_growth_mib_per_hour: Option<f64>,
    #[serde(default)]
    pub max_server_fd_growth_per_hour: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a latency gate such as {\"percentile\": 99, \"max\": \"1s\"}")]
pub(crate) struct RawLatencyGate {
    #[serde(default)]
    pub step: Option<String>,
    pub percentile: f64,
    pub max: Dur,
}

/// One fault; which of the optional fields apply depends on `action`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a fault object with name, at and action")]
pub(crate) struct RawFault {
    pub name: String,
    pub at: Dur,
    #[serde(default)]
    pub every: Option<Dur>,
    #[serde(default)]
    pub count: Option<u32>,
    pub action: String,
    #[serde(default)]
    pub signal: Option<String>,
    #[serde(default)]
    pub pick: Option<String>,
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    #[serde(default)]
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub stop_timeout: Option<Dur>,
    /// Budgets (any action).
    #[serde(default)]
    pub max_first_attempt_failures: Option<u64>,
    #[serde(default)]
    pub max_dropped: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an audit object such as {\"url\": \"http://127.0.0.1:9090/audit\"}")]
pub(crate) struct RawAudit {
    pub url: String,
    #[serde(default)]
    pub checkout_steps: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an environment object such as {\"max_other_cpu\": 0.15}")]
pub(crate) struct RawEnvironment {
    #[serde(default)]
    pub max_other_cpu: Option<f64>,
}

/// Deserializes with field paths; JSON syntax errors keep their line and column.
pub(crate) fn from_str(text: &str) -> Result<RawScenario, ScenarioError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<RawScenario, _> = serde_path_to_error::deserialize(&mut de);
    let raw = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let message = strip_position(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => ScenarioError::Shape {
                file: None,
                error: FieldError { path: if path == "." { String::new() } else { path }, message: tidy(&message) },
                line,
                column,
            },
            _ => ScenarioError::Syntax {
                file: None,
                line,
                column,
                message: tidy(&message),
                excerpt: excerpt(text, line, column),
            },
        }
    })?;
    // Trailing characters after the document are a syntax error too.
    de.end().map_err(|e| ScenarioError::Syntax {
        file: None,
        line: e.line(),
        column: e.column(),
        message: tidy(&strip_position(&e.to_string())),
        excerpt: excerpt(text, e.line(), e.column()),
    })?;
    Ok(raw)
}

/// serde_json appends " at line L column C"; the error reports those separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// serde quotes names and values with backticks; scenario messages quote
/// names with double quotes and leave numbers bare.
fn tidy(message: &str) -> String {
    if message.matches('`').count() % 2 == 1 {
        return message.replace('`', "\"");
    }
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        // Odd-numbered pieces (0, 2, ... here) are the quoted ones, when the backticks pair up.
        if i % 2 == 0 && i + 1 < rest.len() {
            if part.parse::<f64>().is_ok() { out.push_str(part) } else { out.push_str(&format!("\"{part}\"")) }
        } else {
            out.push_str(part);
        }
    }
    out
}
