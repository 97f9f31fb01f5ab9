//! Per host of a fleet, and per target address: what the harness saw from
//! each, learned from the ledger's `worker` and `addr` columns in the
//! lifecycle's one pass over the ledger.
//!
//! A server started with `--host-id HOST` names its workers `HOST-N` (or
//! `HOST-single`); the host is the part of the worker id before the last
//! `-`. An un-prefixed server's ids (`3`, `single`) name no host: a run that
//! saw no host at all has no per-host breakdown, so nothing changes for an
//! ordinary run. Attempts no host answered (no worker id: they failed before
//! any response) go to one row without a host.
//!
//! The address is where the attempt's connection went: one of the target
//! name's DNS answers (or `target.resolve`'s pinned addresses). A run that
//! used one address has no per-address breakdown; one spread over several
//! (load-balancer IPs, IPv4 and IPv6) gets a row per address, so a deploy
//! that broke one of them is attributable.
//!
//! Not for latency in general (recorder.rs) nor for judging: no gate reads it.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::outcome::{FailureClass, Outcome};
use crate::record::ledger::AttemptRecord;
use crate::record::recorder::{self, Percentiles};

/// The host of a worker id (`b-3` -> `b`, `web-2-1` -> `web-2`), or `None`
/// for an id without one (`3`, `single`).
pub fn host_of(worker: &str) -> Option<&str> {
    match worker.rsplit_once('-') {
        Some((host, n)) if !host.is_empty() && !n.is_empty() => Some(host),
        _ => None,
    }
}

/// One row's attempts: what a host or an address answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub attempts: u64,
    pub ok: u64,
    pub refused: u64,
    pub failed: u64,
    /// Failed attempts by class; every class appears, 0 if none.
    #[serde(with = "crate::outcome::by_class")]
    pub failed_by_class: BTreeMap<FailureClass, u64>,
    /// p99 latency (intended send to end, as the recorder measures) of the
    /// ok attempts; null when there were none.
    pub ok_p99_ms: Option<f64>,
}

/// One host's attempts, as summary.json's `hosts` array holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    /// Null for the attempts no host answered (no worker id).
    pub host: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// One target address's attempts, as summary.json's `addresses` array holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressRow {
    /// e.g. "127.0.0.1:443" or "[::1]:443"; null for the attempts that
    /// never had a connection (a full pool).
    pub addr: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Default)]
struct Tally {
    attempts: u64,
    ok: u64,
    refused: u64,
    failed_by_class: BTreeMap<FailureClass, u64>,
    /// Microseconds, like the recorder's; made on the first ok attempt.
    ok_latency: Option<Histogram<u64>>,
}

/// Attempts folded by a key, one record at a time: memory per key, not
/// per attempt. Records without a key go to one row of their own.
struct Fold<K> {
    by_key: BTreeMap<K, Tally>,
    no_key: Tally,
}

impl<K: Ord> Default for Fold<K> {
    fn default() -> Self {
        Fold { by_key: BTreeMap::new(), no_key: Tally::default() }
    }
}

impl<K: Ord> Fold<K> {
    fn add<Q>(&mut self, key: Option<&Q>, r: &AttemptRecord)
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        let t = match key {
            // Looked up by reference first: one allocation per key, not per attempt.
            Some(k) => {
                if !self.by_key.contains_key(k) {
                    self.by_key.insert(k.to_owned(), Tally::default());
                }
                self.by_key.get_mut(k).expect("inserted above")
            }
            None => &mut self.no_key,
        };
        t.attempts += 1;
        match r.outcome() {
            Outcome::Ok => {
                t.ok += 1;
                let us = (r.latency_ms() * 1000.0).round() as u64;
                recorder::record_value(t.ok_latency.get_or_insert_with(recorder::new_histogram), us);
            }
            Outcome::Refused => t.refused += 1,
            Outcome::Failed(c) => *t.failed_by_class.entry(c).or_default() += 1,
        }
    }

    /// (key, counts) in key order, then the keyless row if any attempt had no key.
    fn finish(self) -> impl Iterator<Item = (Option<K>, Counts)> {
        let no_key = (self.no_key.attempts > 0).then_some((None, self.no_key));
        self.by_key.into_iter().map(|(k, t)| (Some(k), t)).chain(no_key).map(|(k, t)| (k, t.counts()))
    }
}

/// The per-host fold (fleets).
#[derive(Default)]
pub struct Hosts(Fold<String>);

impl Hosts {
    pub fn add(&mut self, r: &AttemptRecord) {
        self.0.add(r.worker.as_deref().and_then(host_of), r);
    }

    /// One row per host in name order, then the row without a host if any;
    /// empty when no attempt named a host.
    pub fn finish(self) -> Vec<HostRow> {
        if self.0.by_key.is_empty() {
            return Vec::new();
        }
        self.0.finish().map(|(host, counts)| HostRow { host, counts }).collect()
    }
}

/// The per-address fold (a name with several addresses).
#[derive(Default)]
pub struct Addresses(Fold<SocketAddr>);

impl Addresses {
    pub fn add(&mut self, r: &AttemptRecord) {
        self.0.add(r.addr.as_ref(), r);
    }

    /// One row per address in address order (IPv4 first), then the row of
    /// attempts without a connection if any; empty when the run used at
    /// most one address.
    pub fn finish(self) -> Vec<AddressRow> {
        if self.0.by_key.len() < 2 {
            return Vec::new();
        }
        self.0.finish().map(|(a, counts)| AddressRow { addr: a.map(|a| a.to_string()), counts }).collect()
    }
}

