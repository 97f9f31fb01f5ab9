//! Binding the public listener, shared by the master and the single process.
//! socket2 because std's `TcpListener::bind` hard-codes the backlog.
//! No SO_REUSEPORT: one socket, one accept queue shared by every worker, so a
//! worker that stops accepting leaves its queued connections to the others.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

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

/// Bind the admin address, refusing the public one.
pub fn bind_admin(admin: SocketAddr, public: SocketAddr) -> Result<TcpListener> {
    if admin == public && admin.port() != 0 {
        bail!("--admin {admin} is the public address; admin endpoints never share the public port");
    }
    TcpListener::bind(admin)
        .with_context(|| format!("cannot bind the admin address {admin} (in use? pick another --admin)"))
}
