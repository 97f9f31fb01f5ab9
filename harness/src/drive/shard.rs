//! One scenario played by several processes: which shoppers a shard plays
//! (`--shard K/N`), the shared start instant (`--start-at T`) and what a
//! shard records about itself in `summary.json` (`shard`). docs/DISTRIBUTED.md
//! is the contract.
//!
//! Partition: shopper i belongs to shard `i mod N`. The schedule is built
//! for all shoppers (it is pure and cheap: arrival times, journey picks and
//! per-shopper seeds come from three streams of the scenario seed, and a
//! shopper's data picks and idempotency keys from its own seed) and then
//! filtered, so a shard replays exactly what the unsharded run gives its
//! shoppers. Round-robin by arrival order keeps each shard's share of every
//! stage of the arrival profile equal to within one shopper, which a split
//! into contiguous blocks would not (shard 0 would get the quiet ramp-up).
//!
//! Not for: merging the shards' folders (drive/merge.rs) or running the
//! faults (drive/chaos_only.rs).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::judge::summary::{ShardInfo, ShardRow};

use crate::scenario::{ConnectionModel, Gates, Scenario};
use crate::traffic::schedule::Schedule;

/// Shard `index` of `count` (0-based, as Kubernetes' JOB_COMPLETION_INDEX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N` with 0 <= K < N.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("--shard {s:?}: {why} (expected K/N with 0 <= K < N, e.g. 0/3)");
        let (k, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: u64 = k.trim().parse().map_err(|_| bad("K is not a whole number"))?;
        let count: u64 = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad("K must be less than N (shards are numbered from 0)"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether shopper `id` (0-based, arrival order) is this shard's.
    pub fn owns(&self, id: u64) -> bool {
        id % self.count == self.index
    }

    /// The schedule of this shard's shoppers: the full schedule's entries
    /// (ids, arrival times, journeys, seeds unchanged), filtered. The
    /// duration stays the full run's, so every shard shares one timeline.
    pub fn filter(&self, full: &Schedule) -> Schedule {
        Schedule {
            shoppers: full.shoppers.iter().filter(|p| self.owns(p.id)).copied().collect(),
            duration: full.duration,
        }
    }

    /// This shard's part of a total: `total / N`, the remainder going one
    /// each to the lowest shards, so the parts add up to the total; never 0
    /// (a pool needs a connection).
    pub fn split(&self, total: usize) -> usize {
        let (n, k) = (self.count as usize, self.index as usize);
        (total / n + usize::from(k < total % n)).max(1)
    }

    /// The scenario as this shard plays it: the keep-alive pool split
    /// across shards (a pool of 100 in 3 shards: 34, 33, 33).
    pub fn apply(&self, s: &mut Scenario) {
        if let ConnectionModel::Pool { size, .. } = &mut s.connections {
            *size = self.split(*size);
        }
    }
}

/// The scenario as a shard runs it: traffic only. Faults run once, in the
/// chaos runner; the audit and the gates once, in the merge; and a shard
/// never launches or stops the target (it may share it with other shards).
pub fn shard_only_traffic(s: &mut Scenario) {
    s.chaos.clear();
    s.audit = None;
    s.gates = Gates::none();
    s.target.launch = None;
    s.target.pid_file = None;
}

/// `--start-at`: Unix milliseconds or an RFC 3339 time in UTC
/// (`2026-11-27T09:00:00Z`, fractions allowed).
pub fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_millis(ms));
    }
    humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("--start-at {s:?}: {e} (expected Unix milliseconds or RFC 3339 in UTC, e.g. 2026-11-27T09:00:00Z)")
    })
}

/// Unix milliseconds of a wall-clock time (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as f64 / 1000.0).unwrap_or(0.0)
}

/// The run clock's zero for a run that starts at `at`: waits until then
/// and returns the monotonic instant that corresponds to `at`, so a process
/// that wakes late (or was started after `at`) plays on `at`'s clock and
/// records its lateness as schedule slip instead of shifting the schedule.
/// Also returns how late it really began, in ms (negative: early).
pub async fn wait_until(at: SystemTime) -> (Instant, f64) {
    let (now_wall, now) = (SystemTime::now(), Instant::now());
    let zero = match at.duration_since(now_wall) {
        Ok(ahead) => now + ahead,
        // Already past: the zero lies in the past on the monotonic clock.
        Err(e) => now.checked_sub(e.duration()).unwrap_or(now),
    };
    tokio::time::sleep_until(tokio::time::Instant::from_std(zero)).await;
    let offset_ms = unix_ms(SystemTime::now()) - unix_ms(at);
    (zero, (offset_ms * 1000.0).round() / 1000.0)
}

/// The scenario file's fingerprint: shards of different files refuse to merge.
pub fn scenario_hash(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(fnv_hex(&bytes))
}

/// 64-bit FNV-1a of the bytes, as hex: a fingerprint to tell files apart,
/// not a security measure (nobody is forging a scenario to fool a merge).
pub fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// This machine's name, for the shards table.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_spec_errors_name_the_flag_and_the_rule() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
        for bad in ["3/3", "1/0", "x/3", "1", "-1/3"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("--shard"), "{e}");
        }
    }

    #[test]
    fn pool_split_adds_up_and_gives_the_remainder_to_low_shards() {
        let parts: Vec<usize> = (0..3).map(|k| Shard { index: k, count: 3 }.split(100)).collect();
        assert_eq!(parts, vec![34, 33, 33]);
        assert_eq!((0..7).map(|k| Shard { index: k, count: 7 }.split(64)).sum::<usize>(), 64);
        assert_eq!(Shard { index: 5, count: 7 }.split(3), 1, "never an empty pool");
    }

    #[test]
    fn start_at_takes_unix_ms_and_rfc3339() {
        assert_eq!(parse_start_at("1500").unwrap(), UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(parse_start_at("1970-01-01T00:00:01.5Z").unwrap(), UNIX_EPOCH + Duration::from_millis(1500));
        assert!(parse_start_at("tomorrow").unwrap_err().contains("--start-at"));
    }
}
