//! The request engine: plays a [`Schedule`] against the target on an open
//! model and feeds every attempt to the ledger and the recorder.
//!
//! Open model: each shopper starts at its scheduled arrival whether or not the
//! server keeps up; a slow server makes shoppers pile up, it never slows the
//! arrivals. Every attempt has an *intended* send time (arrival; previous step
//! end + think; previous attempt end + backoff) and its latency is measured
//! from there, so time spent waiting for a pool connection, or for a harness
//! that woke late, counts (no coordinated omission). How late the harness
//! itself started each attempt (schedule slip) is recorded separately, so a
//! saturated harness shows as such instead of as a slow server.
//!
//! One engine loop, parameterised by the connection model (shared pool, or
//! one connection per shopper). Not for: building the schedule (schedule.rs),
//! judging the result (gates.rs), faults (chaos runs alongside, writing into
//! the same `EventLog`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::outcome::{FailureClass, Handshake, Outcome};
use crate::record::events::EventLog;
use crate::record::ledger::{self, AttemptRef, Ledger};
use crate::record::recorder::Recorder;
use crate::scenario::{ConnectionModel, Scenario, ShopperCtx, Step};
use crate::traffic::client::{self, Conn, Connector, Request};
use crate::traffic::progress::Snapshot;
use crate::traffic::schedule::{PlannedShopper, Schedule};
use crate::traffic::sse::Sse;
use crate::traffic::tls::TlsConnect;

/// The ledger and the recorder, updated together under one lock so that a
/// reader never sees an attempt in one and not the other.
pub struct Book {
    pub ledger: Ledger,
    pub recorder: Recorder,
}

/// What a running engine exposes to the progress line (and to tests).
#[derive(Default)]
pub struct Live {
    pub active_shoppers: AtomicU64,
    pub peak_active_shoppers: AtomicU64,
    pub arrived: AtomicU64,
    pub finished_shoppers: AtomicU64,
    /// Set when the run must stop early (Ctrl-C, a fault runner giving up):
    /// no new shopper starts and running ones are cut off; the run is invalid.
    pub stop: AtomicBool,
    /// Refreshed by the engine's ticker for the progress line.
    pub snapshot: Arc<Mutex<Snapshot>>,
}

/// Knobs that are not in the scenario.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// How long shoppers may still run after the last arrival before the run
    /// is cut off (which makes it invalid). `None`: the longest a journey can
    /// take by the scenario's own timeouts, think times and retries, plus 5 s.
    pub drain_timeout: Option<Duration>,
}

/// What the engine hands back once every shopper has finished or been cut off.
pub struct EngineOutcome {
    pub book: Book,
    /// Shoppers still running when the drain timeout ended the run.
    pub cut_off_shoppers: u64,
    /// The run was stopped early through [`Live::stop`].
    pub interrupted: bool,
    /// Run clock (ms) when the last shopper finished or was cut off.
    pub end_ms: f64,
    pub peak_active_shoppers: u64,
}

struct Shared {
    scenario: Arc<Scenario>,
    connector: Arc<Connector>,
    events: EventLog,
    book: Mutex<Book>,
    live: Arc<Live>,
    pool: Option<Pool>,
    idle_timeout: Duration,
    /// Per journey, per step.
    step_index: Vec<Vec<StepRef>>,
    /// Scenario `connections.addresses`: shopper `s` connects from
    /// `shopper_sources[s % len]` (empty: the connector decides).
    shopper_sources: Vec<std::net::IpAddr>,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock is a bug; the counts are still the
        // best record there is, so keep going with them.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shared keep-alive pool: at most `size` connections, idle ones reused
/// most-recently-used first (so surplus ones age out by the idle timeout).
struct Pool {
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
}

impl Pool {
    fn take_idle(&self, idle_timeout: Duration, stats: &client::TlsStats) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while let Some(mut c) = idle.pop() {
            if c.usable(now, idle_timeout, stats) {
                return Some(c);
            }
        }
        None
    }

    /// A connection slot, waiting for one up to `deadline` (`None`: none
    /// became free). A free slot is taken without arming a timer: the same
    /// as the first poll of `acquire` (which takes a free permit at once,
    /// and none while others wait: released permits go to waiters first),
    /// without creating a tokio `Sleep` per request.
    async fn permit(&self, deadline: tokio::time::Instant) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match self.permits.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => tokio::time::timeout_at(deadline, self.permits.acquire()).await.ok()?.ok(),
        }
    }

    fn put_back(&self, c: Conn) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }
}

