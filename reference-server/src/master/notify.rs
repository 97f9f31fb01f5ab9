//! Telling a supervisor what the master is doing (systemd's `Type=notify`,
//! sd_notify(3)): `READY=1` once every wanted worker is ready,
//! `RELOADING=1` / `READY=1` around a rolling restart, `STOPPING=1`,
//! `STATUS=` with the worker count, and `WATCHDOG=1` from the loop itself,
//! so a master whose loop hangs stops pinging and systemd restarts it.
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
        })
    }

    /// When the loop must wake to ping the watchdog.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.watchdog.map(|_| self.next_watchdog)
    }
}

impl Master<'_> {
    /// Send what changed since the last turn (nothing without NOTIFY_SOCKET).
    pub(super) fn notify(&mut self) {
        if self.notify.notifier.is_none() {
            return;
        }
        let ready = self.workers.iter().filter(|w| w.is_live() && w.phase == Phase::Ready).count();
        let n = &mut self.notify;
        let mut lines: Vec<String> = Vec::new();
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
