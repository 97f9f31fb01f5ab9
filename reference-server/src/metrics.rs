//! Cluster metrics in the Prometheus text format (prometheus-client), owned
//! by the master (or the single process). Worker counters arrive as
//! per-process cumulative values and are folded in as deltas, so cluster
//! totals never go down when a worker is replaced.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a worker was replaced.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Reason {
    /// Exited without being asked to.
    Crash,
    /// Heartbeats stopped; killed.
    Hang,
    /// Replaced by a rolling restart.
    Rolling,
    /// Drained and exited on a SIGTERM sent to it, not by the master
    /// (`kill -TERM -<pgid>`, systemd's `KillMode=control-group`).
    Sigterm,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Crash => "crash",
            Reason::Hang => "hang",
            Reason::Rolling => "rolling",
            Reason::Sigterm => "sigterm",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabel {
    pub slot: u32,
}

pub struct Metrics {
    registry: Registry,
    pub workers_up: Gauge,
    /// Drains in progress: workers told to stop (or stopping on their own) that have not exited.
    pub workers_draining: Gauge,
    pub restarts: Family<ReasonLabel, Counter>,
    pub rolling_restarts: Counter,
    pub rolling_restarts_aborted: Counter,
    pub drains: Counter,
    pub drain_timeouts: Counter,
    pub drain_seconds: Histogram,
    pub requests: Family<SlotLabel, Counter>,
    pub in_flight: Family<SlotLabel, Gauge>,
    pub connections: Family<SlotLabel, Gauge>,
    /// Sticky balancing: connections passed to a worker, by the slot that took them.
    pub handoffs: Family<SlotLabel, Counter>,
    /// Sticky balancing: connections sent away from their home slot (no ready worker there).
    pub fallbacks: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("reference");
        let workers_up = Gauge::default();
        let workers_draining = Gauge::default();
        let restarts = Family::<ReasonLabel, Counter>::default();
        let rolling_restarts = Counter::default();
        let rolling_restarts_aborted = Counter::default();
        let drains = Counter::default();
        let drain_timeouts = Counter::default();
        // 5 ms .. ~40 s
        let drain_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let requests = Family::<SlotLabel, Counter>::default();
        let in_flight = Family::<SlotLabel, Gauge>::default();
        let connections = Family::<SlotLabel, Gauge>::default();
        let handoffs = Family::<SlotLabel, Counter>::default();
        let fallbacks = Counter::default();
        registry.register("workers_up", "Workers ready and not draining", workers_up.clone());
        registry.register(
            "workers_draining",
            "Workers draining (drains in progress): stopped accepting, not yet exited",
            workers_draining.clone(),
        );
        registry.register("worker_restarts", "Workers replaced, by reason", restarts.clone());
        registry.register("rolling_restarts", "Rolling restarts started", rolling_restarts.clone());
        registry.register(
            "rolling_restarts_aborted",
            "Rolling restarts abandoned because a replacement kept crashing at start-up",
            rolling_restarts_aborted.clone(),
        );
        registry.register("drains", "Worker drains finished (acked or killed)", drains.clone());
        registry.register(
            "drain_timeouts",
            "Drains that hit the drain timeout and ended in SIGKILL",
            drain_timeouts.clone(),
        );
        registry.register("drain_duration_seconds", "Time from shutdown order to worker exit", drain_seconds.clone());
        registry.register(
            "requests",
            "Requests served, by worker slot (cluster total never goes down)",
            requests.clone(),
        );
        registry.register("in_flight_requests", "Requests in flight, by worker slot", in_flight.clone());
        registry.register("open_connections", "Open client connections, by worker slot", connections.clone());
        registry.register(
            "sticky_handoffs",
            "Connections the master passed to a worker (--balance sticky), by the slot that took them",
            handoffs.clone(),
        );
        registry.register(
            "sticky_fallbacks",
            "Connections routed away from their home slot because it had no ready worker (--balance sticky)",
            fallbacks.clone(),
        );
        // Make every reason visible from the start, at zero.
        for reason in [Reason::Crash, Reason::Hang, Reason::Rolling, Reason::Sigterm] {
            let _ = restarts.get_or_create(&ReasonLabel { reason: reason.as_str().to_string() });
        }
        Self {
            registry,
            workers_up,
            workers_draining,
            restarts,
            rolling_restarts,
            rolling_restarts_aborted,
            drains,
            drain_timeouts,
            drain_seconds,
            requests,
            in_flight,
            connections,
            handoffs,
            fallbacks,
        }
    }

    pub fn restart(&self, reason: Reason) {
        self.restarts.get_or_create(&ReasonLabel { reason: reason.as_str().to_string() }).inc();
    }

    pub fn add_requests(&self, slot: usize, delta: u64) {
        self.requests.get_or_create(&SlotLabel { slot: slot as u32 }).inc_by(delta);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let m = Metrics::new();
        m.add_requests(1, 5);
        m.restart(Reason::Hang);
        let text = m.encode();
        for needle in [
            "reference_workers_up ",
            "reference_workers_draining 0",
            "reference_worker_restarts_total{reason=\"hang\"} 1",
            "reference_requests_total{slot=\"1\"} 5",
            "reference_drain_duration_seconds_bucket",
            "reference_rolling_restarts_total 0",
            "reference_sticky_fallbacks_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