/// Step names in recorder order (journey by journey, step by step).
pub fn step_names(s: &Scenario) -> Vec<String> {
    s.journeys.iter().flat_map(|j| j.steps.iter().map(|st| st.name.clone())).collect()
}

/// The longest one journey can take by the scenario's own limits.
pub fn longest_journey(s: &Scenario) -> Duration {
    let think_max = match s.think {
        crate::scenario::ThinkTime::None => Duration::ZERO,
        crate::scenario::ThinkTime::Constant(d) => d,
        crate::scenario::ThinkTime::Uniform { max, .. } => max,
        crate::scenario::ThinkTime::Exponential { max, .. } => max,
    };
    s.journeys
        .iter()
        .map(|j| {
            j.steps
                .iter()
                .map(|st| {
                    let n = st.retry.attempts.max(1);
                    let mut t = st.timeout * n + st.retry.backoff * (n - 1) + think_max;
                    if let Some(sp) = &st.stream {
                        // Watching, then every reconnect's delay and head.
                        t += sp.watch + (sp.reconnect_delay + st.timeout) * sp.max_reconnects;
                    }
                    t
                })
                .sum::<Duration>()
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

/// Where a step of a journey is recorded, and whether its response's
/// `order_id` is kept (audit checkout steps).
#[derive(Clone, Copy)]
struct StepRef {
    /// The step's index in the recorder.
    global: usize,
    is_checkout: bool,
}

/// Every 200 ms: closes the recorder's finished seconds (so quiet seconds
/// still appear in the series) and refreshes the live snapshot the
/// progress line reads.
fn spawn_ticker(shared: Arc<Shared>, planned: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(200));
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            iv.tick().await;
            let live = &shared.live;
            let active = live.active_shoppers.load(Ordering::Relaxed);
            let now = shared.events.now_ms();
            let mut snap = {
                let mut book = shared.book();
                book.recorder.tick(now, active);
                let t = book.ledger.totals();
                let mut snap = Snapshot {
                    attempts: t.attempts,
                    failed_attempts: t.attempts_failed,
                    dropped: t.dropped,
                    ..Snapshot::default()
                };
                if let Some(row) = book.recorder.series().last() {
                    snap.last_second_attempts = row.ok + row.refused + row.failed;
                    snap.last_second_p99_ms = row.p99_ms;
                    snap.last_second_slip_ms = row.slip_max_ms;
                }
                snap
            };
            snap.elapsed_s = now / 1000.0;
            snap.active_shoppers = active;
            snap.arrived = live.arrived.load(Ordering::Relaxed);
            snap.planned = planned;
            *live.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snap;
        }
    })
}

