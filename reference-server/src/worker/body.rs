//! A deadline on reading a request body (`--body-timeout`), and the drain's
//! cut-off for a body that stopped arriving.
//!
//! hyper's `header_read_timeout` covers the request head only; once the head
//! is in, a client that never finishes its body held the request (and so the
//! connection, and a draining worker) forever: issue 18, item 1 measured one
//! rolling restart at 60 s, two drain timeouts and two SIGKILLs, behind eight
//! such clients.
//!
//! Why a whole-body deadline and not a minimum transfer rate: bodies here are
//! small (`--max-body`, 16 KiB by default), so even a 2 KB/s link sends the
//! largest one in 8 s, well inside the default 10 s; one number bounds, to
//! the second, how long any request can sit waiting for its body, which is
//! what a drain needs; and a rate rule has to pick a window, and a client
//! trickling just above the rate holds the request for max-body / rate.
//!
//! During a drain a body that is still *arriving* keeps its deadline (the
//! client is doing nothing wrong), but one that made no progress for
//! [`DRAIN_STALL`] is ended at once, so a stalled upload costs a drain about a
//! second instead of the whole body timeout.
//!
//! Not for: the request head (hyper's header timeout) or idle keep-alive
//! connections (`conn.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// While draining, a body with no new byte for this long is ended (408).
pub const DRAIN_STALL: Duration = Duration::from_secs(1);

/// Why a body was cut short; the service answers 408 with this message.
pub type Expired = Arc<OnceLock<String>>;

/// The error the handler sees instead of the rest of the body: a timeout
/// (also recorded in `Expired`) or the connection's own body error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

/// A request body that ends with [`BodyError`] at its deadline, or when it
/// stalls during a drain, and records why in `expired`.
pub struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Armed when the drain starts; pushed back by every frame that arrives.
    stall: Option<Pin<Box<Sleep>>>,
    last_progress: Instant,
    expired: Expired,
    finished: bool,
}

impl TimedBody {
    /// `timeout` counts from now (the request head has just been parsed).
    pub fn new(inner: Incoming, timeout: Duration, drain: CancellationToken, expired: Expired) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            deadline: Box::pin(sleep_until(now + timeout)),
            drain: Box::pin(drain.cancelled_owned()),
            stall: None,
            last_progress: now,
            expired,
            finished: false,
        }
    }

    fn expire(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.finished = true;
        let _ = self.expired.set(why.clone());
        Poll::Ready(Some(Err(BodyError(why))))
    }
}

/// Wrap `body` unless it is already complete (no body, or `Content-Length: 0`),
/// which costs nothing and needs no timers.
pub fn limit(body: Incoming, timeout: Duration, drain: &CancellationToken) -> (axum::body::Body, Option<Expired>) {
    if body.is_end_stream() {
        return (axum::body::Body::new(body), None);
    }
    let expired = Expired::default();
    let timed = TimedBody::new(body, timeout, drain.clone(), Arc::clone(&expired));
    (axum::body::Body::new(timed.map_err(axum::Error::new)), Some(expired))
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return match frame {
                None => {
                    this.finished = true;
                    Poll::Ready(None)
                }
                // A broken body (client reset, bad chunk) is the handler's
                // usual body error, not a timeout.
                Some(Err(e)) => {
                    this.finished = true;
                    Poll::Ready(Some(Err(BodyError(format!("reading the request body: {e}")))))
                }
                Some(Ok(frame)) => {
                    this.last_progress = Instant::now();
                    if let Some(stall) = &mut this.stall {
                        stall.as_mut().reset(this.last_progress + DRAIN_STALL);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            };
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let why = format!("request body not complete within --body-timeout {:?}", this.timeout);
            return this.expire(why);
        }
        if this.stall.is_none() && this.drain.as_mut().poll(cx).is_ready() {
            this.stall = Some(Box::pin(sleep_until(this.last_progress + DRAIN_STALL)));
        }
        let stalled = this.stall.as_mut().is_some_and(|stall| stall.as_mut().poll(cx).is_ready());
        if stalled {
            let why = format!("request body stalled for {DRAIN_STALL:?} while the server drains");
            return this.expire(why);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
