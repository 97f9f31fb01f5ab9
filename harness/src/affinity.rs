//! Affinity check: for every shopper, how often the serving worker
//! (`X-Worker-Id`) changed outside restart and fault windows. Against a
//! sticky cluster each such change is an *affinity break*: a long-poll or SSE
//! client lost its per-worker state for no reason the harness caused. A
//! change whose interval (from the previous response to this one) overlaps a
//! window is excused: a killed or drained worker's clients must move, and
//! come back to the slot's replacement afterwards.
//!
//! Pure: it takes small views of the ledger (shopper, time, worker) and of
//! the fault windows, so the rules are unit-tested here. Not the place that
//! decides what a window is (chaos.rs and attribution.rs) nor whether the
//! count passes (gates).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::attribution::FaultWindow;
use crate::gates::GateResult;
use crate::ledger::AttemptRecord;

/// One response that named its worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub shopper: u64,
    /// When the response arrived, ms since run start.
    pub t_ms: f64,
    pub worker: String,
}

/// A time span in which changes of worker are expected, ms since run start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start_ms: f64,
    /// None: until the end of the run (the target never recovered).
    pub end_ms: Option<f64>,
}

impl Window {
    /// Whether the span [a, b] overlaps this window.
    fn overlaps(&self, a: f64, b: f64) -> bool {
        b >= self.start_ms && self.end_ms.is_none_or(|end| a <= end)
    }
}

impl From<&FaultWindow> for Window {
    fn from(f: &FaultWindow) -> Self {
        Self { start_ms: f.start_ms, end_ms: f.recovered_ms }
    }
}

/// One unexcused change of worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Break {
    pub shopper: u64,
    /// When the new worker answered.
    pub at_ms: f64,
    pub from: String,
    pub to: String,
}

/// The affinity summary of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Affinity {
    /// Shoppers with at least one response naming a worker.
    pub shoppers: u64,
    /// Shoppers served by more than one worker over the run.
    pub shoppers_moved: u64,
    /// Changes of worker outside every window.
    pub breaks: u64,
    pub shoppers_with_breaks: u64,
    /// Changes of worker excused by a window.
    pub excused_changes: u64,
    /// The first breaks (at most [`MAX_EXAMPLES`]), for the report.
    pub examples: Vec<Break>,
}

/// How many breaks are listed by name.
pub const MAX_EXAMPLES: usize = 20;

/// The responses of the ledger that carry a worker id, in any order.
pub fn served_from(records: &[AttemptRecord]) -> Vec<Served> {
    records
        .iter()
        .filter_map(|r| {
            let worker = r.worker.as_ref()?;
            Some(Served { shopper: r.shopper, t_ms: r.end_ms, worker: worker.clone() })
        })
        .collect()
}

/// Count affinity breaks. `served` may be in any order.
pub fn analyze(served: &[Served], windows: &[Window]) -> Affinity {
    let mut by_shopper: BTreeMap<u64, Vec<(f64, &str)>> = BTreeMap::new();
    for s in served {
        by_shopper.entry(s.shopper).or_default().push((s.t_ms, s.worker.as_str()));
    }
    let mut out = Affinity { shoppers: by_shopper.len() as u64, ..Affinity::default() };
    for (shopper, mut seen) in by_shopper {
        seen.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut broke = false;
        let mut moved = false;
        for pair in seen.windows(2) {
            let ((t0, w0), (t1, w1)) = (pair[0], pair[1]);
            if w0 == w1 {
                continue;
            }
            moved = true;
            if windows.iter().any(|w| w.overlaps(t0, t1)) {
                out.excused_changes += 1;
                continue;
            }
            out.breaks += 1;
            broke = true;
            if out.examples.len() < MAX_EXAMPLES {
                out.examples.push(Break { shopper, at_ms: t1, from: w0.to_string(), to: w1.to_string() });
            }
        }
        out.shoppers_moved += u64::from(moved);
        out.shoppers_with_breaks += u64::from(broke);
    }
    out
}

