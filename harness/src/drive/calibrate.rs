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
//! I/O. Not for: applying the scale (drive/compare/), or judging runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chaos::target::Target;
use crate::drive::run::{self, RunOptions};
use crate::host::machine::{self, Interval, Reading};
use crate::host::procs::Pid;
use crate::scenario::{ArrivalProcess, ConnectionModel, Gates, LaunchSpec, RetryPolicy, Scenario, Stage, ThinkTime};
use crate::traffic::engine::{EngineOptions, Live};

/// The scenario's peak is scaled to this multiple of one process's measured
/// capacity, if the cluster has room for it: clearly more than one process
/// can serve (its queue then grows by half its capacity every second of the
/// peak), not a rounding error.
pub const OVERLOAD: f64 = 1.5;
/// Below this multiple one process is not clearly overloaded (measured on the
/// Black Friday scenario with a 5 s step timeout: at 1.35x its queue stayed
/// just under the timeout and retries saved everything; at 1.5x, with the
/// 3 s timeout shipped, runs have ended both with some drops and with none,
/// but always with tens of thousands of failed first attempts); a
/// machine where the cluster cannot take at least this much has no headroom
/// to show.
pub const MIN_OVERLOAD: f64 = 1.3;
/// The peak may use at most this share of the cluster's capacity: the rest
/// absorbs Poisson bursts and the faults (a killed or hung worker, a rolling
/// restart), which take a worker's share away for a while. (Measured on the
/// Black Friday scenario on 2 CPUs: at 70% the cluster's p99 was 65 ms.)
pub const CLUSTER_SHARE: f64 = 0.8;
/// Seconds each measuring burst should last.
const MEASURE_S: f64 = 2.0;
/// Measuring bursts per target; the best one counts. Other work on the
/// machine can only slow a burst down, never speed it up, so the best of a
/// few is the least disturbed estimate.
const BURSTS: usize = 2;
/// Shoppers in the warm-up burst, which also gives the first estimate.
const WARMUP_SHOPPERS: u64 = 100;
const MIN_SHOPPERS: u64 = 200;
const MAX_SHOPPERS: u64 = 20_000;
/// Requests in flight during the closed loop: enough to keep two event
/// loops busy on loopback, few enough that queueing does not dominate.
const LOOP_CONNECTIONS: usize = 16;
/// Pause before measuring again on a busy machine: long enough for a
/// neighbour's burst (a compiler job) to end.
const BUSY_PAUSE: Duration = Duration::from_secs(3);

/// What one closed-loop burst measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Shoppers (journeys) played.
    pub shoppers: u64,
    /// Operations (steps) they made.
    pub operations: u64,
    /// Wall time of the burst, seconds.
    pub wall_s: f64,
    /// CPU seconds the server (all its processes) used meanwhile.
    pub server_cpu_s: f64,
    /// CPU seconds the harness used meanwhile.
    pub harness_cpu_s: f64,
    /// Share of the machine's CPU that other processes and steal took
    /// meanwhile (machine.rs); 0 where /proc could not be read.
    #[serde(default)]
    pub other_work: f64,
    /// The other processes that used the most, e.g. "cc1 41%".
    #[serde(default)]
    pub busiest_other: String,
}

impl Measured {
    /// Shoppers per second served.
    pub fn capacity(&self) -> f64 {
        self.shoppers as f64 / self.wall_s
    }
}

