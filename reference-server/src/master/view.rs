//! The admin server's view of the master: metrics (with the gauges computed
//! from the worker table at scrape time), the worker table, the shop audit.

use std::time::Instant;

use anyhow::Result;

use super::Master;
use super::pool::{Phase, Worker};
use crate::admin::AdminSource;
use crate::metrics::SlotLabel;
use crate::shop;

/// The admin server's view of the master.
pub(super) struct View<'a, 'c> {
    pub(super) m: &'a Master<'c>,
}

impl View<'_, '_> {
    /// Per-slot state for `/workers`: crash count, live and wanted workers,
    /// and the respawn timer (ms until it fires; negative if overdue).
    fn slots(&self) -> Vec<serde_json::Value> {
        let m = self.m;
        let now = Instant::now();
        (0..m.slots.len())
            .map(|slot| {
                let s = &m.slots[slot];
                let respawn_in_ms = s.respawn_at.map(|at| {
                    if at >= now {
                        at.duration_since(now).as_millis() as i64
                    } else {
                        -(now.duration_since(at).as_millis() as i64)
                    }
                });
                serde_json::json!({
                    "slot": slot,
                    "early_crashes": s.crashes.early_crashes,
                    "live": m.live_in(slot),
                    "wanted": if slot < m.target { m.wanted(slot) } else { 0 },
                    "respawn_in_ms": respawn_in_ms,
                })
            })
            .collect()
    }
}

impl AdminSource for View<'_, '_> {
    fn metrics(&self) -> String {
        let m = &self.m.metrics;
        let serving = self.m.workers.iter().filter(|w| w.is_live() && w.phase == Phase::Ready).count();
        m.workers_up.set(serving as i64);
        let draining = self.m.workers.iter().filter(|w| w.is_draining()).count();
        m.workers_draining.set(draining as i64);
        for slot in 0..self.m.slots.len() {
            let in_slot = self.m.workers.iter().filter(|w| w.slot == slot);
            let (fl, conns) = in_slot.fold((0, 0), |(f, c), w| (f + w.counters.in_flight, c + w.counters.connections));
            let label = SlotLabel { slot: slot as u32 };
            m.in_flight.get_or_create(&label).set(fl as i64);
            m.connections.get_or_create(&label).set(conns as i64);
        }
        m.encode()
    }

    fn workers(&self) -> serde_json::Value {
        let m = self.m;
        let now = Instant::now();
        serde_json::json!({
            "mode": "cluster",
            "master_pid": std::process::id(),
            "target": m.target,
            "rolling_restart": m.rolling.is_some(),
            "stopping": m.stop.map(|s| if s.immediate { "immediate" } else { "graceful" }),
            "workers": m.workers.iter().map(Worker::describe).collect::<Vec<_>>(),
            "slots": self.slots(),
            // The loop's next timer, as the poll about to run sees it: 0 with
            // nothing due would be a busy loop (issue 19).
            "next_timer_ms": m.next_due(now).saturating_duration_since(now).as_millis() as u64,
        })
    }

    fn audit(&self) -> Result<String> {
        shop::audit_json(&self.m.cli.shop)
    }
}
