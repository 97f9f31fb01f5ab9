//! The live progress line: on a terminal one line redrawn in place
//! (elapsed, shoppers active, req/s, p99, failures); otherwise a plain line
//! every few seconds, which reads well in CI logs. Not for the report.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the engine publishes for the progress line (refreshed by its ticker).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub elapsed_s: f64,
    pub active_shoppers: u64,
    pub arrived: u64,
    pub planned: u64,
    /// Attempts that ended in the last complete second.
    pub last_second_attempts: u64,
    pub last_second_p99_ms: f64,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    /// Largest schedule slip in the last complete second.
    pub last_second_slip_ms: f64,
}

/// Formats one progress line.
pub fn line(s: &Snapshot) -> String {
    let slip = if s.last_second_slip_ms > 10.0 {
        format!("  HARNESS LAGGING {:.0}ms", s.last_second_slip_ms)
    } else {
        String::new()
    };
    format!(
        "{:>6.1}s  shoppers {:>6} active, {}/{} arrived  {:>7} req/s  p99 {:>8.1}ms  failed {} (dropped {}){slip}",
        s.elapsed_s,
        s.active_shoppers,
        s.arrived,
        s.planned,
        s.last_second_attempts,
        s.last_second_p99_ms,
        s.failed_attempts,
        s.dropped,
    )
}

/// Prints the snapshot until the returned handle is aborted. `tty`: redraw
/// in place every 500 ms (on stderr, so stdout stays clean for scripts);
/// otherwise a plain line every `plain_every`.
pub fn spawn(snapshot: Arc<Mutex<Snapshot>>, plain_every: Duration) -> tokio::task::JoinHandle<()> {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { Duration::from_millis(500) } else { plain_every };
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(every);
        iv.tick().await;
        loop {
            iv.tick().await;
            let s = snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut err = std::io::stderr().lock();
            let _ = if tty { write!(err, "\r{}\x1b[K", line(&s)) } else { writeln!(err, "{}", line(&s)) };
            let _ = err.flush();
        }
    })
}

/// Ends a redrawn line so the next output starts on a fresh line.
pub fn finish() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_the_numbers_and_flags_lag() {
        let s = Snapshot {
            elapsed_s: 12.5,
            active_shoppers: 300,
            arrived: 1200,
            planned: 30000,
            last_second_attempts: 950,
            last_second_p99_ms: 81.25,
            attempts: 5000,
            failed_attempts: 3,
            dropped: 1,
            last_second_slip_ms: 0.5,
        };
        let l = line(&s);
        assert!(l.contains("12.5s") && l.contains("300 active") && l.contains("950 req/s"), "{l}");
        assert!(l.contains("p99     81.2ms") || l.contains("p99 81.2ms") || l.contains("81.2ms"), "{l}");
        assert!(l.contains("failed 3 (dropped 1)"), "{l}");
        assert!(!l.contains("LAGGING"));
        let l = line(&Snapshot { last_second_slip_ms: 40.0, ..s });
        assert!(l.contains("HARNESS LAGGING 40ms"), "{l}");
    }
}