/// Runs the schedule to the end. `events` provides the run clock: shopper
/// arrivals are relative to `events.start()`. Must be called inside a tokio
/// runtime with the time and net drivers.
pub async fn run(
    scenario: Arc<Scenario>,
    schedule: Arc<Schedule>,
    connector: Arc<Connector>,
    events: EventLog,
    ledger: Ledger,
    live: Arc<Live>,
    opts: &EngineOptions,
) -> EngineOutcome {
    let names = step_names(&scenario);
    let checkout: Vec<String> = scenario.audit.as_ref().map(|a| a.checkout_steps.clone()).unwrap_or_default();
    let mut step_index = Vec::new();
    let mut k = 0;
    for j in &scenario.journeys {
        let mut v = Vec::new();
        for st in &j.steps {
            v.push(StepRef { global: k, is_checkout: checkout.contains(&st.name) });
            k += 1;
        }
        step_index.push(v);
    }
    let (pool, idle_timeout) = match scenario.connections {
        ConnectionModel::Pool { size, idle_timeout } => (
            Some(Pool { permits: Semaphore::new(size.max(1)), idle: Mutex::new(Vec::with_capacity(size)) }),
            idle_timeout,
        ),
        ConnectionModel::PerShopper { idle_timeout } => (None, idle_timeout),
    };
    let shopper_sources: Vec<std::net::IpAddr> = match (scenario.shopper_addresses, connector.addr.ip()) {
        (Some(n), std::net::IpAddr::V4(ip)) if ip.is_loopback() => {
            (0..n.min(250)).map(|i| std::net::Ipv4Addr::new(127, 0, 0, 2 + i as u8).into()).collect()
        }
        _ => Vec::new(),
    };
    let has_streams = scenario.journeys.iter().any(|j| j.steps.iter().any(|st| st.stream.is_some()));
    let drain = opts.drain_timeout.unwrap_or_else(|| longest_journey(&scenario) + Duration::from_secs(5));
    let shared = Arc::new(Shared {
        scenario,
        connector,
        events: events.clone(),
        book: Mutex::new(Book { ledger, recorder: Recorder::new(names) }),
        live: live.clone(),
        pool,
        idle_timeout,
        step_index,
        shopper_sources,
    });

    // The ticker closes recorder seconds even when nothing completes.
    let ticker = spawn_ticker(shared.clone(), schedule.shoppers.len() as u64);

    // The arrival loop runs as a task on a runtime worker: spawning shoppers
    // from the thread that called `block_on` would wake a worker across
    // threads for every arrival (measured: a third of the CPU at 30k/s).
    let arrivals = {
        let shared = shared.clone();
        let live = live.clone();
        let events = events.clone();
        tokio::spawn(async move { arrive_and_drain(shared, &schedule, &live, &events, drain).await })
    };
    // If the loop itself panicked (a bug), the shoppers it started are
    // aborted with it and their open work makes the run invalid.
    let (cut_off, interrupted) = arrivals.await.unwrap_or((0, true));
    ticker.abort();
    let _ = ticker.await;
    if cut_off > 0 {
        events.emit(
            "shoppers_cut_off",
            json!({"shoppers": cut_off, "reason": if interrupted { "interrupted" } else { "drain timeout" }, "drain_timeout_ms": drain.as_millis() as u64}),
        );
    }
    let end_ms = events.now_ms();
    // Every other holder of `shared` (ticker, shoppers) has ended by now.
    let mut book = match Arc::try_unwrap(shared) {
        Ok(s) => s.book.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared) => std::mem::replace(
            &mut *shared.book(),
            Book { ledger: Ledger::in_memory(), recorder: Recorder::new(Vec::new()) },
        ),
    };
    book.recorder.finish(end_ms);
    if has_streams {
        let t = book.ledger.totals();
        events.emit("streams_end", json!({"reconnects": t.reconnects, "retries": t.retries}));
    }
    EngineOutcome {
        book,
        cut_off_shoppers: cut_off,
        interrupted,
        end_ms,
        peak_active_shoppers: live.peak_active_shoppers.load(Ordering::Relaxed),
    }
}

/// Arrivals closer together than this are started together (see `arrive_and_drain`).
const ARRIVAL_BATCH: Duration = Duration::from_micros(500);

