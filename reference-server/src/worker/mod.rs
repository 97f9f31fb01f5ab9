//! A worker process: one tokio current-thread runtime (one event loop, like a
//! Node process), serving the inherited listener, reporting to the master
//! over the inherited IPC socket. The single-process mode shares its serve
//! path (`serve`) but not this module's IPC side.
//!
//! Workers take orders over IPC, not signals: `shutdown` or the loss of the
//! IPC channel (the master died) both mean drain and exit. Terminal signals
//! (SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU) and SIGUSR2 are ignored, being
//! meant for the master; a SIGTERM sent to the worker itself drains it like `shutdown`
//! and tells the master (`draining`), which replaces it at once: a drain,
//! not a crash.

pub mod accept;
mod auto_response;
pub mod body;
pub mod conn;
pub mod serve;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::ipc::{self, MasterMsg, WorkerMsg};
use crate::routes::{self, Identity};
use crate::{build_info, shop};
pub use serve::{ServeConfig, Shared, Source, serve};

/// What the master tells a worker through its environment.
#[derive(Debug, Clone)]
pub struct WorkerEnv {
    pub id: u64,
    pub slot: usize,
    /// The shared listener (shared balancing) ...
    pub listen_fd: Option<RawFd>,
    /// ... or the hand-off socket the master passes connections on (sticky).
    pub handoff_fd: Option<RawFd>,
    pub ipc_fd: RawFd,
}

pub const ENV_ID: &str = "RS_WORKER_ID";
/// A worker's exit code when it ends its own drain at `--drain-timeout`
/// (no master to SIGKILL it; docs/CLUSTER.md, "Exit codes").
pub const EXIT_DRAIN_TIMEOUT: i32 = 4;
pub const ENV_SLOT: &str = "RS_WORKER_SLOT";
pub const ENV_LISTEN_FD: &str = "RS_LISTEN_FD";
pub const ENV_IPC_FD: &str = "RS_IPC_FD";
pub const ENV_HANDOFF_FD: &str = "RS_HANDOFF_FD";

impl WorkerEnv {
    /// Some when this process was started by a master as a worker.
    pub fn from_env() -> Result<Option<Self>> {
        let Ok(id) = std::env::var(ENV_ID) else {
            return Ok(None);
        };
        let get =
            |k: &str| -> Result<String> { std::env::var(k).with_context(|| format!("worker started without {k}")) };
        let fd = |k: &str| -> Result<Option<RawFd>> {
            std::env::var(k).ok().map(|v| v.parse().with_context(|| format!("bad {k}={v}"))).transpose()
        };
        let (listen_fd, handoff_fd) = (fd(ENV_LISTEN_FD)?, fd(ENV_HANDOFF_FD)?);
        if listen_fd.is_none() == handoff_fd.is_none() {
            bail!("worker started with neither or both of {ENV_LISTEN_FD} and {ENV_HANDOFF_FD}");
        }
        Ok(Some(Self {
            id: id.parse().with_context(|| format!("{ENV_ID}={id} is not a number"))?,
            slot: get(ENV_SLOT)?.parse().context("bad RS_WORKER_SLOT")?,
            listen_fd,
            handoff_fd,
            ipc_fd: get(ENV_IPC_FD)?.parse().context("bad RS_IPC_FD")?,
        }))
    }
}

/// Signals a terminal sends to its whole process group. The master handles
/// them; a worker must not die of a Ctrl-C meant for the master.
fn ignore_group_signals() -> Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SIGUSR2 (the master's binary upgrade) too: its default action is to
    // terminate, and `systemctl kill -s USR2` signals every process of a unit.
    for sig in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP, Signal::SIGUSR2, Signal::SIGTTIN, Signal::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal(sig, SigHandler::SigIgn) }.context("ignoring terminal signals")?;
    }
    Ok(())
}

/// TEST ONLY (`--test-ready-delay MAX`): how long worker `id` waits before
/// it serves and says `ready`, spread over 0..=MAX by the id so that workers
/// of one test differ but a run can be repeated.
fn test_ready_delay(max: Option<Duration>, id: u64) -> Option<Duration> {
    let max_ms = u64::try_from(max?.as_millis()).unwrap_or(u64::MAX);
    // splitmix64's finaliser: consecutive ids land far apart.
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Some(Duration::from_millis(z % max_ms.saturating_add(1)))
}

/// Say `failed` (with why) to the master before exiting at start-up, so
/// its crash-loop and rolling-restart log lines can name the cause. Best
/// effort and blocking: the event loop is not running yet, and a master
/// that is gone needs no reason.
fn tell_master_failed(ipc: &OwnedFd, err: &anyhow::Error) {
    let line = ipc::encode(&WorkerMsg::Failed { error: format!("{err:#}") });
    let _ = nix::unistd::write(ipc, &line);
}

/// Where this worker's connections come from: the shared listener
/// inherited from the master (or, TEST ONLY, one of its own), or the sticky
/// master's hand-off socket.
fn connection_source(cli: &Cli, listen_fd: Option<OwnedFd>, handoff_fd: Option<OwnedFd>) -> Result<Source> {
    match (listen_fd, handoff_fd) {
        (Some(fd), _) => {
            let mut std_listener = std::net::TcpListener::from(fd);
            if cli.unsafe_reuseport {
                // TEST ONLY, defect 4: a listener of our own in place of
                // the shared one; serve() closes it when the drain starts.
                let addr = std_listener.local_addr().context("reading the inherited listener's address")?;
                std_listener = crate::listen::bind_reuseport(addr, cli.backlog)?;
            }
            std_listener.set_nonblocking(true).context("listener non-blocking")?;
            Ok(Source::Listener(tokio::net::TcpListener::from_std(std_listener).context("registering the listener")?))
        }
        (None, Some(fd)) => {
            // SAFETY: the AsyncFd owns the fd (an OwnedFd) for as long
            // as it is registered; nothing else closes it.
            let afd = unsafe { AsyncFd::register(fd) }
                .map_err(|e| anyhow::anyhow!("registering the hand-off socket: {e}"))?;
            Ok(Source::Handoff(afd))
        }
        (None, None) => bail!("worker has no listener and no hand-off socket"),
    }
}

