//! One run, start to finish: prepare (overrides, target, limits, output
//! folder) -> wait for the target -> execute (engine + side tasks such as the
//! fault runner, sharing one `EventLog`) -> conclude (validity, gates,
//! interval logs, summary.json).
//!
//! The stages are separate public functions so that the target lifecycle
//! (launch before `execute`, stop after), the chaos fault runner (a
//! [`SideTask`] given to `execute`) and the audit (reads the ledger after
//! `execute`, its result given to `conclude`) plug in without this module
//! knowing them. `harness run` and `harness compare` go through
//! drive/lifecycle.rs, which chains these stages with the target around them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::drive::shard::{self, Shard, ShardInfo, ShardRow};
use crate::host::limits;
use crate::host::machine::{self, Sampler, SecondSample, TargetPid};
use crate::host::resources;
use crate::judge::baseline::{self, Baseline};
use crate::judge::gates::{self, GateResult, Measured, Noise};
use crate::judge::summary::{self, Summary};
use crate::record::events::{EVENTS_FILE, EventLog};
use crate::record::ledger::{LEDGER_FILE, Ledger};
use crate::record::recorder::{INTERVALS_FILE, TOTALS_FILE};
use crate::scenario::url::HttpUrl;
use crate::scenario::{ConnectionModel, Scenario};
use crate::scrape::{self, ScrapeLog, Scraper};
use crate::traffic::client::Connector;
use crate::traffic::engine::{self, EngineOptions, EngineOutcome, Live};
use crate::traffic::schedule::{self, Schedule};
use crate::traffic::tls::{self, TlsConnect, TlsSettings};

/// Options from the command line (everything else is in the scenario).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Replaces the scenario's `target.base_url`.
    pub target: Option<String>,
    /// Output folder (created); default `reports/<scenario name>`.
    pub out: Option<PathBuf>,
    /// Multiplies every arrival rate.
    pub rate_scale: f64,
    pub allow_remote: bool,
    /// Replaces the scenario's seed.
    pub seed: Option<u64>,
    /// Show the live progress line.
    pub progress: bool,
    pub engine: EngineOptions,
    /// Play only this shard's shoppers (`--shard K/N`, drive/shard.rs).
    pub shard: Option<Shard>,
    /// The run clock's zero (`--start-at`): wait until then.
    pub start_at: Option<SystemTime>,
    /// The scenario file's fingerprint, recorded by a shard for the merge.
    pub scenario_hash: String,
    /// Gate a regression against this old summary (`--baseline`).
    pub baseline: Option<Baseline>,
    /// Prepared only to judge traffic played elsewhere (`harness merge`):
    /// no file-descriptor or port checks, no source addresses.
    pub judge_only: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            target: None,
            out: None,
            rate_scale: 1.0,
            allow_remote: false,
            seed: None,
            progress: false,
            engine: EngineOptions::default(),
            shard: None,
            start_at: None,
            scenario_hash: String::new(),
            baseline: None,
            judge_only: false,
        }
    }
}

/// Why a run could not start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{0}")]
    Target(String),
    #[error("{0}")]
    Limits(String),
    #[error("{path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
}

fn out_err(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Output { path: path.to_path_buf(), source }
}

/// Everything decided before traffic starts.
pub struct Prepared {
    pub scenario: Arc<Scenario>,
    pub schedule: Arc<Schedule>,
    pub connector: Arc<Connector>,
    pub dir: PathBuf,
    pub rate_scale: f64,
    pub engine: EngineOptions,
    pub progress: bool,
    /// The target's top process for the machine sampler (its tree is the
    /// run's, not other work); the lifecycle sets it once the target runs.
    pub target_pid: TargetPid,
    /// The scenario's `target.metrics`, resolved (loopback unless --allow-remote).
    pub scrape: Vec<scrape::Target>,
    /// The shard this process plays, with the scenario's fingerprint.
    pub shard: Option<(Shard, String)>,
    /// The shared start instant, if one was given.
    pub start_at: Option<SystemTime>,
    /// Shoppers of the whole (unsharded) schedule.
    pub all_shoppers: u64,
    pub baseline: Option<Baseline>,
}

