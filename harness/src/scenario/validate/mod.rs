//! Checks a deserialized scenario and turns it into the validated model:
//! every rule that serde's shape check cannot express (positive weights,
//! unique names, templates that refer to existing data and earlier extracts,
//! faults inside the arrival profile, ...). Collects every problem, each with
//! its field path, instead of stopping at the first. Not for I/O.

mod chaos;
mod metrics;
mod steps;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::outcome::FailureClass;

use super::duration::format_duration;
use super::error::FieldError;
use super::raw::*;
use super::template::{Escape, Template};
use super::*;

/// Beyond this the schedule alone would take hundreds of MB; split the run.
const MAX_SHOPPERS: u64 = 10_000_000;
/// Headers the engine writes itself; a scenario setting them would break framing or keys.
const RESERVED_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "idempotency-key"];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const DEFAULT_POOL_SIZE: usize = 64;
/// Most attempts of one operation (`retry.attempts`): more only multiplies
/// how long a journey may take (and the run's drain deadline with it).
const MAX_ATTEMPTS: u32 = 100;

struct V {
    errors: Vec<FieldError>,
}

impl V {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { path: path.into(), message: message.into() });
    }

    fn template(&mut self, path: &str, text: &str, escape: Escape) -> Option<Template> {
        match Template::parse(text, escape) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    /// Normalizes "term" / "sigterm" / "SIGTERM" to "SIGTERM".
    fn signal(&mut self, path: &str, s: &str) -> String {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        if !SIGNALS.contains(&full.as_str()) {
            self.err(path, format!("unknown signal {s:?} (expected one of {})", SIGNALS.join(", ")));
        }
        full
    }

    fn positive(&mut self, path: &str, d: Duration) -> Duration {
        if d.is_zero() {
            self.err(path, "must be greater than 0s");
        }
        d
    }

    fn http_url(&mut self, path: &str, url: &str) {
        if let Err(e) = crate::scenario::url::HttpUrl::parse(url) {
            self.err(path, format!("{url:?} {e}"));
        }
    }

    fn retry(&mut self, path: &str, r: &RawRetry) -> RetryPolicy {
        let attempts = r.attempts.unwrap_or(1);
        if attempts == 0 {
            self.err(format!("{path}.attempts"), "must be at least 1 (1 = no retry; it counts all attempts)");
        } else if attempts > MAX_ATTEMPTS {
            self.err(format!("{path}.attempts"), format!("{attempts} is more than {MAX_ATTEMPTS} attempts"));
        }
        let mut on = Vec::new();
        for (i, name) in r.on.iter().enumerate() {
            match FailureClass::from_name(name) {
                Some(FailureClass::TlsCertificate) => self.err(
                    format!("{path}.on[{i}]"),
                    "tls_certificate is never retried: a certificate the harness refuses fails the run",
                ),
                Some(c) if !on.contains(&c) => on.push(c),
                Some(_) => self.err(format!("{path}.on[{i}]"), format!("failure class {name:?} is listed twice")),
                None => {
                    let all: Vec<&str> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
                    self.err(
                        format!("{path}.on[{i}]"),
                        format!("unknown failure class {name:?} (expected one of {})", all.join(", ")),
                    );
                }
            }
        }
        if attempts > 1 && on.is_empty() {
            self.err(format!("{path}.on"), "attempts > 1 but no failure class to retry on; list some in \"on\"");
        }
        RetryPolicy { attempts: attempts.max(1), on, backoff: r.backoff.map_or(Duration::ZERO, |d| d.0) }
    }

    fn headers(&mut self, path: &str, headers: &BTreeMap<String, String>) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let p = format!("{path}.{name}");
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.err(&p, format!("{name:?} is not a valid header name"));
                continue;
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.err(
                    &p,
                    format!(
                        "header {name:?} is set by the harness (use \"idempotency_key\": true for Idempotency-Key)"
                    ),
                );
                continue;
            }
            if value.contains(['\r', '\n', '\0']) {
                self.err(&p, "a header value cannot contain CR, LF or NUL");
                continue;
            }
            if let Some(t) = self.template(&p, value, Escape::Header) {
                out.push((name.clone(), t));
            }
        }
        out
    }
}

