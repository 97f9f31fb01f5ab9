//! The target's lifecycle: launch it (or attach to a running one by pid or pid
//! file), wait until its readiness URL answers, tell when it is healthy again
//! after a fault (ready, and as many workers as before), restart it naively,
//! and stop it at the end (stop signal, then SIGKILL after a timeout).
//!
//! A launched target runs in its own process group with stdout/stderr in the
//! run folder, and is SIGKILLed (the whole group) if the `Target` is dropped
//! without `stop`, so a harness that fails or panics does not leave servers
//! behind. Not here: choosing and hurting workers (faults.rs), reading /proc
//! (procs.rs).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid as NixPid;

use crate::host::procs::{self, Pid, WorkerTree};
use crate::scenario::url::HttpUrl;
use crate::scenario::{LaunchSpec, TargetSpec};
use crate::traffic::client::{Connector, Request};
use crate::traffic::tls::{self, TlsSettings};

/// How often readiness and health are polled.
const POLL: Duration = Duration::from_millis(100);
/// One readiness probe's budget.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the worker set must stay the same after readiness before the
/// target counts as started: a pre-fork server answers as soon as its first
/// worker accepts, while the others may still be forking.
const SETTLE: Duration = Duration::from_millis(300);
/// How much of the target's stderr an error quotes.
const STDERR_TAIL_BYTES: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot start the target `{argv0}`: {source}")]
    Spawn { argv0: String, source: std::io::Error },
    #[error("the target's launch command is empty")]
    EmptyArgv,
    #[error("cannot create {path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
    #[error("the target (pid {pid}) exited with {status} before it was ready{}", tail(.stderr_tail))]
    ExitedEarly { pid: Pid, status: String, stderr_tail: String },
    #[error(
        "the target did not answer {url} within {timeout:?} (last: {last}); raise target.ready_timeout \
         or check the target's command and address{}",
        tail(.stderr_tail)
    )]
    NotReady { url: String, timeout: Duration, last: String, stderr_tail: String },
    #[error("pid file {path}: {why}")]
    PidFile { path: PathBuf, why: String },
    #[error("no process with pid {0} (attach needs a running target)")]
    NoSuchProcess(Pid),
    #[error("target: {0}")]
    Url(String),
    #[error("target stop signal: {0}")]
    BadSignal(String),
    #[error("sending {signal} to pid {pid}: {source}")]
    Signal { pid: Pid, signal: Signal, source: nix::Error },
    #[error("{0} needs a target the harness launched (this one was attached or is external)")]
    NotLaunched(&'static str),
    #[error("the target was not healthy again within {timeout:?}: {why}")]
    Unhealthy { timeout: Duration, why: String },
    #[error("reading the target's processes: {0}")]
    Procs(#[from] procs::ProcError),
}

fn tail(stderr_tail: &str) -> String {
    if stderr_tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- end of the target's stderr ---\n{}", stderr_tail.trim_end())
    }
}

/// "SIGTERM", "TERM", "sigterm" -> SIGTERM.
pub fn parse_signal(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<Signal>().map_err(|_| format!("unknown signal \"{name}\" (e.g. SIGKILL, SIGTERM, SIGHUP, SIGINT)"))
}

/// Send `signal` to one process.
pub fn signal(pid: Pid, signal: Signal) -> Result<(), TargetError> {
    kill(NixPid::from_raw(pid), signal).map_err(|source| TargetError::Signal { pid, signal, source })
}

// ---------------------------------------------------------------------------
// A minimal GET on top of the engine's client (one HTTP client path).

#[derive(Debug)]
pub enum GetError {
    /// The URL is not one the harness can use.
    Url(String),
    /// Connect, send or receive failed.
    Http(String),
}

#[derive(Debug)]
pub struct GetResponse {
    pub status: u16,
    pub body: Option<Vec<u8>>,
}

