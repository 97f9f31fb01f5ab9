//! Sub-millisecond sleeps for the schedule's intended send times.
//!
//! tokio's timer works in 1 ms ticks and rounds deadlines up, and an idle
//! worker wakes from epoll on a whole-millisecond timeout: together 1-2 ms of
//! lateness on every scheduled send, which latency measured from the
//! intended send time would then include (a 20 ms server would read 22 ms).
//! A timerfd (nanosecond deadlines) registered with the runtime's own
//! reactor wakes the waiting futures instead: its expiry wakes the worker's
//! epoll like a socket does, so a wake-up costs no thread hop. (An earlier
//! version slept on a condvar in a thread of its own: every batch of
//! arrivals then took two or three extra context switches, about 65 ms of
//! CPU a second at 2,000 batches a second, more than the requests' own
//! work at 17,000 requests a second; docs/PERFORMANCE.md.)
//!
//! One timer per thread that sleeps (a worker of the runtime, or the thread
//! of a current-thread runtime), driven by a task on that runtime; a timer
//! whose runtime has shut down is replaced on the next sleep. Only for the
//! engine's schedule; step timeouts use tokio's timer, where a millisecond
//! does not matter. The runtime must have IO enabled (the engine's does: it
//! has sockets); if a timerfd cannot be made (no descriptor left), sleeps
//! fall back to tokio's timer and are millisecond-precise.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

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

/// The timer fires at most once per `GRANULARITY`, firing everything due:
/// at high arrival rates one wake-up serves many sleeps. Sleeps end late by
/// at most this much (never early: an early send would understate latency).
pub const GRANULARITY: Duration = Duration::from_micros(200);

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    /// When the timerfd is armed to expire (None: disarmed).
    armed: Option<Instant>,
    /// It is not armed before this (last expiry + granularity).
    floor: Option<Instant>,
    /// The driving task is gone (its runtime shut down): sleep elsewhere.
    dead: bool,
}

/// A timerfd as tokio's AsyncFd wants it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct Timer {
    state: Mutex<State>,
    fd: AsyncFd<Fd>,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms the timerfd for `at` (relative to `now`; a deadline already
    /// passed expires at once: a zero would disarm it).
    fn arm(&self, st: &mut State, at: Instant, now: Instant) {
        let d = at.saturating_duration_since(now).max(Duration::from_nanos(1));
        // A failed settime (it cannot fail for a valid fd and time) would
        // leave sleepers waiting: the timer is dead, and its sleepers are
        // woken to register on a fresh one (waking only schedules them).
        match self.fd.get_ref().0.set(Expiration::OneShot(TimeSpec::from_duration(d)), TimerSetTimeFlags::empty()) {
            Ok(()) => st.armed = Some(at),
            Err(_) => {
                st.dead = true;
                st.heap.drain().for_each(|Reverse(e)| e.waker.wake());
            }
        }
    }
}

/// Marks the timer dead when its driving task is dropped (runtime shutdown).
struct DeadOnDrop(Arc<Timer>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.dead = true;
        // Whoever still sleeps on it is woken to sleep elsewhere.
        let wakers: Vec<Waker> = st.heap.drain().map(|Reverse(e)| e.waker).collect();
        drop(st);
        wakers.into_iter().for_each(Waker::wake);
    }
}

async fn drive(guard: DeadOnDrop) {
    let t = &guard.0;
    let mut due = Vec::new();
    loop {
        let Ok(mut ready) = t.fd.readable().await else { return };
        // Non-blocking read of the expiry count; EAGAIN: nothing expired.
        let _ = t.fd.get_ref().0.wait();
        ready.clear_ready();
        let now = Instant::now();
        let mut st = t.lock();
        while st.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = st.heap.pop() {
                due.push(e.waker);
            }
        }
        st.armed = None;
        if !due.is_empty() {
            st.floor = Some(now + GRANULARITY);
        }
        let floor = st.floor.unwrap_or(now);
        if let Some(next) = st.heap.peek().map(|Reverse(e)| e.at.max(floor)) {
            t.arm(&mut st, next, now);
        }
        drop(st);
        // Wake outside the lock: a woken task may register again at once.
        for w in due.drain(..) {
            w.wake();
        }
    }
}