/// The measurements and the scale chosen from them; summary.json keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// One process (`--single`), then the cluster, same closed loop.
    pub single: Measured,
    pub cluster: Measured,
    /// Shoppers per second one process can serve: one event loop, so at most
    /// one CPU, divided by its CPU time per shopper.
    pub single_capacity: f64,
    /// Shoppers per second the cluster can serve: each worker at most one
    /// CPU, and all of them sharing the CPUs with the harness (CPU time per
    /// shopper of the cluster's processes and of the harness, from its burst).
    pub cluster_capacity: f64,
    pub server_cpu_ms_per_shopper: f64,
    pub harness_cpu_ms_per_shopper: f64,
    /// The one process's CPU / wall time: near 1.0 means it was saturated,
    /// as it should be; well below means the machine was busy with other work.
    pub server_busy: f64,
    pub cpus: usize,
    pub workers: usize,
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
    /// False when the machine cannot overload one process ([`MIN_OVERLOAD`])
    /// within [`CLUSTER_SHARE`] of the cluster's capacity: the comparison
    /// then shows less than it should, and the report says so.
    pub headroom: bool,
    /// Plain-language warnings (not saturated, no headroom).
    pub warnings: Vec<String>,
}

impl Calibration {
    /// One paragraph for people: what was measured and what was chosen.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "Calibrated on this machine with closed loops of shoppers who do not think: one reference-server \
             process used {:.2} ms of CPU per shopper of this scenario's journey mix, so one event loop serves at \
             most {:.0} shoppers/s (it served {:.0}/s in the burst); the cluster's {} workers and the harness \
             ({:.2} ms per shopper) sharing {} CPUs can serve about {:.0}/s ({:.2}x; {:.0}/s in its burst). The \
             scenario's peak of {:.0} shoppers/s was scaled by {:.2} to {:.0}/s: {:.2}x what one process can \
             serve and {:.0}% of the cluster's capacity.",
            self.server_cpu_ms_per_shopper,
            self.single_capacity,
            self.single.capacity(),
            self.workers,
            self.harness_cpu_ms_per_shopper,
            self.cpus,
            self.cluster_capacity,
            self.cluster_capacity / self.single_capacity,
            self.cluster.capacity(),
            self.scenario_peak_rate,
            self.scale,
            self.target_peak_rate,
            self.single_load,
            self.cluster_load * 100.0,
        );
        text.push_str(&format!(
            " Other work on this machine took {:.0}% and {:.0}% of its CPU during the two measurements.",
            self.single.other_work * 100.0,
            self.cluster.other_work * 100.0
        ));
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

fn check(m: &Measured, what: &str) -> Result<(), String> {
    if m.shoppers == 0 || m.wall_s.is_nan() || m.wall_s <= 0.0 {
        return Err(format!("the {what} calibration measured nothing ({} shoppers in {} s)", m.shoppers, m.wall_s));
    }
    if m.server_cpu_s.is_nan() || m.server_cpu_s <= 0.0 {
        return Err(format!("the {what} calibration server used no CPU time: was it the process that served?"));
    }
    Ok(())
}

