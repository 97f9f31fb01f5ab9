//! Starting a worker: fork+exec of the server binary with the master's own
//! arguments, the listener and one end of a socketpair inherited, ids in the
//! environment. Not for anything after the exec: see `pool` for the table.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::worker::{ENV_ID, ENV_IPC_FD, ENV_LISTEN_FD, ENV_SLOT};

/// Everything needed to start workers, captured once at master start.
pub struct Spawner {
    /// The binary's path, resolved at start-up. Not `/proc/self/exe`: that
    /// link keeps pointing at the old inode after the file is replaced, and
    /// a rolling restart must run what is on disk *now*.
    exe: PathBuf,
    args: Vec<OsString>,
    listen_fd: RawFd,
}

impl Spawner {
    pub fn new(listener: &TcpListener) -> Result<Self> {
        let exe = std::env::current_exe().context("finding this binary's path to re-exec workers")?;
        Ok(Self { exe, args: std::env::args_os().skip(1).collect(), listen_fd: listener.as_raw_fd() })
    }

    /// Start worker `id` in `slot`. Returns the child and the master's end of
    /// its IPC socket (close-on-exec, so later workers never inherit it).
    pub fn spawn(&self, id: u64, slot: usize) -> Result<(Child, UnixStream)> {
        let (ours, theirs) = UnixStream::pair().context("creating the worker's IPC socketpair")?;
        let ipc_fd = theirs.as_raw_fd();
        let listen_fd = self.listen_fd;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(ENV_ID, id.to_string())
            .env(ENV_SLOT, slot.to_string())
            .env(ENV_LISTEN_FD, listen_fd.to_string())
            .env(ENV_IPC_FD, ipc_fd.to_string())
            .stdin(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; fcntl(2) is one, and the closure allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for fd in [listen_fd, ipc_fd] {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting worker {id}: exec {}", self.exe.display()))?;
        // The child has its copy; ours must go, or the worker never sees EOF
        // when the master dies.
        drop(theirs);
        ours.set_nonblocking(true).context("making the IPC socket non-blocking")?;
        Ok((child, ours))
    }
}
