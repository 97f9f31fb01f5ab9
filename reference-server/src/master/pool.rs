//! The master's worker table: one entry per live worker process, its phase,
//! its IPC socket and its last reported counters. Pure bookkeeping: the
//! decisions (respawn, kill, roll) live in `master/mod.rs`.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ipc::{self, Counters, MasterMsg, WorkerMsg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Forked, not yet `ready`.
    Starting,
    /// Accepting connections.
    Ready,
    /// Told to `shutdown`; SIGKILL at `deadline`.
    Draining { since: Instant, deadline: Instant },
}

/// Why the master SIGKILLed a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    Hang,
    DrainTimeout,
    Immediate,
}

pub struct Worker {
    pub id: u64,
    pub slot: usize,
    pub pid: u32,
    pub child: Child,
    ipc: Option<UnixStream>,
    inbuf: Vec<u8>,
    pub started: Instant,
    pub ready_at: Option<Instant>,
    pub last_beat: Instant,
    pub phase: Phase,
    pub killed: Option<Kill>,
    /// The last cumulative counters it reported.
    pub counters: Counters,
    pub build_id: String,
    pub version: String,
    /// Stayed up for `--min-uptime` after `ready`: its slot's crash count reset.
    pub stable: bool,
    /// Draining without the master's order (why, e.g. "sigterm").
    pub self_drain: Option<String>,
    /// Sticky balancing: the master's end of the hand-off socket, and the
    /// connections waiting for room in it (the worker is not reading).
    pub handoff: Option<OwnedFd>,
    pub pending: VecDeque<(OwnedFd, u64)>,
}

/// What reading a worker's IPC socket produced.
pub struct Inbox {
    pub msgs: Vec<WorkerMsg>,
    pub bad: Vec<String>,
}

impl Worker {
    pub fn new(id: u64, slot: usize, child: Child, ipc: UnixStream, handoff: Option<OwnedFd>) -> Self {
        let now = Instant::now();
        Self {
            id,
            slot,
            pid: child.id(),
            child,
            ipc: Some(ipc),
            inbuf: Vec::new(),
            started: now,
            ready_at: None,
            last_beat: now,
            phase: Phase::Starting,
            killed: None,
            counters: Counters::default(),
            build_id: String::new(),
            version: String::new(),
            stable: false,
            self_drain: None,
            handoff,
            pending: VecDeque::new(),
        }
    }

    pub fn ipc(&self) -> Option<&UnixStream> {
        self.ipc.as_ref()
    }

    /// Serving or about to: not draining and not being killed. The worker a
    /// slot counts as its own.
    pub fn is_live(&self) -> bool {
        self.killed.is_none() && !matches!(self.phase, Phase::Draining { .. })
    }

    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// Read every complete message waiting on the socket, without blocking.
    pub fn read_ipc(&mut self) -> Inbox {
        let mut inbox = Inbox { msgs: Vec::new(), bad: Vec::new() };
        let Some(sock) = self.ipc.as_mut() else {
            return inbox;
        };
        let mut buf = [0u8; 8192];
        let mut closed = false;
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        for line in ipc::take_lines(&mut self.inbuf) {
            match serde_json::from_slice::<WorkerMsg>(&line) {
                Ok(msg) => inbox.msgs.push(msg),
                Err(e) => inbox.bad.push(format!("{e}: {}", String::from_utf8_lossy(&line))),
            }
        }
        if closed {
            // The exit itself is seen by waitpid; stop polling a dead socket.
            self.ipc = None;
        }
        inbox
    }

    /// Order a drain. The message is a few bytes on a socket the worker never
    /// fills from our side, so a non-blocking write cannot come up short.
    pub fn shutdown(&mut self, drain_timeout: Duration) {
        if let Some(sock) = self.ipc.as_mut() {
            let _ = sock.write_all(&ipc::encode(&MasterMsg::Shutdown));
        }
        let now = Instant::now();
        self.phase = Phase::Draining { since: now, deadline: now + drain_timeout };
    }

    /// It started draining on its own (a SIGTERM sent to it): no longer the
    /// slot's worker; the master still enforces the drain deadline.
    pub fn drains_itself(&mut self, reason: &str, drain_timeout: Duration) {
        if self.is_draining() {
            return;
        }
        let now = Instant::now();
        self.phase = Phase::Draining { since: now, deadline: now + drain_timeout };
        self.self_drain = Some(reason.to_string());
    }

    /// SIGKILL, remembering why.
    pub fn kill(&mut self, why: Kill) {
        self.killed = Some(why);
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    pub fn phase_name(&self) -> &'static str {
        match (self.killed, self.phase) {
            (Some(_), _) => "killed",
            (None, Phase::Starting) => "starting",
            (None, Phase::Ready) => "ready",
            (None, Phase::Draining { .. }) => "draining",
        }
    }

    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "slot": self.slot,
            "pid": self.pid,
            "state": self.phase_name(),
            "build_id": self.build_id,
            "version": self.version,
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "ready_ms": self.ready_at.map(|r| r.duration_since(self.started).as_millis() as u64),
            "last_heartbeat_ms_ago": self.last_beat.elapsed().as_millis() as u64,
            "requests": self.counters.requests,
            "in_flight": self.counters.in_flight,
            "connections": self.counters.connections,
        })
    }
}

/// A logical worker position. A slot keeps its crash-loop count across the
/// processes that fill it.
#[derive(Debug, Default)]
pub struct Slot {
    pub crashes: super::backoff::CrashLoop,
    /// No respawn before this instant (crash backoff).
    pub respawn_at: Option<Instant>,
    /// Why the slot's last worker failed to start, as it said (`failed`).
    pub last_failure: Option<String>,
}