thread_local! {
    static TIMER: RefCell<Option<Arc<Timer>>> = const { RefCell::new(None) };
}

/// This thread's timer, started on the current runtime if there is none
/// or `fresh` (the cached one's runtime has shut down); None without a
/// reactor or a descriptor.
fn timer(fresh: bool) -> Option<Arc<Timer>> {
    TIMER.with(|cell| {
        let mut cell = cell.borrow_mut();
        if !fresh && let Some(t) = cell.as_ref() {
            return Some(t.clone());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC).ok()?;
        let fd = {
            let _enter = handle.enter();
            // SAFETY: `Fd` owns the timerfd (an OwnedFd inside TimerFd) for
            // as long as the AsyncFd holds it, and always returns that fd.
            unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }.ok()?
        };
        let t = Arc::new(Timer { state: Mutex::new(State::default()), fd });
        handle.spawn(drive(DeadOnDrop(t.clone())));
        *cell = Some(t.clone());
        Some(t)
    })
}

/// Completes at `at` (within tens of microseconds), or at once if `at` has passed.
pub fn sleep_until(at: Instant) -> SleepUntil {
    SleepUntil { at, fallback: None }
}

pub struct SleepUntil {
    at: Instant,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for SleepUntil {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= self.at {
            return Poll::Ready(());
        }
        if let Some(sleep) = self.fallback.as_mut() {
            return sleep.as_mut().poll(cx);
        }
        // First poll, or woken early (spurious poll, or a timer that
        // died): register, with the current waker, on this thread's timer.
        // Dead is checked under the lock the push takes, so a timer whose
        // runtime shuts down cannot keep an entry nobody will fire.
        for fresh in [false, true] {
            let Some(t) = timer(fresh) else { break };
            let mut st = t.lock();
            if st.dead {
                continue;
            }
            st.seq += 1;
            let seq = st.seq;
            st.heap.push(Reverse(Entry { at: self.at, seq, waker: cx.waker().clone() }));
            // Re-arm only if the timer would otherwise fire too late.
            let wake_at = st.floor.map_or(self.at, |f| self.at.max(f));
            if st.armed.is_none_or(|a| wake_at < a) {
                t.arm(&mut st, wake_at, now);
            }
            return Poll::Pending;
        }
        let at = self.at;
        let sleep = self.fallback.insert(Box::pin(tokio::time::sleep_until(at.into())));
        sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn worst_lateness() -> Duration {
        let mut worst = Duration::ZERO;
        for ms in [3u64, 1, 7, 2] {
            let at = Instant::now() + Duration::from_millis(ms);
            sleep_until(at).await;
            assert!(Instant::now() >= at, "woke early");
            worst = worst.max(Instant::now().saturating_duration_since(at));
        }
        worst
    }

    #[tokio::test]
    async fn wakes_close_to_the_deadline_and_in_order() {
        let start = Instant::now();
        // Never early (above); late only by scheduling: a hang detector, not a
        // speed test (typically well under 1 ms; a machine busy with builds made it 5+).
        let worst = worst_lateness().await;
        assert!(worst < Duration::from_millis(100), "{worst:?}");
        sleep_until(start).await; // in the past: immediate
        // Many sleepers on one timer each wake, none early.
        let deadlines: Vec<Instant> = (0..50).map(|i| Instant::now() + Duration::from_micros(300 * (i % 7))).collect();
        let tasks: Vec<_> = deadlines
            .into_iter()
            .map(|at| {
                tokio::spawn(async move {
                    sleep_until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for t in tasks {
            assert!(tokio::time::timeout(Duration::from_secs(5), t).await.unwrap().unwrap());
        }
    }

    #[test]
    fn a_new_runtime_on_the_same_thread_gets_a_timer_of_its_own() {
        // The first runtime's timer dies with it; the second must not wait
        // on it forever.
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let worst = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), worst_lateness()).await });
            assert!(worst.is_ok(), "a sleep hung on a dead runtime's timer");
        }
    }
}
