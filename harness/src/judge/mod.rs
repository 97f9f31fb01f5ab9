//! The judge: everything concluded from a finished run. Attribution of
//! failures to fault windows, sticky-session affinity, what each host of a
//! fleet served, the audit of the shop's data, per-fault failure budgets, the
//! gates, the verdict and its exit code, and `summary.json`, which carries
//! those conclusions to the report and CI.
//!
//! Not for: measuring (record/, host/) or rendering (report/). The report
//! reads what the judge wrote; it never judges again.

pub mod affinity;
pub mod attribution;
pub mod audit;
pub mod baseline;
pub mod budgets;
pub mod gates;
pub mod hosts;
pub mod resources;
pub mod summary;
pub mod verdict;
pub mod versus;