/// Choose the scale from the two measurements. `cpus`: CPUs of the machine;
/// `workers`: the cluster's worker count; `scenario_peak`: the scenario's
/// highest arrival rate (shoppers/s) as written.
pub fn plan(
    single: &Measured,
    cluster: &Measured,
    cpus: usize,
    workers: usize,
    scenario_peak: f64,
) -> Result<Calibration, String> {
    if !(scenario_peak.is_finite() && scenario_peak > 0.0) {
        return Err(format!("the scenario's peak arrival rate is {scenario_peak}: nothing to scale"));
    }
    check(single, "single-process")?;
    check(cluster, "cluster")?;
    // Capacities from CPU time per shopper, not from the bursts' wall time:
    // CPU time is what the work costs, whatever else the machine was doing
    // meanwhile, and a closed loop on a few connections can leave a worker
    // idle (the kernel hands connections to workers unevenly).
    let n = single.shoppers as f64;
    let one = n / single.server_cpu_s;
    let per = |cpu: f64| cpu.max(0.0) / cluster.shoppers as f64;
    let many = (workers as f64 / per(cluster.server_cpu_s))
        .min(cpus as f64 / (per(cluster.server_cpu_s) + per(cluster.harness_cpu_s)));
    let busy = single.server_cpu_s / single.wall_s;
    let mut warnings = Vec::new();
    if busy < 0.8 {
        warnings.push(format!(
            "the one process was busy only {:.0}% of its calibration: the machine was doing other work, or the \
             harness could not keep it busy; its capacity may be underestimated",
            busy * 100.0
        ));
    }
    let wanted = OVERLOAD * one;
    let ceiling = CLUSTER_SHARE * many;
    let headroom = ceiling >= MIN_OVERLOAD * one;
    let target = if wanted <= ceiling {
        wanted
    } else if headroom {
        ceiling
    } else {
        warnings.push(format!(
            "this machine cannot show the cluster's headroom: the cluster can serve only {:.2}x what one process \
             can ({:.0} vs {:.0} shoppers/s, the harness sharing its CPUs), so a load that overloads one process \
             ({:.1}x) also takes more than {:.0}% of the cluster's capacity; expect the cluster to struggle too",
            many / one,
            many,
            one,
            MIN_OVERLOAD,
            CLUSTER_SHARE * 100.0
        ));
        MIN_OVERLOAD * one
    };
    let scale = round2(target / scenario_peak).max(0.01);
    let target = scale * scenario_peak;
    Ok(Calibration {
        single: single.clone(),
        cluster: cluster.clone(),
        single_capacity: round2(one),
        cluster_capacity: round2(many),
        server_cpu_ms_per_shopper: round3(single.server_cpu_s / n * 1000.0),
        harness_cpu_ms_per_shopper: round3(per(cluster.harness_cpu_s) * 1000.0),
        server_busy: round2(busy),
        cpus,
        workers,
        scenario_peak_rate: scenario_peak,
        target_peak_rate: round2(target),
        scale,
        single_load: round2(target / one),
        cluster_load: round2(target / many),
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
    c.gates = Gates::none();
    c
}

/// One burst of `shoppers` against the running target; folder `dir`. Each
/// burst of a server needs its own `seed`: the same seed would repeat the
/// previous burst's idempotency keys, and the shop would answer those
/// checkouts from its idempotency records instead of pricing them.
async fn burst(s: &Scenario, shoppers: u64, seed: u64, dir: &Path, pid: Pid) -> anyhow::Result<Measured> {
    let opts = RunOptions { out: Some(dir.to_path_buf()), engine: EngineOptions::default(), ..RunOptions::default() };
    let mut c = closed_loop(s, shoppers);
    c.seed = seed;
    let mut p = run::prepare(c, &opts)?;
    p.target_pid = Arc::new(move || Some(pid));
    let (server0, harness0, machine0) = (machine::tree_cpu_s(pid), machine::own_cpu_s(), Reading::take(Some(pid)));
    let ex = run::execute(&p, Vec::new(), Arc::new(Live::default())).await?;
    let (server1, harness1, machine1) = (machine::tree_cpu_s(pid), machine::own_cpu_s(), Reading::take(Some(pid)));
    let other = match (machine0, machine1) {
        (Ok(a), Ok(b)) => Interval::between(&a, &b),
        _ => Interval::default(),
    };
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
        other_work: other.interference(),
        busiest_other: other.busiest_text(),
    })
}