/// A URL resolved for one request: where to connect, the Host header, the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// `https://`, and the host alone (the TLS server name).
    pub tls: Option<String>,
}

/// Parse `url` ([`HttpUrl`]) and resolve its host (pinned names first: host::names).
pub async fn resolve(url: &str) -> Result<Resolved, GetError> {
    let u = HttpUrl::parse(url).map_err(|e| GetError::Url(format!("{url:?} {e}")))?;
    let addr = crate::host::names::lookup_async(&u.host, u.port)
        .await
        .map_err(|e| GetError::Url(format!("{url:?}: cannot resolve {}: {e}", u.authority)))?
        .into_iter()
        .next()
        .ok_or_else(|| GetError::Url(format!("{url:?}: {} resolves to no address", u.authority)))?;
    Ok(Resolved { addr, host: u.authority, path: u.path, tls: u.tls.then_some(u.host) })
}

/// Largest answer of the target's admin side (the audit): 1 GiB, about
/// four million orders.
pub const MAX_ADMIN_RESPONSE_BYTES: usize = 1 << 30;

/// One GET with a deadline, on a fresh connection. Over https the
/// certificate is not verified: this GET asks "is it up" (readiness) or
/// reads the audit; the run's own connections verify it, and a refused
/// certificate fails the run there.
pub async fn http_get(url: &str, timeout: Duration, keep_body: bool) -> Result<GetResponse, GetError> {
    let Resolved { addr, host, path, tls } = resolve(url).await?;
    let tls = match tls {
        None => None,
        Some(name) => {
            let settings = TlsSettings { insecure_skip_verify: true, resumption: false, ..TlsSettings::default() };
            Some(tls::connect_for(&name, &settings).map_err(|e| GetError::Url(format!("{url:?}: {e}")))?)
        }
    };
    let mut connector = Connector::new(addr, host, Vec::new()).with_tls(tls);
    // The audit lists every order: a soak's hundreds of thousands of orders
    // outgrow the 64 MiB a shopper's response may have.
    connector.max_response_bytes = MAX_ADMIN_RESPONSE_BYTES;
    let req = Request { method: "GET", path: &path, headers: &[], body: None };
    let mut slot = None;
    let mut scratch = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let attempt = crate::traffic::client::send(&connector, &mut slot, &req, keep_body, deadline, &mut scratch).await;
    match attempt.result {
        Ok(resp) => Ok(GetResponse { status: resp.status, body: resp.body }),
        Err(f) => Err(GetError::Http(format!("{}: {}", f.class.as_str(), f.detail))),
    }
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Url(s) | GetError::Http(s) => f.write_str(s),
        }
    }
}

// ---------------------------------------------------------------------------

/// What "healthy again" means after a fault.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Worker count to get back to (the count before any fault).
    pub workers: usize,
    /// Pids that must no longer be workers (killed ones, the old generation
    /// of a rolling restart).
    pub gone: Vec<Pid>,
    /// How long the worker set must stay the same before it counts as steady
    /// (a rolling restart has moments with the right count between steps).
    pub settle: Duration,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Graceful(status) => write!(f, "stopped gracefully ({status})"),
            Stopped::Killed => f.write_str("killed (SIGKILL) after the stop timeout"),
            Stopped::AlreadyExited(status) => write!(f, "had already exited ({status})"),
            Stopped::NotOurs => f.write_str("left running (attached, not launched by the harness)"),
        }
    }
}

/// Why the target is not steady: not yet, or never again (it exited).
enum Check {
    NotYet(String),
    Gone(String),
}

/// How the target was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It exited on the stop signal within the timeout.
    Graceful(String),
    /// It had to be SIGKILLed.
    Killed,
    /// It had exited already (crashed, or stopped by someone else).
    AlreadyExited(String),
    /// Attached or external: the harness does not stop what it did not start.
    NotOurs,
}