impl Tally {
    fn counts(self) -> Counts {
        Counts {
            attempts: self.attempts,
            ok: self.ok,
            refused: self.refused,
            failed: self.failed_by_class.values().sum(),
            ok_p99_ms: self.ok_latency.as_ref().map(|h| Percentiles::of(h).p99_ms),
            failed_by_class: self.failed_by_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    fn record(worker: Option<&str>, o: Outcome, latency_ms: f64) -> AttemptRecord {
        let mut r = AttemptRecord::for_test(1, "browse", 1, o, (0.0, 0.0, latency_ms));
        r.worker = worker.map(str::to_string);
        r
    }

    #[test]
    fn host_is_the_part_before_the_last_dash() {
        assert_eq!(host_of("b-3"), Some("b"));
        assert_eq!(host_of("web-2-1"), Some("web-2"));
        assert_eq!(host_of("a-single"), Some("a"));
        assert_eq!(host_of("3"), None);
        assert_eq!(host_of("single"), None);
        assert_eq!(host_of("-3"), None);
        assert_eq!(host_of("a-"), None);
    }

    #[test]
    fn counts_classes_and_ok_p99_per_host() {
        let mut h = Hosts::default();
        // a: 100 ok over a-1 and a-2 at 1..=100 ms, one refused, one server error.
        for i in 1..=100 {
            let w = if i % 2 == 0 { "a-2" } else { "a-1" };
            h.add(&record(Some(w), Outcome::Ok, f64::from(i)));
        }
        h.add(&record(Some("a-1"), Outcome::Refused, 5.0));
        h.add(&record(Some("a-2"), Outcome::Failed(ServerError), 900.0));
        // b: only failures that had a response.
        h.add(&record(Some("b-1"), Outcome::Failed(TruncatedBody), 3.0));
        h.add(&record(Some("b-1"), Outcome::Failed(ServerError), 3.0));
        // No worker id: failed before any response.
        h.add(&record(None, Outcome::Failed(ConnectRefused), 1.0));
        h.add(&record(None, Outcome::Failed(ConnectRefused), 1.0));

        let rows = h.finish();
        let hosts: Vec<Option<&str>> = rows.iter().map(|r| r.host.as_deref()).collect();
        assert_eq!(hosts, [Some("a"), Some("b"), None]);

        let a = &rows[0].counts;
        assert_eq!((a.attempts, a.ok, a.refused, a.failed), (102, 100, 1, 1));
        assert_eq!(a.failed_by_class, BTreeMap::from([(ServerError, 1)]));
        let p99 = a.ok_p99_ms.unwrap();
        assert!((p99 - 99.0).abs() < 0.1, "p99 of 1..=100 ms is 99 ms, got {p99}");

        let b = &rows[1].counts;
        assert_eq!((b.attempts, b.ok, b.refused, b.failed), (2, 0, 0, 2));
        assert_eq!(b.failed_by_class, BTreeMap::from([(TruncatedBody, 1), (ServerError, 1)]));
        assert_eq!(b.ok_p99_ms, None);

        let unknown = &rows[2].counts;
        assert_eq!((unknown.attempts, unknown.failed), (2, 2));
        assert_eq!(unknown.failed_by_class, BTreeMap::from([(ConnectRefused, 2)]));

        let json = serde_json::to_value(&rows[2]).unwrap();
        assert_eq!(json["host"], serde_json::Value::Null);
        assert_eq!(json["failed_by_class"]["connect_refused"], 2);
        assert_eq!(json["failed_by_class"]["server_error"], 0);
    }

    #[test]
    fn rows_per_address_only_when_several_were_used() {
        let at = |addr: Option<&str>, o: Outcome| {
            let mut r = record(Some("1"), o, 2.0);
            r.addr = addr.map(|a| a.parse().unwrap());
            r
        };
        let mut one = Addresses::default();
        one.add(&at(Some("127.0.0.1:443"), Outcome::Ok));
        one.add(&at(None, Outcome::Failed(LocalError)));
        assert!(one.finish().is_empty());

        let mut two = Addresses::default();
        two.add(&at(Some("[::1]:443"), Outcome::Ok));
        two.add(&at(Some("127.0.0.1:443"), Outcome::Ok));
        two.add(&at(Some("[::1]:443"), Outcome::Failed(ConnectRefused)));
        two.add(&at(None, Outcome::Failed(LocalError)));
        let rows = two.finish();
        let addrs: Vec<Option<&str>> = rows.iter().map(|r| r.addr.as_deref()).collect();
        assert_eq!(addrs, [Some("127.0.0.1:443"), Some("[::1]:443"), None]);
        assert_eq!((rows[1].counts.attempts, rows[1].counts.ok, rows[1].counts.failed), (2, 1, 1));
        let json = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(json["addr"], "[::1]:443");
        assert_eq!(json["failed_by_class"]["connect_refused"], 1);
        assert_eq!(serde_json::from_value::<AddressRow>(json).unwrap(), rows[1]);
    }

    #[test]
    fn no_hosts_without_prefixed_worker_ids() {
        let mut h = Hosts::default();
        h.add(&record(Some("3"), Outcome::Ok, 2.0));
        h.add(&record(Some("single"), Outcome::Ok, 2.0));
        h.add(&record(None, Outcome::Failed(ConnectRefused), 1.0));
        assert!(h.finish().is_empty());
    }
}
