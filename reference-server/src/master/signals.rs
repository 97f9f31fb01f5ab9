//! Signal handlers for the master: each only bumps a counter and writes a
//! byte to a self-pipe (async-signal-safe); the poll loop reads the pipe to
//! wake and then acts on the counters.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

/// The signals the master acts on, in the order it handles a batch.
pub const HANDLED: [Signal; 8] = [
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR2,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

static COUNTS: [AtomicUsize; HANDLED.len()] = [const { AtomicUsize::new(0) }; HANDLED.len()];
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

pub struct SignalInbox {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalInbox {
    /// Install the handlers. Call once, in the master only.
    pub fn install() -> Result<Self> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).context("creating the signal pipe")?;
        WAKE_FD.store(write.as_raw_fd(), Ordering::SeqCst);
        for (i, sig) in HANDLED.iter().enumerate() {
            let action = move || {
                COUNTS[i].fetch_add(1, Ordering::SeqCst);
                let fd = WAKE_FD.load(Ordering::SeqCst);
                // SAFETY: write(2) is async-signal-safe; a full pipe just
                // means a wake-up is already pending.
                unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
            };
            // SAFETY: the action only touches atomics and calls write(2).
            unsafe { signal_hook::low_level::register(*sig as i32, action) }
                .with_context(|| format!("installing a handler for {sig}"))?;
        }
        Ok(Self { read, _write: write })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Signals received since the last call, each with how many times.
    pub fn take(&self) -> Vec<(Signal, usize)> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
        HANDLED
            .iter()
            .enumerate()
            .filter_map(|(i, sig)| {
                let n = COUNTS[i].swap(0, Ordering::SeqCst);
                (n > 0).then_some((*sig, n))
            })
            .collect()
    }
}
