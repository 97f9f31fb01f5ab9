//! The master's self-healing: reading worker reports, reaping exits,
//! crash-loop backoff, hang kills and drain deadlines. Decisions only; the
//! worker table is `pool`, the loop is `mod.rs`.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::backoff::Verdict;
use super::pool::{Kill, Phase, Worker};
use super::{Master, log, wlog};
use crate::exit;
use crate::ipc::{Counters, WorkerMsg};
use crate::metrics::{Metrics, Reason};

impl Master<'_> {
    /// Crash-loop protection for a slot whose worker died unexpectedly.
    pub(super) fn on_crash(&mut self, slot: usize, uptime: Duration) {
        let cli = self.cli;
        let s = &mut self.slots[slot];
        match s.crashes.on_crash(uptime, cli.min_uptime, cli.crash_backoff, cli.max_crashes) {
            Verdict::Respawn(delay) => {
                s.respawn_at = Some(Instant::now() + delay);
                if s.crashes.early_crashes > 0 {
                    log(&format!(
                        "slot {slot}: early crash {} of {}; respawn in {} ms",
                        s.crashes.early_crashes,
                        cli.max_crashes,
                        delay.as_millis()
                    ));
                }
            }
            Verdict::GiveUp => {
                let crashes = s.crashes.early_crashes;
                let cause = match s.last_failure.take() {
                    Some(why) => format!(" (last failure: {why})"),
                    None => String::new(),
                };
                // A replacement that cannot start (a broken binary deployed
                // by a rolling restart) while the old worker still serves its
                // slot: abandon the deploy, keep serving on the old workers.
                let old_serves = self.workers.iter().any(|w| w.slot == slot && w.is_live());
                if old_serves && self.rolling.is_some() {
                    log(&format!(
                        "rolling restart aborted: the replacement in slot {slot} crashed {crashes} times in a row \
                         within {:?} of starting{cause}; the old workers keep serving",
                        cli.min_uptime
                    ));
                    self.rolling = None;
                    self.metrics.rolling_restarts_aborted.inc();
                    let s = &mut self.slots[slot];
                    s.crashes.on_stable();
                    s.respawn_at = None;
                    return;
                }
                log(&format!(
                    "giving up: slot {slot} crashed {crashes} times in a row within {:?} of starting{cause}",
                    cli.min_uptime
                ));
                self.stop_graceful(exit::GAVE_UP);
            }
        }
    }

    pub(super) fn read_ipc(&mut self) {
        let now = Instant::now();
        let drain_timeout = self.cli.drain_timeout;
        for w in &mut self.workers {
            let inbox = w.read_ipc();
            for bad in inbox.bad {
                wlog(w, &format!("sent a bad message (ignored): {bad}"));
            }
            for msg in inbox.msgs {
                match msg {
                    WorkerMsg::Ready { version, build_id, .. } => {
                        if w.phase == Phase::Starting {
                            w.phase = Phase::Ready;
                        }
                        w.ready_at = Some(now);
                        w.last_beat = now;
                        w.version = version;
                        w.build_id = build_id;
                        let ms = now.duration_since(w.started).as_millis();
                        wlog(w, &format!("ready in {ms} ms, build {}", w.build_id));
                    }
                    WorkerMsg::Heartbeat { counters } => {
                        w.last_beat = now;
                        fold(&self.metrics, w.slot, &mut w.counters, counters);
                    }
                    WorkerMsg::Draining { reason } => self_drain(&self.metrics, w, &reason, drain_timeout),
                    WorkerMsg::Failed { error } => note_failure(&mut self.slots, w, error),
                    WorkerMsg::Drained { counters, drain_ms } => {
                        fold(&self.metrics, w.slot, &mut w.counters, counters);
                        // A worker too old to send `draining` still says `drained`.
                        self_drain(&self.metrics, w, "unknown", drain_timeout);
                        wlog(w, &format!("drained in {drain_ms} ms"));
                    }
                }
            }
        }
    }

    pub(super) fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            match self.workers[i].child.try_wait() {
                Ok(None) => i += 1,
                Ok(Some(status)) => {
                    let w = self.workers.remove(i);
                    self.on_exit(w, Some(status));
                }
                Err(e) => {
                    // Not our child any more (cannot happen unless someone
                    // reaped it behind our back): forget it rather than spin.
                    wlog(&self.workers[i], &format!("cannot be waited for ({e}); forgetting it"));
                    let w = self.workers.remove(i);
                    self.on_exit(w, None);
                }
            }
        }
    }

    pub(super) fn on_exit(&mut self, mut w: Worker, status: Option<ExitStatus>) {
        // Sticky: connections it never got go to whoever serves now.
        self.adopt_pending(std::mem::take(&mut w.pending));
        // Counters sent just before the exit still count.
        let inbox = w.read_ipc();
        for msg in inbox.msgs {
            match msg {
                WorkerMsg::Heartbeat { counters } => fold(&self.metrics, w.slot, &mut w.counters, counters),
                WorkerMsg::Drained { counters, .. } => {
                    fold(&self.metrics, w.slot, &mut w.counters, counters);
                    self_drain(&self.metrics, &mut w, "unknown", self.cli.drain_timeout);
                }
                WorkerMsg::Draining { reason } => self_drain(&self.metrics, &mut w, &reason, self.cli.drain_timeout),
                WorkerMsg::Failed { error } => note_failure(&mut self.slots, &w, error),
                WorkerMsg::Ready { .. } => {}
            }
        }
        let how = match status {
            Some(s) => describe_status(s),
            None => "unknown status".to_string(),
        };
        let uptime = w.started.elapsed();
        match (w.phase, w.killed) {
            (Phase::Draining { since, .. }, killed) => {
                let took = since.elapsed();
                self.metrics.drains.inc();
                self.metrics.drain_seconds.observe(took.as_secs_f64());
                let note = if killed == Some(Kill::DrainTimeout) { ", killed at the drain timeout" } else { "" };
                let after = match &w.self_drain {
                    Some(why) => format!("it started draining on its own ({why})"),
                    None => "shutdown".to_string(),
                };
                wlog(&w, &format!("exited ({how}) {} ms after {after}{note}", took.as_millis()));
            }
            (_, Some(kill)) => wlog(&w, &format!("exited ({how}) after SIGKILL ({kill:?})")),
            _ if self.stop.is_some() => wlog(&w, &format!("exited ({how}) while stopping")),
            _ => {
                wlog(&w, &format!("exited unexpectedly ({how}) after {} ms", uptime.as_millis()));
                self.metrics.restart(Reason::Crash);
                self.on_crash(w.slot, uptime);
            }
        }
    }

    /// Hang detection, crash-count reset, drain deadlines.
    pub(super) fn timers(&mut self) {
        let now = Instant::now();
        let start_timeout = self.start_timeout();
        for w in self.workers.iter_mut().filter(|w| w.killed.is_none()) {
            match w.phase {
                Phase::Starting if now.duration_since(w.started) >= start_timeout => {
                    wlog(w, &format!("not ready after {} ms: killing it as hung", start_timeout.as_millis()));
                    w.kill(Kill::Hang);
                    self.metrics.restart(Reason::Hang);
                }
                Phase::Ready if now.duration_since(w.last_beat) >= self.cli.hang_timeout => {
                    let ms = now.duration_since(w.last_beat).as_millis();
                    wlog(w, &format!("no heartbeat for {ms} ms: killing it as hung"));
                    w.kill(Kill::Hang);
                    self.metrics.restart(Reason::Hang);
                }
                Phase::Ready
                    if !w.stable && w.ready_at.is_some_and(|r| now.duration_since(r) >= self.cli.min_uptime) =>
                {
                    w.stable = true;
                    if let Some(s) = self.slots.get_mut(w.slot) {
                        s.crashes.on_stable();
                        s.last_failure = None;
                    }
                }
                Phase::Draining { deadline, .. } if now >= deadline => {
                    wlog(w, &format!("still draining after {:?}: SIGKILL", self.cli.drain_timeout));
                    w.kill(Kill::DrainTimeout);
                    self.metrics.drain_timeouts.inc();
                }
                _ => {}
            }
        }
    }
}

