//! The commands' drivers: one run start to finish (`run`), one run with the
//! target and its faults around it (`lifecycle`, `harness run`), the single
//! vs cluster comparison (`compare`) and the calibration that scales the load
//! to this machine (`calibrate`); for a run split over processes, a shard's
//! part and clock (`shard`), the faults alone (`chaos_only`, `harness chaos`)
//! and the merge of the shards into one judged run (`merge`). They chain the
//! other stages.
//!
//! Not for: argument parsing (cli.rs) or any stage's own work: a driver calls
//! traffic/, chaos/, judge/ and report/ in order and passes their outputs on.

pub mod calibrate;
pub mod chaos_only;
pub mod compare;
pub mod lifecycle;
pub mod merge;
pub mod run;
pub mod shard;