pub(crate) fn validate(raw: RawScenario) -> Result<Scenario, Vec<FieldError>> {
    let mut v = V { errors: Vec::new() };
    if raw.name.trim().is_empty() {
        v.err("name", "must not be empty");
    } else if raw.name == "."
        || raw.name == ".."
        || raw.name.contains(['/', '\\'])
        || raw.name.chars().any(char::is_control)
    {
        // Regression (issue 18, item 4): the name is the default run folder
        // (reports/<name>); "../../x" or "/tmp/abs" wrote outside reports/.
        v.err(
            "name",
            format!(
                "{:?} must be usable as a folder name: no '/', '\\', control characters, \".\" or \"..\"",
                raw.name
            ),
        );
    }
    let target = target(&mut v, &raw);
    let arrival = stages(&mut v, &raw);
    let arrival_end: Duration = arrival.iter().map(|s| s.duration).sum();
    let arrival_process = arrival_process(&mut v, &raw);
    let think = match &raw.think {
        None => ThinkTime::None,
        Some(th) => think(&mut v, th),
    };
    // Parsed once here so that a bad default is reported once, at its own path.
    let step_defaults = step_defaults(&mut v, &raw);
    data_lists(&mut v, &raw);
    let (journeys, step_names) = steps::journeys(&mut v, &raw, &step_defaults);
    let connections = connections(&mut v, &raw);
    let shopper_addresses = shopper_addresses(&mut v, &raw, &connections);
    // Before the gates: audit_must_pass depends on it.
    let audit = audit(&mut v, &raw, &step_names);
    let gates = gates(&mut v, &raw, &step_names, audit.is_some());
    let chaos = faults(&mut v, &raw, arrival_end);
    let environment = environment(&mut v, &raw);
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    Ok(Scenario {
        name: raw.name,
        seed: raw.seed,
        target,
        shoppers: raw.shoppers,
        arrival,
        arrival_process,
        think,
        journeys,
        connections,
        shopper_addresses,
        tls_resumption: raw.connections.as_ref().and_then(|c| c.tls_resumption).unwrap_or(true),
        data: raw.data,
        gates,
        chaos,
        audit,
        environment,
    })
}

/// `target`: the base URL, readiness, and how the target is started or found.
fn target(v: &mut V, raw: &RawScenario) -> TargetSpec {
    let t = &raw.target;
    v.http_url("target.base_url", &t.base_url);
    // Steps' paths go on the wire as written: a path in base_url would be
    // silently ignored (issue 18), so it is refused.
    if let Ok(u) = crate::scenario::url::HttpUrl::parse(&t.base_url)
        && u.path != "/"
    {
        v.err(
            "target.base_url",
            format!(
                "{:?} has a path ({:?}); steps' paths are sent as written, so put it in each step's path",
                t.base_url, u.path
            ),
        );
    }
    let ready_path = t.ready_path.clone().unwrap_or_else(|| "/".to_string());
    if let Some(problem) = super::template::request_target_problem(&ready_path) {
        v.err("target.ready_path", problem);
    } else if !ready_path.starts_with('/') {
        v.err("target.ready_path", format!("{ready_path:?} must start with \"/\""));
    }
    let ready_timeout = t.ready_timeout.map_or(Duration::from_secs(30), |d| d.0);
    v.positive("target.ready_timeout", ready_timeout);
    let launch = t.launch.as_ref().map(|l| {
        if l.argv.is_empty() || l.argv[0].is_empty() {
            v.err("target.launch.argv", "must name the program to run, e.g. [\"./server\", \"--port\", \"8080\"]");
        }
        for k in l.env.keys() {
            if k.is_empty() || k.contains(['=', '\0']) {
                v.err(format!("target.launch.env.{k}"), "not a valid environment variable name");
            }
        }
        LaunchSpec {
            argv: l.argv.clone(),
            env: l.env.clone(),
            stop_signal: v.signal("target.launch.stop_signal", l.stop_signal.as_deref().unwrap_or("SIGINT")),
            stop_timeout: l.stop_timeout.map_or(Duration::from_secs(10), |d| d.0),
        }
    });
    if launch.is_some() && t.pid_file.is_some() {
        v.err("target.pid_file", "give either launch (the harness starts the target) or pid_file (attach), not both");
    }
    if t.pid_file.as_deref() == Some("") {
        v.err("target.pid_file", "must not be empty");
    }
    if t.ca_file.as_deref() == Some("") {
        v.err("target.ca_file", "must not be empty (leave it out to trust the system's CAs)");
    }
    if t.ca_file.is_some() && t.insecure_skip_verify {
        v.err(
            "target.insecure_skip_verify",
            "give either ca_file (verify against these CAs) or insecure_skip_verify (verify nothing), not both",
        );
    }
    let resolve = resolve(v, &t.resolve);
    TargetSpec {
        base_url: t.base_url.trim_end_matches('/').to_string(),
        ready_path,
        ready_timeout,
        launch,
        pid_file: t.pid_file.as_ref().map(PathBuf::from),
        metrics: metrics::endpoints(v, &t.metrics),
        ca_file: t.ca_file.as_ref().map(PathBuf::from),
        insecure_skip_verify: t.insecure_skip_verify,
        resolve,
    }
}