/// Resolve `target.metrics` as the target itself is resolved: loopback only unless `allow_remote`.
fn scrape_targets(scenario: &Scenario, allow_remote: bool) -> Result<Vec<scrape::Target>, StartError> {
    let mut out = Vec::new();
    for (i, m) in scenario.target.metrics.iter().enumerate() {
        let bad = |e: String| StartError::Target(format!("target.metrics[{i}].url: {e}"));
        let addr = limits::resolve_target(&m.url, allow_remote).map_err(bad)?;
        let path = HttpUrl::parse(&m.url).map_err(|e| bad(format!("{:?} {e}", m.url)))?.path;
        out.push(scrape::Target {
            spec: m.clone(),
            at: scrape::fetch::Endpoint { addr: addr.addr, authority: addr.authority, path },
        });
    }
    Ok(out)
}

/// Applies the overrides, builds the schedule, checks the target address and
/// the machine's limits, and creates the output folder.
pub fn prepare(mut scenario: Scenario, opts: &RunOptions) -> Result<Prepared, StartError> {
    if let Some(t) = &opts.target {
        scenario.target.base_url = t.trim_end_matches('/').to_string();
    }
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    if let Some(shard) = opts.shard {
        shard.apply(&mut scenario);
    }
    if !(opts.rate_scale.is_finite() && opts.rate_scale > 0.0) {
        return Err(StartError::Limits(format!("--rate-scale {}: must be a positive number", opts.rate_scale)));
    }
    crate::host::names::pin(&scenario.target.resolve);
    let target = limits::resolve_target(&scenario.target.base_url, opts.allow_remote).map_err(StartError::Target)?;
    let scrape = scrape_targets(&scenario, opts.allow_remote)?;
    let longest = engine::longest_journey(&scenario);
    // The merge plays nothing: the whole run's connections may need more
    // descriptors and ports than the merging machine has, and that is fine.
    let sources = if opts.judge_only {
        Vec::new()
    } else {
        let conns = limits::concurrent_connections(&scenario, opts.rate_scale, longest);
        limits::ensure_nofile(conns + limits::FD_OVERHEAD).map_err(StartError::Limits)?;
        let ports = limits::ports_needed(&scenario, opts.rate_scale, longest);
        limits::source_addresses(target.addr, ports, limits::ephemeral_ports()).map_err(StartError::Limits)?
    };
    let tls = tls_for(&scenario, &target).map_err(StartError::Target)?;
    let full = schedule::build(&scenario, opts.rate_scale);
    let all_shoppers = full.shoppers.len() as u64;
    let schedule = match opts.shard {
        Some(shard) => shard.filter(&full),
        None => full,
    };
    let dir = opts.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name));
    if dir.exists() && !dir.is_dir() {
        // `--out /dev/null` used to say "File exists" (issue 18).
        return Err(StartError::Output {
            path: dir,
            source: std::io::Error::other("exists and is not a directory; give a folder for the run's files"),
        });
    }
    std::fs::create_dir_all(&dir).map_err(out_err(&dir))?;
    Ok(Prepared {
        connector: Arc::new(
            Connector::new(target.addr, target.authority, sources).spread_over(target.addrs).with_tls(tls),
        ),
        scenario: Arc::new(scenario),
        schedule: Arc::new(schedule),
        dir,
        rate_scale: opts.rate_scale,
        engine: opts.engine.clone(),
        progress: opts.progress,
        target_pid: Arc::new(|| None),
        scrape,
        shard: opts.shard.map(|s| (s, opts.scenario_hash.clone())),
        start_at: opts.start_at,
        all_shoppers,
        baseline: opts.baseline.clone(),
    })
}

