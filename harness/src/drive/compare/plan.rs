//! The scenario as each side of a comparison plays it: the single process
//! gets the cluster's faults as naive restarts (one process has nothing else
//! to offer), and a scaled run has its arrival profile and fault times
//! compressed so the same shoppers arrive in the same shape.
//!
//! Not for: launching the sides (sides.rs) or judging them (judge/versus.rs).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::{FaultAction, FaultSpec, Scenario};

/// How one of the scenario's faults is played against the single process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultMapping {
    pub fault: String,
    /// The fault as written (played against the cluster).
    pub cluster: String,
    /// What the single process gets instead, in words.
    pub single: String,
}

/// The stop timeout of a naive restart standing for a crash (kill, or a
/// watchdog ending a hang): the stop signal, then SIGKILL at once.
const CRASH: Duration = Duration::ZERO;

/// The fault the single process gets for `f` (None: nothing, with why), as
/// a naive restart where the cluster would lose or replace a worker.
/// `graceful`: the stop timeout of a restart standing for a deploy.
pub fn single_process_fault(f: &FaultSpec, graceful: Duration) -> (Option<FaultSpec>, String) {
    let restart =
        |stop_timeout: Duration| FaultSpec { action: FaultAction::NaiveRestart { stop_timeout }, ..f.clone() };
    match &f.action {
        FaultAction::KillWorker { signal, .. } => (
            Some(restart(CRASH)),
            format!("naive restart: the process is killed ({signal} stands for its crash) and started again"),
        ),
        FaultAction::HangWorker { duration, .. } => (
            Some(restart(CRASH)),
            format!("naive restart: the hung process ({duration:?}) is killed by its watchdog and started again"),
        ),
        FaultAction::SignalMaster { signal } if matches!(signal.as_str(), "SIGTTIN" | "SIGTTOU" | "SIGWINCH") => {
            (None, format!("nothing: {signal} changes a master's worker count, and one process has none"))
        }
        FaultAction::SignalMaster { signal } => (
            Some(restart(graceful)),
            format!(
                "naive restart: the deploy ({signal}) stops the process gracefully (at most {graceful:?}) and starts \
                 it again, with nothing listening in between"
            ),
        ),
        FaultAction::Command { .. } | FaultAction::NaiveRestart { .. } => (Some(f.clone()), "the same".to_string()),
    }
}

fn describe_fault(f: &FaultSpec) -> String {
    match &f.action {
        FaultAction::KillWorker { signal, pick } => format!("{signal} to the {} worker", pick.as_str()),
        FaultAction::SignalMaster { signal } => format!("{signal} to the master"),
        FaultAction::HangWorker { pick, duration } => format!("SIGSTOP the {} worker for {duration:?}", pick.as_str()),
        FaultAction::Command { argv, .. } => format!("run {argv:?}"),
        FaultAction::NaiveRestart { stop_timeout } => format!("naive restart (stop timeout {stop_timeout:?})"),
    }
}

/// The single process's faults, and how each of the scenario's maps.
pub fn single_process_faults(faults: &[FaultSpec], graceful: Duration) -> (Vec<FaultSpec>, Vec<FaultMapping>) {
    let mut out = Vec::new();
    let mut map = Vec::new();
    for f in faults {
        let (g, single) = single_process_fault(f, graceful);
        out.extend(g);
        map.push(FaultMapping { fault: f.name.clone(), cluster: describe_fault(f), single });
    }
    (out, map)
}