/// `target.resolve`: host name -> the IP addresses to use instead of DNS.
fn resolve(v: &mut V, raw: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<std::net::IpAddr>> {
    let mut out = BTreeMap::new();
    for (name, addrs) in raw {
        let field = format!("target.resolve.{name}");
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "/:[]@".contains(c)) {
            v.err(&field, format!("{name:?} is not a host name (give the name alone, without a port or brackets)"));
        }
        if addrs.is_empty() {
            v.err(&field, "needs at least one address, e.g. [\"127.0.0.1\", \"::1\"]");
        }
        let mut ips = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            match a.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => {
                    v.err(format!("{field}[{i}]"), format!("{a:?} is not an IP address (e.g. \"10.0.0.5\" or \"::1\")"))
                }
            }
        }
        out.insert(name.clone(), ips);
    }
    out
}

/// `shoppers` and `arrival`: the stages, which must bring at least the shoppers.
fn stages(v: &mut V, raw: &RawScenario) -> Vec<Stage> {
    if raw.shoppers == 0 {
        v.err("shoppers", "must be greater than 0");
    } else if raw.shoppers > MAX_SHOPPERS {
        v.err("shoppers", format!("{} is more than {MAX_SHOPPERS}; split the run", raw.shoppers));
    }
    if raw.arrival.is_empty() {
        v.err("arrival", "needs at least one stage, e.g. {\"duration\": \"10s\", \"rate\": 100}");
    }
    let errors_before_stages = v.errors.len();
    let mut arrival = Vec::new();
    for (i, st) in raw.arrival.iter().enumerate() {
        let p = format!("arrival[{i}]");
        v.positive(&format!("{p}.duration"), st.duration.0);
        let (from, to) = match (st.rate, st.from_rate, st.to_rate) {
            (Some(r), None, None) => (r, r),
            (None, Some(f), Some(t)) => (f, t),
            (Some(_), _, _) => {
                v.err(&p, "give either rate (constant) or from_rate and to_rate (ramp), not both");
                (0.0, 0.0)
            }
            (None, Some(_), None) => {
                v.err(format!("{p}.to_rate"), "missing: a ramp needs both from_rate and to_rate");
                (0.0, 0.0)
            }
            (None, None, Some(_)) => {
                v.err(format!("{p}.from_rate"), "missing: a ramp needs both from_rate and to_rate");
                (0.0, 0.0)
            }
            (None, None, None) => {
                v.err(&p, "missing rate: give rate (arrivals/s) or from_rate and to_rate");
                (0.0, 0.0)
            }
        };
        for (field, r) in [("rate", st.rate), ("from_rate", st.from_rate), ("to_rate", st.to_rate)] {
            if let Some(r) = r
                && !(r.is_finite() && r >= 0.0)
            {
                v.err(format!("{p}.{field}"), format!("{r} is not a rate (arrivals per second, >= 0)"));
            }
        }
        arrival.push(Stage { duration: st.duration.0, from_rate: from.max(0.0), to_rate: to.max(0.0) });
    }
    let expected: f64 = arrival.iter().map(Stage::expected_arrivals).sum();
    // Only when every stage is well-formed: otherwise the count would be a consequence of that error.
    if !arrival.is_empty()
        && v.errors.len() == errors_before_stages
        && raw.shoppers > 0
        && expected < raw.shoppers as f64
    {
        v.err(
            "arrival",
            format!(
                "the stages bring about {expected:.0} shoppers (the area under the rate), fewer than shoppers = {}; \
                 lengthen a stage, raise a rate or lower shoppers",
                raw.shoppers
            ),
        );
    }
    arrival
}

