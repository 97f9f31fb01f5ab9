//! Traffic: turn a scenario into a shopper schedule and play it against the
//! target on an open model: the schedule (pure: who arrives when), the engine
//! (one task per shopper, retries), the HTTP/1.1 client and its event-stream
//! parser (sse.rs), the precise timer
//! and the live progress line. The engine writes every attempt into record/.
//!
//! Not for: faults or the target's processes (chaos/), judging the outcome
//! (judge/).

pub mod client;
pub mod engine;
pub mod progress;
pub mod schedule;
pub mod sse;
pub mod timer;
pub mod tls;
