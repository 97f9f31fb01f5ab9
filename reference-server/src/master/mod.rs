//! The master: binds the public listener once, forks+execs the workers,
//! respawns them, rolls restarts and stops them, and serves the admin
//! address. Single-threaded, no async runtime: one `poll(2)` loop over the
//! signal self-pipe, every worker's IPC socket and the admin sockets, with a
//! timeout for the next timer (heartbeat, start and drain deadlines, crash
//! backoff). It is never on the request path.
//!
//! Every lifecycle event is one line on stderr, `[master +<secs>s] ...`;
//! docs/CLUSTER.md lists them, tests and the benchmark read them.

pub mod backoff;
mod health;
mod notify;
pub mod pool;
pub mod rolling;
pub mod signals;
pub mod spawn;
mod sticky;
mod upgrade;
mod view;

use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;

use self::notify::Notify;
use self::pool::{Kill, Phase, Slot, Worker};
use self::rolling::{Rolling, Step, StepPhase};
use self::signals::SignalInbox;
use self::spawn::Spawner;
use self::view::View;
use crate::admin::AdminServer;
use crate::cli::{Balance, Cli, OnSigterm};
use crate::metrics::{Metrics, Reason};
use crate::{StartupError, build_info, exit, listen, shop, startup};

/// The longest the loop sleeps with no timer due: a bound, not a tick.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// A worker must be `ready` this long after fork at the latest (or within
/// the hang timeout, if longer); otherwise it is treated as hung.
const MIN_START_TIMEOUT: Duration = Duration::from_secs(10);

/// When the master started: the zero of its log stamps.
fn epoch() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// One lifecycle line on stderr, stamped with time since the master started.
pub fn log(msg: &str) {
    let t = epoch().elapsed().as_secs_f64();
    crate::log_line(&format!("[master +{t:.3}s] {msg}"));
}

fn wlog(w: &Worker, msg: &str) {
    log(&format!("worker {} slot {} pid {} {msg}", w.id, w.slot, w.pid));
}

