//! The machine the harness runs on: /proc (the target's process tree and CPU
//! time), other work on the machine second by second (a noisy run is
//! inconclusive), and the limits checked before a run (file descriptors,
//! ephemeral ports, loopback-only targets), and memory and descriptors of
//! the harness and the target over a run (a soak shows them flat), and the
//! host names a scenario pins to addresses (`target.resolve`).
//!
//! Not for: signalling or starting processes (chaos/), judging whether noise
//! explains a failed gate (judge/ reads [`machine::Assessment`]).

pub mod limits;
pub mod machine;
pub mod names;
pub mod procs;
pub mod resources;
