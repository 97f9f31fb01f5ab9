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
//! decides what a window is (chaos/faults.rs and attribution.rs) nor whether the
//! count passes (gates).

use std::collections::HashMap;

use serde::Serialize;

use crate::chaos::faults::FaultWindow;
use crate::judge::gates::GateResult;
use crate::record::ledger::AttemptRecord;

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

/// Counts affinity breaks from responses fed one at a time, keeping per
/// shopper only its last response (so a long run's ledger is read in one pass
/// without holding it). Each shopper's responses must come in time order: the
/// ledger writes them so, because a shopper's attempts are sequential and
/// each is recorded before the next is sent. Tests feed it
/// shuffled responses through a sorting `analyze`.
pub struct Tracker<'w> {
    windows: &'w [Window],
    /// Worker ids seen, interned: a run has a few, shoppers many.
    workers: Vec<String>,
    worker_index: HashMap<String, u32>,
    shoppers: HashMap<u64, Last>,
    out: Affinity,
}

/// A shopper's last response and what its history held so far.
struct Last {
    t_ms: f64,
    worker: u32,
    moved: bool,
    broke: bool,
}

impl<'w> Tracker<'w> {
    pub fn new(windows: &'w [Window]) -> Self {
        Tracker {
            windows,
            workers: Vec::new(),
            worker_index: HashMap::new(),
            shoppers: HashMap::new(),
            out: Affinity::default(),
        }
    }

    /// A ledger record: counted when its response named a worker.
    pub fn add_record(&mut self, r: &AttemptRecord) {
        if let Some(w) = &r.worker {
            self.add(r.shopper, r.end_ms, w);
        }
    }

    /// `shopper` was answered by `worker` at `t_ms`.
    pub fn add(&mut self, shopper: u64, t_ms: f64, worker: &str) {
        let w = match self.worker_index.get(worker) {
            Some(&i) => i,
            None => {
                let i = self.workers.len() as u32;
                self.workers.push(worker.to_string());
                self.worker_index.insert(worker.to_string(), i);
                i
            }
        };
        let Some(last) = self.shoppers.get_mut(&shopper) else {
            self.shoppers.insert(shopper, Last { t_ms, worker: w, moved: false, broke: false });
            return;
        };
        let (t0, w0) = (last.t_ms, last.worker);
        (last.t_ms, last.worker) = (t_ms, w);
        if w0 == w {
            return;
        }
        last.moved = true;
        if self.windows.iter().any(|win| win.overlaps(t0, t_ms)) {
            self.out.excused_changes += 1;
            return;
        }
        last.broke = true;
        self.out.breaks += 1;
        if self.out.examples.len() < MAX_EXAMPLES {
            let (from, to) = (self.workers[w0 as usize].clone(), self.workers[w as usize].clone());
            self.out.examples.push(Break { shopper, at_ms: t_ms, from, to });
        }
    }

    pub fn finish(self) -> Affinity {
        let mut out = self.out;
        out.shoppers = self.shoppers.len() as u64;
        out.shoppers_moved = self.shoppers.values().filter(|l| l.moved).count() as u64;
        out.shoppers_with_breaks = self.shoppers.values().filter(|l| l.broke).count() as u64;
        out
    }
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
    // Breaks of affinity outside fault windows are the balancer's doing, not speed.
    GateResult {
        name: "max_affinity_breaks".into(),
        limit: max as f64,
        actual: Some(a.breaks as f64),
        passed,
        detail,
        capacity_dependent: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One response that named its worker.
    #[derive(Debug, Clone, PartialEq)]
    struct Served {
        shopper: u64,
        /// When the response arrived, ms since run start.
        t_ms: f64,
        worker: String,
    }

    /// Count affinity breaks. `served` may be in any order; examples come
    /// shopper by shopper.
    fn analyze(served: &[Served], windows: &[Window]) -> Affinity {
        let mut sorted: Vec<&Served> = served.iter().collect();
        sorted.sort_by(|a, b| a.shopper.cmp(&b.shopper).then(a.t_ms.total_cmp(&b.t_ms)));
        let mut t = Tracker::new(windows);
        for s in sorted {
            t.add(s.shopper, s.t_ms, &s.worker);
        }
        t.finish()
    }

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
    fn the_tracker_reads_ledger_records_in_their_order() {
        // Two shoppers interleaved, as a ledger writes them; no worker on one.
        let r = |shopper: u64, end: f64, worker: Option<&str>| {
            let mut r = AttemptRecord::for_test(shopper, "watch", 1, crate::outcome::Outcome::Ok, (0.0, 0.0, end));
            r.shopper = shopper;
            r.worker = worker.map(str::to_string);
            r
        };
        let records = [r(1, 10.0, Some("a")), r(2, 11.0, Some("b")), r(1, 20.0, Some("c")), r(2, 21.0, None)];
        let kill = [Window { start_ms: 15.0, end_ms: Some(16.0) }];
        let mut t = Tracker::new(&kill);
        records.iter().for_each(|r| t.add_record(r));
        let a = t.finish();
        assert_eq!((a.shoppers, a.shoppers_moved, a.breaks, a.excused_changes), (2, 1, 0, 1));
        let mut t = Tracker::new(&[]);
        records.iter().for_each(|r| t.add_record(r));
        let a = t.finish();
        assert_eq!((a.breaks, a.shoppers_with_breaks), (1, 1));
        assert_eq!(a.examples[0], Break { shopper: 1, at_ms: 20.0, from: "a".into(), to: "c".into() });
    }

    #[test]
    fn examples_are_capped() {
        let served: Vec<Served> = (0..100).map(|i| s(1, f64::from(i), if i % 2 == 0 { "a" } else { "b" })).collect();
        let a = analyze(&served, &[]);
        assert_eq!(a.breaks, 99);
        assert_eq!(a.examples.len(), MAX_EXAMPLES);
    }
}
