//! The scenario: what traffic to send, what faults to inject and what counts as
//! a pass, read from a JSON file (format in docs/SCENARIOS.md, schema in
//! scenarios/scenario.schema.json). `load`/`parse` return a validated
//! [`Scenario`]: every later stage can trust it (weights positive, step names
//! unique, templates refer to data and variables that exist, ...).
//!
//! Not for: deciding when shoppers arrive (traffic/schedule.rs) or sending
//! anything (the engine).

mod duration;
mod error;
mod raw;
pub mod rng;
mod template;
pub mod url;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng as _;

use crate::outcome::FailureClass;

pub use duration::{format_duration, parse_duration};
pub use error::{FieldError, ScenarioError};
pub use template::{Escape, RenderError, ShopperCtx, Template};

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub target: TargetSpec,
    /// Total shoppers that arrive (fewer only if the stages end first; see traffic/schedule.rs).
    pub shoppers: u64,
    /// Open arrival profile, stages played one after the other.
    pub arrival: Vec<Stage>,
    /// How arrival times are drawn within the profile.
    pub arrival_process: ArrivalProcess,
    /// Pause between the steps of a journey.
    pub think: ThinkTime,
    /// Weighted; each shopper follows one.
    pub journeys: Vec<Journey>,
    pub connections: ConnectionModel,
    /// `connections.addresses` (per_shopper, loopback targets): shopper `s`
    /// connects from 127.0.0.(2 + s % N), so a target that balances by client
    /// IP (`reference-server --balance sticky`) sees N distinct clients.
    pub shopper_addresses: Option<u32>,
    /// `connections.tls_resumption` (default true): new TLS connections
    /// resume a session when they can. No effect on http:// targets.
    pub tls_resumption: bool,
    /// Named lists for `{{pick.NAME}}`.
    pub data: BTreeMap<String, Vec<serde_json::Value>>,
    pub gates: Gates,
    pub chaos: Vec<FaultSpec>,
    pub audit: Option<AuditSpec>,
    /// How busy the machine may be with other work for the run to count.
    pub environment: Environment,
}

impl Scenario {
    /// Total length of the arrival profile.
    pub fn arrival_duration(&self) -> Duration {
        self.arrival.iter().map(|s| s.duration).sum()
    }

    /// Expected number of arrivals the stages bring at rate scale 1 (the
    /// integral of the rate over the profile), before the `shoppers` cap.
    pub fn expected_arrivals(&self) -> f64 {
        self.arrival.iter().map(Stage::expected_arrivals).sum()
    }

    /// Finds a step by its (scenario-unique) name: (journey index, step index).
    pub fn step(&self, name: &str) -> Option<(usize, usize)> {
        self.journeys
            .iter()
            .enumerate()
            .find_map(|(j, journey)| journey.steps.iter().position(|s| s.name == name).map(|i| (j, i)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// e.g. "http://127.0.0.1:8080", without a trailing slash.
    pub base_url: String,
    /// Readiness probe path (any response with a status below 500 counts as ready).
    pub ready_path: String,
    pub ready_timeout: Duration,
    /// The harness starts the target itself.
    pub launch: Option<LaunchSpec>,
    /// Or attaches to a running one whose master pid is in this file.
    pub pid_file: Option<PathBuf>,
    /// Prometheus endpoints scraped during the run (`target.metrics`, scrape/).
    pub metrics: Vec<MetricsEndpoint>,
    /// https:// targets: PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// https:// targets: accept any certificate (said in the report and summary.json).
    pub insecure_skip_verify: bool,
    /// Host names pinned to addresses instead of DNS (`target.resolve`, host::names).
    pub resolve: BTreeMap<String, Vec<std::net::IpAddr>>,
}

/// One Prometheus endpoint the run scrapes (`target.metrics[i]`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsEndpoint {
    /// e.g. "http://127.0.0.1:9090/metrics".
    pub url: String,
    /// Names the endpoint in the file and the report ("cluster", "haproxy"); unique.
    pub label: String,
    /// Time between scrapes; also the most one scrape may take.
    pub interval: Duration,
    /// The series kept and charted: the scenario's, or [`default_series`].
    pub series: Vec<SeriesSpec>,
}

/// A series picked from an endpoint by name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSpec {
    /// The sample name as exposed, e.g. "reference_worker_restarts_total".
    pub name: String,
    /// Labels a sample must carry with these values (others may vary: one line each).
    pub labels: BTreeMap<String, String>,
    pub kind: SeriesKind,
    /// The chart it is drawn on; series with the same title share a chart.
    pub title: String,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// The value as scraped.
    Gauge,
    /// A counter, per second between scrapes (a decrease is a reset, as in Prometheus).
    Rate,
    /// A counter whose every increase is a marker (restarts by reason).
    Events,
}

impl SeriesKind {
    pub const NAMES: [&str; 3] = ["gauge", "rate", "events"];