/// One measuring burst, played again (after a pause) while other work on
/// the machine takes more than the scenario's `environment.max_other_cpu`:
/// a capacity measured then belongs to a machine that is not really there.
/// After [`machine::CALIBRATION_TRIES`] busy tries it gives up, saying what
/// was busy and how much (compare exits 2: run again on a quiet machine).
async fn quiet_burst(s: &Scenario, shoppers: u64, seed: u64, dir: &Path, pid: Pid) -> anyhow::Result<Measured> {
    let limit = s.environment.max_other_cpu;
    let mut seen = Vec::new();
    for attempt in 1..=machine::CALIBRATION_TRIES {
        // A new seed per try: a repeated one replays idempotency keys (see `burst`).
        let seed = seed.wrapping_add(1000 * (attempt as u64 - 1));
        let folder = if attempt == 1 { dir.to_path_buf() } else { dir.with_extension(format!("try-{attempt}")) };
        let m = burst(s, shoppers, seed, &folder, pid).await?;
        if m.other_work <= limit {
            return Ok(m);
        }
        let busiest = if m.busiest_other.is_empty() { String::new() } else { format!(" ({})", m.busiest_other) };
        seen.push(format!("{:.0}%{busiest}", m.other_work * 100.0));
        eprintln!(
            "calibrating: the machine is busy: other work took {:.0}% of its CPU{busiest} during try {attempt} of {} \
             (limit {:.0}%)",
            m.other_work * 100.0,
            machine::CALIBRATION_TRIES,
            limit * 100.0
        );
        if attempt < machine::CALIBRATION_TRIES {
            tokio::time::sleep(BUSY_PAUSE).await;
        }
    }
    anyhow::bail!(
        "this machine is busy with other work: other processes and steal took {} of its CPU in {} calibration \
         bursts (see {}), more than environment.max_other_cpu ({:.0}%). A capacity measured now would scale \
         the scenario to a machine that is not really there; run again when the machine is quiet (or raise \
         environment.max_other_cpu in the scenario)",
        seen.join(", "),
        machine::CALIBRATION_TRIES,
        dir.display(),
        limit * 100.0
    )
}

