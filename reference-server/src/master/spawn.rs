//! Starting a worker: fork+exec of the server binary with the master's own
//! arguments, the listener and one end of a socketpair inherited, ids in the
//! environment. Not for anything after the exec: see `pool` for the table.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::handoff;
use crate::worker::{ENV_HANDOFF_FD, ENV_ID, ENV_IPC_FD, ENV_LISTEN_FD, ENV_SLOT};

/// Everything needed to start workers, captured once at master start.
pub struct Spawner {
    /// The binary's path, resolved at start-up. Not `/proc/self/exe`: that
    /// link keeps pointing at the old inode after the file is replaced, and
    /// a rolling restart must run what is on disk *now*.
    exe: PathBuf,
    args: Vec<OsString>,
    listen_fd: RawFd,
    /// Sticky balancing: workers get connections over a hand-off socket
    /// instead of the listener, which they never see.
    sticky: bool,
    /// The cluster's TLS session-ticket key, hex (`tls::ENV_TICKET_KEY`):
    /// every worker seals and opens tickets with it, so a session resumes
    /// on any worker and across rolling restarts.
    ticket_key: String,
}

impl Spawner {
    pub fn new(listener: &TcpListener, sticky: bool) -> Result<Self> {
        let exe = std::env::current_exe().context("finding this binary's path to re-exec workers")?;
        // A new master (an upgrade) keeps the old one's key: sessions survive.
        let ticket_key = crate::tls::TicketKey::from_env_or_generate()?.to_hex();
        Ok(Self {
            exe,
            args: std::env::args_os().skip(1).collect(),
            listen_fd: listener.as_raw_fd(),
            sticky,
            ticket_key,
        })
    }

    /// The cluster's TLS session-ticket key (hex), for a new master.
    pub fn ticket_key(&self) -> &str {
        &self.ticket_key
    }

    /// The binary's path, as resolved at start-up.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The master's own arguments, which workers and a new master get.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The public listener's fd.
    pub fn listen_fd(&self) -> RawFd {
        self.listen_fd
    }

    /// Start worker `id` in `slot`. Returns the child, the master's end of
    /// its IPC socket and, when sticky, of its hand-off socket (both
    /// close-on-exec, so later workers never inherit them).
    pub fn spawn(&self, id: u64, slot: usize) -> Result<(Child, UnixStream, Option<OwnedFd>)> {
        let (ours, theirs) = UnixStream::pair().context("creating the worker's IPC socketpair")?;
        let ipc_fd = theirs.as_raw_fd();
        let handoff = if self.sticky {
            Some(handoff::pair().context("creating the worker's hand-off socketpair")?)
        } else {
            None
        };
        // The fds the worker inherits: -1 for none (no allocation after fork).
        let (listen_fd, handoff_fd) = match &handoff {
            Some((_, theirs)) => (-1, theirs.as_raw_fd()),
            None => (self.listen_fd, -1),
        };
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(ENV_ID, id.to_string())
            .env(ENV_SLOT, slot.to_string())
            .env(ENV_IPC_FD, ipc_fd.to_string())
            .env(crate::tls::ENV_TICKET_KEY, &self.ticket_key)
            .stdin(Stdio::null());
        for var in crate::systemd::MASTER_ONLY_ENV.iter().chain(&super::upgrade::ENV) {
            cmd.env_remove(var);
        }
        if handoff.is_some() {
            cmd.env(ENV_HANDOFF_FD, handoff_fd.to_string());
        } else {
            cmd.env(ENV_LISTEN_FD, listen_fd.to_string());
        }
        keep_across_exec(&mut cmd, [listen_fd, ipc_fd, handoff_fd]);
        let child = cmd.spawn().with_context(|| format!("starting worker {id}: exec {}", self.exe.display()))?;
        // The child has its copy; ours must go, or the worker never sees EOF
        // when the master dies.
        drop(theirs);
        ours.set_nonblocking(true).context("making the IPC socket non-blocking")?;
        Ok((child, ours, handoff.map(|(ours, _theirs)| ours)))
    }
}

/// Let `cmd`'s child inherit `fds` (-1: none) across its exec by clearing
/// close-on-exec on just those, after the fork: everything else this process
/// holds stays close-on-exec.
pub fn keep_across_exec(cmd: &mut Command, fds: [RawFd; 3]) {
    // SAFETY: between fork and exec only async-signal-safe calls are
    // allowed; fcntl(2) is one, and the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in fds.into_iter().filter(|&fd| fd >= 0) {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