/// The `max_affinity_breaks` gate.
pub fn gate(max: u64, a: &Affinity) -> GateResult {
    let passed = a.breaks <= max;
    let detail = match a.examples.first() {
        None => format!("{} shoppers, no change of worker outside fault windows", a.shoppers),
        Some(b) => format!(
            "{} changes of worker outside fault windows ({} of {} shoppers; first: shopper {} from worker {} to {} at {:.0} ms)",
            a.breaks, a.shoppers_with_breaks, a.shoppers, b.shopper, b.from, b.to, b.at_ms
        ),
    };
    GateResult { name: "max_affinity_breaks".into(), limit: max as f64, actual: Some(a.breaks as f64), passed, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(shopper: u64, t_ms: f64, worker: &str) -> Served {
        Served { shopper, t_ms, worker: worker.to_string() }
    }

    #[test]
    fn a_shopper_on_one_worker_never_breaks() {
        let served = [s(1, 10.0, "a"), s(1, 20.0, "a"), s(2, 15.0, "b"), s(2, 5.0, "b")];
        let a = analyze(&served, &[]);
        assert_eq!(a.shoppers, 2);
        assert_eq!((a.breaks, a.excused_changes, a.shoppers_moved), (0, 0, 0));
    }

    #[test]
    fn changes_outside_windows_break_and_are_ordered_by_time() {
        // Given out of order: the sequence is a(10) b(20) a(30): two breaks.
        let served = [s(1, 30.0, "a"), s(1, 10.0, "a"), s(1, 20.0, "b"), s(2, 1.0, "c")];
        let a = analyze(&served, &[]);
        assert_eq!(a.breaks, 2);
        assert_eq!(a.shoppers_with_breaks, 1);
        assert_eq!(a.examples[0], Break { shopper: 1, at_ms: 20.0, from: "a".into(), to: "b".into() });
        assert_eq!(a.examples[1].at_ms, 30.0);
    }

    #[test]
    fn moving_to_a_fallback_and_back_to_the_replacement_inside_a_window_is_excused() {
        let kill = Window { start_ms: 100.0, end_ms: Some(200.0) };
        // Home a, fallback b during the fault, replacement c after it.
        let served = [s(1, 90.0, "a"), s(1, 150.0, "b"), s(1, 250.0, "c"), s(1, 300.0, "c")];
        let a = analyze(&served, &[kill]);
        assert_eq!((a.breaks, a.excused_changes, a.shoppers_moved), (0, 2, 1));
        // No request during the window: a -> c spans it, still excused.
        let a = analyze(&[s(1, 90.0, "a"), s(1, 250.0, "c")], &[kill]);
        assert_eq!((a.breaks, a.excused_changes), (0, 1));
        // The same change well after the window is a break.
        let a = analyze(&[s(1, 300.0, "c"), s(1, 400.0, "d")], &[kill]);
        assert_eq!(a.breaks, 1);
    }

    #[test]
    fn an_unrecovered_fault_excuses_everything_after_it() {
        let w = Window { start_ms: 100.0, end_ms: None };
        let a = analyze(&[s(1, 50.0, "a"), s(1, 99.0, "b"), s(1, 500.0, "c")], &[w]);
        assert_eq!((a.breaks, a.excused_changes), (1, 1));
    }

    #[test]
    fn the_gate_passes_at_the_limit_and_names_the_first_break() {
        let a = analyze(&[s(4, 1.0, "a"), s(4, 2.0, "b")], &[]);
        assert!(gate(1, &a).passed);
        let g = gate(0, &a);
        assert!(!g.passed);
        assert_eq!(g.actual, Some(1.0));
        assert!(g.detail.contains("shopper 4 from worker a to b"), "{}", g.detail);
    }

    #[test]
    fn examples_are_capped() {
        let served: Vec<Served> = (0..100).map(|i| s(1, f64::from(i), if i % 2 == 0 { "a" } else { "b" })).collect();
        let a = analyze(&served, &[]);
        assert_eq!(a.breaks, 99);
        assert_eq!(a.examples.len(), MAX_EXAMPLES);
    }
}