/// The scenario with its arrival profile and fault times compressed by
/// `scale` (stage lengths and fault times / scale); the run's rate scale
/// multiplies the rates by the same factor, so the area under the rate
/// curve (the shoppers) and the profile's shape stay the same.
pub fn compress(s: &Scenario, scale: f64) -> Scenario {
    let mut c = s.clone();
    if !(scale.is_finite() && scale > 0.0) || scale == 1.0 {
        return c;
    }
    let div = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / scale);
    for st in &mut c.arrival {
        st.duration = div(st.duration);
    }
    for f in &mut c.chaos {
        f.at = div(f.at);
        f.every = f.every.map(div);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Pick;
    use crate::traffic::schedule;
    use std::path::Path;

    fn fault(name: &str, at_s: u64, action: FaultAction) -> FaultSpec {
        FaultSpec::once(name, Duration::from_secs(at_s), action)
    }

    fn blackfriday() -> Scenario {
        crate::scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/blackfriday.json")).unwrap()
    }

    #[test]
    fn worker_faults_become_naive_restarts_for_one_process() {
        let graceful = Duration::from_secs(7);
        let faults = vec![
            fault("kill", 1, FaultAction::KillWorker { signal: "SIGKILL".into(), pick: Pick::Busiest }),
            fault("deploy", 2, FaultAction::SignalMaster { signal: "SIGTERM".into() }),
            fault("hang", 3, FaultAction::HangWorker { pick: Pick::Random, duration: Duration::from_secs(2) }),
            fault("more", 4, FaultAction::SignalMaster { signal: "SIGTTIN".into() }),
            fault("script", 5, FaultAction::Command { argv: vec!["true".into()], timeout: Duration::from_secs(1) }),
            fault("naive", 6, FaultAction::NaiveRestart { stop_timeout: Duration::from_secs(3) }),
        ];
        let (single, map) = single_process_faults(&faults, graceful);
        let actions: Vec<(&str, Duration, &FaultAction)> =
            single.iter().map(|f| (f.name.as_str(), f.at, &f.action)).collect();
        assert_eq!(
            actions,
            [
                ("kill", Duration::from_secs(1), &FaultAction::NaiveRestart { stop_timeout: Duration::ZERO }),
                ("deploy", Duration::from_secs(2), &FaultAction::NaiveRestart { stop_timeout: graceful }),
                ("hang", Duration::from_secs(3), &FaultAction::NaiveRestart { stop_timeout: Duration::ZERO }),
                ("script", Duration::from_secs(5), &faults[4].action),
                ("naive", Duration::from_secs(6), &faults[5].action),
            ]
        );
        assert_eq!(map.len(), 6, "every fault is accounted for, played or not");
        assert!(map[3].single.starts_with("nothing"), "{:?}", map[3]);
        assert!(map[1].single.contains("gracefully") && map[1].cluster == "SIGTERM to the master", "{:?}", map[1]);
    }

    #[test]
    fn compression_keeps_the_shoppers_and_the_shape() {
        let s = blackfriday();
        let c = compress(&s, 2.0);
        assert_eq!(c.arrival.len(), s.arrival.len());
        for (a, b) in s.arrival.iter().zip(&c.arrival) {
            assert_eq!(a.duration, b.duration * 2);
            assert_eq!((a.from_rate, a.to_rate), (b.from_rate, b.to_rate), "rates are the run's rate_scale's job");
        }
        for (a, b) in s.chaos.iter().zip(&c.chaos) {
            assert_eq!(a.at, b.at * 2);
            assert_eq!(a.every, b.every.map(|e| e * 2));
            assert_eq!(a.action, b.action, "hang lengths stay as written");
        }
        let (full, fast) = (schedule::build(&s, 1.0), schedule::build(&c, 2.0));
        assert_eq!(fast.shoppers.len(), full.shoppers.len());
        assert_eq!(full.shoppers.len(), 30_000);
        let ratio = full.duration.as_secs_f64() / fast.duration.as_secs_f64();
        assert!((ratio - 2.0).abs() < 0.05, "{ratio}");
        // Every fault still comes before the last shopper arrives.
        let last_fault = c.chaos.iter().flat_map(|f| f.times()).max().unwrap();
        assert!(last_fault < fast.duration, "{last_fault:?} vs {:?}", fast.duration);
        assert_eq!(compress(&s, 1.0), s);
    }
}