/// Run the master with `workers` workers until stopped. Returns the exit code.
pub fn run(cli: &Cli, workers: usize) -> Result<u8> {
    // Start the clock; a start-up error then prints its one line, nothing else.
    epoch();
    if cli.hang_timeout <= cli.heartbeat_interval * 2 {
        return Err(StartupError(anyhow!(
            "--hang-timeout {:?} must be more than twice --heartbeat-interval {:?}, or healthy workers look hung",
            cli.hang_timeout,
            cli.heartbeat_interval
        ))
        .into());
    }
    if cli.unsafe_reuseport && cli.balance == Balance::Sticky {
        return Err(StartupError(anyhow!("--unsafe-reuseport needs --balance shared (workers accept)")).into());
    }
    // A new master started by a binary upgrade (SIGUSR2) takes both
    // listeners over from the old one instead of binding them.
    let inherited = startup(upgrade::Inherited::from_env())?;
    let mut shop_args = cli.shop.clone();
    let mut workers = workers;
    let (listener, admin_listener, origin, handover, next_id) = match inherited {
        Some(i) => {
            workers = i.target.unwrap_or(workers);
            // The old master's workers are serving from the store right now.
            shop_args.reset_db = false;
            let origin = format!(" (inherited from master pid {})", i.handover.old_pid);
            (i.listener, i.admin, origin, Some(i.handover), i.next_id)
        }
        None => {
            let (listener, activated) = if cli.unsafe_reuseport {
                (startup(listen::bind_reuseport_unlistened(cli.listen))?, false)
            } else {
                startup(listen::public(cli.listen, cli.backlog))?
            };
            let admin_listener = startup(listen::bind_admin(cli.admin, cli.listen))?;
            let origin = if activated { " (socket activation)" } else { "" };
            (listener, admin_listener, origin.to_string(), None, 1)
        }
    };
    // Every worker loads the pair itself; checked here too so that a bad
    // pair is one start-up error, not a crash loop of fresh workers.
    let https = startup(cli.tls().context("loading the TLS certificate and key"))?.is_some();
    let public = startup(listener.local_addr().context("reading the public address"))?;
    let admin_addr = startup(admin_listener.local_addr().context("reading the admin address"))?;
    startup(shop::prepare(&shop_args).context("preparing the shop store"))?;
    let signals = startup(SignalInbox::install())?;
    let sticky = match cli.balance {
        Balance::Shared => None,
        Balance::Sticky => Some(startup(
            listener
                .try_clone()
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .context("making the listener non-blocking for sticky balancing"),
        )?),
    };
    let spawner = startup(Spawner::new(&listener, sticky.is_some()))?;
    let mut admin = startup(AdminServer::new(admin_listener).context("setting up the admin server"))?;
    let mut notify = startup(Notify::from_env().context("reading NOTIFY_SOCKET"))?;
    if handover.is_some() {
        // Not the service's main pid until the old master hands over.
        notify.hold();
    }
    log(&format!(
        "listening on {public}{origin}{}, admin on {admin_addr}, {workers} workers, balance {}, version {} build {}",
        if https { " (https)" } else { "" },
        if sticky.is_some() { "sticky" } else { "shared" },
        build_info::VERSION,
        build_info::build_id()
    ));
    let mut master = Master {
        cli,
        spawner,
        workers: Vec::new(),
        slots: Vec::new(),
        target: workers.max(1),
        next_id,
        metrics: Metrics::new(),
        rolling: None,
        stop: None,
        sticky,
        orphans: Vec::new(),
        notify,
        admin_fd: admin.listener_fd(),
        upgrade: None,
        handover,
        handed_over: false,
    };
    for slot in 0..master.target {
        master.slots.push(Slot::default());
        // A binary that cannot even be exec'd is a start-up error.
        startup(master.spawn(slot))?;
    }
    if master.handover.is_none() {
        startup(cli.pid_file.as_deref().map_or(Ok(()), |p| crate::pid_file::write(p, std::process::id())))?;
    }
    let code = master.run_loop(&signals, &mut admin);
    if let Some(path) = &cli.pid_file {
        crate::pid_file::remove_if_ours(path, std::process::id());
    }
    // The listener lives until every worker is gone (they hold copies anyway).
    drop(listener);
    code
}

#[derive(Debug, Clone, Copy)]
struct Stop {
    immediate: bool,
    code: u8,
}

struct Master<'a> {
    cli: &'a Cli,
    spawner: Spawner,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    /// Wanted number of worker slots (SIGTTIN/SIGTTOU change it).
    target: usize,
    next_id: u64,
    metrics: Metrics,
    rolling: Option<Rolling>,
    stop: Option<Stop>,
    /// Sticky balancing: the master accepts on this (non-blocking) copy of
    /// the listener; None with the shared listener.
    sticky: Option<TcpListener>,
    /// Accepted connections waiting to be routed (their worker stopped
    /// serving before it took them, or no worker is ready).
    orphans: Vec<(OwnedFd, u64)>,
    /// The supervisor's notify socket and watchdog (systemd), if any.
    notify: Notify,
    /// The admin listener's fd, for a new master to inherit (SIGUSR2).
    admin_fd: RawFd,
    /// Binary upgrade, old master's side: the new master it started.
    upgrade: Option<upgrade::Upgrade>,
    /// Binary upgrade, new master's side: until the old one handed over.
    handover: Option<upgrade::Handover>,
    /// This master handed over to a new one and is on its way out.
    handed_over: bool,
}