struct Launched {
    spec: LaunchSpec,
    child: tokio::process::Child,
    /// The child's pid, kept after it is reaped (tokio forgets it then).
    pid: Pid,
    stdout: PathBuf,
    stderr: PathBuf,
    launches: u32,
    /// Exit status once seen.
    exited: Option<ExitStatus>,
    /// `stop` has run (and killed what was left of the group).
    stopped: bool,
}

enum Kind {
    Launched(Box<Launched>),
    /// Attached by pid (or pid file): signals and /proc only. With a pid
    /// file, a master replaced by the user's own deploy (a new pid written
    /// to the file) is followed.
    Attached {
        pid: Pid,
        pid_file: Option<PathBuf>,
    },
    /// Neither launched nor attached: readiness only, no process faults.
    External,
}

/// A running target. Methods take `&self` so the engine and the chaos task can
/// share it (`Arc<Target>`).
pub struct Target {
    base_url: String,
    ready_url: String,
    ready_timeout: Duration,
    kind: Mutex<Kind>,
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            format!("signal {}", Signal::try_from(sig).map(|s| s.as_str().to_string()).unwrap_or(sig.to_string()))
        }
        _ => status.to_string(),
    }
}

/// The last couple of KB of a file, from a line start.
pub fn file_tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(STDERR_TAIL_BYTES);
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    match (from > 0, text.find('\n')) {
        (true, Some(i)) => text[i + 1..].to_string(),
        _ => text,
    }
}

fn spawn(
    spec: &LaunchSpec,
    stdout: &Path,
    stderr: &Path,
    launch_no: u32,
) -> Result<tokio::process::Child, TargetError> {
    let (argv0, args) = spec.argv.split_first().ok_or(TargetError::EmptyArgv)?;
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TargetError::Output { path: path.to_path_buf(), source })
    };
    let (mut out, mut err) = (open(stdout)?, open(stderr)?);
    // Mark each launch in the logs: a naive restart appends a second life.
    for f in [&mut out, &mut err] {
        let _ = writeln!(f, "--- harness: launch #{launch_no} of {:?} ---", spec.argv);
    }
    // If the harness dies without cleaning up (SIGKILL, OOM), the kernel sends
    // the target its stop signal, so it does not outlive the run. The signal
    // fires when the *thread* that spawned it exits: the harness spawns from
    // its main thread or a runtime worker thread, which live as long as the run.
    let death_signal = parse_signal(&spec.stop_signal).map_err(TargetError::BadSignal)?;
    let harness_pid = nix::unistd::getpid();
    let mut cmd = tokio::process::Command::new(argv0);
    cmd.args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group: the harness can kill the whole tree, and a
        // terminal's Ctrl-C reaches the harness, which then stops it in order.
        .process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes two
    // async-signal-safe system calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(death_signal).map_err(std::io::Error::from)?;
            // The harness may have died before prctl: then nobody will signal us.
            if nix::unistd::getppid() != harness_pid {
                return Err(std::io::Error::other("the harness exited while starting the target"));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| TargetError::Spawn { argv0: argv0.clone(), source })
}

impl Target {
    fn new(spec: &TargetSpec, kind: Kind) -> Target {
        Target {
            base_url: spec.base_url.clone(),
            ready_url: format!("{}{}", spec.base_url.trim_end_matches('/'), spec.ready_path),
            ready_timeout: spec.ready_timeout,
            kind: Mutex::new(kind),
        }
    }

