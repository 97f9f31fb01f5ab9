//! Rolling-restart state: which old workers are still to be replaced and
//! where the current step stands. One worker at a time: its replacement is
//! started and `ready` before the old one gets `shutdown`, so capacity never
//! dips. The master drives it (`Master::roll`); this is just the state.

use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPhase {
    /// The slot wants a second worker; waiting for it to be `ready`.
    WaitReady,
    /// The old worker was told to drain; waiting for it to exit.
    WaitExit,
    /// TEST ONLY (`--unsafe-old-before-new`, defect 3): the old worker was
    /// told to drain first; its slot stays empty until it exits.
    OldFirstWaitExit,
    /// TEST ONLY: the old worker is gone; waiting for its replacement.
    OldFirstWaitReady,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub old: u64,
    pub slot: usize,
    pub phase: StepPhase,
}

#[derive(Debug)]
pub struct Rolling {
    pub started: Instant,
    pub queue: VecDeque<u64>,
    pub current: Option<Step>,
    pub replaced: usize,
}

impl Rolling {
    /// Replace `old` (worker ids, in order).
    pub fn new(old: Vec<u64>) -> Self {
        Self { started: Instant::now(), queue: old.into(), current: None, replaced: 0 }
    }

    /// The slot whose replacement is being started, if any: it wants two
    /// live workers until the replacement is ready.
    pub fn wants_extra(&self) -> Option<usize> {
        self.current.filter(|s| s.phase == StepPhase::WaitReady).map(|s| s.slot)
    }

    /// TEST ONLY: the slot that must stay without a live worker (its old one
    /// drains before the replacement may start).
    pub fn holds_empty(&self) -> Option<usize> {
        self.current.filter(|s| s.phase == StepPhase::OldFirstWaitExit).map(|s| s.slot)
    }
}
