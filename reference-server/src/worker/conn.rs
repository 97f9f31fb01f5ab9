//! One HTTP/1.1 connection: hyper serves it, we decide when it may close.
//!
//! hyper's own graceful shutdown closes a keep-alive connection that is idle
//! *from its point of view*, which includes one whose next request is already
//! in the socket buffer but not yet read: that client gets a zero-byte EOF.
//! So we never ask hyper to shut a connection down. A connection ends when
//! the client closes it, when a response carried `Connection: close` (every
//! response sent while draining does), or when it has been idle with nothing
//! in flight for the keep-alive timeout, the same rule in and out of a drain.
//! Clients whose idle timeout is shorter than ours never race that close.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Per-connection bookkeeping shared by the IO wrapper and the service.
#[derive(Debug)]
pub struct ConnState {
    epoch: Instant,
    last_activity_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl ConnState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), last_activity_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// True when nothing is in flight and no byte moved for `timeout`.
    pub fn idle_expired(&self, timeout: Duration) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) >= timeout
    }

    /// True when no request is in flight right now (whatever the idle time).
    pub fn nothing_in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Marks a request in flight until the guard (held by the response body) drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// A request in flight on its connection; dropped when hyper has finished
/// with the response body, so a long body is never cut by the idle rule.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that records when bytes last moved, and sends hyper's own
/// error answers in the API's shape (`auto_response.rs`). Generic over the
/// stream, not boxed: a plain connection is a `Tracked<TcpStream>` exactly as
/// before TLS existed; a TLS one wraps the decrypted side (the rewrite works
/// on HTTP bytes, so it must sit above TLS).
pub struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
    worker_id: String,
    /// Our replacement for a hyper error answer, not yet written.
    pending: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Tracked<S> {
    pub fn new(inner: S, state: Arc<ConnState>, worker_id: String) -> Self {
        state.touch();
        Self { inner, state, worker_id, pending: Vec::new() }
    }

    /// Write out `pending` before anything else.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
            self.state.touch();
        }
        Poll::Ready(Ok(()))
    }

    /// If `buf` starts hyper's own error answer, take it (reporting its
    /// length as written) and queue ours instead.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if !self.state.nothing_in_flight() {
            return None;
        }
        let (ours, used) = super::auto_response::rewrite(buf, &self.worker_id)?;
        self.pending = ours;
        // Whatever does not fit now goes out on the next write, flush or shutdown.
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(used)),
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() != before {
            this.state.touch();
        }
        res
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(res) = this.poll_rewrite(cx, buf) {
            return res;
        }
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.state.touch();
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        // hyper writes a response head as one buffer, so its error answer
        // is the whole of the first one.
        let first = bufs.iter().find(|b| !b.is_empty());
        if let Some(res) = first.and_then(|first| this.poll_rewrite(cx, first)) {
            return res;
        }
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.state.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_blocks_idle_expiry() {
        let s = ConnState::new();
        let guard = s.begin();
        assert!(!s.idle_expired(Duration::ZERO), "a request in flight is never idle");
        drop(guard);
        assert!(s.idle_expired(Duration::ZERO));
        assert!(!s.idle_expired(Duration::from_secs(60)));
    }
}
