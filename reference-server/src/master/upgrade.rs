//! Master binary upgrade (SIGUSR2, as nginx, einhorn and shellflip do it):
//! replace the master itself without ever closing the listening socket.
//!
//! The old master fork+execs the binary on disk with its own arguments, as
//! it does for a worker, and the new master inherits the public listener,
//! the admin listener and one end of a socketpair (the upgrade channel), by
//! fd number in the environment (`RS_UPGRADE_*`). The new master starts its
//! own workers on the inherited listener; once every one is ready it sends
//! `ready` on the channel. The old master then tells the supervisor
//! (`MAINPID=`, `notify.rs`), answers `handed_over`, stops accepting admin
//! connections and stops gracefully (every old worker drains: shutdown,
//! in-flight requests finish, `Connection: close`), exiting 0. The new master
//! then writes `--pid-file` and speaks for the service.
//!
//! New workers under the new master, rather than handing the live workers'
//! IPC over: starting and draining workers already exist and are tested (a
//! rolling restart is the same two halves), while moving live workers would
//! mean moving each one's socketpair, counters, phase and timers between two
//! processes mid-flight. The cost is a moment with twice the workers.
//!
//! A new master that exits, closes the channel, or is not ready within
//! `--upgrade-timeout` is SIGKILLed (its workers see their IPC close and
//! drain themselves) and the old master goes on as before: a failed upgrade
//! changes nothing. Not for: carrying state over; the new master's metrics
//! start at zero (a counter reset, as after any restart of a process).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::pool::Phase;
use super::spawn::{Spawner, keep_across_exec};
use super::{Master, log};
use crate::{build_info, exit, ipc};

/// The old master's pid: only its child acts on the other variables (a
/// copy leaked into an unrelated process's environment names another
/// parent), the way `LISTEN_PID` guards socket activation.
pub const ENV_PARENT: &str = "RS_UPGRADE_PARENT";
pub const ENV_CHANNEL_FD: &str = "RS_UPGRADE_FD";
pub const ENV_LISTEN_FD: &str = "RS_UPGRADE_LISTEN_FD";
pub const ENV_ADMIN_FD: &str = "RS_UPGRADE_ADMIN_FD";
/// The old master's next worker id, so ids stay unique across the upgrade.
pub const ENV_NEXT_ID: &str = "RS_UPGRADE_NEXT_ID";
/// The old master's worker count, which SIGTTIN/SIGTTOU may have changed
/// since `--workers` was read: an upgrade keeps it, as a rolling restart does.
pub const ENV_TARGET: &str = "RS_UPGRADE_WORKERS";
/// How long a new master that closed the channel has to exit on its own.
const CLOSED_GRACE: Duration = Duration::from_secs(1);
/// Every variable of the hand-over; workers never see them.
pub const ENV: [&str; 6] = [ENV_PARENT, ENV_CHANNEL_FD, ENV_LISTEN_FD, ENV_ADMIN_FD, ENV_NEXT_ID, ENV_TARGET];

/// Variables that describe the old master's deal with systemd and name its
/// pid: the new master is not the one they were meant for. `NOTIFY_SOCKET`
/// and `WATCHDOG_USEC` stay (the new master speaks for the service later).
const OLD_MASTER_ONLY_ENV: [&str; 4] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID"];

/// Messages on the upgrade channel, one JSON line each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Msg {
    /// New -> old: every worker of the new master is ready.
    Ready { pid: u32, build_id: String },
    /// Old -> new: the old master drains its workers and leaves.
    HandedOver,
}

/// What a new master inherited from the old one.
pub struct Inherited {
    pub listener: TcpListener,
    pub admin: TcpListener,
    pub next_id: u64,
    /// The old master's worker count, if it said.
    pub target: Option<usize>,
    pub(super) handover: Handover,
}

