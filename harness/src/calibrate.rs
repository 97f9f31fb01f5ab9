//! Calibration for `harness compare --calibrate`: measure how many shoppers
//! per second ONE reference-server process serves for a scenario's own
//! journey mix on this machine, and choose the load scale so that the
//! scenario's peak honestly overloads one process and not the cluster.
//!
//! The measurement is a short closed loop through the real engine: a burst
//! of shoppers who do not think, all arriving at once, squeezed through a
//! small connection pool, so the one process always has work waiting and the
//! run's length is its service time. The server's and the harness's own CPU
//! time are read as well, because on a small machine the harness competes
//! with the cluster's workers for the same cores: the cluster's expected
//! capacity is what the CPUs can give after the harness has taken its share.
//!
//! [`plan`] is the arithmetic, pure and unit-tested; [`measure`] does the
//! I/O. Not for: applying the scale (compare.rs), or judging runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{EngineOptions, Live};
use crate::procs::{self, Pid};
use crate::run::{self, RunOptions};
use crate::scenario::{ArrivalProcess, ConnectionModel, Gates, LaunchSpec, RetryPolicy, Scenario, Stage, ThinkTime};
use crate::target::Target;

/// The scenario's peak is scaled to this multiple of one process's measured
/// capacity: clearly more than one process can serve, not a rounding error.
pub const OVERLOAD: f64 = 1.5;
/// Below this multiple one process is not clearly overloaded; a machine where
/// the cluster cannot take at least this much has no headroom to show.
pub const MIN_OVERLOAD: f64 = 1.2;
/// The peak may use at most this share of the cluster's expected capacity
/// (the rest absorbs faults: a killed or hung worker, a rolling restart).
pub const CLUSTER_SHARE: f64 = 0.85;
/// Seconds the measuring burst should last.
const MEASURE_S: f64 = 3.0;
/// Shoppers in the warm-up burst, which also gives the first estimate.
const WARMUP_SHOPPERS: u64 = 100;
const MIN_SHOPPERS: u64 = 200;
const MAX_SHOPPERS: u64 = 20_000;
/// Requests in flight during the closed loop: enough to keep one event loop
/// busy on loopback, few enough that queueing does not dominate.
const LOOP_CONNECTIONS: usize = 16;
/// Clock ticks per second of /proc/<pid>/stat CPU times: USER_HZ, 100 on
/// every Linux architecture the harness runs on (proc(5)).
const USER_HZ: f64 = 100.0;

/// What the closed loop measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Shoppers (journeys) played.
    pub shoppers: u64,
    /// Operations (steps) they made.
    pub operations: u64,
    /// Wall time of the burst, seconds.
    pub wall_s: f64,
    /// CPU seconds the one server process used meanwhile.
    pub server_cpu_s: f64,
    /// CPU seconds the harness used meanwhile.
    pub harness_cpu_s: f64,
}

/// The measurement and the scale chosen from it; summary.json keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub measured: Measured,
    /// Shoppers per second one process served (shoppers / wall time).
    pub single_capacity: f64,
    pub server_cpu_ms_per_shopper: f64,
    pub harness_cpu_ms_per_shopper: f64,
    /// Server CPU / wall time: near 1.0 means the one process was saturated,
    /// as it should be; well below means the machine was busy with other work.
    pub server_busy: f64,
    pub cpus: usize,
    pub workers: usize,
    /// Shoppers per second the cluster is expected to serve here: each worker
    /// at most one CPU, and all CPUs shared with the harness.
    pub cluster_capacity: f64,
    /// The scenario's highest arrival rate as written, shoppers/s.
    pub scenario_peak_rate: f64,
    /// The peak after scaling.
    pub target_peak_rate: f64,
    /// Factor applied to the arrival profile.
    pub scale: f64,
    /// target / single capacity.
    pub single_load: f64,
    /// target / cluster capacity.
    pub cluster_load: f64,
    /// False when the machine cannot overload one process without also
    /// loading the cluster beyond [`CLUSTER_SHARE`]: the comparison then
    /// shows less than it should, and the report says so.
    pub headroom: bool,
    /// Plain-language warnings (not saturated, no headroom).
    pub warnings: Vec<String>,
}

