//! Sub-millisecond sleeps for the schedule's intended send times.
//!
//! tokio's timer works in 1 ms ticks and rounds deadlines up, and an idle
//! worker wakes from epoll on a whole-millisecond timeout: together 1-2 ms of
//! lateness on every scheduled send, which latency measured from the
//! intended send time would then include (a 20 ms server would read 22 ms).
//! One thread sleeping on a condvar (futex timeouts are precise to tens of
//! microseconds) wakes the waiting futures instead. Only for the engine's
//! schedule; step timeouts use tokio's timer, where a millisecond does not matter.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The timer thread wakes at most once per `GRANULARITY`, firing everything
/// due: at high arrival rates one wake-up serves many sleeps instead of two
/// context switches per sleep. Sleeps end late by at most this much (never
/// early: an early send would understate latency).
pub const GRANULARITY: std::time::Duration = std::time::Duration::from_micros(200);

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// When the timer thread will next wake by itself (None: not until notified).
    planned_wake: Option<Instant>,
    /// It will not wake by itself before this (last wake + granularity).
    floor: Option<Instant>,
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

/// The timer thread, or `None` if it could not be started (then sleeps use
/// tokio's timer and are only millisecond-precise).
fn timer() -> Option<&'static Arc<Inner>> {
    static TIMER: OnceLock<Option<Arc<Inner>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let inner = Arc::new(Inner { state: Mutex::new(State::default()), cv: Condvar::new() });
            let t = inner.clone();
            std::thread::Builder::new().name("harness-timer".into()).spawn(move || run(&t)).ok().map(|_| inner)
        })
        .as_ref()
}

fn run(t: &Inner) {
    let mut st = t.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while st.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = st.heap.pop() {
                due.push(e.waker);
            }
        }
        if !due.is_empty() {
            // Wake outside the lock: a woken task may register again at once.
            drop(st);
            for w in due.drain(..) {
                w.wake();
            }
            st = t.state.lock().unwrap_or_else(|p| p.into_inner());
            st.floor = Some(now + GRANULARITY);
            continue;
        }
        let floor = st.floor.unwrap_or(now);
        let next = st.heap.peek().map(|Reverse(e)| e.at.max(floor));
        st.planned_wake = next;
        st = match next {
            None => t.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
            Some(at) => t.cv.wait_timeout(st, at.saturating_duration_since(now)).unwrap_or_else(|p| p.into_inner()).0,
        };
    }
}

/// Completes at `at` (within tens of microseconds), or at once if `at` has passed.
pub fn sleep_until(at: Instant) -> SleepUntil {
    SleepUntil { at, registered: false, fallback: None }
}

pub struct SleepUntil {
    at: Instant,
    registered: bool,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for SleepUntil {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let Some(t) = timer() else {
            let at = self.at;
            let sleep = self.fallback.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
            return sleep.as_mut().poll(cx);
        };
        if !self.registered {
            self.registered = true;
            let mut st = t.state.lock().unwrap_or_else(|p| p.into_inner());
            // Wake the timer thread only if it would otherwise wake too late.
            let wake_at = st.floor.map_or(self.at, |f| self.at.max(f));
            let notify = st.planned_wake.is_none_or(|p| wake_at < p);
            if notify {
                st.planned_wake = Some(wake_at);
            }
            st.seq += 1;
            let seq = st.seq;
            st.heap.push(Reverse(Entry { at: self.at, seq, waker: cx.waker().clone() }));
            drop(st);
            if notify {
                t.cv.notify_one();
            }
        } else {
            // Woken early (spurious poll): register again with the current waker.
            self.registered = false;
            return self.poll(cx);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_close_to_the_deadline_and_in_order() {
        let start = Instant::now();
        let mut worst = Duration::ZERO;
        for ms in [3u64, 1, 7, 2] {
            let at = Instant::now() + Duration::from_millis(ms);
            sleep_until(at).await;
            let late = Instant::now().saturating_duration_since(at);
            worst = worst.max(late);
            assert!(Instant::now() >= at);
        }
        // Never early (above); late only by scheduling: a hang detector, not a
        // speed test (typically 1-2 ms; a machine busy with builds made it 5+).
        assert!(worst < Duration::from_millis(100), "{worst:?}");
        sleep_until(start).await; // in the past: immediate
    }
}