impl Inherited {
    /// Some when this process is a new master started by a SIGUSR2 upgrade.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(parent) = std::env::var_os(ENV_PARENT) else {
            return Ok(None);
        };
        let parent: Option<u32> = parent.to_str().and_then(|p| p.parse().ok());
        if parent.is_none() || parent != u32::try_from(nix::unistd::getppid().as_raw()).ok() {
            return Ok(None);
        }
        let fd = |key: &str| -> Result<RawFd> {
            let v = std::env::var(key).with_context(|| format!("{ENV_PARENT} is set but {key} is not"))?;
            v.parse().with_context(|| format!("{key}={v} is not an fd number"))
        };
        let (listen_fd, admin_fd, chan_fd) = (fd(ENV_LISTEN_FD)?, fd(ENV_ADMIN_FD)?, fd(ENV_CHANNEL_FD)?);
        let next_id = std::env::var(ENV_NEXT_ID).ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let target = std::env::var(ENV_TARGET).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0);
        let listener = TcpListener::from(adopt(listen_fd, "the public listener")?);
        let admin = TcpListener::from(adopt(admin_fd, "the admin listener")?);
        for (l, what) in [(&listener, "public"), (&admin, "admin")] {
            l.local_addr()
                .with_context(|| format!("the inherited {what} listener (fd {}) is no socket", l.as_raw_fd()))?;
        }
        let chan = UnixStream::from(adopt(chan_fd, "the upgrade channel")?);
        chan.set_nonblocking(true).context("making the upgrade channel non-blocking")?;
        Ok(Some(Self {
            listener,
            admin,
            next_id,
            target,
            handover: Handover { chan: Some(chan), inbuf: Vec::new(), old_pid: parent.unwrap_or(0), sent_ready: false },
        }))
    }
}

/// Take ownership of an fd inherited across exec, making it close-on-exec
/// again (only the processes we start on purpose may inherit it).
fn adopt(fd: RawFd, what: &str) -> Result<std::os::fd::OwnedFd> {
    // SAFETY: fcntl on an fd number has no memory-safety preconditions; an
    // fd that is not open fails with EBADF.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("{what} (fd {fd}) was not inherited"));
    }
    // SAFETY: the old master passed this fd to us for this purpose, it is
    // open (checked above), and nothing else in this process owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The old master's side: the new master it started, until it is ready
/// (hand-over) or gone (failure).
pub(super) struct Upgrade {
    child: Child,
    pub(super) pid: u32,
    chan: UnixStream,
    inbuf: Vec<u8>,
    started: Instant,
    pub(super) deadline: Instant,
    /// SIGKILLed; waiting to reap it.
    killed: bool,
    /// It closed the channel: it is exiting (or broken); no more polling it.
    closed: bool,
}

/// What the old master's side saw this turn.
enum Event {
    Nothing,
    Ready {
        build_id: String,
    },
    /// Failed and SIGKILLed for this reason; reaped on a later turn.
    Killing(String),
    /// Gone (reaped), with how it ended.
    Gone(String),
}

impl Upgrade {
    fn start(spawner: &Spawner, admin_fd: RawFd, next_id: u64, target: usize, timeout: Duration) -> Result<Self> {
        let (ours, theirs) = UnixStream::pair().context("creating the upgrade channel")?;
        let (listen_fd, chan_fd) = (spawner.listen_fd(), theirs.as_raw_fd());
        let mut cmd = Command::new(spawner.exe());
        cmd.args(spawner.args())
            .env(ENV_PARENT, std::process::id().to_string())
            .env(ENV_CHANNEL_FD, chan_fd.to_string())
            .env(ENV_LISTEN_FD, listen_fd.to_string())
            .env(ENV_ADMIN_FD, admin_fd.to_string())
            .env(ENV_NEXT_ID, next_id.to_string())
            .env(ENV_TARGET, target.to_string())
            .env(crate::tls::ENV_TICKET_KEY, spawner.ticket_key())
            .stdin(Stdio::null());
        for var in OLD_MASTER_ONLY_ENV {
            cmd.env_remove(var);
        }
        keep_across_exec(&mut cmd, [listen_fd, admin_fd, chan_fd]);
        let child = cmd.spawn().with_context(|| format!("exec {}", spawner.exe().display()))?;
        drop(theirs);
        ours.set_nonblocking(true).context("making the upgrade channel non-blocking")?;
        let started = Instant::now();
        Ok(Self {
            pid: child.id(),
            child,
            chan: ours,
            inbuf: Vec::new(),
            started,
            deadline: started + timeout,
            killed: false,
            closed: false,
        })
    }

