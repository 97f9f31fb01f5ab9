//! Binding the public listener, shared by the master and the single process.
//! socket2 because std's `TcpListener::bind` hard-codes the backlog.
//! No SO_REUSEPORT: one socket, one accept queue shared by every worker, so a
//! worker that stops accepting leaves its queued connections to the others.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

/// The public listener: the one systemd passed by socket activation
/// (`LISTEN_FDS`; then `addr` and `backlog` are the .socket unit's
/// business), else bound here. The flag says it was passed.
pub fn public(addr: SocketAddr, backlog: i32) -> Result<(TcpListener, bool)> {
    match crate::systemd::activated_listener()? {
        Some(listener) => Ok((listener, true)),
        None => Ok((bind(addr, backlog)?, false)),
    }
}

/// Bind and listen on `addr` with `backlog`. The socket is close-on-exec;
/// the master clears that flag only in the worker it forks.
pub fn bind(addr: SocketAddr, backlog: i32) -> Result<TcpListener> {
    if backlog < 1 {
        bail!("--backlog {backlog}: must be at least 1");
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("creating a socket for {addr}"))?;
    // Lets a restarted master bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).context("setting SO_REUSEADDR")?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind the public address {addr} (in use? pick another --listen)"))?;
    socket.listen(backlog).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.into())
}

/// TEST ONLY (`--unsafe-reuseport`, defect 4): the master's socket. Bound
/// with SO_REUSEPORT, so it reserves the port (and resolves port 0) for the
/// workers' own SO_REUSEPORT listeners, but never listening: the kernel
/// spreads new connections over the *listening* members of the group, and
/// the master never accepts, so a listening master socket would be a member
/// whose share of the connections hangs in its queue forever. Bound but not
/// listening, it takes no connections; while no worker listens a client is
/// refused, and a worker's queue dies with its listener (the defect).
pub fn bind_reuseport_unlistened(addr: SocketAddr) -> Result<TcpListener> {
    Ok(reuseport_socket(addr)?.into())
}

/// TEST ONLY (`--unsafe-reuseport`): a worker's own listener in the group.
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> Result<TcpListener> {
    let socket = reuseport_socket(addr)?;
    socket.listen(backlog).with_context(|| format!("cannot listen on {addr} (SO_REUSEPORT)"))?;
    Ok(socket.into())
}

fn reuseport_socket(addr: SocketAddr) -> Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("creating a socket for {addr}"))?;
    socket.set_reuse_address(true).context("setting SO_REUSEADDR")?;
    socket.set_reuse_port(true).context("setting SO_REUSEPORT")?;
    socket.bind(&addr.into()).with_context(|| format!("cannot bind {addr} with SO_REUSEPORT"))?;
    Ok(socket)
}

/// Bind the admin address, refusing the public one.
pub fn bind_admin(admin: SocketAddr, public: SocketAddr) -> Result<TcpListener> {
    if admin == public && admin.port() != 0 {
        bail!("--admin {admin} is the public address; admin endpoints never share the public port");
    }
    TcpListener::bind(admin)
        .with_context(|| format!("cannot bind the admin address {admin} (in use? pick another --admin)"))
}

/// Whether `admin` may be bound: a loopback address always; any other only
/// with `--admin-public`, and then with a warning to log (Some). Anyone who
/// reaches the admin address reads `/audit`: every order, cart id and
/// idempotency key, with no authentication.
pub fn check_admin_exposure(admin: SocketAddr, public_ok: bool) -> Result<Option<String>> {
    if admin.ip().to_canonical().is_loopback() {
        return Ok(None);
    }
    let exposed = "/audit (every order, cart id and idempotency key), /metrics and /workers, with no authentication";
    if !public_ok {
        bail!(
            "--admin {admin} is not a loopback address: it would serve {exposed} to the network; \
             use 127.0.0.1:PORT (or [::1]:PORT), or add --admin-public if that is really meant"
        );
    }
    Ok(Some(format!("WARNING: --admin-public: the admin address {admin} serves {exposed} to anyone who can reach it")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_loopback_admin_needs_admin_public_and_then_warns() {
        for ok in ["127.0.0.1:9090", "127.9.9.9:0", "[::1]:9090", "[::ffff:127.0.0.1]:9090"] {
            assert_eq!(check_admin_exposure(ok.parse().unwrap(), false).ok(), Some(None), "{ok}");
        }
        for exposed in ["0.0.0.0:9090", "[::]:9090", "192.168.1.5:9090", "[::ffff:10.0.0.1]:9090"] {
            let err = check_admin_exposure(exposed.parse().unwrap(), false).unwrap_err().to_string();
            assert!(err.contains("--admin-public") && err.contains("/audit"), "{exposed}: {err}");
            let warning = check_admin_exposure(exposed.parse().unwrap(), true).unwrap();
            assert!(warning.is_some_and(|w| w.starts_with("WARNING")), "{exposed}");
        }
    }
}
