//! The Black Friday harness. Data flows one way through its folders:
//!
//! `scenario/` (read, validate, template) -> `traffic/` (schedule, engine,
//! client) -> `record/` (ledger, recorder, event log) with `chaos/` (target,
//! faults) alongside and `host/` (/proc, machine noise, limits) underneath ->
//! `judge/` (attribution, audit, budgets, hosts, gates, verdict, summary.json) ->
//! `report/` (render only). `drive/` chains the stages for each command;
//! `cli.rs` parses arguments and `outcome.rs` is the vocabulary every stage
//! shares (how one attempt ended).

pub mod chaos;
pub mod cli;
pub mod drive;
pub mod host;
pub mod judge;
pub mod outcome;
pub mod record;
pub mod report;
pub mod scenario;
pub mod scrape;
pub mod traffic;