impl Master<'_> {
    fn run_loop(&mut self, signals: &SignalInbox, admin: &mut AdminServer) -> Result<u8> {
        loop {
            let timeout = self.poll_timeout();
            {
                let mut fds = vec![PollFd::new(signals.fd(), PollFlags::POLLIN)];
                for sock in self.workers.iter().filter_map(Worker::ipc) {
                    fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
                }
                if let Some(l) = self.accepting() {
                    fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                }
                for sock in self.handoff_blocked() {
                    fds.push(PollFd::new(sock, PollFlags::POLLOUT));
                }
                for chan in self.upgrade_fds() {
                    fds.push(PollFd::new(chan, PollFlags::POLLIN));
                }
                for (fd, wants_write) in admin.poll_fds() {
                    let flags = if wants_write { PollFlags::POLLIN | PollFlags::POLLOUT } else { PollFlags::POLLIN };
                    fds.push(PollFd::new(fd, flags));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(anyhow::Error::new(e).context("poll failed in the master loop")),
                }
            }
            // Everything below is non-blocking, so handling all sources on
            // every wake-up is simpler than dispatching on revents.
            for (sig, n) in signals.take() {
                self.on_signal(sig, n);
            }
            self.read_ipc();
            self.reap();
            self.timers();
            self.upgrade_turn();
            if self.handed_over {
                admin.stop_accepting();
            }
            if self.stop.is_none() {
                self.roll();
                self.reconcile();
            }
            self.balance();
            admin.pump(&View { m: self });
            self.notify();
            if let Some(stop) = self.stop {
                if self.workers.is_empty() {
                    log(&format!("all workers gone; exit {}", stop.code));
                    return Ok(stop.code);
                }
            }
        }
    }

    fn spawn(&mut self, slot: usize) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let (child, ipc, handoff) = self.spawner.spawn(id, slot)?;
        let w = Worker::new(id, slot, child, ipc, handoff);
        wlog(&w, "started");
        self.workers.push(w);
        Ok(())
    }

    fn start_timeout(&self) -> Duration {
        self.cli.hang_timeout.max(MIN_START_TIMEOUT)
    }

    /// Time until the next timer is due, capped at [`MAX_SLEEP`].
    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let next = self.next_due(now);
        // Round up, so a timer is never polled for just before it is due.
        let ms = next.saturating_duration_since(now).as_micros().div_ceil(1000);
        PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
    }

    /// When the next timer the loop acts on is due (at most [`MAX_SLEEP`]
    /// from `now`). Before `now` only if something is due this turn.
    fn next_due(&self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        if let Some(at) = self.notify.next_due() {
            next = next.min(at);
        }
        if let Some(at) = self.upgrade_due() {
            next = next.min(at);
        }
        for w in self.workers.iter().filter(|w| w.killed.is_none()) {
            let due = match w.phase {
                Phase::Starting => w.started + self.start_timeout(),
                Phase::Ready => {
                    let hang = w.last_beat + self.cli.hang_timeout;
                    match w.ready_at {
                        Some(r) if !w.stable => hang.min(r + self.cli.min_uptime),
                        _ => hang,
                    }
                }
                Phase::Draining { deadline, .. } => deadline,
            };
            next = next.min(due);
        }
        if self.stop.is_none() {
            // Only timers the loop will act on: a respawn timer of a slot
            // that is served already never fires, and counting it would make
            // every poll return at once (issue 19: 70% of a core, forever).
            for slot in (0..self.target.min(self.slots.len())).filter(|&s| self.short(s)) {
                if let Some(at) = self.slots[slot].respawn_at {
                    next = next.min(at);
                }
            }
        }
        next
    }

    fn on_signal(&mut self, sig: Signal, n: usize) {
        if sig != Signal::SIGCHLD {
            log(&format!("received {sig}{}", if n > 1 { format!(" x{n}") } else { String::new() }));
        }
        match sig {
            Signal::SIGQUIT => self.stop_now(),
            Signal::SIGINT if n >= 2 || self.stop.is_some() => self.stop_now(),
            Signal::SIGINT => self.stop_graceful(exit::OK),
            Signal::SIGTERM => match self.cli.on_sigterm {
                OnSigterm::Restart => self.begin_rolling("SIGTERM"),
                OnSigterm::Stop => self.stop_graceful(exit::OK),
            },
            Signal::SIGHUP => self.begin_rolling("SIGHUP"),
            Signal::SIGUSR2 => self.begin_upgrade(),
            Signal::SIGTTIN => {
                self.target += n;
                log(&format!("worker count now {}", self.target));
            }
            Signal::SIGTTOU => {
                // Never below one worker: stopping is what SIGINT is for.
                self.target = self.target.saturating_sub(n).max(1);
                log(&format!("worker count now {}", self.target));
            }
            _ => {} // SIGCHLD only wakes the loop; `reap` runs every time.
        }
    }

    fn stop_graceful(&mut self, code: u8) {
        if self.stop.is_some() {
            return;
        }
        log(&format!("stopping: draining every worker (drain timeout {:?})", self.cli.drain_timeout));
        self.stop = Some(Stop { immediate: false, code });
        self.abandon_upgrade("stopping");
        if self.rolling.take().is_some() {
            log("rolling restart abandoned: stopping");
        }
        let drain_timeout = self.cli.drain_timeout;
        for w in self.workers.iter_mut().filter(|w| w.is_live()) {
            w.shutdown(drain_timeout);
            wlog(w, "shutdown sent (stop)");
        }
    }

    fn stop_now(&mut self) {
        log("stopping now: SIGKILL to every worker");
        let code = self.stop.map_or(exit::OK, |s| s.code);
        self.stop = Some(Stop { immediate: true, code });
        self.rolling = None;
        self.abandon_upgrade("stopping now");
        for w in self.workers.iter_mut().filter(|w| w.killed.is_none()) {
            w.kill(Kill::Immediate);
        }
    }

    /// Start a rolling restart, unless one is running: a signal during a
    /// rolling restart is logged and ignored, never queued (send SIGHUP again
    /// after `rolling restart end` to deploy a binary replaced meanwhile).
    fn begin_rolling(&mut self, why: &str) {
        if self.stop.is_some() {
            log(&format!("{why} ignored: stopping"));
            return;
        }
        if self.rolling.is_some() {
            log(&format!("{why} ignored: a rolling restart is already in progress"));
            return;
        }
        if let Some(u) = &self.upgrade {
            log(&format!("{why} ignored: a master upgrade is in progress (new master pid {})", u.pid));
            return;
        }
        let mut old: Vec<&Worker> = self.workers.iter().filter(|w| w.is_live()).collect();
        old.sort_by_key(|w| (w.slot, w.id));
        let ids: Vec<u64> = old.iter().map(|w| w.id).collect();
        log(&format!("rolling restart begin ({why}, {} workers)", ids.len()));
        self.metrics.rolling_restarts.inc();
        self.rolling = Some(Rolling::new(ids));
    }

    /// Advance the rolling restart as far as it can go now.
    fn roll(&mut self) {
        let Some(r) = self.rolling.as_mut() else {
            return;
        };
        loop {
            let Some(step) = r.current else {
                let Some(old) = r.queue.pop_front() else {
                    log(&format!(
                        "rolling restart end ({} replaced in {} ms)",
                        r.replaced,
                        r.started.elapsed().as_millis()
                    ));
                    self.rolling = None;
                    return;
                };
                // A worker that crashed or was retired meanwhile was already
                // replaced by a fresh exec (or needs none).
                let Some(w) = self.workers.iter_mut().find(|w| w.id == old && w.is_live() && w.slot < self.target)
                else {
                    continue;
                };
                if self.cli.unsafe_old_before_new {
                    // TEST ONLY, defect 3: the capacity gap the correct order
                    // (replacement ready first) exists to avoid.
                    wlog(w, "rolling: draining it before starting its replacement (--unsafe-old-before-new)");
                    w.shutdown(self.cli.drain_timeout);
                    wlog(w, "shutdown sent (rolling)");
                    self.metrics.restart(Reason::Rolling);
                    r.current = Some(Step { old, slot: w.slot, phase: StepPhase::OldFirstWaitExit });
                } else {
                    wlog(w, "rolling: starting its replacement");
                    r.current = Some(Step { old, slot: w.slot, phase: StepPhase::WaitReady });
                }
                continue;
            };
            let old = self.workers.iter().position(|w| w.id == step.old);
            match step.phase {
                StepPhase::WaitReady => {
                    let Some(i) = old.filter(|&i| self.workers[i].is_live()) else {
                        r.current = None;
                        continue;
                    };
                    let ready = self
                        .workers
                        .iter()
                        .any(|w| w.slot == step.slot && w.id != step.old && w.is_live() && w.phase == Phase::Ready);
                    if !ready {
                        return;
                    }
                    let w = &mut self.workers[i];
                    w.shutdown(self.cli.drain_timeout);
                    wlog(w, "shutdown sent (rolling)");
                    self.metrics.restart(Reason::Rolling);
                    r.current = Some(Step { phase: StepPhase::WaitExit, ..step });
                    return;
                }
                StepPhase::WaitExit => {
                    if old.is_some() {
                        return;
                    }
                    r.replaced += 1;
                    r.current = None;
                }
                StepPhase::OldFirstWaitExit => {
                    if old.is_some() {
                        return;
                    }
                    // `reconcile` starts the replacement now.
                    r.current = Some(Step { phase: StepPhase::OldFirstWaitReady, ..step });
                }
                StepPhase::OldFirstWaitReady => {
                    if !self.workers.iter().any(|w| w.slot == step.slot && w.is_live() && w.phase == Phase::Ready) {
                        return;
                    }
                    r.replaced += 1;
                    r.current = None;
                }
            }
        }
    }

    /// Live workers in `slot` (serving or starting, not draining or killed).
    fn live_in(&self, slot: usize) -> usize {
        self.workers.iter().filter(|w| w.slot == slot && w.is_live()).count()
    }

    /// How many live workers `slot` should have now: two while a rolling
    /// restart starts its replacement, none while the TEST ONLY old-first
    /// order holds it empty, otherwise one.
    fn wanted(&self, slot: usize) -> usize {
        let r = self.rolling.as_ref();
        if r.and_then(Rolling::wants_extra) == Some(slot) {
            2
        } else if r.and_then(Rolling::holds_empty) == Some(slot) {
            0
        } else {
            1
        }
    }

    /// The slot has fewer live workers than it wants: its respawn timer counts.
    fn short(&self, slot: usize) -> bool {
        slot < self.target && self.live_in(slot) < self.wanted(slot)
    }

    /// Give every wanted slot its worker(s); retire workers beyond the target.
    fn reconcile(&mut self) {
        let drain_timeout = self.cli.drain_timeout;
        for w in self.workers.iter_mut().filter(|w| w.is_live() && w.slot >= self.target) {
            w.shutdown(drain_timeout);
            wlog(w, "shutdown sent (worker count lowered)");
        }
        while self.slots.len() < self.target {
            self.slots.push(Slot::default());
        }
        let now = Instant::now();
        for slot in self.target..self.slots.len() {
            self.slots[slot].respawn_at = None;
        }
        for slot in 0..self.target {
            let (live, want) = (self.live_in(slot), self.wanted(slot));
            if live >= want {
                // Served (e.g. by a rolling restart's replacement) while its
                // crash respawn waited: that timer can never fire; drop it.
                self.slots[slot].respawn_at = None;
                continue;
            }
            if self.slots[slot].respawn_at.is_some_and(|at| now < at) {
                continue;
            }
            self.slots[slot].respawn_at = None;
            for _ in live..want {
                if let Err(e) = self.spawn(slot) {
                    log(&format!("slot {slot}: cannot start a worker: {e:#}"));
                    self.on_crash(slot, Duration::ZERO);
                    break;
                }
            }
        }
    }
}