/// A worker drains without our order (it got SIGTERM itself, from
/// `kill -TERM -<pgid>` or systemd's `KillMode=control-group`): its exit
/// will be a drain, not a crash, and its slot gets a replacement at once
/// (`reconcile`: the slot has no live worker) without crash backoff.
fn self_drain(metrics: &Metrics, w: &mut Worker, reason: &str, drain_timeout: Duration) {
    if w.is_draining() || w.killed.is_some() {
        return;
    }
    w.drains_itself(reason, drain_timeout);
    metrics.restart(Reason::Sigterm);
    wlog(w, &format!("draining on its own ({reason}); starting its replacement"));
}

/// A worker said why it cannot start: logged now, and kept on its slot for
/// the crash-loop lines (the abort of a rolling restart names it).
fn note_failure(slots: &mut [super::pool::Slot], w: &Worker, error: String) {
    wlog(w, &format!("failed to start: {error}"));
    if let Some(s) = slots.get_mut(w.slot) {
        s.last_failure = Some(error);
    }
}

/// Fold a worker's cumulative counters into the cluster totals as a delta,
/// so totals never go down when the worker is replaced.
pub(super) fn fold(metrics: &Metrics, slot: usize, last: &mut Counters, counters: Counters) {
    let delta = counters.requests.saturating_sub(last.requests);
    if delta > 0 {
        metrics.add_requests(slot, delta);
    }
    // The gauges follow the latest report; the cumulative count only rises.
    *last = Counters { requests: last.requests.max(counters.requests), ..counters };
}

pub(super) fn describe_status(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("signal {sig}"),
            Err(_) => format!("signal {sig}"),
        },
        _ => format!("{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(n: u64) -> Counters {
        Counters { requests: n, ..Counters::default() }
    }

    #[test]
    fn totals_never_go_down_when_a_worker_is_replaced() {
        let m = Metrics::new();
        let mut old = Counters::default();
        fold(&m, 0, &mut old, requests(5));
        fold(&m, 0, &mut old, requests(8));
        // The replacement in the same slot starts counting from zero.
        let mut new = Counters::default();
        fold(&m, 0, &mut new, requests(3));
        // A stale or reordered report never subtracts.
        fold(&m, 0, &mut new, requests(2));
        fold(&m, 0, &mut new, requests(4));
        assert!(m.encode().contains("reference_requests_total{slot=\"0\"} 12"), "{}", m.encode());
    }
}
