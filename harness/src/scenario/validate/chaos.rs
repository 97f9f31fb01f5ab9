//! Validation of the chaos section: each fault's action, the fields that
//! action takes (and no others), and its times within the arrival profile.
//! Part of `validate`; not for the other sections.

use std::collections::HashSet;
use std::time::Duration;

use super::super::duration::format_duration;
use super::super::raw::RawFault;
use super::super::*;
use super::V;

pub(super) fn fault(
    v: &mut V,
    i: usize,
    f: &RawFault,
    arrival_end: Duration,
    names: &mut HashSet<String>,
) -> Option<FaultSpec> {
    let p = format!("chaos[{i}]");
    if f.name.trim().is_empty() {
        v.err(format!("{p}.name"), "must not be empty");
    } else if !names.insert(f.name.clone()) {
        v.err(format!("{p}.name"), format!("fault name {:?} is used twice", f.name));
    }
    let mut count = f.count.unwrap_or(1);
    if count == 0 {
        v.err(format!("{p}.count"), "must be at least 1");
    } else if count > MAX_FAULT_OCCURRENCES {
        // Regression (issue 18, item 3): a count of 4e9 used to list every
        // occurrence (a 64 GB allocation) before any check.
        v.err(format!("{p}.count"), format!("{count} is more than {MAX_FAULT_OCCURRENCES} occurrences"));
        count = 1;
    }
    if count > 1 && f.every.is_none() {
        v.err(format!("{p}.every"), "required when count > 1 (the time between occurrences)");
    }
    if let Some(e) = f.every {
        v.positive(&format!("{p}.every"), e.0);
    }
    let (allowed, action) = action(v, &p, f);
    if action.is_some() {
        unused_fields(v, &p, f, allowed);
    }
    let spec = FaultSpec {
        name: f.name.clone(),
        at: f.at.0,
        every: f.every.map(|d| d.0),
        count: count.max(1),
        action: action?,
        budget: FaultBudget { max_first_attempt_failures: f.max_first_attempt_failures, max_dropped: f.max_dropped },
    };
    let field = if spec.count > 1 { "count" } else { "at" };
    match spec.last_time() {
        Some(last) if last >= arrival_end && !arrival_end.is_zero() => v.err(
            format!("{p}.{field}"),
            format!(
                "fires at {} but arrivals end at {}; faults must fall within the arrival profile",
                format_duration(last),
                format_duration(arrival_end)
            ),
        ),
        Some(_) => {}
        None => v.err(format!("{p}.{field}"), "its last occurrence is beyond any representable time"),
    }
    Some(spec)
}

/// The fault's action and the fields it takes.
fn action(v: &mut V, p: &str, f: &RawFault) -> (&'static [&'static str], Option<FaultAction>) {
    let pick = |v: &mut V, given: &Option<String>| match given.as_deref() {
        None | Some("random") => Pick::Random,
        Some("oldest") => Pick::Oldest,
        Some("busiest") => Pick::Busiest,
        Some(other) => {
            v.err(format!("{p}.pick"), format!("unknown pick {other:?} (expected random, oldest or busiest)"));
            Pick::Random
        }
    };
    match f.action.as_str() {
        "kill_worker" => (
            &["signal", "pick"],
            Some(FaultAction::KillWorker {
                signal: v.signal(&format!("{p}.signal"), f.signal.as_deref().unwrap_or("SIGKILL")),
                pick: pick(v, &f.pick),
            }),
        ),
        "signal_master" => {
            let signal = match &f.signal {
                Some(s) => v.signal(&format!("{p}.signal"), s),
                None => {
                    v.err(
                        format!("{p}.signal"),
                        "required for action \"signal_master\", e.g. \"SIGTERM\" or \"SIGHUP\"",
                    );
                    String::new()
                }
            };
            (&["signal"], Some(FaultAction::SignalMaster { signal }))
        }
        "hang_worker" => {
            let duration = match f.duration {
                Some(d) => v.positive(&format!("{p}.duration"), d.0),
                None => {
                    v.err(
                        format!("{p}.duration"),
                        "required for action \"hang_worker\" (how long the worker stays stopped)",
                    );
                    Duration::ZERO
                }
            };
            (&["pick", "duration"], Some(FaultAction::HangWorker { pick: pick(v, &f.pick), duration }))
        }
        "command" => {
            let argv = f.argv.clone().unwrap_or_default();
            if argv.is_empty() || argv[0].is_empty() {
                v.err(format!("{p}.argv"), "required for action \"command\": the program and its arguments");
            }
            let timeout = f.timeout.map_or(Duration::from_secs(60), |t| v.positive(&format!("{p}.timeout"), t.0));
            (&["argv", "timeout"], Some(FaultAction::Command { argv, timeout }))
        }
        "naive_restart" => (
            &["stop_timeout"],
            Some(FaultAction::NaiveRestart { stop_timeout: f.stop_timeout.map_or(Duration::from_secs(10), |d| d.0) }),
        ),
        other => {
            v.err(
                format!("{p}.action"),
                format!("unknown action {other:?} (expected kill_worker, signal_master, hang_worker, command or naive_restart)"),
            );
            (&[], None)
        }
    }
}

/// Fields set on the fault that its action does not use are mistakes.
fn unused_fields(v: &mut V, p: &str, f: &RawFault, allowed: &[&str]) {
    let given = [
        ("signal", f.signal.is_some()),
        ("pick", f.pick.is_some()),
        ("duration", f.duration.is_some()),
        ("argv", f.argv.is_some()),
        ("timeout", f.timeout.is_some()),
        ("stop_timeout", f.stop_timeout.is_some()),
    ];
    for (field, set) in given {
        if set && !allowed.contains(&field) {
            let takes = if allowed.is_empty() { "nothing else".to_string() } else { allowed.join(", ") };
            v.err(format!("{p}.{field}"), format!("not used by action {:?} (it takes {takes})", f.action));
        }
    }
}
