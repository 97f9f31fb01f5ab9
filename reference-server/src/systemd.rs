//! What systemd (and anything speaking its protocols) hands the server:
//! socket activation (`LISTEN_FDS`/`LISTEN_PID`, sd_listen_fds(3)) and the
//! notify socket (`NOTIFY_SOCKET`, sd_notify(3), with `WATCHDOG_USEC`).
//!
//! A few lines over std's `UnixDatagram` rather than a crate: the protocol
//! is one datagram of `KEY=VALUE` lines to a path or an abstract address,
//! and the master sends only a handful of them. Not for: reading the
//! environment anywhere else, or talking to systemd over D-Bus.

use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The first fd systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// Variables a worker must not see: they describe the master's deal with
/// systemd, and a worker acting on them would answer for the master.
pub const MASTER_ONLY_ENV: [&str; 6] =
    ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The listener passed by socket activation, if this process was given one:
/// `LISTEN_PID` must be our pid (the variables may have leaked from a parent
/// that was activated) and `LISTEN_FDS` exactly 1 (we serve one address).
pub fn activated_listener() -> Result<Option<TcpListener>> {
    let Some(pid) = std::env::var_os("LISTEN_PID") else {
        return Ok(None);
    };
    if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Ok(None);
    }
    let fds = std::env::var("LISTEN_FDS").context("LISTEN_PID is set but LISTEN_FDS is not")?;
    match fds.parse::<u32>() {
        Ok(1) => {}
        Ok(n) => bail!("LISTEN_FDS={n}: the server takes exactly one socket (one ListenStream= in the .socket unit)"),
        Err(_) => bail!("LISTEN_FDS={fds} is not a number"),
    }
    let fd = LISTEN_FDS_START;
    check_listening_tcp(fd)?;
    // systemd passes it inheritable; only the workers we fork may inherit
    // it (spawn.rs clears the flag for them alone).
    // SAFETY: fcntl on an fd number has no memory-safety preconditions.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error()).context("setting close-on-exec on the activated socket");
    }
    // SAFETY: fd 3 was passed to us by the activation protocol, checked to be
    // a listening TCP socket above, and nothing else in this process owns it.
    Ok(Some(unsafe { TcpListener::from_raw_fd(fd) }))
}

fn check_listening_tcp(fd: RawFd) -> Result<()> {
    let opt = |name: libc::c_int| -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for the duration of the call.
        let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&raw mut v).cast(), &raw mut len) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(v) }
    };
    let what = "the socket passed by systemd (fd 3)";
    let ty = opt(libc::SO_TYPE).with_context(|| format!("{what} is not a socket"))?;
    let domain = opt(libc::SO_DOMAIN).with_context(|| format!("reading the address family of {what}"))?;
    let listening = opt(libc::SO_ACCEPTCONN).with_context(|| format!("reading whether {what} listens"))?;
    if ty != libc::SOCK_STREAM || !matches!(domain, libc::AF_INET | libc::AF_INET6) || listening == 0 {
        bail!("{what} must be a listening TCP socket (ListenStream=<address:port>)");
    }
    Ok(())
}

/// The notify socket, if `NOTIFY_SOCKET` names one.
pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    pub fn from_env() -> Result<Option<Self>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let path = path.to_str().context("NOTIFY_SOCKET is not UTF-8")?.to_string();
        let addr = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            }
            None if path.starts_with('/') => std::os::unix::net::SocketAddr::from_pathname(&path),
            None => bail!("NOTIFY_SOCKET={path}: only a path or an @abstract name is supported"),
        }
        .with_context(|| format!("NOTIFY_SOCKET={path} is not a usable address"))?;
        let sock = UnixDatagram::unbound().context("creating the notify socket")?;
        sock.set_nonblocking(true).context("making the notify socket non-blocking")?;
        Ok(Some(Self { sock, addr }))
    }

    /// Send one state update (`READY=1`, `STATUS=...`, several lines at
    /// once). Non-blocking: a supervisor that stopped reading must not stall
    /// the master's loop; a lost update is only a status line.
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.sock.send_to_addr(state.as_bytes(), &self.addr).map(|_| ())
    }
}

/// How often to send `WATCHDOG=1`: half the `WATCHDOG_USEC` systemd set for
/// this process (sd_watchdog_enabled(3)), or None when no watchdog is on.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in µs, for `RELOADING=1`'s `MONOTONIC_USEC=` (systemd
/// 253+ wants it to tell this reload from an earlier one).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}