fn arrival_process(v: &mut V, raw: &RawScenario) -> ArrivalProcess {
    match raw.arrival_process.as_deref() {
        None | Some("poisson") => ArrivalProcess::Poisson,
        Some("uniform") => ArrivalProcess::Uniform,
        Some(other) => {
            v.err("arrival_process", format!("unknown arrival process {other:?} (expected poisson or uniform)"));
            ArrivalProcess::Poisson
        }
    }
}

/// `defaults`: the timeout, retry policy and headers of every step that does not set its own.
fn step_defaults(v: &mut V, raw: &RawScenario) -> steps::StepDefaults {
    let (default_timeout, default_retry, default_headers) = match &raw.defaults {
        None => (DEFAULT_TIMEOUT, RetryPolicy::none(), BTreeMap::new()),
        Some(d) => (
            d.timeout.map_or(DEFAULT_TIMEOUT, |t| v.positive("defaults.timeout", t.0)),
            d.retry.as_ref().map_or_else(RetryPolicy::none, |r| v.retry("defaults.retry", r)),
            d.headers.clone(),
        ),
    };
    // Parsed once here so that a bad default is reported once, at its own path.
    steps::StepDefaults {
        timeout: default_timeout,
        retry: default_retry,
        headers: v.headers("defaults.headers", &default_headers),
    }
}

/// `data`: the lists `{{pick.LIST}}` picks from (checked before the journeys, whose templates refer to them).
fn data_lists(v: &mut V, raw: &RawScenario) {
    for (name, list) in &raw.data {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            v.err(format!("data.{name}"), "list names may use letters, digits, _ and - only");
        }
        if list.is_empty() {
            v.err(format!("data.{name}"), "must not be empty ({{pick.LIST}} picks one element)");
        }
    }
}

/// `connections`: a pool of a given size, or one connection per shopper.
fn connections(v: &mut V, raw: &RawScenario) -> ConnectionModel {
    match &raw.connections {
        None => ConnectionModel::Pool { size: DEFAULT_POOL_SIZE, idle_timeout: DEFAULT_IDLE_TIMEOUT },
        Some(c) => {
            let idle_timeout =
                c.idle_timeout.map_or(DEFAULT_IDLE_TIMEOUT, |d| v.positive("connections.idle_timeout", d.0));
            match c.model.as_str() {
                "pool" => {
                    let size = c.size.unwrap_or(DEFAULT_POOL_SIZE as u64);
                    if size == 0 {
                        v.err("connections.size", "must be greater than 0");
                    } else if size > 1_000_000 {
                        v.err("connections.size", format!("{size} connections is beyond any file-descriptor limit"));
                    }
                    ConnectionModel::Pool { size: usize::try_from(size).unwrap_or(usize::MAX), idle_timeout }
                }
                "per_shopper" => {
                    if c.size.is_some() {
                        v.err("connections.size", "only the pool model has a size (per_shopper opens one per shopper)");
                    }
                    ConnectionModel::PerShopper { idle_timeout }
                }
                other => {
                    v.err(
                        "connections.model",
                        format!("unknown connection model {other:?} (expected pool or per_shopper)"),
                    );
                    ConnectionModel::Pool { size: DEFAULT_POOL_SIZE, idle_timeout }
                }
            }
        }
    }
}

