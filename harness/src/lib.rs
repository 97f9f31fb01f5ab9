//! The Black Friday harness: scenario -> schedule -> engine -> ledger and
//! recording -> verdict -> report. Each stage is a module that takes the
//! previous stage's output.

pub mod affinity;
pub mod attribution;
pub mod audit;
pub mod budgets;
pub mod calibrate;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod compare;
pub mod engine;
pub mod events;
pub mod gates;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod machine;
pub mod outcome;
pub mod procs;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod summary;
pub mod target;
pub mod timer;