/// Starts each shopper at its arrival, then waits for the journeys still
/// running, up to the drain timeout. Returns (shoppers cut off, interrupted).
async fn arrive_and_drain(
    shared: Arc<Shared>,
    schedule: &Schedule,
    live: &Live,
    events: &EventLog,
    drain: Duration,
) -> (u64, bool) {
    let start = tokio::time::Instant::from_std(events.start());
    events.emit("arrivals_start", json!({"planned_shoppers": schedule.shoppers.len()}));
    let mut tasks = JoinSet::new();
    let mut interrupted = false;
    let mut last_wake = tokio::time::Instant::now();
    for planned in &schedule.shoppers {
        let at = start + planned.arrival;
        // Sleep in slices so a stop request is seen promptly.
        loop {
            if live.stop.load(Ordering::Relaxed) {
                interrupted = true;
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= at {
                break;
            }
            // Dense arrivals are started in batches at most every
            // ARRIVAL_BATCH (late, never early; the slip is recorded), so
            // the loop does not pay a timer wake-up per arrival.
            let wake = at.max(last_wake + ARRIVAL_BATCH).min(now + Duration::from_millis(100));
            crate::traffic::timer::sleep_until(wake.into_std()).await;
            last_wake = tokio::time::Instant::now();
        }
        if interrupted {
            break;
        }
        // Reap finished shoppers as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
        live.arrived.fetch_add(1, Ordering::Relaxed);
        let active = live.active_shoppers.fetch_add(1, Ordering::Relaxed) + 1;
        live.peak_active_shoppers.fetch_max(active, Ordering::Relaxed);
        spawn_shopper(&mut tasks, shared.clone(), *planned);
    }
    events.emit("arrivals_end", json!({"arrived": live.arrived.load(Ordering::Relaxed), "interrupted": interrupted}));

    // Drain: wait for the shoppers still in their journeys, up to the drain
    // timeout (or a stop request).
    let deadline = tokio::time::Instant::now() + drain;
    let mut cut_off = 0u64;
    loop {
        if tasks.is_empty() {
            break;
        }
        if live.stop.load(Ordering::Relaxed) {
            interrupted = true;
        }
        let now = tokio::time::Instant::now();
        if interrupted || now >= deadline {
            cut_off = tasks.len() as u64;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            break;
        }
        let slice = deadline.min(now + Duration::from_millis(100));
        let _ = tokio::time::timeout_at(slice, tasks.join_next()).await;
    }
    (cut_off, interrupted)
}

/// Starts one shopper's task, boxed. tokio allocates a task's cell aligned
/// to 128 bytes (`posix_memalign`, which glibc serves outside its per-thread
/// cache) and moves the future into it by value several times; an unboxed
/// shopper (1.1 KB with its operation inline) made every arrival a large
/// aligned allocation, a `malloc_consolidate` and a few kilobytes of copies
/// (perf at 80,000 arrivals/s: about 5 % of the worker's CPU). Boxed, the task
/// cell is small, and the shopper and its operation (boxed too) are two
/// allocations small enough for the allocator's thread cache.
fn spawn_shopper(tasks: &mut JoinSet<()>, shared: Arc<Shared>, planned: PlannedShopper) {
    tasks.spawn(Box::pin(shopper(shared, planned)));
}

/// Decrements the active-shopper gauge when a shopper ends, even if aborted.
struct ActiveGuard(Arc<Live>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_shoppers.fetch_sub(1, Ordering::Relaxed);
        self.0.finished_shoppers.fetch_add(1, Ordering::Relaxed);
    }
}

async fn shopper(shared: Arc<Shared>, planned: PlannedShopper) {
    let _guard = ActiveGuard(shared.live.clone());
    let scenario = shared.scenario.clone();
    let Some(journey) = scenario.journeys.get(planned.journey) else { return };
    let start = shared.events.start();
    let mut ctx = ShopperCtx::new(planned.id, planned.seed);
    let mut own = Own::default();
    let mut intended = start + planned.arrival;
    for (i, step) in journey.steps.iter().enumerate() {
        if i > 0 {
            intended += scenario.think.sample(&mut ctx.rng);
            if let Some(c) = own.conn.as_mut() {
                // A thinking shopper keeps its connection but not its buffer:
                // 30,000 idle shoppers must not hold 30,000 read buffers.
                c.park();
            }
        }
        let StepRef { global, is_checkout } = shared.step_index[planned.journey][i];
        // Think (or, for the first step, nothing: the shopper starts when
        // due) before the operation exists, so a thinking shopper holds only
        // its own state. The operation is boxed: see `spawn_shopper`.
        crate::traffic::timer::sleep_until(intended).await;
        let (last, end) = Box::pin(operation(&shared, step, global, is_checkout, &mut ctx, &mut own, intended)).await;
        intended = end;
        if last != Outcome::Ok {
            // A refusal ends the journey by definition; a dropped step leaves
            // the shopper without the state later steps need.
            break;
        }
    }
}