/// The TLS client of an https:// target (None for http://). The
/// certificate settings only mean something over TLS, so they are refused
/// on an http:// target rather than ignored.
fn tls_for(scenario: &Scenario, target: &limits::TargetAddr) -> Result<Option<TlsConnect>, String> {
    let t = &scenario.target;
    if !target.tls {
        if t.insecure_skip_verify || t.ca_file.is_some() {
            let field = if t.insecure_skip_verify { "insecure_skip_verify" } else { "ca_file" };
            return Err(format!(
                "target.{field} is set but the target {} is not https://: remove it or use an https:// URL",
                t.base_url
            ));
        }
        return Ok(None);
    }
    let settings = TlsSettings {
        ca_file: t.ca_file.clone(),
        insecure_skip_verify: t.insecure_skip_verify,
        resumption: scenario.tls_resumption,
    };
    tls::connect_for(&target.host, &settings).map(Some)
}

/// A task that runs alongside the traffic, e.g. the chaos fault runner. It
/// gets the run's event log (same clock as the ledger) and the live handle
/// (to read progress or to stop the run, which makes it invalid).
pub type SideTask = Box<dyn FnOnce(EventLog, Arc<Live>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How long side tasks may still run after the last shopper finished.
const SIDE_TASK_GRACE: Duration = Duration::from_secs(30);

/// The result of the traffic phase.
pub struct Executed {
    pub outcome: EngineOutcome,
    pub events: EventLog,
    pub wall_start: SystemTime,
    pub ledger_path: PathBuf,
    pub live: Arc<Live>,
    /// Problems found while running that make the run invalid.
    pub problems: Vec<String>,
    /// Gates evaluated after the traffic by a later stage (e.g. the
    /// lifecycle's `max_affinity_breaks`), added to the scenario's own.
    pub extra_gates: Vec<GateResult>,
    /// Faults, attribution and audit for summary.json, filled by the lifecycle.
    pub chaos: summary::ChaosSections,
    /// The process's peak resident memory when the traffic ended (MiB), before
    /// anything reads the ledger back: what generating the load cost.
    pub traffic_peak_rss_mb: Option<f64>,
    /// CPU seconds the harness used while playing the traffic.
    pub traffic_cpu_s: Option<f64>,
    /// What the machine did, second by second, while the traffic ran.
    pub machine: Vec<SecondSample>,
    /// Memory and descriptors of the harness and the target, every `resources_every`.
    pub resources: Vec<resources::Sample>,
    pub resources_every: Duration,
    /// What the target's metrics endpoints said while the traffic ran.
    pub scrapes: ScrapeLog,
    /// With `--start-at`: how late (ms) this process really began after T.
    pub start_offset_ms: Option<f64>,
    /// A merged run's shards (summary.json's `shards`); empty otherwise.
    pub shards: Vec<ShardRow>,
    /// How busy the generating machine was, when it was assessed elsewhere
    /// (a merge: its busiest shard's); None: assessed from `machine`.
    pub environment: Option<machine::Assessment>,
}

/// This process's peak resident set so far (VmHWM, MiB); None off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(round3(kb / 1024.0))
}