    pub fn from_name(s: &str) -> Option<SeriesKind> {
        match s {
            "gauge" => Some(SeriesKind::Gauge),
            "rate" => Some(SeriesKind::Rate),
            "events" => Some(SeriesKind::Events),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Gauge => "gauge",
            SeriesKind::Rate => "rate",
            SeriesKind::Events => "events",
        }
    }
}

/// Chart titles of the default series (the report orders charts by them).
pub const WORKERS_TITLE: &str = "workers up and draining";
pub const RESTARTS_TITLE: &str = "worker restarts by reason";

/// The series kept when an endpoint lists none: the reference server's
/// (docs/CLUSTER.md, "Metrics") and HAProxy's built-in exporter's. Series an
/// endpoint does not expose are simply absent, so one list serves both.
pub fn default_series() -> Vec<SeriesSpec> {
    let s = |name: &str, kind: SeriesKind, title: &str| SeriesSpec {
        name: name.into(),
        labels: BTreeMap::new(),
        kind,
        title: title.into(),
    };
    vec![
        s("reference_workers_up", SeriesKind::Gauge, WORKERS_TITLE),
        s("reference_workers_draining", SeriesKind::Gauge, WORKERS_TITLE),
        s("reference_worker_restarts_total", SeriesKind::Events, RESTARTS_TITLE),
        s("reference_in_flight_requests", SeriesKind::Gauge, "in-flight requests per slot"),
        s("reference_open_connections", SeriesKind::Gauge, "open connections per slot"),
        s("reference_requests_total", SeriesKind::Rate, "requests served per second per slot"),
        s("haproxy_server_current_sessions", SeriesKind::Gauge, "HAProxy sessions per backend server"),
        s("haproxy_server_status", SeriesKind::Gauge, "HAProxy backend server state"),
    ]
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Signal that stops the target after the run, e.g. "SIGINT".
    pub stop_signal: String,
    pub stop_timeout: Duration,
}

/// One stage of the arrival profile: the rate (arrivals per second) moves
/// linearly from `from_rate` to `to_rate` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub from_rate: f64,
    pub to_rate: f64,
}

impl Stage {
    /// Expected arrivals in this stage: the area under the rate line.
    pub fn expected_arrivals(&self) -> f64 {
        (self.from_rate + self.to_rate) / 2.0 * self.duration.as_secs_f64()
    }
}

/// How arrival instants are drawn from the rate profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArrivalProcess {
    /// A Poisson process with the profile's time-varying rate: independent
    /// arrivals, bursts and gaps as real shoppers make them. The default.
    #[default]
    Poisson,
    /// Evenly spaced at the profile's rate (the k-th arrival when the expected
    /// count reaches k): exact counts, for benchmarks and calibration.
    Uniform,
}

impl ArrivalProcess {
    pub fn as_str(self) -> &'static str {
        match self {
            ArrivalProcess::Poisson => "poisson",
            ArrivalProcess::Uniform => "uniform",
        }
    }
}

/// Pause between the steps of a journey (not before the first step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThinkTime {
    None,
    Constant(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Exponential with this mean, cut at `max` (a long tail without absurd pauses).
    Exponential {
        mean: Duration,
        max: Duration,
    },
}

