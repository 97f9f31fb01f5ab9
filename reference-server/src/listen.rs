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