    fn kill(&mut self) {
        self.killed = true;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }

    fn poll(&mut self, timeout: Duration) -> Event {
        match self.child.try_wait() {
            Ok(Some(status)) => return Event::Gone(super::health::describe_status(status)),
            Ok(None) => {}
            Err(e) => return Event::Gone(format!("cannot be waited for: {e}")),
        }
        if self.killed {
            return Event::Nothing;
        }
        if !self.closed {
            let (msgs, closed) = read_msgs(&mut self.chan, &mut self.inbuf);
            if let Some(build_id) = msgs.into_iter().find_map(|m| match m {
                Msg::Ready { build_id, .. } => Some(build_id),
                Msg::HandedOver => None,
            }) {
                return Event::Ready { build_id };
            }
            if closed {
                // A process closes its fds before it can be reaped: give its
                // exit a moment to show, so the log says how it ended.
                self.closed = true;
                self.deadline = self.deadline.min(Instant::now() + CLOSED_GRACE);
            }
        }
        if Instant::now() < self.deadline {
            return Event::Nothing;
        }
        let why = if self.closed {
            format!("closed the upgrade channel but did not exit within {CLOSED_GRACE:?}")
        } else {
            format!("not ready within --upgrade-timeout {timeout:?}")
        };
        self.kill();
        Event::Killing(why)
    }
}

/// The new master's side: the channel to the old master until it handed over.
pub(super) struct Handover {
    chan: Option<UnixStream>,
    inbuf: Vec<u8>,
    pub(super) old_pid: u32,
    sent_ready: bool,
}