    /// Start the target the way the scenario says: launch it (`launch`
    /// overrides the scenario's own launch command, e.g. from the command
    /// line), or attach to the pid in its pid file, or use it as it is; then
    /// wait until it is ready and its worker set has settled.
    pub async fn start(spec: &TargetSpec, launch: Option<&LaunchSpec>, run_dir: &Path) -> Result<Target, TargetError> {
        let target = match (launch.or(spec.launch.as_ref()), &spec.pid_file) {
            (Some(l), _) => Target::launch(spec, l, run_dir)?,
            (None, Some(pid_file)) => {
                let target = Target::attach(spec, read_pid_file(pid_file)?)?;
                if let Kind::Attached { pid_file: f, .. } = &mut *target.kind.lock().unwrap_or_else(|e| e.into_inner())
                {
                    *f = Some(pid_file.clone());
                }
                target
            }
            (None, None) => Target::new(spec, Kind::External),
        };
        target.wait_ready().await?;
        target.wait_settled(SETTLE, target.ready_timeout).await?;
        Ok(target)
    }

    /// Launch without waiting for readiness. stdout and stderr go to
    /// `target-stdout.log` and `target-stderr.log` in `run_dir`.
    pub fn launch(spec: &TargetSpec, launch: &LaunchSpec, run_dir: &Path) -> Result<Target, TargetError> {
        std::fs::create_dir_all(run_dir)
            .map_err(|source| TargetError::Output { path: run_dir.to_path_buf(), source })?;
        let (stdout, stderr) = (run_dir.join("target-stdout.log"), run_dir.join("target-stderr.log"));
        let child = spawn(launch, &stdout, &stderr, 1)?;
        let pid = child.id().map_or(0, |p| p as Pid);
        let l =
            Launched { spec: launch.clone(), child, pid, stdout, stderr, launches: 1, exited: None, stopped: false };
        Ok(Target::new(spec, Kind::Launched(Box::new(l))))
    }

    /// Attach to a running target by its (master) pid and wait until it is ready.
    pub async fn attach_ready(spec: &TargetSpec, pid: Pid) -> Result<Target, TargetError> {
        let target = Target::attach(spec, pid)?;
        target.wait_ready().await?;
        target.wait_settled(SETTLE, target.ready_timeout).await?;
        Ok(target)
    }

    /// Attach to a running target by its (master) pid.
    pub fn attach(spec: &TargetSpec, pid: Pid) -> Result<Target, TargetError> {
        if !procs::is_alive(pid) {
            return Err(TargetError::NoSuchProcess(pid));
        }
        Ok(Target::new(spec, Kind::Attached { pid, pid_file: None }))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The master's (or the single process's) pid; None for an external target
    /// or a launched one that has exited.
    pub fn pid(&self) -> Option<Pid> {
        let mut kind = self.kind.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *kind {
            Kind::Launched(l) => {
                refresh_exit(l);
                if l.exited.is_some() { None } else { Some(l.pid) }
            }
            Kind::Attached { pid, pid_file } => {
                if !procs::is_alive(*pid)
                    && let Some(new) = pid_file.as_deref().and_then(|f| read_pid_file(f).ok())
                    && procs::is_alive(new)
                {
                    *pid = new;
                }
                procs::is_alive(*pid).then_some(*pid)
            }
            Kind::External => None,
        }
    }

    /// Whether the harness launched this target (and so may restart it).
    pub fn is_launched(&self) -> bool {
        matches!(&*self.kind.lock().unwrap_or_else(|e| e.into_inner()), Kind::Launched(_))
    }

    fn follows_pid_file(&self) -> bool {
        matches!(&*self.kind.lock().unwrap_or_else(|e| e.into_inner()), Kind::Attached { pid_file: Some(_), .. })
    }

    fn is_external(&self) -> bool {
        matches!(&*self.kind.lock().unwrap_or_else(|e| e.into_inner()), Kind::External)
    }

    /// How a launched target exited, if it has.
    pub fn exit_status(&self) -> Option<String> {
        let mut kind = self.kind.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *kind {
            Kind::Launched(l) => {
                refresh_exit(l);
                l.exited.map(describe)
            }
            _ => None,
        }
    }

    /// The tail of a launched target's stderr (empty otherwise).
    pub fn stderr_tail(&self) -> String {
        match &*self.kind.lock().unwrap_or_else(|e| e.into_inner()) {
            Kind::Launched(l) => file_tail(&l.stderr),
            _ => String::new(),
        }
    }