struct Rendered {
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn render(
    step: &Step,
    data: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
    ctx: &mut ShopperCtx,
) -> Result<Rendered, String> {
    let path = step.path.render(data, ctx).map_err(|e| e.to_string())?;
    // Sized exactly: a step without headers or key allocates none.
    let mut headers = Vec::with_capacity(step.headers.len() + usize::from(ctx.idem.is_some()));
    for (k, t) in &step.headers {
        headers.push((k.clone(), t.render(data, ctx).map_err(|e| e.to_string())?));
    }
    if let Some(key) = &ctx.idem
        && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
    {
        headers.push(("Idempotency-Key".to_string(), key.clone()));
    }
    let body = match &step.body {
        Some(t) => Some(t.render(data, ctx).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Rendered { path, headers, body })
}

/// What stays the same for every attempt of one operation.
struct Op<'a> {
    shared: &'a Shared,
    step: &'a Step,
    /// The step's index in the recorder.
    global: usize,
    is_checkout: bool,
    /// The ledger's operation id.
    id: u64,
}

/// A stream step's state across its attempts: when the watch ends, the last
/// event id seen (sent as Last-Event-ID on reconnects and retries), the
/// reconnects so far, and what the server's last `event: reconnect` said.
#[derive(Default)]
struct StreamState {
    watch_end: Option<Instant>,
    last_event_id: Option<String>,
    reconnects: u32,
    reconnect_asked: Option<String>,
}

/// How one attempt ended, as the ledger and the event log record it.
struct Classified {
    outcome: Outcome,
    status: Option<u16>,
    reused: bool,
    handshake: Handshake,
    addr: Option<std::net::SocketAddr>,
    worker: Option<String>,
    detail: Option<String>,
    order_id: Option<i64>,
}

/// When an attempt was due, started and ended.
#[derive(Clone, Copy)]
struct AttemptTimes {
    intended: Instant,
    started: Instant,
    ended: Instant,
}

/// Runs one step with its retries (and a stream step's reconnects). Returns
/// the last attempt's outcome and when it ended.
async fn operation(
    shared: &Shared,
    step: &Step,
    global: usize,
    is_checkout: bool,
    ctx: &mut ShopperCtx,
    own: &mut Own,
    first_intended: Instant,
) -> (Outcome, Instant) {
    // Think first: an operation begins when its first attempt is due, so a
    // thinking shopper holds no rendered request and no open operation.
    crate::traffic::timer::sleep_until(first_intended).await;
    // One lock for the operation and its first attempt (the hot path takes
    // the book's lock twice per attempt: begin, and end with the recording).
    let id = {
        let mut book = shared.book();
        book.ledger.begin_attempt();
        book.ledger.begin_operation()
    };
    let op = Op { shared, step, global, is_checkout, id };
    ctx.idem = step.idempotency_key.then(|| ctx.new_idempotency_key(&step.name));
    // Rendered once: a retry resends the same request (same picks, same key).
    let rendered = render(step, &shared.scenario.data, ctx);
    let mut scratch = Vec::new();
    let mut intended = first_intended;
    let mut first_failed = false;
    let mut attempt = 0u32;
    // Failed attempts so far: the retry policy counts these, so a stream's
    // reconnects do not use up its retries.
    let mut failures = 0u32;
    let mut stream = StreamState { watch_end: step.stream.map(|sp| first_intended + sp.watch), ..Default::default() };
    // Whether the attempt now due is a reconnect.
    let mut reconnecting = false;
    loop {
        attempt += 1;
        if attempt > 1 {
            // (The first attempt is due at `first_intended`, slept above.)
            crate::traffic::timer::sleep_until(intended).await;
        }
        let started = Instant::now();
        if attempt > 1 {
            shared.book().ledger.begin_attempt();
        }
        let deadline = tokio::time::Instant::from_std(started + step.timeout);
        stream.reconnect_asked = None;
        let c = match &rendered {
            Err(e) => Classified {
                outcome: Outcome::Failed(FailureClass::LocalError),
                status: None,
                reused: false,
                handshake: Handshake::None,
                addr: None,
                worker: None,
                detail: Some(e.clone()),
                order_id: None,
            },
            Ok(r) => exchange(&op, r, ctx, own, deadline, &mut scratch, &mut stream).await,
        };
        let times = AttemptTimes { intended, started, ended: Instant::now() };
        let failed = matches!(c.outcome, Outcome::Failed(_));
        failures += u32::from(failed);
        first_failed |= attempt == 1 && failed;
        let retry = matches!(c.outcome, Outcome::Failed(class) if step.retry.retries(class, failures));
        let reconnect = reconnect_due(&op, ctx, attempt, &c, times.ended, &stream);
        let end_ms =
            record_attempt(&op, ctx, attempt, &c, times, reconnecting, (!retry && !reconnect).then_some(first_failed));
        reconnecting = reconnect;
        if reconnect && let Some(sp) = step.stream {
            stream.reconnects += 1;
            shared.events.emit_at(
                end_ms,
                "stream_reconnect",
                json!({
                    "op": op.id, "shopper": ctx.shopper, "step": step.name, "attempt": attempt,
                    "worker": c.worker, "last_event_id": stream.last_event_id, "reconnects": stream.reconnects,
                    "data": stream.reconnect_asked, "delay_ms": sp.reconnect_delay.as_millis() as u64,
                }),
            );
            intended = times.ended + sp.reconnect_delay;
            continue;
        }
        if retry {
            intended = times.ended + step.retry.backoff;
            continue;
        }
        return (c.outcome, times.ended);
    }
}

/// Sends one attempt of the rendered request (a plain exchange, or a stream
/// watched until its watch ends) and classifies how it ended.
async fn exchange(
    op: &Op<'_>,
    r: &Rendered,
    ctx: &mut ShopperCtx,
    own: &mut Own,
    deadline: tokio::time::Instant,
    scratch: &mut Vec<u8>,
    stream: &mut StreamState,
) -> Classified {
    let (shared, step) = (op.shared, op.step);
    let with_id;
    let headers = match (stream.watch_end, stream.last_event_id.as_deref()) {
        (Some(_), Some(id)) if !id.is_empty() => {
            let mut h = r.headers.clone();
            h.push(("Last-Event-ID".to_string(), id.to_string()));
            with_id = h;
            &with_id
        }
        _ => &r.headers,
    };
    let req = Request { method: &step.method, path: &r.path, headers, body: r.body.as_deref().map(str::as_bytes) };
    let keep_body = !step.extract.is_empty() || op.is_checkout;
    // Boxed: the exchange's state is the largest part of a shopper's future;
    // boxing it keeps the 30,000 thinking shoppers small and costs one
    // allocation per attempt.
    let source = match shared.shopper_sources.len() {
        0 => None,
        n => Some(shared.shopper_sources[(ctx.shopper % n as u64) as usize]),
    };
    let Some(watch_end) = stream.watch_end else {
        let a = Box::pin(send(shared, source, own, &req, keep_body, deadline, scratch)).await;
        return classify(step, op.is_checkout, a, ctx);
    };
    let sse = Sse::resuming(stream.last_event_id.take());
    let times = StreamTimes { deadline, watch_end: tokio::time::Instant::from_std(watch_end), idle: step.timeout };
    let a = Box::pin(send_stream(shared, source, own, &req, times, sse, scratch)).await;
    stream.last_event_id = a.sse.last_event_id;
    if matches!(&a.result, Ok(r) if r.end == client::StreamEnd::Server) {
        stream.reconnect_asked = a.sse.reconnect;
    }
    let a = client::Attempt {
        result: a.result.map(|r| client::Response {
            status: r.status,
            body: None,
            worker_id: r.worker_id,
            keep_alive: false,
        }),
        reused: a.reused,
        handshake: a.handshake,
        addr: a.addr,
    };
    classify(step, op.is_checkout, a, ctx)
}

/// Whether the server ended an ok stream with `event: reconnect` and the
/// shopper comes back: while the watch lasts and the step allows another
/// reconnect. Says so in the event log when the reconnects ran out.
fn reconnect_due(op: &Op<'_>, ctx: &ShopperCtx, attempt: u32, c: &Classified, ended: Instant, s: &StreamState) -> bool {
    let (Some(data), Some(sp), Some(watch_end)) = (&s.reconnect_asked, op.step.stream, s.watch_end) else {
        return false;
    };
    if c.outcome != Outcome::Ok {
        return false;
    }
    let watching = ended < watch_end;
    if watching && s.reconnects >= sp.max_reconnects {
        op.shared.events.emit_at(
            op.shared.events.ms_at(ended),
            "stream_reconnects_exhausted",
            json!({"op": op.id, "shopper": ctx.shopper, "step": op.step.name, "attempt": attempt,
                   "reconnects": s.reconnects, "worker": c.worker, "data": data}),
        );
    }
    watching && s.reconnects < sp.max_reconnects
}

/// Ends the attempt in the ledger and the recorder (and the operation, when
/// `ends_operation` carries whether its first attempt failed), and logs a
/// failure. Returns the attempt's end on the run clock.
fn record_attempt(
    op: &Op<'_>,
    ctx: &ShopperCtx,
    attempt: u32,
    c: &Classified,
    t: AttemptTimes,
    reconnecting: bool,
    ends_operation: Option<bool>,
) -> f64 {
    let (shared, step) = (op.shared, op.step);
    let ev = &shared.events;
    let (kind, class) = ledger::split(c.outcome);
    // Borrowed: ending an attempt copies no strings.
    let rec = AttemptRef {
        op: op.id,
        shopper: ctx.shopper,
        step: &step.name,
        attempt,
        intended_ms: ev.ms_at(t.intended),
        start_ms: ev.ms_at(t.started),
        end_ms: ev.ms_at(t.ended),
        outcome: kind,
        class,
        status: c.status,
        reused: c.reused,
        handshake: c.handshake,
        worker: c.worker.as_deref(),
        addr: c.addr,
        idem: ctx.idem.as_deref(),
        order_id: c.order_id,
    };
    // From the run-clock microseconds the ledger writes, so that a merge
    // replaying shards' ledgers records the very same values.
    let us = |at: std::time::Instant| at.saturating_duration_since(ev.start()).as_micros() as u64;
    let latency_us = us(t.ended).saturating_sub(us(t.intended));
    let slip_us = us(t.started).saturating_sub(us(t.intended));
    {
        let mut book = shared.book();
        book.ledger.end_attempt_of(&rec, reconnecting);
        book.recorder.record(op.global, c.outcome, latency_us, slip_us, rec.end_ms);
        if let Some(first_failed) = ends_operation {
            book.ledger.end_operation(&step.name, c.outcome, first_failed);
        }
    }
    if let Outcome::Failed(class) = c.outcome {
        ev.emit_at(
            rec.end_ms,
            "attempt_failed",
            json!({
                "op": op.id, "shopper": ctx.shopper, "step": step.name, "attempt": attempt,
                "class": class.as_str(), "status": c.status, "reused": c.reused, "worker": rec.worker,
                "handshake": c.handshake.as_str(), "addr": c.addr.map(|a| a.to_string()),
                "intended_ms": rec.intended_ms, "detail": c.detail,
            }),
        );
    }
    rec.end_ms
}

/// A shopper's own connection (the `per_shopper` model) and, over https,
/// its own TLS session memory: a browser resumes its own sessions, so a
/// new shopper's first connection is a full handshake (tls.rs).
#[derive(Default)]
struct Own {
    conn: Option<Conn>,
    tls: Option<TlsConnect>,
}

impl Own {
    /// The connection to send on (dropped first if it is no longer usable)
    /// and how to open a new one: from `source`, with this shopper's sessions.
    fn ready(&mut self, shared: &Shared, source: Option<std::net::IpAddr>) -> (&mut Option<Conn>, client::Via<'_>) {
        if self
            .conn
            .as_mut()
            .is_some_and(|c| !c.usable(Instant::now(), shared.idle_timeout, &shared.connector.tls_stats))
        {
            self.conn = None;
        }
        // Without resumption there are no sessions to keep apart: the run's client serves.
        let tls = match &shared.connector.tls {
            Some(run) if run.resumption => Some(&*self.tls.get_or_insert_with(|| run.for_one_client())),
            _ => None,
        };
        (&mut self.conn, client::Via { source, tls })
    }
}

/// Sends on the model's connection: a pooled one (waiting for a free slot
/// counts toward the attempt's timeout and latency) or the shopper's own.
async fn send(
    shared: &Shared,
    source: Option<std::net::IpAddr>,
    own: &mut Own,
    req: &Request<'_>,
    keep_body: bool,
    deadline: tokio::time::Instant,
    scratch: &mut Vec<u8>,
) -> client::Attempt {
    match &shared.pool {
        None => {
            let (conn, via) = own.ready(shared, source);
            client::send_from(&shared.connector, via, conn, req, keep_body, deadline, scratch).await
        }
        Some(pool) => {
            let Some(_permit) = pool.permit(deadline).await else {
                return client::Attempt {
                    result: Err(no_pool_connection()),
                    reused: false,
                    handshake: Handshake::None,
                    addr: None,
                };
            };
            let mut slot = pool.take_idle(shared.idle_timeout, &shared.connector.tls_stats);
            let a = client::send(&shared.connector, &mut slot, req, keep_body, deadline, scratch).await;
            if let Some(c) = slot {
                pool.put_back(c);
            }
            a
        }
    }
}

/// The failure of an attempt that waited the whole step timeout for a pool
/// connection: counted as a connect timeout (the open model's queue).
fn no_pool_connection() -> client::TransportFailure {
    client::TransportFailure {
        class: FailureClass::ConnectTimeout,
        detail: "no pool connection became free within the step timeout".into(),
        status: None,
        worker_id: None,
    }
}

/// A stream attempt's clock: the step timeout for the response head, the end
/// of the watch, and the longest silence allowed between events.
#[derive(Clone, Copy)]
struct StreamTimes {
    deadline: tokio::time::Instant,
    watch_end: tokio::time::Instant,
    idle: Duration,
}

/// [`send`] for a stream step: the request on the model's connection, its
/// body read as an event stream (see `client::send_stream`). `times`: the
/// head's deadline, the end of the watch, the longest silence. The
/// connection is never kept: a pooled one frees its slot when the stream ends.
async fn send_stream(
    shared: &Shared,
    source: Option<std::net::IpAddr>,
    own: &mut Own,
    req: &Request<'_>,
    times: StreamTimes,
    sse: Sse,
    scratch: &mut Vec<u8>,
) -> client::StreamAttempt {
    let StreamTimes { deadline, watch_end, idle } = times;
    match &shared.pool {
        None => {
            let (conn, via) = own.ready(shared, source);
            client::send_stream(&shared.connector, via, conn, req, deadline, watch_end, idle, sse, scratch).await
        }
        Some(pool) => {
            let Some(_permit) = pool.permit(deadline).await else {
                return client::StreamAttempt {
                    result: Err(no_pool_connection()),
                    reused: false,
                    handshake: Handshake::None,
                    addr: None,
                    sse,
                };
            };
            let mut slot = pool.take_idle(shared.idle_timeout, &shared.connector.tls_stats);
            let via = client::Via::default();
            client::send_stream(&shared.connector, via, &mut slot, req, deadline, watch_end, idle, sse, scratch).await
        }
    }
}

/// Turns a transport result into the attempt's outcome: expected status ->
/// ok (if the body yields what the step extracts), refusal status ->
/// refused, 5xx -> server error, anything else -> unexpected status.
fn classify(step: &Step, is_checkout: bool, a: client::Attempt, ctx: &mut ShopperCtx) -> Classified {
    let (reused, handshake, addr) = (a.reused, a.handshake, a.addr);
    let r = match a.result {
        Err(f) => {
            return Classified {
                outcome: Outcome::Failed(f.class),
                status: f.status,
                reused,
                handshake,
                addr,
                worker: f.worker_id,
                detail: Some(f.detail),
                order_id: None,
            };
        }
        Ok(r) => r,
    };
    let status = Some(r.status);
    let (outcome, detail, order_id) = if step.expect.contains(&r.status) {
        let mut order_id = None;
        let mut detail = None;
        let mut outcome = Outcome::Ok;
        if step.extract.is_empty() && !is_checkout {
            // Nothing to read from the body.
        } else {
            match serde_json::from_slice::<serde_json::Value>(r.body.as_deref().unwrap_or_default()) {
                Err(e) => {
                    if !step.extract.is_empty() {
                        outcome = Outcome::Failed(FailureClass::InvalidBody);
                        detail = Some(format!("body is not JSON: {e}"));
                    }
                }
                Ok(v) => {
                    if is_checkout {
                        order_id = v.pointer("/order_id").and_then(serde_json::Value::as_i64);
                    }
                    for x in &step.extract {
                        match v.pointer(&x.json_pointer) {
                            Some(serde_json::Value::String(s)) => {
                                ctx.vars.insert(x.var.clone(), s.clone());
                            }
                            Some(serde_json::Value::Null) | None => {
                                outcome = Outcome::Failed(FailureClass::InvalidBody);
                                detail = Some(format!("no value at {} for var {}", x.json_pointer, x.var));
                                break;
                            }
                            Some(other) => {
                                ctx.vars.insert(x.var.clone(), other.to_string());
                            }
                        }
                    }
                }
            }
        }
        (outcome, detail, order_id)
    } else if step.refuse.contains(&r.status) {
        (Outcome::Refused, None, None)
    } else if r.status >= 500 {
        (Outcome::Failed(FailureClass::ServerError), Some(format!("status {}", r.status)), None)
    } else {
        (Outcome::Failed(FailureClass::UnexpectedStatus), Some(format!("status {}", r.status)), None)
    };
    Classified { outcome, status, reused, handshake, addr, worker: r.worker_id, detail, order_id }
}
