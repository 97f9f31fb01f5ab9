//! The admin server's view of the master: metrics (with the gauges computed
//! from the worker table at scrape time), the worker table, the shop audit.

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

impl AdminSource for View<'_, '_> {
    fn metrics(&self) -> String {
        let m = &self.m.metrics;
        let serving = self.m.workers.iter().filter(|w| w.is_live() && w.phase == Phase::Ready).count();
        m.workers_up.set(serving as i64);
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
        serde_json::json!({
            "mode": "cluster",
            "master_pid": std::process::id(),
            "target": m.target,
            "rolling_restart": m.rolling.is_some(),
            "stopping": m.stop.map(|s| if s.immediate { "immediate" } else { "graceful" }),
            "workers": m.workers.iter().map(Worker::describe).collect::<Vec<_>>(),
        })
    }

    fn audit(&self) -> Result<String> {
        shop::audit_json(&self.m.cli.shop)
    }
}