    /// The master and its current workers (none for a single process).
    pub fn worker_tree(&self) -> Result<WorkerTree, TargetError> {
        match self.pid() {
            Some(pid) => Ok(procs::worker_tree(pid)?),
            None => Ok(WorkerTree { master: 0, workers: vec![] }),
        }
    }

    /// One readiness probe: Ok(status) if the target answered with a status
    /// below 500.
    pub async fn probe(&self) -> Result<u16, String> {
        match http_get(&self.ready_url, PROBE_TIMEOUT, false).await {
            Ok(r) if r.status < 500 => Ok(r.status),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Wait until the readiness URL answers, at most `ready_timeout`. Fails
    /// at once if a launched target exits meanwhile.
    pub async fn wait_ready(&self) -> Result<(), TargetError> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let last = match self.probe().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if let Some(status) = self.exit_status() {
                let pid = self.launched_pid().unwrap_or(0);
                return Err(TargetError::ExitedEarly { pid, status, stderr_tail: self.stderr_tail() });
            }
            if Instant::now() >= deadline {
                return Err(TargetError::NotReady {
                    url: self.ready_url.clone(),
                    timeout: self.ready_timeout,
                    last,
                    stderr_tail: self.stderr_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the worker set has not changed for `settle` (at most
    /// `timeout`; a target whose workers keep changing is used as it is then).
    /// Returns the settled tree.
    pub async fn wait_settled(&self, settle: Duration, timeout: Duration) -> Result<WorkerTree, TargetError> {
        let deadline = Instant::now() + timeout;
        let mut tree = self.worker_tree()?;
        let mut since = Instant::now();
        while since.elapsed() < settle && Instant::now() < deadline {
            tokio::time::sleep(POLL.min(settle)).await;
            let now = self.worker_tree()?;
            if now.pids() != tree.pids() {
                since = Instant::now();
                tree = now;
            }
        }
        Ok(tree)
    }

    fn launched_pid(&self) -> Option<Pid> {
        match &*self.kind.lock().unwrap_or_else(|e| e.into_inner()) {
            Kind::Launched(l) => Some(l.pid),
            _ => None,
        }
    }

    /// Wait until the target is at steady state again: readiness answers, the
    /// worker count is `health.workers`, none of `health.gone` is a worker,
    /// and the worker set has not changed for `health.settle`. Returns when
    /// that steady state began (not when the settle time ended).
    pub async fn wait_healthy(&self, health: &Health, timeout: Duration) -> Result<Instant, TargetError> {
        let deadline = Instant::now() + timeout;
        // (since, worker set) of the current candidate steady state.
        let mut candidate: Option<(Instant, Vec<Pid>)> = None;
        let mut why = String::from("not checked yet");
        loop {
            let now = Instant::now();
            match self.steady_check(health).await {
                Ok(pids) => {
                    let since = match candidate.take() {
                        Some((since, set)) if set == pids => since,
                        _ => now,
                    };
                    if since.elapsed() >= health.settle {
                        return Ok(since);
                    }
                    candidate = Some((since, pids));
                }
                Err(Check::Gone(why)) => return Err(TargetError::Unhealthy { timeout, why }),
                Err(Check::NotYet(e)) => {
                    candidate = None;
                    why = e;
                }
            }
            if Instant::now() >= deadline {
                return Err(TargetError::Unhealthy { timeout, why });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look at the target: its worker pids if it is steady right now.
    async fn steady_check(&self, health: &Health) -> Result<Vec<Pid>, Check> {
        if self.pid().is_none() && self.follows_pid_file() {
            return Err(Check::NotYet("waiting for a live pid in the pid file".to_string()));
        }
        if self.pid().is_none() && !self.is_external() {
            return Err(Check::Gone(match self.exit_status() {
                Some(s) => format!("the target exited ({s})"),
                None => "the target's process is gone".to_string(),
            }));
        }
        let pids = self.worker_tree().map_err(|e| Check::NotYet(e.to_string()))?.pids();
        if pids.len() != health.workers {
            return Err(Check::NotYet(format!("{} workers, expected {}", pids.len(), health.workers)));
        }
        if let Some(old) = health.gone.iter().find(|p| pids.contains(p)) {
            return Err(Check::NotYet(format!("worker {old} is still running")));
        }
        self.probe().await.map_err(|e| Check::NotYet(format!("not ready: {e}")))?;
        Ok(pids)
    }

    /// Stop a launched target: its stop signal to the master, then SIGKILL to
    /// the whole process group after `stop_timeout` (the launch spec's, or
    /// the one given). Leftover processes of its group are killed either way.
    pub async fn stop(&self, stop_timeout: Option<Duration>) -> Result<Stopped, TargetError> {
        let (pid, sig, timeout) = {
            let mut kind = self.kind.lock().unwrap_or_else(|e| e.into_inner());
            let Kind::Launched(l) = &mut *kind else { return Ok(Stopped::NotOurs) };
            refresh_exit(l);
            let first_stop = !l.stopped;
            l.stopped = true;
            if let Some(status) = l.exited {
                if first_stop {
                    // Workers may outlive a master that died.
                    kill_group(l.pid);
                }
                return Ok(Stopped::AlreadyExited(describe(status)));
            }
            let sig = parse_signal(&l.spec.stop_signal).map_err(TargetError::BadSignal)?;
            (l.pid, sig, stop_timeout.unwrap_or(l.spec.stop_timeout))
        };
        if let Some(status) = self.exit_status() {
            kill_group(pid);
            return Ok(Stopped::AlreadyExited(status));
        }
        signal(pid, sig)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                kill_group(pid);
                return Ok(Stopped::Graceful(status));
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kill_group(pid);
        // Reap it so that its pid is not reported as alive (zombie).
        for _ in 0..250 {
            if self.exit_status().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Stopped::Killed)
    }

    /// The naive restart: stop the target, start it again with the same
    /// command, wait until it is ready. Returns (old pid, new pid).
    pub async fn restart(&self, stop_timeout: Duration) -> Result<(Pid, Pid), TargetError> {
        let old = self.launched_pid().ok_or(TargetError::NotLaunched("a naive restart"))?;
        self.stop(Some(stop_timeout)).await?;
        let new = {
            let mut kind = self.kind.lock().unwrap_or_else(|e| e.into_inner());
            let Kind::Launched(l) = &mut *kind else { return Err(TargetError::NotLaunched("a naive restart")) };
            l.launches += 1;
            l.child = spawn(&l.spec, &l.stdout, &l.stderr, l.launches)?;
            l.exited = None;
            l.stopped = false;
            l.pid = l.child.id().map_or(0, |p| p as Pid);
            l.pid
        };
        self.wait_ready().await?;
        self.wait_settled(SETTLE, self.ready_timeout).await?;
        Ok((old, new))
    }
}

fn refresh_exit(l: &mut Launched) {
    if l.exited.is_none()
        && let Ok(Some(status)) = l.child.try_wait()
    {
        l.exited = Some(status);
    }
}

/// SIGKILL every process of the group led by `pgid` (the target and its
/// workers). ESRCH (nothing left) is the normal case after a clean stop.
fn kill_group(pgid: Pid) {
    let _ = killpg(NixPid::from_raw(pgid), Signal::SIGKILL);
}

impl Drop for Target {
    fn drop(&mut self) {
        let kind = self.kind.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Kind::Launched(l) = kind {
            if !l.stopped {
                kill_group(l.pid);
            }
        }
    }
}

/// A launch spec from a command line (`--launch "reference-server --workers 4"`),
/// split like a POSIX shell would. Environment, stop signal and stop timeout
/// come from `base` (the scenario's own launch) when there is one, otherwise
/// the scenario defaults (SIGINT, 10 s).
pub fn launch_from_command_line(cmd: &str, base: Option<&LaunchSpec>) -> Result<LaunchSpec, String> {
    let argv =
        shlex::split(cmd).ok_or_else(|| format!("cannot split the command line {cmd:?} (unbalanced quotes?)"))?;
    if argv.is_empty() {
        return Err("the launch command line is empty".to_string());
    }
    Ok(match base {
        Some(b) => LaunchSpec { argv, ..b.clone() },
        None => LaunchSpec {
            argv,
            env: Default::default(),
            stop_signal: "SIGINT".to_string(),
            stop_timeout: Duration::from_secs(10),
        },
    })
}

/// Read a pid file: one decimal pid, surrounding whitespace allowed.
pub fn read_pid_file(path: &Path) -> Result<Pid, TargetError> {
    // A pid is a few digits; a big file is not a pid file (issue 18, item 6).
    let text = crate::scenario::read_capped(path, 4096)
        .map_err(|e| TargetError::PidFile { path: path.to_path_buf(), why: e.to_string() })?;
    let pid: Pid = text.trim().parse().map_err(|_| TargetError::PidFile {
        path: path.to_path_buf(),
        why: format!("expected one decimal pid, found {:?}", text.trim()),
    })?;
    if pid <= 0 {
        return Err(TargetError::PidFile { path: path.to_path_buf(), why: format!("pid {pid} is not a process id") });
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_with_or_without_prefix() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert!(parse_signal("SIGNOPE").unwrap_err().contains("SIGNOPE"));
    }

    #[test]
    fn command_lines_split_like_a_shell_and_keep_the_scenario_stop() {
        let l = launch_from_command_line("server --name 'a b' --x=\"1 2\"", None).unwrap();
        assert_eq!(l.argv, vec!["server", "--name", "a b", "--x=1 2"]);
        assert_eq!(l.stop_signal, "SIGINT");
        let base = LaunchSpec {
            argv: vec!["old".into()],
            env: [("K".to_string(), "V".to_string())].into(),
            stop_signal: "SIGTERM".into(),
            stop_timeout: Duration::from_secs(3),
        };
        let l = launch_from_command_line("new --flag", Some(&base)).unwrap();
        assert_eq!((l.argv[0].as_str(), l.stop_signal.as_str(), l.env.len()), ("new", "SIGTERM", 1));
        assert!(launch_from_command_line("  ", None).is_err());
        assert!(launch_from_command_line("x 'unbalanced", None).is_err());
    }

    #[test]
    fn pid_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("harness-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.pid");
        std::fs::write(&p, " 4242\n").unwrap();
        assert_eq!(read_pid_file(&p).unwrap(), 4242);
        std::fs::write(&p, "-3").unwrap();
        assert!(read_pid_file(&p).unwrap_err().to_string().contains("not a process id"));
        assert!(read_pid_file(&dir.join("missing.pid")).unwrap_err().to_string().contains("missing.pid"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn urls_are_split_and_bad_ones_named() {
        let r = resolve("http://127.0.0.1:9090/audit?x=1").await.unwrap();
        assert_eq!((r.addr.port(), r.host.as_str(), r.path.as_str()), (9090, "127.0.0.1:9090", "/audit?x=1"));
        let r = resolve("http://127.0.0.1").await.unwrap();
        assert_eq!((r.addr.port(), r.path.as_str()), (80, "/"));
        let r = resolve("https://127.0.0.1/").await.unwrap();
        assert_eq!((r.addr.port(), r.tls.as_deref()), (443, Some("127.0.0.1")));
        assert!(matches!(resolve("ftp://127.0.0.1/").await, Err(GetError::Url(m)) if m.contains("http://")));
        assert!(matches!(resolve("http:///x").await, Err(GetError::Url(_))));
    }
}