/// Orders from the master; EOF means it died: drain. SIGTERM sent to the
/// worker itself (systemd's KillMode=control-group signals every process in
/// the unit) also drains rather than dropping requests.
async fn watch_master(
    ipc_read: tokio::net::unix::OwnedReadHalf,
    mut sigterm: tokio::signal::unix::Signal,
    drain: CancellationToken,
    drain_timeout: Duration,
    self_drain_tx: mpsc::UnboundedSender<WorkerMsg>,
    id: u64,
) {
    let mut lines = BufReader::new(ipc_read).lines();
    // Whether the master is there to enforce the drain timeout.
    let master_watches = loop {
        let next = tokio::select! {
            next = lines.next_line() => next,
            _ = sigterm.recv() => {
                crate::log_line(&format!("[worker {}] SIGTERM; draining", id));
                // So the master replaces us now, and not as a crash.
                let _ = self_drain_tx.send(WorkerMsg::Draining { reason: "sigterm".to_string() });
                break false;
            }
        };
        match next {
            Ok(Some(line)) => match serde_json::from_str::<MasterMsg>(&line) {
                Ok(MasterMsg::Shutdown) => break true,
                Err(e) => crate::log_line(&format!("[worker {}] ignoring bad message from master: {e}: {line}", id)),
            },
            Ok(None) | Err(_) => {
                crate::log_line(&format!("[worker {}] lost the master; draining", id));
                break false;
            }
        }
    };
    // The writer ends (flushing `drained`) only once every sender is gone.
    drop(self_drain_tx);
    drain.cancel();
    if !master_watches {
        // No master will SIGKILL us at the drain timeout (it died, or
        // the SIGTERM came from elsewhere and the master may not know):
        // enforce it here, so an orphan never outlives a stuck request.
        tokio::time::sleep(drain_timeout).await;
        crate::log_line(&format!("[worker {}] drain timeout ({drain_timeout:?}) without the master; exiting", id));
        std::process::exit(EXIT_DRAIN_TIMEOUT);
    }
}

/// Run as a cluster worker until drained.
pub fn run(cli: &Cli, env: WorkerEnv) -> Result<()> {
    if cli.test_crash_on_start {
        bail!("--test-crash-on-start: exiting at start-up on purpose");
    }
    ignore_group_signals()?;
    // SAFETY: the master passed these fds to us across exec and nothing else
    // in this process owns them.
    let listen_fd = env.listen_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let handoff_fd = env.handoff_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let ipc_fd = unsafe { OwnedFd::from_raw_fd(env.ipc_fd) };
    // The files on disk now: a rolling restart is how a new certificate is
    // deployed. A worker that cannot load them is a broken deploy, which
    // the master handles as a crash loop; it learns why first.
    let tls = match cli.tls().context("loading the TLS certificate and key") {
        Ok(tls) => tls,
        Err(e) => {
            tell_master_failed(&ipc_fd, &e);
            return Err(e);
        }
    };
    let shop = shop::open(&cli.shop).context("opening the shop store")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop")?;
    rt.block_on(async move {
        let source = connection_source(cli, listen_fd, handoff_fd)?;
        let std_ipc = std::os::unix::net::UnixStream::from(ipc_fd);
        std_ipc.set_nonblocking(true).context("ipc non-blocking")?;
        let ipc = tokio::net::UnixStream::from_std(std_ipc).context("registering the ipc socket")?;
        let (ipc_read, mut ipc_write) = ipc.into_split();

        let worker_id = cli.worker_label(&env.id.to_string());
        let identity = Identity { worker_id: worker_id.clone(), pid: std::process::id() };
        let drain = CancellationToken::new();
        let app = routes::app(identity, drain.clone(), shop::router(shop), cli.live_interval);
        let shared = Arc::new(Shared::default());

        // One writer task owns the IPC write half; messages queue to it.
        let (tx, mut rx) = mpsc::unbounded_channel::<WorkerMsg>();
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if ipc_write.write_all(&ipc::encode(&msg)).await.is_err() {
                    break;
                }
            }
        });

        let sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::spawn(watch_master(ipc_read, sigterm, drain.clone(), cli.drain_timeout, tx.clone(), env.id));

        if let Some(delay) = test_ready_delay(cli.test_ready_delay, env.id) {
            tokio::time::sleep(delay).await;
        }
        let _ = tx.send(WorkerMsg::Ready {
            pid: std::process::id(),
            version: build_info::VERSION.to_string(),
            build_id: build_info::build_id(),
        });

        let beat_tx = tx.clone();
        let beat_shared = Arc::clone(&shared);
        let interval = cli.heartbeat_interval.max(Duration::from_millis(10));
        let heartbeat = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                if beat_tx.send(WorkerMsg::Heartbeat { counters: beat_shared.counters() }).is_err() {
                    break;
                }
            }
        });

        let cfg = ServeConfig::from_cli(cli, worker_id);
        let took = serve(source, app, Arc::clone(&shared), cfg, tls, drain).await;
        heartbeat.abort();
        let _ = heartbeat.await;
        let _ = tx.send(WorkerMsg::Drained { counters: shared.counters(), drain_ms: took.as_millis() as u64 });
        drop(tx);
        // Every sender is gone, so the writer ends once `drained` is flushed;
        // a master that stopped reading must not keep us alive.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        Ok(())
    })
}