impl Calibration {
    /// One paragraph for people: what was measured and what was chosen.
    pub fn describe(&self) -> String {
        let m = &self.measured;
        let mut text = format!(
            "Calibrated on this machine: one reference-server process served {:.0} shoppers/s of this \
             scenario's journey mix ({} shoppers without think time in {:.1} s, closed loop; the server \
             used {:.2} ms of CPU per shopper, the harness {:.2} ms). With {} workers on {} CPUs shared with \
             the harness, the cluster is expected to serve about {:.0}/s. The scenario's peak of {:.0} \
             shoppers/s was scaled by {:.2} to {:.0}/s: {:.2}x what one process can serve and {:.0}% of the \
             cluster's expected capacity.",
            self.single_capacity,
            m.shoppers,
            m.wall_s,
            self.server_cpu_ms_per_shopper,
            self.harness_cpu_ms_per_shopper,
            self.workers,
            self.cpus,
            self.cluster_capacity,
            self.scenario_peak_rate,
            self.scale,
            self.target_peak_rate,
            self.single_load,
            self.cluster_load * 100.0,
        );
        for w in &self.warnings {
            text.push_str(" WARNING: ");
            text.push_str(w);
        }
        text
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Choose the scale from a measurement. `cpus`: CPUs of the machine;
/// `workers`: the cluster's worker count; `scenario_peak`: the scenario's
/// highest arrival rate (shoppers/s) as written.
pub fn plan(m: &Measured, cpus: usize, workers: usize, scenario_peak: f64) -> Result<Calibration, String> {
    if !(scenario_peak.is_finite() && scenario_peak > 0.0) {
        return Err(format!("the scenario's peak arrival rate is {scenario_peak}: nothing to scale"));
    }
    if m.shoppers == 0 || m.wall_s.is_nan() || m.wall_s <= 0.0 {
        return Err(format!("the calibration measured nothing ({} shoppers in {} s)", m.shoppers, m.wall_s));
    }
    if m.server_cpu_s.is_nan() || m.server_cpu_s <= 0.0 {
        return Err("the calibration server used no CPU time: was it the process that served?".into());
    }
    if cpus == 0 || workers == 0 {
        return Err(format!("{cpus} CPUs and {workers} workers: cannot estimate the cluster"));
    }
    let n = m.shoppers as f64;
    let single = n / m.wall_s;
    let server = m.server_cpu_s / n;
    let harness = m.harness_cpu_s.max(0.0) / n;
    let busy = m.server_cpu_s / m.wall_s;
    // Each worker is one event loop (at most one CPU); together with the
    // harness they share the machine's CPUs.
    let cluster = (workers as f64 / server).min(cpus as f64 / (server + harness));
    let mut warnings = Vec::new();
    if busy < 0.8 {
        warnings.push(format!(
            "the one process was busy only {:.0}% of the calibration: the machine was doing other work, or the \
             harness could not keep it busy; the capacity may be underestimated",
            busy * 100.0
        ));
    }
    let wanted = OVERLOAD * single;
    let ceiling = CLUSTER_SHARE * cluster;
    let headroom = ceiling >= MIN_OVERLOAD * single;
    let target = if wanted <= ceiling {
        wanted
    } else if headroom {
        ceiling
    } else {
        warnings.push(format!(
            "this machine cannot show the cluster's headroom: the cluster is expected to serve only {:.2}x what \
             one process serves ({:.0} vs {:.0} shoppers/s) once the harness has taken its CPU share, so a load \
             that overloads one process ({:.1}x) also loads the cluster beyond {:.0}% of its capacity",
            cluster / single,
            cluster,
            single,
            MIN_OVERLOAD,
            CLUSTER_SHARE * 100.0
        ));
        MIN_OVERLOAD * single
    };
    let scale = round2(target / scenario_peak).max(0.01);
    let target = scale * scenario_peak;
    Ok(Calibration {
        measured: *m,
        single_capacity: round2(single),
        server_cpu_ms_per_shopper: round3(server * 1000.0),
        harness_cpu_ms_per_shopper: round3(harness * 1000.0),
        server_busy: round2(busy),
        cpus,
        workers,
        cluster_capacity: round2(cluster),
        scenario_peak_rate: scenario_peak,
        target_peak_rate: round2(target),
        scale,
        single_load: round2(target / single),
        cluster_load: round2(target / cluster),
        headroom,
        warnings,
    })
}

/// The scenario as a closed loop of `shoppers` who all arrive within 100 ms,
/// do not think, and share [`LOOP_CONNECTIONS`] connections; no retries, no
/// faults, no audit, no gates, timeouts long enough for the queue.
pub fn closed_loop(s: &Scenario, shoppers: u64) -> Scenario {
    let mut c = s.clone();
    c.name = format!("{}-calibration", s.name);
    c.shoppers = shoppers;
    let window = Duration::from_millis(100);
    let rate = shoppers as f64 / window.as_secs_f64();
    c.arrival = vec![Stage { duration: window, from_rate: rate, to_rate: rate }];
    c.arrival_process = ArrivalProcess::Uniform;
    c.think = ThinkTime::None;
    let idle = match s.connections {
        ConnectionModel::Pool { idle_timeout, .. } | ConnectionModel::PerShopper { idle_timeout } => idle_timeout,
    };
    c.connections = ConnectionModel::Pool { size: LOOP_CONNECTIONS, idle_timeout: idle };
    for step in c.journeys.iter_mut().flat_map(|j| j.steps.iter_mut()) {
        step.timeout = Duration::from_secs(120);
        step.retry = RetryPolicy::none();
    }
    c.chaos.clear();
    c.audit = None;
    c.gates = Gates {
        max_dropped: None,
        max_first_attempt_failures: None,
        min_throughput_rps: None,
        latency: Vec::new(),
        audit_must_pass: false,
        max_affinity_breaks: None,
    };
    c
}

fn cpu_s(pid: Pid) -> Option<f64> {
    procs::read(pid).ok().flatten().map(|p| p.cpu_ticks as f64 / USER_HZ)
}

fn own_cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// One burst of `shoppers` against the running target; folder `dir`.
async fn burst(s: &Scenario, shoppers: u64, dir: &Path, pid: Pid) -> anyhow::Result<Measured> {
    let opts = RunOptions { out: Some(dir.to_path_buf()), engine: EngineOptions::default(), ..RunOptions::default() };
    let p = run::prepare(closed_loop(s, shoppers), &opts)?;
    let (server0, harness0) = (cpu_s(pid), own_cpu_s());
    let ex = run::execute(&p, Vec::new(), Arc::new(Live::default())).await?;
    let (server1, harness1) = (cpu_s(pid), own_cpu_s());
    let summary = run::conclude(&p, ex, None)?;
    let t = &summary.totals;
    if !summary.validity.valid {
        anyhow::bail!("the calibration burst was not valid: {}", summary.validity.problems.join("; "));
    }
    // A few refusals (sold-out doorbusters) are part of the mix; failures are not.
    if t.dropped * 100 > t.operations.max(1) {
        anyhow::bail!(
            "{} of {} calibration requests failed ({:?}); see {}",
            t.dropped,
            t.operations,
            t.dropped_by_class.iter().filter(|(_, n)| **n > 0).collect::<Vec<_>>(),
            dir.display()
        );
    }
    let (Some(a), Some(b)) = (server0, server1) else {
        anyhow::bail!("cannot read the calibration server's CPU time from /proc/{pid}/stat");
    };
    Ok(Measured {
        shoppers: summary.run.shoppers_arrived,
        operations: t.operations,
        wall_s: summary.run.duration_s,
        server_cpu_s: b - a,
        harness_cpu_s: harness1 - harness0,
    })
}

/// Launch one single-process server with `launch` (its target spec in
/// `scenario.target`), play a warm-up burst and then a burst sized to last
/// about three seconds, and stop the server. Run folders go under `dir`.
pub async fn measure(scenario: &Scenario, launch: &LaunchSpec, dir: &Path) -> anyhow::Result<Measured> {
    let target = Target::start(&scenario.target, Some(launch), dir).await?;
    let result = async {
        let pid = target.pid().ok_or_else(|| anyhow::anyhow!("the calibration server exited at start"))?;
        let warm = burst(scenario, WARMUP_SHOPPERS, &dir.join("warmup"), pid).await?;
        let estimate = warm.shoppers as f64 / warm.wall_s.max(1e-3);
        let n = ((estimate * MEASURE_S) as u64).clamp(MIN_SHOPPERS, MAX_SHOPPERS);
        burst(scenario, n, &dir.join("measure"), pid).await
    }
    .await;
    let _ = target.stop(None).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(shoppers: u64, wall_s: f64, server_cpu_s: f64, harness_cpu_s: f64) -> Measured {
        Measured { shoppers, operations: shoppers * 4, wall_s, server_cpu_s, harness_cpu_s }
    }

    #[test]
    fn overloads_one_process_by_half_when_the_cluster_has_room() {
        // 1500 shoppers in 3 s: 500/s; 2 ms server + 0.2 ms harness per shopper.
        let c = plan(&m(1500, 3.0, 3.0, 0.3), 2, 2, 500.0).unwrap();
        assert_eq!(c.single_capacity, 500.0);
        assert_eq!(c.server_cpu_ms_per_shopper, 2.0);
        // min(2 workers / 2 ms, 2 CPUs / 2.2 ms) = 909/s.
        assert!((c.cluster_capacity - 909.09).abs() < 0.01, "{c:?}");
        assert_eq!(c.target_peak_rate, 750.0);
        assert_eq!(c.scale, 1.5);
        assert_eq!(c.single_load, 1.5);
        assert!(c.headroom && c.warnings.is_empty(), "{c:?}");
        assert!(c.describe().contains("scaled by 1.50 to 750/s"), "{}", c.describe());
    }

    #[test]
    fn stays_under_the_clusters_share_when_1_5x_does_not_fit() {
        // A costly harness (0.5 ms per shopper): cluster min(2 / 2 ms, 2 / 2.5 ms) = 800/s,
        // 85% of it = 680/s: less than 1.5 x 500 but still more than 1.2 x 500.
        let c = plan(&m(1500, 3.0, 3.0, 0.75), 2, 2, 250.0).unwrap();
        assert!((c.cluster_capacity - 800.0).abs() < 0.01, "{c:?}");
        assert!(c.headroom, "{c:?}");
        assert!((c.target_peak_rate - 680.0).abs() < 0.01, "{c:?}");
        assert_eq!(c.scale, 2.72);
        assert!(c.single_load >= MIN_OVERLOAD && c.cluster_load <= CLUSTER_SHARE + 0.01, "{c:?}");
    }

    #[test]
    fn says_so_loudly_when_the_machine_has_no_headroom() {
        // One CPU: the cluster cannot beat one process at all.
        let c = plan(&m(1000, 2.0, 2.0, 0.2), 1, 1, 500.0).unwrap();
        assert!(!c.headroom, "{c:?}");
        assert_eq!(c.single_load, MIN_OVERLOAD);
        assert!(c.warnings.iter().any(|w| w.contains("cannot show the cluster's headroom")), "{c:?}");
        assert!(c.describe().contains("WARNING: this machine cannot show"), "{}", c.describe());
    }

    #[test]
    fn warns_when_the_process_was_not_saturated_and_refuses_nonsense() {
        let c = plan(&m(1000, 2.0, 1.0, 0.1), 2, 2, 500.0).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("busy only 50%")), "{c:?}");
        assert!(plan(&m(0, 2.0, 1.0, 0.1), 2, 2, 500.0).is_err());
        assert!(plan(&m(10, 0.0, 1.0, 0.1), 2, 2, 500.0).is_err());
        assert!(plan(&m(10, 1.0, 0.0, 0.1), 2, 2, 500.0).is_err());
        assert!(plan(&m(10, 1.0, 1.0, 0.1), 2, 2, 0.0).is_err());
        assert!(plan(&m(10, 1.0, 1.0, 0.1), 0, 2, 10.0).is_err());
    }

    #[test]
    fn the_closed_loop_keeps_the_journeys_and_drops_the_rest() {
        let s = crate::scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/blackfriday.json"))
            .unwrap();
        let c = closed_loop(&s, 1234);
        assert_eq!(c.journeys.len(), s.journeys.len());
        assert_eq!(c.shoppers, 1234);
        assert_eq!(crate::schedule::build(&c, 1.0).shoppers.len(), 1234);
        assert!(c.chaos.is_empty() && c.audit.is_none() && c.think == ThinkTime::None);
        assert!(c.journeys.iter().flat_map(|j| &j.steps).all(|st| st.retry.attempts == 1));
    }
}