/// `connections.addresses`: source addresses per shopper, only for a shopper's own connection.
fn shopper_addresses(v: &mut V, raw: &RawScenario, connections: &ConnectionModel) -> Option<u32> {
    let shopper_addresses = raw.connections.as_ref().and_then(|c| c.addresses);
    if let Some(n) = shopper_addresses {
        if !(1..=250).contains(&n) {
            v.err(
                "connections.addresses",
                format!("{n}: must be 1..=250 (source addresses 127.0.0.2 ..= 127.0.0.251)"),
            );
        }
        if !matches!(connections, ConnectionModel::PerShopper { .. }) {
            v.err(
                "connections.addresses",
                "only the per_shopper model has per-shopper source addresses (pooled connections are shared)",
            );
        }
    }
    shopper_addresses
}

/// `audit`: where to read the shop's data and which steps are checkouts.
fn audit(v: &mut V, raw: &RawScenario, step_names: &BTreeMap<String, String>) -> Option<AuditSpec> {
    raw.audit.as_ref().map(|a| {
        v.http_url("audit.url", &a.url);
        for (i, s) in a.checkout_steps.iter().enumerate() {
            if !step_names.contains_key(s) && !raw.journeys.is_empty() {
                v.err(format!("audit.checkout_steps[{i}]"), format!("no step named {s:?}{}", known_steps(step_names)));
            }
        }
        AuditSpec { url: a.url.clone(), checkout_steps: a.checkout_steps.clone() }
    })
}

/// `gates`: the limits the run is judged by.
fn gates(v: &mut V, raw: &RawScenario, step_names: &BTreeMap<String, String>, has_audit: bool) -> Gates {
    match &raw.gates {
        None => Gates { audit_must_pass: has_audit, ..Gates::default() },
        Some(g) => {
            if let Some(r) = g.min_throughput_rps
                && !(r.is_finite() && r >= 0.0)
            {
                v.err("gates.min_throughput_rps", format!("{r} is not a rate (requests per second, >= 0)"));
            }
            let mut latency = Vec::new();
            for (i, lg) in g.latency.iter().enumerate() {
                let p = format!("gates.latency[{i}]");
                if let Some(s) = &lg.step
                    && !step_names.contains_key(s)
                    && !raw.journeys.is_empty()
                {
                    v.err(format!("{p}.step"), format!("no step named {s:?}{}", known_steps(step_names)));
                }
                if !(lg.percentile > 0.0 && lg.percentile < 100.0) {
                    v.err(
                        format!("{p}.percentile"),
                        format!("{} is not a percentile in (0, 100), e.g. 99 or 99.9", lg.percentile),
                    );
                }
                v.positive(&format!("{p}.max"), lg.max.0);
                latency.push(LatencyGate { step: lg.step.clone(), percentile: lg.percentile, max: lg.max.0 });
            }
            for (name, value) in [
                ("max_server_rss_growth_mib_per_hour", g.max_server_rss_growth_mib_per_hour),
                ("max_server_fd_growth_per_hour", g.max_server_fd_growth_per_hour),
            ] {
                if let Some(x) = value
                    && !(x.is_finite() && x >= 0.0)
                {
                    v.err(format!("gates.{name}"), format!("{x} is not a growth per hour (a number >= 0)"));
                }
            }
            let audit_must_pass = g.audit_must_pass.unwrap_or(has_audit);
            if audit_must_pass && !has_audit {
                v.err("gates.audit_must_pass", "is true but the scenario has no audit section");
            }
            Gates {
                max_dropped: g.max_dropped,
                max_first_attempt_failures: g.max_first_attempt_failures,
                min_throughput_rps: g.min_throughput_rps,
                latency,
                audit_must_pass,
                max_affinity_breaks: g.max_affinity_breaks,
                max_first_attempt_failures_outside_faults: g.max_first_attempt_failures_outside_faults,
                max_server_rss_growth_mib_per_hour: g.max_server_rss_growth_mib_per_hour,
                max_server_fd_growth_per_hour: g.max_server_fd_growth_per_hour,
            }
        }
    }
}