/// Plays the schedule. The run clock's zero is the start of arrivals.
pub async fn execute(p: &Prepared, side: Vec<SideTask>, live: Arc<Live>) -> Result<Executed, StartError> {
    let ledger_path = p.dir.join(LEDGER_FILE);
    let ledger = Ledger::create(&ledger_path).map_err(out_err(&ledger_path))?;
    let events_path = p.dir.join(EVENTS_FILE);
    // With a shared start instant the run clock's zero is T itself, however
    // late this process woke: lateness becomes slip, never a shifted schedule.
    let (wall_start, clock_zero, start_offset_ms) = match p.start_at {
        Some(at) => {
            let (zero, offset) = shard::wait_until(at).await;
            (at, zero, Some(offset))
        }
        None => (SystemTime::now(), Instant::now(), None),
    };
    let events = EventLog::create_at(&events_path, clock_zero).map_err(out_err(&events_path))?;
    events.emit(
        "run_start",
        json!({
            "scenario": p.scenario.name, "seed": p.scenario.seed, "rate_scale": p.rate_scale,
            "target": p.scenario.target.base_url, "planned_shoppers": p.schedule.shoppers.len(),
            "sources": p.connector.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "shard": p.shard.as_ref().map(|(s, _)| json!({"index": s.index, "count": s.count})),
            "start_offset_ms": start_offset_ms,
        }),
    );
    let cpu_before = crate::host::machine::own_cpu_s();
    let sampler = Sampler::start(p.target_pid.clone(), events.start(), Duration::from_secs(1));
    let resources_every = resources::period_for(p.schedule.duration);
    let resource_sampler = resources::start_sampler(p.target_pid.clone(), events.start(), resources_every);
    let scraper = Scraper::start(&p.scrape, events.start());
    let side: Vec<_> = side.into_iter().map(|t| tokio::spawn(t(events.clone(), live.clone()))).collect();
    let progress = p.progress.then(|| crate::traffic::progress::spawn(live.snapshot.clone(), Duration::from_secs(5)));
    let outcome = engine::run(
        p.scenario.clone(),
        p.schedule.clone(),
        p.connector.clone(),
        events.clone(),
        ledger,
        live.clone(),
        &p.engine,
    )
    .await;
    let machine = sampler.finish();
    let resources = resource_sampler.finish();
    let scrapes = scraper.finish();
    let traffic_cpu_s = Some(round3(crate::host::machine::own_cpu_s() - cpu_before));
    if let Some(h) = progress {
        h.abort();
        crate::traffic::progress::finish();
    }
    let grace = tokio::time::Instant::now() + SIDE_TASK_GRACE;
    for h in side {
        let abort = h.abort_handle();
        if tokio::time::timeout_at(grace, h).await.is_err() {
            abort.abort();
            events.emit("side_task_aborted", json!({"after_ms": SIDE_TASK_GRACE.as_millis() as u64}));
        }
    }
    let mut problems = Vec::new();
    if outcome.interrupted {
        problems.push("the run was interrupted before every shopper finished".to_string());
    }
    if outcome.cut_off_shoppers > 0 {
        problems.push(format!(
            "{} shopper(s) were still in their journeys when the run ended (drain timeout)",
            outcome.cut_off_shoppers
        ));
    }
    let traffic_peak_rss_mb = peak_rss_mb();
    events.emit(
        "run_end",
        json!({"end_ms": outcome.end_ms, "cut_off_shoppers": outcome.cut_off_shoppers,
               "peak_rss_mb": traffic_peak_rss_mb}),
    );
    Ok(Executed {
        outcome,
        events,
        wall_start,
        ledger_path,
        live,
        problems,
        extra_gates: Vec::new(),
        chaos: Default::default(),
        traffic_peak_rss_mb,
        traffic_cpu_s,
        machine,
        resources,
        resources_every,
        scrapes,
        start_offset_ms,
        shards: Vec::new(),
        environment: None,
    })
}

