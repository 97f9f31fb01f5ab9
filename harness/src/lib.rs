//! The Black Friday harness: scenario -> schedule -> engine -> ledger and
//! recording -> verdict -> report. Each stage is a module that takes the
//! previous stage's output.

pub mod outcome;
pub mod scenario;
pub mod schedule;
pub mod events;
pub mod procs;
pub mod attribution;
pub mod client;
pub mod ledger;
pub mod recorder;
pub mod report;
pub mod target;
pub mod audit;
pub mod engine;
pub mod gates;
pub mod limits;
pub mod progress;
pub mod summary;
pub mod run;
pub mod cli;
pub mod chaos;
pub mod lifecycle;
pub mod timer;
