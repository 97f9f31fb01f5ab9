//! The verdict of a run and the exit codes CI sees (docs/EXIT_CODES.md).
//! The judge decides the verdict; every command maps it to an exit code
//! here, so the report, which only renders, is never upstream of CI.
//!
//! Not for: evaluating gates (gates.rs) or naming faults (chaos/).

use serde::{Deserialize, Serialize};

/// Exit codes: the run passed every gate.
pub const EXIT_PASS: i32 = 0;
/// A gate failed.
pub const EXIT_GATE_FAILED: i32 = 1;
/// The run was invalid, inconclusive or could not start (bad scenario,
/// limits, target unreachable, a machine too busy to judge).
pub const EXIT_INVALID: i32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// A gate failed (exit code 1).
    Fail,
    /// The run itself cannot be trusted (exit code 2).
    Invalid,
    /// Every gate that decided passed, but a gate that depends on speed
    /// failed while other work on the machine took more CPU than the
    /// scenario's `environment.max_other_cpu` (exit code 2: run it again).
    Inconclusive,
}

impl Verdict {
    /// The process exit code for this verdict (docs/EXIT_CODES.md).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => EXIT_PASS,
            Verdict::Fail => EXIT_GATE_FAILED,
            Verdict::Invalid | Verdict::Inconclusive => EXIT_INVALID,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Invalid => "invalid",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// How one gate or check came out. Unlike a run's [`Verdict`], it has no
/// invalid: a check that could not be decided is unknown, never a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Could not be decided (no data, audit unreachable, ...). Never counted as a pass.
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unknown => "unknown",
        }
    }

    /// The worst of several: any fail fails, else any unknown is unknown.
    pub fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
        let mut worst = Status::Pass;
        for s in statuses {
            match s {
                Status::Fail => return Status::Fail,
                Status::Unknown => worst = Status::Unknown,
                Status::Pass => {}
            }
        }
        worst
    }
}

/// One gate of the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRow {
    /// e.g. "cluster: dropped <= 0".
    pub gate: String,
    pub status: Status,
    /// What was measured against what, in words: "0 dropped (budget 0)".
    pub detail: String,
}

// How the judge writes numbers in a gate's detail; the report writes them
// the same way, so a detail reads like the page around it.

/// "12 ms", "0.25 ms", "3.4 ms", "1 ms", "1.5 s".
pub fn fmt_ms(v: f64) -> String {
    let (value, unit) = if v >= 1000.0 { (v / 1000.0, "s") } else { (v, "ms") };
    let text = if value >= 10.0 {
        format!("{value:.0}")
    } else if value >= 1.0 || unit == "s" {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    // "1.0 s" reads as more precise than it is; axis ticks land on whole numbers.
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text} {unit}")
}

/// 152000 -> "152,000".
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