/// Checks the ledger, evaluates the gates, writes the interval logs and
/// `summary.json`. `audit`: `None` if no audit ran, else its result.
pub fn conclude(p: &Prepared, mut ex: Executed, audit: Option<Result<(), String>>) -> Result<Summary, StartError> {
    let book = &mut ex.outcome.book;
    let mut problems = std::mem::take(&mut ex.problems);
    if let Err(e) = book.ledger.finish() {
        problems.push(e);
    }
    let totals = book.ledger.totals().clone();
    if let Err(e) = totals.check() {
        problems.push(format!("ledger does not add up: {e}"));
    }
    if totals.operations == 0 && problems.is_empty() {
        // `--rate-scale 1e-300` played nothing and passed (issue 18): a run
        // that observed nothing cannot show that anything held.
        problems.push("no operation was played (the schedule brought no shopper: is --rate-scale too small?)".into());
    }
    if let Err(e) = ex.events.flush() {
        problems.push(format!("cannot write the event log: {e}"));
    }
    let rec = &book.recorder;
    rec.write_logs(&p.dir, ex.wall_start).map_err(out_err(&p.dir))?;
    let duration_s = (ex.outcome.end_ms / 1000.0).max(1e-3);
    let goodput = (totals.ok + totals.refused) as f64 / duration_s;
    let mut gate_results = gates::evaluate(
        &p.scenario.gates,
        &Measured {
            totals: &totals,
            recorder: rec,
            goodput_rps: goodput,
            audit: audit.as_ref(),
            audit_configured: p.scenario.audit.is_some(),
        },
    );
    gate_results.append(&mut ex.extra_gates);
    resources::write_csv(&p.dir, &ex.resources).map_err(out_err(&p.dir))?;
    let resource_use = resources::summarize(&ex.resources, ex.resources_every, p.schedule.duration);
    gate_results.extend(crate::judge::resources::evaluate(&p.scenario.gates, &resource_use));
    let tls = tls_out(p);
    if let Some(t) = &tls {
        gate_results.push(certificate_gate(t, &totals));
    }
    let latency = summary::latency(rec);
    if let Some(b) = &p.baseline {
        // The baseline reads the new run by the summary's own key paths.
        let current = json!({"totals": &totals, "latency": &latency});
        let checks = baseline::compare(&current, &b.old, &b.options).checks;
        gate_results.extend(checks.iter().map(baseline::BaselineCheck::run_gate));
    }
    let valid = problems.is_empty();
    let schedule_slip = summary::slip(rec);
    let slip_by_second = rec.series().iter().map(|r| (r.t_s, r.slip_max_ms)).collect();
    machine::write_csv(&p.dir, &ex.machine, &slip_by_second).map_err(out_err(&p.dir))?;
    scrape::write(&p.dir, &ex.scrapes).map_err(out_err(&p.dir))?;
    let server_metrics = (!ex.scrapes.endpoints.is_empty()).then(|| summary::ServerMetrics {
        file: scrape::METRICS_FILE.into(),
        endpoints: ex.scrapes.endpoints.iter().map(summary::ScrapedEndpoint::from).collect(),
    });
    let mut environment = ex.environment.take().unwrap_or_else(|| machine::assess(&ex.machine, p.scenario.environment));
    let noise = Noise::new(environment.noisy, schedule_slip.p99_ms);
    environment.undecided_gates =
        gate_results.iter().filter(|g| gates::undecided(g, noise)).map(|g| g.name.clone()).collect();
    let verdict = gates::verdict_under(valid, &gate_results, noise);
    let (model, pool_size, idle) = match p.scenario.connections {
        ConnectionModel::Pool { size, idle_timeout } => ("pool", Some(size as u64), idle_timeout),
        ConnectionModel::PerShopper { idle_timeout } => ("per_shopper", None, idle_timeout),
    };
    let s = Summary {
        schema_version: summary::SCHEMA_VERSION,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: summary::ScenarioInfo {
            name: p.scenario.name.clone(),
            seed: p.scenario.seed,
            rate_scale: p.rate_scale,
            target: p.scenario.target.base_url.clone(),
            connection_model: model.to_string(),
            pool_size,
            idle_timeout_ms: idle.as_millis() as u64,
            planned_shoppers: p.schedule.shoppers.len() as u64,
        },
        run: summary::RunInfo {
            started_unix_ms: ex.wall_start.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            duration_s: round3(duration_s),
            arrivals_duration_s: round3(p.schedule.duration.as_secs_f64()),
            shoppers_arrived: ex.live.arrived.load(Ordering::Relaxed),
            peak_active_shoppers: ex.outcome.peak_active_shoppers,
            cut_off_shoppers: ex.outcome.cut_off_shoppers,
            interrupted: ex.outcome.interrupted,
            source_addresses: p.connector.sources.iter().map(|s| s.to_string()).collect(),
            traffic_peak_rss_mb: ex.traffic_peak_rss_mb,
            traffic_cpu_s: ex.traffic_cpu_s,
        },
        verdict,
        exit_code: verdict.exit_code(),
        validity: summary::Validity { valid, problems },
        totals: totals.clone(),
        throughput: summary::Throughput {
            attempts_per_s: round3((totals.attempts - totals.open_attempts) as f64 / duration_s),
            goodput_per_s: round3(goodput),
        },
        latency,
        schedule_slip,
        tls,
        environment: Some(environment),
        resources: Some(resource_use),
        server_metrics,
        gates: gate_results,
        files: summary::Files {
            ledger: LEDGER_FILE.into(),
            events: EVENTS_FILE.into(),
            latency_intervals: INTERVALS_FILE.into(),
            latency_totals: TOTALS_FILE.into(),
        },
        series: rec.series().to_vec(),
        chaos: std::mem::take(&mut ex.chaos),
        shard: shard_info(p, ex.start_offset_ms, pool_size),
        shards: std::mem::take(&mut ex.shards),
    };
    if s.schedule_slip.harness_limited {
        ex.events.emit(
            "harness_limited",
            json!({"slip_p99_ms": s.schedule_slip.p99_ms, "slip_max_ms": s.schedule_slip.max_ms, "limit_ms": s.schedule_slip.limit_ms}),
        );
    }
    summary::write(&p.dir, &s).map_err(out_err(&p.dir))?;
    if let Some(env) = s.environment.as_ref().filter(|e| e.noisy) {
        ex.events.emit(
            "machine_busy",
            json!({"interference_peak": env.interference_peak, "at_s": env.interference_peak_at_s,
                   "max_other_cpu": env.max_other_cpu, "undecided_gates": env.undecided_gates}),
        );
    }
    ex.events.emit("verdict", json!({"verdict": verdict.as_str(), "valid": s.validity.valid}));
    let _ = ex.events.flush();
    Ok(s)
}

