//! Crash-loop protection for one worker slot.
//!
//! A worker that exits within `min_uptime` of starting is an early crash.
//! Early crash number k (1-based) delays the next respawn by
//! `base * 2^(k-1)`, capped at 10 s: with the default 100 ms base,
//! 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10 s. After `max_crashes` early crashes
//! in a row the master gives up (exit code 3). A crash after a long uptime
//! respawns at once and starts the count again; so does a worker that stays
//! up for `min_uptime` after it was ready.

use std::time::Duration;

pub const MAX_DELAY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Respawn after this delay.
    Respawn(Duration),
    /// Too many early crashes in a row.
    GiveUp,
}

#[derive(Debug, Clone, Default)]
pub struct CrashLoop {
    pub early_crashes: u32,
}

impl CrashLoop {
    /// Record an unexpected exit after `uptime`.
    pub fn on_crash(&mut self, uptime: Duration, min_uptime: Duration, base: Duration, max_crashes: u32) -> Verdict {
        if uptime >= min_uptime {
            self.early_crashes = 0;
            return Verdict::Respawn(Duration::ZERO);
        }
        self.early_crashes += 1;
        if self.early_crashes >= max_crashes {
            return Verdict::GiveUp;
        }
        let factor = 1u32.checked_shl(self.early_crashes - 1).unwrap_or(u32::MAX);
        Verdict::Respawn(base.saturating_mul(factor).min(MAX_DELAY))
    }

    pub fn on_stable(&mut self) {
        self.early_crashes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_then_gives_up() {
        let mut c = CrashLoop::default();
        let base = MS(100);
        let delays: Vec<_> = (0..7).map(|_| c.on_crash(MS(10), MS(2000), base, 8)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400].map(|ms| Verdict::Respawn(MS(ms))));
        assert_eq!(c.on_crash(MS(10), MS(2000), base, 8), Verdict::GiveUp);
    }

    #[test]
    fn caps_and_resets() {
        let mut c = CrashLoop::default();
        for _ in 0..20 {
            if let Verdict::Respawn(d) = c.on_crash(MS(1), MS(2000), MS(100), 100) {
                assert!(d <= MAX_DELAY);
            }
        }
        assert_eq!(c.on_crash(MS(5000), MS(2000), MS(100), 100), Verdict::Respawn(Duration::ZERO));
        assert_eq!(c.early_crashes, 0);
    }
}
