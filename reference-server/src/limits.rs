//! The open-file limit. Every connection is a file descriptor; at the soft
//! `nofile` limit (often 1024) `accept` fails with EMFILE while the hard
//! limit would allow far more. The master (or the single process) raises
//! its soft limit to the hard one at start-up, before it forks a worker, so
//! the workers inherit it, and says both in its first log line.
//!
//! Not for: deciding how many connections a run needs (the harness checks
//! its own limits before a run).

use std::fmt;

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// The `nofile` limits after start-up, and what the soft one was before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nofile {
    pub soft: u64,
    pub hard: u64,
    pub was: u64,
    /// Why the soft limit could not be raised, if it could not.
    pub error: Option<String>,
}

/// Raise the soft `nofile` limit to the hard limit (to the kernel's
/// `fs.nr_open` when the hard limit is unlimited, which Linux refuses).
pub fn raise_nofile() -> Nofile {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => return Nofile { soft: 0, hard: 0, was: 0, error: Some(format!("getrlimit: {e}")) },
    };
    let want = if hard == RLIM_INFINITY { nr_open().unwrap_or(soft).max(soft) } else { hard };
    if want <= soft {
        return Nofile { soft, hard, was: soft, error: None };
    }
    match setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
        Ok(()) => Nofile { soft: want, hard, was: soft, error: None },
        Err(e) => Nofile { soft, hard, was: soft, error: Some(format!("setrlimit to {want}: {e}")) },
    }
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

fn limit(n: u64) -> String {
    if n == RLIM_INFINITY { "unlimited".into() } else { n.to_string() }
}

impl fmt::Display for Nofile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "open files limit: soft {}", limit(self.soft))?;
        if self.was != self.soft {
            write!(f, " (raised from {})", limit(self.was))?;
        }
        write!(f, ", hard {}", limit(self.hard))?;
        if let Some(e) = &self.error {
            write!(f, " (could not raise the soft limit: {e})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_soft_limit_reaches_the_hard_limit_and_says_both() {
        let n = raise_nofile();
        assert!(n.error.is_some() || n.soft == n.hard || n.hard == RLIM_INFINITY, "{n:?}");
        let line = Nofile { soft: 20000, hard: 20000, was: 1024, error: None }.to_string();
        assert_eq!(line, "open files limit: soft 20000 (raised from 1024), hard 20000");
    }
}