/// summary.json's `tls` section: the settings and the connector's counts.
fn tls_out(p: &Prepared) -> Option<summary::TlsOut> {
    p.connector.tls.as_ref()?;
    let t = &p.scenario.target;
    let st = &p.connector.tls_stats;
    Some(summary::TlsOut {
        insecure_skip_verify: t.insecure_skip_verify,
        ca_file: t.ca_file.as_ref().map(|f| f.display().to_string()),
        resumption: p.scenario.tls_resumption,
        handshakes_full: st.handshakes_full.load(Ordering::Relaxed),
        handshakes_resumed: st.handshakes_resumed.load(Ordering::Relaxed),
        unclean_closes: st.unclean_closes.load(Ordering::Relaxed),
        clean_closes: st.clean_closes.load(Ordering::Relaxed),
        certificate_problem: st.first_certificate_problem.get().cloned(),
    })
}

/// Over https, always: no attempt may have refused the server's
/// certificate. A deploy that ships a wrong or expired certificate breaks
/// every shopper's browser; the run fails loudly whatever the budgets.
fn certificate_gate(t: &summary::TlsOut, totals: &crate::record::ledger::Totals) -> GateResult {
    let refused = totals.attempts_failed_by_class.get(&crate::outcome::FailureClass::TlsCertificate).copied();
    let refused = refused.unwrap_or(0);
    let detail = match (&t.certificate_problem, t.insecure_skip_verify) {
        (Some(problem), _) => format!("{refused} attempt(s) refused the server's certificate: {problem}"),
        (None, true) => "certificate NOT verified (target.insecure_skip_verify)".to_string(),
        (None, false) => "every certificate the server presented was verified".to_string(),
    };
    GateResult {
        name: "tls_certificate".into(),
        limit: 0.0,
        actual: Some(refused as f64),
        passed: refused == 0,
        detail,
        capacity_dependent: false,
    }
}

/// A shard's record of itself (`summary.json`'s `shard`); None unsharded.
fn shard_info(p: &Prepared, start_offset_ms: Option<f64>, pool_size: Option<u64>) -> Option<ShardInfo> {
    p.shard.as_ref().map(|(shard, hash)| ShardInfo {
        index: shard.index,
        count: shard.count,
        scenario_hash: hash.clone(),
        seed: p.scenario.seed,
        start_at_unix_ms: p.start_at.map_or(0.0, shard::unix_ms),
        start_offset_ms: start_offset_ms.unwrap_or(0.0),
        clock: "wall clock (CLOCK_REALTIME) of this host; offsets between hosts are not measured".into(),
        host: shard::host_name(),
        shoppers: p.schedule.shoppers.len() as u64,
        pool_size,
        chaos: "none: the chaos runner (harness chaos) plays the faults".into(),
        audit: "none: harness merge audits once after every shard".into(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