/// Launch a server with `launch` (its target spec in `scenario.target`),
/// play a warm-up burst and then [`BURSTS`] bursts sized to last about two
/// seconds each, and stop the server; returns the best burst. Run folders go
/// under `dir`.
pub async fn measure(scenario: &Scenario, launch: &LaunchSpec, dir: &Path) -> anyhow::Result<Measured> {
    let target = Target::start(&scenario.target, Some(launch), dir).await?;
    let result = async {
        let pid = target.pid().ok_or_else(|| anyhow::anyhow!("the calibration server exited at start"))?;
        let seed = |i: usize| scenario.seed.wrapping_add(i as u64);
        let warm = burst(scenario, WARMUP_SHOPPERS, seed(0), &dir.join("warmup"), pid).await?;
        let n = ((warm.capacity() * MEASURE_S) as u64).clamp(MIN_SHOPPERS, MAX_SHOPPERS);
        let mut best: Option<Measured> = None;
        for i in 1..=BURSTS {
            let m = quiet_burst(scenario, n, seed(i), &dir.join(format!("measure-{i}")), pid).await?;
            if best.as_ref().is_none_or(|b| m.capacity() > b.capacity()) {
                best = Some(m);
            }
        }
        best.ok_or_else(|| anyhow::anyhow!("no measuring burst ran"))
    }
    .await;
    let _ = target.stop(None).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(shoppers: u64, wall_s: f64, server_cpu_s: f64, harness_cpu_s: f64) -> Measured {
        Measured {
            shoppers,
            operations: shoppers * 4,
            wall_s,
            server_cpu_s,
            harness_cpu_s,
            other_work: 0.0,
            busiest_other: String::new(),
        }
    }

    #[test]
    fn overloads_one_process_when_the_cluster_has_room() {
        // One process: 2 ms of CPU per shopper, so at most 500/s (it served 1500 in 3 s).
        // Four workers on four CPUs at 2 ms + 0.1 ms of harness: min(4 / 2 ms, 4 / 2.1 ms) = 1905/s.
        let c = plan(&m(1500, 3.0, 3.0, 0.3), &m(3000, 3.0, 6.0, 0.3), 4, 4, 500.0).unwrap();
        assert_eq!((c.single_capacity, c.cluster_capacity), (500.0, 1904.76));
        assert_eq!((c.server_cpu_ms_per_shopper, c.harness_cpu_ms_per_shopper), (2.0, 0.1));
        assert_eq!(c.target_peak_rate, 750.0);
        assert_eq!(c.scale, 1.5);
        assert_eq!((c.single_load, c.cluster_load), (1.5, 0.39));
        // Two workers on two CPUs: min(2 / 2 ms, 2 / 2.1 ms) = 952/s, and 80% of it fits 750/s.
        let two = plan(&m(1500, 3.0, 3.0, 0.3), &m(3000, 3.0, 6.0, 0.3), 2, 2, 500.0).unwrap();
        assert_eq!((two.cluster_capacity, two.scale, two.cluster_load), (952.38, 1.5, 0.79));
        assert!(c.headroom && c.warnings.is_empty(), "{c:?}");
        assert!(c.describe().contains("scaled by 1.50 to 750/s"), "{}", c.describe());
    }

    #[test]
    fn stays_within_the_clusters_share_when_the_full_overload_does_not_fit() {
        // Two workers on two CPUs: 952/s, 80% = 762/s... more than 1.5 x 500 = 750; with a
        // costlier harness (0.4 ms): min(2 / 2 ms, 2 / 2.4 ms) = 833/s, 80% = 667/s,
        // below 1.5 x 500 but above 1.3 x 500.
        let c = plan(&m(1500, 3.0, 3.0, 0.3), &m(3000, 3.0, 6.0, 1.2), 2, 2, 250.0).unwrap();
        assert_eq!(c.cluster_capacity, 833.33);
        assert!(c.headroom, "{c:?}");
        assert_eq!(c.scale, 2.67);
        assert!(c.single_load >= MIN_OVERLOAD && c.cluster_load <= CLUSTER_SHARE + 0.01, "{c:?}");
    }

    #[test]
    fn says_so_loudly_when_the_machine_has_no_headroom() {
        // One worker on one CPU shared with the harness: less than one process alone.
        let c = plan(&m(1000, 2.0, 2.0, 0.2), &m(1000, 2.0, 2.0, 0.2), 1, 1, 500.0).unwrap();
        assert!(!c.headroom, "{c:?}");
        assert_eq!(c.single_load, MIN_OVERLOAD);
        assert!(c.warnings.iter().any(|w| w.contains("cannot show the cluster's headroom")), "{c:?}");
        assert!(c.describe().contains("WARNING: this machine cannot show"), "{}", c.describe());
    }

    #[test]
    fn warns_when_the_process_was_not_saturated_and_refuses_nonsense() {
        let good = m(3000, 3.0, 6.0, 0.3);
        let c = plan(&m(1000, 2.0, 1.0, 0.1), &good, 2, 2, 500.0).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("busy only 50%")), "{c:?}");
        assert!(plan(&m(0, 2.0, 1.0, 0.1), &good, 2, 2, 500.0).unwrap_err().contains("single-process"));
        assert!(plan(&good, &m(10, 0.0, 1.0, 0.1), 2, 2, 500.0).unwrap_err().contains("cluster"));
        assert!(plan(&m(10, 1.0, 0.0, 0.1), &good, 2, 2, 500.0).is_err());
        assert!(plan(&good, &good, 2, 2, 0.0).is_err());
        assert!(plan(&good, &good, 2, 2, f64::NAN).is_err());
    }

    #[test]
    fn the_closed_loop_keeps_the_journeys_and_drops_the_rest() {
        let s = crate::scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/blackfriday.json"))
            .unwrap();
        let c = closed_loop(&s, 1234);
        assert_eq!(c.journeys.len(), s.journeys.len());
        assert_eq!(c.shoppers, 1234);
        assert_eq!(crate::traffic::schedule::build(&c, 1.0).shoppers.len(), 1234);
        assert!(c.chaos.is_empty() && c.audit.is_none() && c.think == ThinkTime::None);
        assert!(c.journeys.iter().flat_map(|j| &j.steps).all(|st| st.retry.attempts == 1));
    }
}