impl ThinkTime {
    pub fn sample(&self, rng: &mut crate::scenario::rng::Rng) -> Duration {
        match *self {
            ThinkTime::None => Duration::ZERO,
            ThinkTime::Constant(d) => d,
            ThinkTime::Uniform { min, max } => {
                if max <= min {
                    min
                } else {
                    let us = rng.random_range(min.as_micros()..=max.as_micros());
                    Duration::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
                }
            }
            ThinkTime::Exponential { mean, max } => {
                if mean.is_zero() {
                    return Duration::ZERO;
                }
                // Inverse transform: -ln(U) * mean, U in (0, 1].
                let u: f64 = 1.0 - rng.random::<f64>();
                let secs = -u.ln() * mean.as_secs_f64();
                Duration::from_secs_f64(secs.min(max.as_secs_f64()))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub name: String,
    /// Relative weight, > 0.
    pub weight: f64,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique per scenario; histograms are per step name.
    pub name: String,
    /// GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS.
    pub method: String,
    pub path: Template,
    pub headers: Vec<(String, Template)>,
    /// JSON text after rendering.
    pub body: Option<Template>,
    /// Statuses that are Ok (default [200]).
    pub expect: Vec<u16>,
    /// Expected business refusals (e.g. [409]); the journey stops after one.
    pub refuse: Vec<u16>,
    /// Per attempt, connect + response.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Values from the response for later templates.
    pub extract: Vec<Extract>,
    /// Send an Idempotency-Key header, the same key on every retry of the step.
    pub idempotency_key: bool,
    /// Read the response as an event stream and reconnect when the server
    /// asks to (None: an ordinary request, its body read to the end).
    pub stream: Option<StreamSpec>,
}

/// A step whose response is a long-lived event stream (docs/SCENARIOS.md,
/// "Streams"): the engine watches it for `watch` from the operation's start,
/// and when the server ends it with `event: reconnect` before then, sends the
/// request again after `reconnect_delay`, with `Last-Event-ID`, on a fresh
/// connection. A reconnect is not a retry: the retry policy covers failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    pub kind: StreamKind,
    /// How long the shopper watches, from the operation's intended start.
    pub watch: Duration,
    /// Pause between a server-requested end and the reconnect.
    pub reconnect_delay: Duration,
    /// Most server-requested reconnects per operation; one more request to
    /// reconnect ends the watch (ok).
    pub max_reconnects: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Server-Sent Events (`text/event-stream`): `id:`, `event:`, `data:` lines.
    Sse,
}

impl StreamKind {
    pub const ALL: [StreamKind; 1] = [StreamKind::Sse];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Sse => "sse",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, >= 1 (1 = no retry).
    pub attempts: u32,
    /// Failure classes that are retried; any other failure ends the operation.
    pub on: Vec<FailureClass>,
    /// Pause before each retry.
    pub backoff: Duration,
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy { attempts: 1, on: Vec::new(), backoff: Duration::ZERO }
    }

    /// Whether a failure of this class on attempt `attempt` (1-based) is retried.
    /// A refused certificate never is: it will be refused again, and a
    /// deploy that ships one must fail the run loudly.
    pub fn retries(&self, class: FailureClass, attempt: u32) -> bool {
        class != FailureClass::TlsCertificate && attempt < self.attempts && self.on.contains(&class)
    }
}

/// A value taken from a JSON response body for later templates (`{{var.NAME}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extract {
    pub var: String,
    /// RFC 6901 pointer into the JSON body, e.g. "/order_id".
    pub json_pointer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionModel {
    /// Shared keep-alive pool of `size` connections.
    Pool { size: usize, idle_timeout: Duration },
    /// Each shopper opens its own keep-alive connection.
    PerShopper { idle_timeout: Duration },
}

/// `environment`: what the machine may spend on other work while a run or
/// the calibration measures (see host/machine.rs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Environment {
    /// Fraction of the machine's CPU capacity (0 < x <= 1) that other
    /// processes plus steal may take in the busiest window of
    /// `WINDOW_S` (host/machine.rs) seconds; above it a failed gate that
    /// depends on speed is unknown and the run inconclusive (exit 2).
    pub max_other_cpu: f64,
}

/// Default of the scenario's `environment.max_other_cpu`: other work above
/// 15% of the machine's CPU makes a failed capacity gate unknown. On 2 CPUs
/// that is 0.3 of a core, about what an editor's language server and a
/// browser tab take at rest; one stray compiler job is 0.5.
pub const DEFAULT_MAX_OTHER_CPU: f64 = 0.15;

