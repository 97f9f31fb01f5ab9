//! Sticky balancing in the master (`--balance sticky`): accept on the
//! listener (non-blocking, from the poll loop), route each connection by its
//! client IP to a slot (`handoff::choose`) and pass it to the slot's serving
//! worker. The serving worker of a slot is its newest *ready* live worker:
//! during a rolling restart the replacement takes the slot's new connections
//! as soon as it is ready; while a slot has no ready worker (crashed, being
//! respawned) its clients go to a fallback slot and come back once the
//! replacement is ready. Connections the master could not pass yet wait in
//! the worker's `pending` queue; those of a worker that stops serving
//! (drains, is killed, exits) are routed again, never dropped by the master.

use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;

use super::Master;
use super::pool::Phase;
use crate::handoff;
use crate::metrics::SlotLabel;

/// Connections accepted per loop wake-up at most, so a flood cannot starve
/// the master's other work (signals, IPC, timers).
const ACCEPT_BATCH: usize = 256;

impl Master<'_> {
    /// The worker that gets slot `slot`'s new connections, if any is ready.
    fn serving(&self, slot: usize) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.slot == slot && w.is_live() && w.phase == Phase::Ready && w.handoff.is_some())
            .max_by_key(|(_, w)| w.id)
            .map(|(i, _)| i)
    }

    /// Whether the master should poll the listener now: sticky, not
    /// stopping, and some worker can take a connection (otherwise they wait
    /// in the kernel's backlog, as they would with the shared listener).
    pub(super) fn accepting(&self) -> Option<&TcpListener> {
        let l = self.sticky.as_ref()?;
        if self.stop.is_some() || !(0..self.target).any(|s| self.serving(s).is_some()) {
            return None;
        }
        Some(l)
    }

    /// Accept what is waiting, route it and everything orphaned, and push
    /// pending connections into the hand-off sockets.
    pub(super) fn balance(&mut self) {
        if self.sticky.is_none() {
            return;
        }
        // Connections queued for a worker that no longer serves.
        for w in self.workers.iter_mut().filter(|w| !w.is_live() || w.phase != Phase::Ready) {
            self.orphans.extend(w.pending.drain(..));
        }
        let mut fresh = Vec::new();
        if let Some(l) = self.accepting() {
            for _ in 0..ACCEPT_BATCH {
                match l.accept() {
                    Ok((stream, peer)) => {
                        let key = handoff::client_key(peer, self.cli.bench_sticky_by_port);
                        fresh.push((OwnedFd::from(stream), key));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: the rest stays in the backlog.
                        super::log(&format!("sticky: accept failed: {e}"));
                        break;
                    }
                }
            }
        }
        let mut todo = std::mem::take(&mut self.orphans);
        todo.extend(fresh);
        if !todo.is_empty() {
            let ready: Vec<bool> = (0..self.target).map(|s| self.serving(s).is_some()).collect();
            for (fd, key) in todo {
                let slot = handoff::choose(key, self.target, &ready);
                if slot.is_some_and(|s| s != handoff::jump_hash(key, self.target)) {
                    self.metrics.fallbacks.inc();
                }
                match slot.and_then(|s| self.serving(s)) {
                    Some(i) => self.workers[i].pending.push_back((fd, key)),
                    // Nobody ready: keep it until someone is.
                    None => self.orphans.push((fd, key)),
                }
            }
        }
        for w in self.workers.iter_mut().filter(|w| !w.pending.is_empty()) {
            let Some(sock) = w.handoff.as_ref() else {
                continue;
            };
            while let Some((fd, _)) = w.pending.front() {
                match handoff::send_fd(sock.as_fd(), fd) {
                    // Our copy closes here; the worker has its own.
                    Ok(()) => {
                        drop(w.pending.pop_front());
                        self.metrics.handoffs.get_or_create(&SlotLabel { slot: w.slot as u32 }).inc();
                    }
                    Err(Errno::EINTR) => continue,
                    // Full (EAGAIN) or the worker is dying (EPIPE...): retry
                    // later, or re-route once it is no longer serving.
                    Err(_) => break,
                }
            }
        }
    }

    /// Hand-off sockets with connections waiting for room (poll POLLOUT).
    pub(super) fn handoff_blocked(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.workers.iter().filter(|w| !w.pending.is_empty()).filter_map(|w| w.handoff.as_ref().map(|s| s.as_fd()))
    }

    /// Keep the connections of a worker that exited, to route them again.
    pub(super) fn adopt_pending(&mut self, pending: impl IntoIterator<Item = (OwnedFd, u64)>) {
        self.orphans.extend(pending);
    }
}