/// `chaos`: the faults, each inside the arrival profile (which ends at `arrival_end`).
fn faults(v: &mut V, raw: &RawScenario, arrival_end: Duration) -> Vec<FaultSpec> {
    let mut fault_names = HashSet::new();
    let mut chaos = Vec::new();
    for (i, f) in raw.chaos.iter().enumerate() {
        if let Some(spec) = chaos::fault(v, i, f, arrival_end, &mut fault_names) {
            chaos.push(spec);
        }
    }
    chaos
}

/// `environment`: how much other work on the machine a verdict tolerates.
fn environment(v: &mut V, raw: &RawScenario) -> Environment {
    let mut environment = Environment::default();
    if let Some(x) = raw.environment.as_ref().and_then(|e| e.max_other_cpu) {
        if x.is_finite() && x > 0.0 && x <= 1.0 {
            environment.max_other_cpu = x;
        } else {
            v.err(
                "environment.max_other_cpu",
                format!("{x} is not a fraction of the machine's CPU in (0, 1], e.g. 0.15 for 15%"),
            );
        }
    }
    environment
}

fn think(v: &mut V, th: &RawThink) -> ThinkTime {
    let given: Vec<(&str, bool)> = vec![
        ("duration", th.duration.is_some()),
        ("min", th.min.is_some()),
        ("max", th.max.is_some()),
        ("mean", th.mean.is_some()),
    ];
    let (allowed, result): (&[&str], ThinkTime) = match th.kind.as_str() {
        "none" => (&[], ThinkTime::None),
        "constant" => match th.duration {
            Some(d) => (&["duration"], ThinkTime::Constant(d.0)),
            None => {
                v.err("think.duration", "required for kind \"constant\"");
                (&["duration"], ThinkTime::None)
            }
        },
        "uniform" => match (th.min, th.max) {
            (Some(min), Some(max)) => {
                if min.0 > max.0 {
                    v.err("think.max", format!("{} is below min {}", format_duration(max.0), format_duration(min.0)));
                }
                (&["min", "max"], ThinkTime::Uniform { min: min.0, max: max.0 })
            }
            (min, _) => {
                v.err(if min.is_none() { "think.min" } else { "think.max" }, "required for kind \"uniform\"");
                (&["min", "max"], ThinkTime::None)
            }
        },
        "exponential" => match th.mean {
            Some(mean) => {
                // Without a cut the tail is unbounded; 10 means keeps 99.995% of the distribution.
                let max = th.max.map_or(mean.0 * 10, |m| m.0);
                if max < mean.0 {
                    v.err(
                        "think.max",
                        format!("{} is below the mean {}", format_duration(max), format_duration(mean.0)),
                    );
                }
                (&["mean", "max"], ThinkTime::Exponential { mean: mean.0, max })
            }
            None => {
                v.err("think.mean", "required for kind \"exponential\"");
                (&["mean", "max"], ThinkTime::None)
            }
        },
        other => {
            v.err(
                "think.kind",
                format!("unknown think time {other:?} (expected none, constant, uniform or exponential)"),
            );
            return ThinkTime::None;
        }
    };
    for (field, set) in given {
        if set && !allowed.contains(&field) {
            v.err(format!("think.{field}"), format!("not used by kind {:?}", th.kind));
        }
    }
    result
}

fn join_or_none(items: &[&str]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

fn known_steps(names: &BTreeMap<String, String>) -> String {
    let set: BTreeSet<&str> = names.keys().map(String::as_str).collect();
    format!(" (steps are: {})", join_or_none(&set.into_iter().collect::<Vec<_>>()))
}
