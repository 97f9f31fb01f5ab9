//! The reference clustered shop: a master that forks a worker per core,
//! respawns them, rolls restarts and drains gracefully, and the shop they serve.

pub mod admin;
pub mod build_info;
pub mod cli;
pub mod ipc;
pub mod metrics;
pub mod routes;
pub mod shop;
pub mod worker;
