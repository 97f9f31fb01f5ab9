//! Telling a supervisor what the master is doing (systemd's `Type=notify`,
//! sd_notify(3)): `READY=1` once every wanted worker is ready,
//! `RELOADING=1` / `READY=1` around a rolling restart, `STOPPING=1`,
//! `STATUS=` with the worker count, and `WATCHDOG=1` from the loop itself,
//! so a master whose loop hangs stops pinging and systemd restarts it.
//! Across a binary upgrade (`upgrade.rs`) the old master, still the main pid,
//! sends `MAINPID=<new>` and goes quiet; the new master, quiet until then,
//! repeats `MAINPID=` with its `READY=1`.
//! Not for: deciding anything; it reports the state `mod.rs` reached, once
//! per loop turn, sending only what changed.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Master;
use super::pool::Phase;
use crate::systemd::{self, Notifier};

pub(super) struct Notify {
    notifier: Option<Notifier>,
    /// `WATCHDOG=1` every this long (half of `WATCHDOG_USEC`).
    watchdog: Option<Duration>,
    next_watchdog: Instant,
    sent_ready: bool,
    sent_reloading: bool,
    sent_stopping: bool,
    sent_status: String,
    /// A new master before the old one handed over: not the main pid yet.
    held: bool,
    /// Say `MAINPID=<ours>` with the next update (we took over).
    announce_mainpid: bool,
}

impl Notify {
    pub(super) fn from_env() -> Result<Self> {
        let notifier = Notifier::from_env()?;
        let watchdog = notifier.as_ref().and_then(|_| systemd::watchdog_interval());
        Ok(Self {
            notifier,
            watchdog,
            next_watchdog: Instant::now(),
            sent_ready: false,
            sent_reloading: false,
            sent_stopping: false,
            sent_status: String::new(),
            held: false,
            announce_mainpid: false,
        })
    }

    /// Send nothing until [`Notify::take_over`] (a new master mid-upgrade).
    pub(super) fn hold(&mut self) {
        self.held = true;
    }

    /// The old master handed over: we are the main pid now; say so.
    pub(super) fn take_over(&mut self) {
        if self.held {
            self.held = false;
            self.announce_mainpid = true;
        }
    }

    /// Handing over to the new master `pid`: tell the supervisor (while we
    /// are still its main pid, so `NotifyAccess=main` accepts it), then say
    /// nothing more; our `STOPPING=1` would read as the service stopping.
    pub(super) fn hand_over(&mut self, pid: u32) {
        if let Some(notifier) = self.notifier.take() {
            let msg = format!("MAINPID={pid}");
            if let Err(e) = notifier.send(&msg) {
                super::log(&format!("cannot notify the supervisor ({msg}): {e}"));
            }
        }
        self.watchdog = None;
    }

    /// When the loop must wake to ping the watchdog.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.watchdog.map(|_| self.next_watchdog)
    }
}

impl Master<'_> {
    /// Send what changed since the last turn (nothing without NOTIFY_SOCKET).
    pub(super) fn notify(&mut self) {
        if self.notify.notifier.is_none() || self.notify.held {
            return;
        }
        let ready = self.workers.iter().filter(|w| w.is_live() && w.phase == Phase::Ready).count();
        let n = &mut self.notify;
        let mut lines: Vec<String> = Vec::new();
        if n.announce_mainpid {
            lines.push(format!("MAINPID={}", std::process::id()));
            n.announce_mainpid = false;
        }
        if self.stop.is_some() {
            if !n.sent_stopping {
                lines.push("STOPPING=1".into());
                n.sent_stopping = true;
            }
        } else if self.rolling.is_some() {
            if n.sent_ready && !n.sent_reloading {
                lines.push("RELOADING=1".into());
                lines.push(format!("MONOTONIC_USEC={}", systemd::monotonic_usec()));
                n.sent_reloading = true;
            }
        } else if ready >= self.target && (!n.sent_ready || n.sent_reloading) {
            lines.push("READY=1".into());
            n.sent_ready = true;
            n.sent_reloading = false;
        }
        let doing = match (self.stop.is_some(), self.rolling.is_some()) {
            (true, _) => ", stopping",
            (false, true) => ", rolling restart",
            _ => "",
        };
        let status = format!("{ready} of {} workers ready{doing}", self.target);
        if status != n.sent_status {
            lines.push(format!("STATUS={status}"));
            n.sent_status = status;
        }
        let now = Instant::now();
        if let Some(every) = n.watchdog.filter(|_| now >= n.next_watchdog) {
            lines.push("WATCHDOG=1".into());
            n.next_watchdog = now + every;
        }
        if lines.is_empty() {
            return;
        }
        if let Some(notifier) = &n.notifier {
            if let Err(e) = notifier.send(&lines.join("\n")) {
                super::log(&format!("cannot notify the supervisor ({}): {e}", lines.join(" ")));
            }
        }
    }
}