impl Default for Environment {
    fn default() -> Self {
        Environment { max_other_cpu: DEFAULT_MAX_OTHER_CPU }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gates {
    pub max_dropped: Option<u64>,
    pub max_first_attempt_failures: Option<u64>,
    pub min_throughput_rps: Option<f64>,
    pub latency: Vec<LatencyGate>,
    /// Default true when an audit is set.
    pub audit_must_pass: bool,
    /// Most changes of serving worker per run outside fault windows (sticky
    /// targets; see `affinity`). None = not gated.
    pub max_affinity_breaks: Option<u64>,
    /// Most first attempts that may fail outside every fault window: a
    /// failure nobody injected is a bug in the server or the harness
    /// (`budgets`). None = not gated.
    pub max_first_attempt_failures_outside_faults: Option<u64>,
    /// Most the target's resident memory may grow, MiB per hour, by the
    /// slope through the run's samples (host/resources.rs; a soak). None =
    /// not gated.
    pub max_server_rss_growth_mib_per_hour: Option<f64>,
    /// Most the target's open file descriptors may grow per hour, likewise.
    pub max_server_fd_growth_per_hour: Option<f64>,
}

impl Gates {
    /// No gate at all: for a run that measures and leaves judging to
    /// another stage (a calibration burst, a shard of a sharded run).
    pub fn none() -> Self {
        Gates::default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LatencyGate {
    /// None = all steps together.
    pub step: Option<String>,
    /// In (0, 100), e.g. 99.0.
    pub percentile: f64,
    pub max: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    pub name: String,
    /// From run start.
    pub at: Duration,
    /// Repeat period when `count` > 1.
    pub every: Option<Duration>,
    /// Occurrences, default 1.
    pub count: u32,
    pub action: FaultAction,
    /// What each occurrence may cost, counted over its attribution window.
    pub budget: FaultBudget,
}

/// A fault's promise: the failures each of its occurrences may cause, counted
/// over that occurrence's attribution window (`attribution`), gated by
/// `budgets`. A graceful fault (rolling restart, deploy command, graceful
/// stop) promises zero; a SIGKILL may cost what the killed worker had in
/// flight. `None` = that count is not gated for this fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultBudget {
    /// Failed first attempts (before any retry) in the window.
    pub max_first_attempt_failures: Option<u64>,
    /// Operations whose first failure fell in the window and that no retry saved.
    pub max_dropped: Option<u64>,
}

impl FaultBudget {
    pub fn is_set(&self) -> bool {
        self.max_first_attempt_failures.is_some() || self.max_dropped.is_some()
    }
}

/// Most occurrences of one fault (`chaos[].count`): a fault every 10 ms
/// for 100 s. More is a typo, and would be planned one by one.
pub const MAX_FAULT_OCCURRENCES: u32 = 10_000;

impl FaultSpec {
    /// One occurrence of `action` at `at`, without a budget.
    pub fn once(name: &str, at: Duration, action: FaultAction) -> FaultSpec {
        FaultSpec { name: name.into(), at, every: None, count: 1, action, budget: FaultBudget::default() }
    }

    /// The instants (from run start) at which this fault fires. `count` is
    /// at most [`MAX_FAULT_OCCURRENCES`] in a validated scenario.
    pub fn times(&self) -> Vec<Duration> {
        let every = self.every.unwrap_or(Duration::ZERO);
        (0..self.count).map(|i| self.at + every * i).collect()
    }

    /// When the last occurrence fires, computed without listing them (None
    /// if it is beyond any representable time).
    pub fn last_time(&self) -> Option<Duration> {
        let every = self.every.unwrap_or(Duration::ZERO);
        every.checked_mul(self.count.saturating_sub(1))?.checked_add(self.at)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    KillWorker { signal: String, pick: Pick },
    SignalMaster { signal: String },
    HangWorker { pick: Pick, duration: Duration },
    Command { argv: Vec<String>, timeout: Duration },
    NaiveRestart { stop_timeout: Duration },
}

impl FaultAction {
    /// The name used in scenario files and in `fault_start`/`fault_end` events.
    pub fn as_str(&self) -> &'static str {
        match self {
            FaultAction::KillWorker { .. } => "kill_worker",
            FaultAction::SignalMaster { .. } => "signal_master",
            FaultAction::HangWorker { .. } => "hang_worker",
            FaultAction::Command { .. } => "command",
            FaultAction::NaiveRestart { .. } => "naive_restart",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Random,
    Oldest,
    Busiest,
}

impl Pick {
    pub fn as_str(self) -> &'static str {
        match self {
            Pick::Random => "random",
            Pick::Oldest => "oldest",
            Pick::Busiest => "busiest",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSpec {
    /// e.g. http://127.0.0.1:9090/audit
    pub url: String,
    /// Steps whose 2xx responses acknowledge an order (their `order_id` is recorded).
    pub checkout_steps: Vec<String>,
}

/// Largest scenario file read: far above any real scenario (the Black
/// Friday one is 8 KB), far below what would hurt the machine.
pub const MAX_SCENARIO_BYTES: u64 = 16 * 1024 * 1024;

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let read_err = |source| ScenarioError::Read { path: path.to_path_buf(), source };
    let text = read_capped(path, MAX_SCENARIO_BYTES).map_err(read_err)?;
    parse(&text).map_err(|e| e.with_file(path.to_path_buf()))
}

/// A text file of at most `max` bytes. Regression (issue 18, item 6):
/// `harness validate /dev/zero` read until memory ran out.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes; not a scenario or a pid file")));
    }
    Ok(text)
}

/// Parses and validates scenario JSON text.
pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    let raw = raw::from_str(text)?;
    validate::validate(raw).map_err(|errors| ScenarioError::Invalid { file: None, errors })
}

/// Signal names accepted in scenario files (`stop_signal`, `signal`).
pub const SIGNALS: [&str; 13] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGCONT", "SIGSTOP", "SIGTSTP",
    "SIGTTIN", "SIGTTOU", "SIGWINCH",
];
