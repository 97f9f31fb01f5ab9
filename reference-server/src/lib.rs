//! The reference clustered shop: a master that forks a worker per core,
//! respawns them, rolls restarts and drains gracefully, and the shop they serve.

pub mod shop;