/// Read every complete message, without blocking; true if the peer closed.
fn read_msgs(chan: &mut UnixStream, inbuf: &mut Vec<u8>) -> (Vec<Msg>, bool) {
    let mut buf = [0u8; 1024];
    let mut closed = false;
    loop {
        match chan.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let msgs = ipc::take_lines(inbuf)
        .into_iter()
        .filter_map(|line| match serde_json::from_slice::<Msg>(&line) {
            Ok(m) => Some(m),
            Err(e) => {
                log(&format!("upgrade: bad message on the channel (ignored): {e}: {}", String::from_utf8_lossy(&line)));
                None
            }
        })
        .collect();
    (msgs, closed)
}

impl Master<'_> {
    /// SIGUSR2: start a new master from the binary on disk, unless one is
    /// starting already or the master is busy with something it must finish.
    pub(super) fn begin_upgrade(&mut self) {
        let busy = if self.stop.is_some() {
            Some("stopping".to_string())
        } else if let Some(u) = &self.upgrade {
            Some(format!("a master upgrade is already in progress (new master pid {})", u.pid))
        } else if let Some(h) = &self.handover {
            Some(format!("this master is itself an upgrade that master pid {} has not handed over yet", h.old_pid))
        } else if self.rolling.is_some() {
            Some("a rolling restart is in progress; send SIGUSR2 again after it ends".to_string())
        } else if self.cli.unsafe_reuseport {
            Some("--unsafe-reuseport has no shared listener to hand over".to_string())
        } else {
            None
        };
        if let Some(why) = busy {
            log(&format!("SIGUSR2 ignored: {why}"));
            return;
        }
        match Upgrade::start(&self.spawner, self.admin_fd, self.next_id, self.target, self.cli.upgrade_timeout) {
            Ok(u) => {
                log(&format!(
                    "upgrade begin: new master pid {} started (exec {}); it has {:?} to get {} workers ready",
                    u.pid,
                    self.spawner.exe().display(),
                    self.cli.upgrade_timeout,
                    self.target
                ));
                self.upgrade = Some(u);
            }
            Err(e) => log(&format!("upgrade failed: cannot start a new master: {e:#}; this master keeps serving")),
        }
    }

    /// A stop abandons an upgrade in progress: the new master is killed (its
    /// workers drain themselves) rather than left serving without a parent
    /// that knows about it.
    pub(super) fn abandon_upgrade(&mut self, why: &str) {
        if let Some(u) = self.upgrade.as_mut().filter(|u| !u.killed) {
            log(&format!("upgrade abandoned ({why}): SIGKILL to new master pid {}", u.pid));
            u.kill();
        }
    }

    /// Fds the loop polls for the upgrade: either side's channel.
    pub(super) fn upgrade_fds(&self) -> Vec<BorrowedFd<'_>> {
        let old = self.upgrade.as_ref().filter(|u| !u.killed && !u.closed).map(|u| u.chan.as_fd());
        let new = self.handover.as_ref().and_then(|h| h.chan.as_ref()).map(|c| c.as_fd());
        old.into_iter().chain(new).collect()
    }

    /// The upgrade deadline, for the loop's timer.
    pub(super) fn upgrade_due(&self) -> Option<Instant> {
        self.upgrade.as_ref().filter(|u| !u.killed).map(|u| u.deadline)
    }

    /// One loop turn of either side of an upgrade.
    pub(super) fn upgrade_turn(&mut self) {
        self.old_side();
        self.new_side();
    }

    fn old_side(&mut self) {
        let Some(u) = self.upgrade.as_mut() else {
            return;
        };
        let pid = u.pid;
        match u.poll(self.cli.upgrade_timeout) {
            Event::Nothing => {}
            Event::Killing(why) => {
                log(&format!("upgrade failed: new master pid {pid} {why}: SIGKILL; this master keeps serving"));
            }
            Event::Gone(how) => {
                let after = if u.killed { "after SIGKILL" } else { "before it was ready" };
                log(&format!(
                    "upgrade failed: new master pid {pid} exited ({how}) {after}, {} ms after it started; \
                     this master keeps serving (see its lines above for why)",
                    u.started.elapsed().as_millis()
                ));
                self.upgrade = None;
            }
            Event::Ready { build_id } => {
                let msg = ipc::encode(&Msg::HandedOver);
                // A few bytes into an empty socket: a non-blocking write
                // cannot come up short. If the new master vanished meanwhile
                // its exit says so next turn.
                if let Err(e) = u.chan.write_all(&msg) {
                    log(&format!("upgrade: cannot tell new master pid {pid} it took over ({e}); waiting for it"));
                    return;
                }
                log(&format!(
                    "upgrade: new master pid {pid} is ready (build {build_id}) after {} ms; handing over: \
                     this master drains its workers and exits",
                    u.started.elapsed().as_millis()
                ));
                // Not waited for: it outlives us, and our exit hands it to
                // init (or the nearest subreaper, e.g. systemd).
                self.upgrade = None;
                self.notify.hand_over(pid);
                self.handed_over = true;
                self.stop_graceful(exit::OK);
            }
        }
    }

    fn new_side(&mut self) {
        let Some(h) = self.handover.as_mut() else {
            return;
        };
        let ready = self.workers.iter().filter(|w| w.is_live() && w.phase == Phase::Ready).count();
        let Some(chan) = h.chan.as_mut() else {
            return;
        };
        if !h.sent_ready && self.stop.is_none() && ready >= self.target {
            let msg = ipc::encode(&Msg::Ready { pid: std::process::id(), build_id: build_info::build_id() });
            log(&format!("upgrade: all {ready} workers ready; telling the old master (pid {})", h.old_pid));
            // On failure the old master's side sees the channel close or
            // times out; nothing to add here.
            let _ = chan.write_all(&msg);
            h.sent_ready = true;
        }
        let (msgs, closed) = read_msgs(chan, &mut h.inbuf);
        let old_pid = h.old_pid;
        if msgs.contains(&Msg::HandedOver) {
            log(&format!(
                "upgrade end: this master (pid {}, build {}) serves now; the old master (pid {old_pid}) drains its workers",
                std::process::id(),
                build_info::build_id()
            ));
        } else if closed {
            // The old master died (it kills us, not the other way round, when
            // it gives up): its listener copies live on in us, so serve on.
            log(&format!(
                "upgrade: the old master (pid {old_pid}) went away before handing over; this master serves on"
            ));
        } else {
            return;
        }
        self.handover = None;
        self.notify.take_over();
        self.write_pid_file();
    }

    /// `--pid-file`: name this master as the current one.
    pub(super) fn write_pid_file(&self) {
        if let Some(path) = &self.cli.pid_file {
            if let Err(e) = crate::pid_file::write(path, std::process::id()) {
                log(&format!("{e:#}"));
            }
        }
    }
}
