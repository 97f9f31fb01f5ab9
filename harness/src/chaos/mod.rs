//! Chaos: the target's lifecycle (launch or attach, readiness, health after a
//! fault, stop) and the fault runner (kill, hang, signal the master, run the
//! user's command, restart naively), which writes every fault into the run's
//! event log and returns a record of it.
//!
//! Not for: reading /proc (host/), deciding which failures a fault caused or
//! whether its budget held (judge/).

pub mod faults;
pub mod target;
