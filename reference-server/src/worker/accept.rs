//! What the accept loop does when `accept` fails: back off, and log at most
//! one line a second with how many failures it stands for.
//!
//! At fd exhaustion (EMFILE) `accept` fails at once, every time, and the
//! connection stays queued in the shared backlog (for another worker, or for
//! us once a descriptor is free). The old loop retried every 10 ms and
//! logged every failure: 2,691 lines in 15 s (issue 18). Pure, so the
//! policy is tested without exhausting anything.

use std::time::{Duration, Instant};

/// First pause after a failed accept; doubles per failure in a row.
pub const FIRST_DELAY: Duration = Duration::from_millis(10);
/// Longest pause: a freed descriptor is used within this.
pub const MAX_DELAY: Duration = Duration::from_millis(200);
/// At most one log line per this.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct AcceptErrors {
    in_a_row: u32,
    /// Failures not yet in a log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    /// One failed accept at `now`: the line to log, if one is due, and how
    /// long to wait before the next accept.
    pub fn failed(&mut self, err: &std::io::Error, now: Instant) -> (Option<String>, Duration) {
        let delay = FIRST_DELAY.saturating_mul(1 << self.in_a_row.min(5)).min(MAX_DELAY);
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        let due = self.last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
        if !due {
            return (None, delay);
        }
        let line = if self.unlogged == 1 {
            format!("accept failed: {err}")
        } else {
            format!("accept failed {} times since the last report: {err}", self.unlogged)
        };
        let hint = match err.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                "; out of file descriptors (see the open files limit at start-up)"
            }
            _ => "",
        };
        self.unlogged = 0;
        self.last_log = Some(now);
        (Some(format!("{line}{hint}; retrying in up to {} ms", MAX_DELAY.as_millis())), delay)
    }

    /// A successful accept: the line to log if failures went unreported.
    pub fn succeeded(&mut self) -> Option<String> {
        self.in_a_row = 0;
        if self.unlogged == 0 {
            return None;
        }
        let line = format!("{} more failed accepts since the last report; accepting again", self.unlogged);
        self.unlogged = 0;
        self.last_log = None;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_failures_logs_once_a_second_with_a_count_and_backs_off() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let (first, d1) = errors.failed(&emfile, t0);
        assert!(first.is_some_and(|l| l.starts_with("accept failed: ")));
        assert_eq!(d1, FIRST_DELAY);
        let mut lines = Vec::new();
        let mut delay = d1;
        // 3 s of failures, one every 5 ms.
        for i in 1..600u64 {
            let (line, d) = errors.failed(&emfile, t0 + Duration::from_millis(5 * i));
            lines.extend(line);
            delay = d;
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("failed 200 times"), "{lines:?}");
        assert_eq!(delay, MAX_DELAY);
        assert_eq!(
            errors.succeeded().as_deref(),
            Some("199 more failed accepts since the last report; accepting again")
        );
        assert_eq!(errors.succeeded(), None);
        assert_eq!(errors.failed(&emfile, t0 + Duration::from_secs(4)).1, FIRST_DELAY, "the backoff restarts");
    }
}
