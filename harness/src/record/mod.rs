//! What a run observed, written as it happens: the ledger (one record per
//! attempt and the counts that must add up), the recorder (latency
//! histograms, per-second series) and the event log (milestones, failures and
//! faults on one clock).
//!
//! Not for: sending requests (traffic/), deciding anything about what was
//! recorded (judge/), or drawing it (report/).

pub mod events;
pub mod ledger;
pub mod recorder;
