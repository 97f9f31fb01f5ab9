//! Single-process mode (`--single` or `--workers 0`): the baseline "one lane
//! of traffic". One process, one tokio current-thread event loop serving the
//! public listener through the same `worker::serve` path as a cluster worker,
//! and the admin address from the same loop. No master, no respawn: SIGINT or
//! SIGTERM drains and exits 0; a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminSource};
use crate::cli::Cli;
use crate::metrics::{Metrics, SlotLabel};
use crate::routes::{self, Identity};
use crate::worker::{ServeConfig, Shared, serve};
use crate::{build_info, exit, listen, shop, startup};

/// The `X-Worker-Id` of the single process: stable for its life.
pub const WORKER_ID: &str = "single";

pub fn log(msg: &str) {
    crate::log_line(&format!("[single] {msg}"));
}

/// Run the single process until a signal drains it. Returns the exit code.
pub fn run(cli: &Cli) -> Result<u8> {
    if cli.unsafe_reuseport {
        return Err(crate::StartupError(anyhow::anyhow!("--unsafe-reuseport needs a cluster (--workers N)")).into());
    }
    let (listener, _activated) = startup(listen::public(cli.listen, cli.backlog))?;
    let admin_listener = startup(listen::bind_admin(cli.admin, cli.listen))?;
    let tls = startup(cli.tls().context("loading the TLS certificate and key"))?;
    startup(shop::prepare(&cli.shop).context("preparing the shop store"))?;
    let shop = startup(shop::open(&cli.shop).context("opening the shop store"))?;
    let public = startup(listener.local_addr().context("reading the public address"))?;
    let admin_addr = startup(admin_listener.local_addr().context("reading the admin address"))?;
    let rt =
        startup(tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the event loop"))?;
    rt.block_on(async move {
        listener.set_nonblocking(true).context("listener non-blocking")?;
        admin_listener.set_nonblocking(true).context("admin listener non-blocking")?;
        let listener = tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
        let admin_listener =
            tokio::net::TcpListener::from_std(admin_listener).context("registering the admin listener")?;
        let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;

        let shared = Arc::new(Shared::default());
        let state = Arc::new(SingleState {
            metrics: Metrics::new(),
            shared: Arc::clone(&shared),
            folded: AtomicU64::new(0),
            cli: cli.clone(),
        });
        tokio::spawn(admin_loop(admin_listener, Arc::clone(&state)));

        let drain = CancellationToken::new();
        let on_signal = drain.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sigint.recv() => log("SIGINT: draining"),
                _ = sigterm.recv() => log("SIGTERM: draining"),
            }
            on_signal.cancel();
            tokio::select! {
                _ = sigint.recv() => {},
                _ = sigterm.recv() => {},
            }
            log("second signal: exiting now");
            std::process::exit(i32::from(exit::OK));
        });

        let worker_id = cli.worker_label(WORKER_ID);
        let identity = Identity { worker_id: worker_id.clone(), pid: std::process::id() };
        let app = routes::app(identity, drain.clone(), shop::router(shop), cli.live_interval);
        let cfg = ServeConfig::from_cli(cli, worker_id);
        log(&format!(
            "pid {} listening on {public}{}, admin on {admin_addr}, version {} build {}",
            std::process::id(),
            if tls.is_some() { " (https)" } else { "" },
            build_info::VERSION,
            build_info::build_id()
        ));
        let took = serve(listener, app, shared, cfg, tls, drain).await;
        log(&format!("drained in {} ms; exit 0", took.as_millis()));
        Ok(exit::OK)
    })
}

struct SingleState {
    metrics: Metrics,
    shared: Arc<Shared>,
    /// Requests already folded into the counter.
    folded: AtomicU64,
    cli: Cli,
}

impl AdminSource for SingleState {
    fn metrics(&self) -> String {
        let c = self.shared.counters();
        let before = self.folded.swap(c.requests, Ordering::Relaxed);
        self.metrics.add_requests(0, c.requests.saturating_sub(before));
        let label = SlotLabel { slot: 0 };
        self.metrics.in_flight.get_or_create(&label).set(c.in_flight as i64);
        self.metrics.connections.get_or_create(&label).set(c.connections as i64);
        let serving = !self.shared.draining.load(Ordering::Relaxed);
        self.metrics.workers_up.set(i64::from(serving));
        self.metrics.workers_draining.set(i64::from(!serving));
        self.metrics.encode()
    }

    fn workers(&self) -> serde_json::Value {
        let c = self.shared.counters();
        let draining = self.shared.draining.load(Ordering::Relaxed);
        serde_json::json!({
            "mode": "single",
            "master_pid": null,
            "target": 1,
            "rolling_restart": false,
            "stopping": if draining { Some("graceful") } else { None },
            "workers": [{
                "id": WORKER_ID,
                "slot": 0,
                "pid": std::process::id(),
                "state": if draining { "draining" } else { "ready" },
                "build_id": build_info::build_id(),
                "version": build_info::VERSION,
                "requests": c.requests,
                "in_flight": c.in_flight,
                "connections": c.connections,
            }],
        })
    }

    fn audit(&self) -> Result<String> {
        shop::audit_json(&self.cli.shop)
    }
}

const ADMIN_MAX_HEAD: usize = 16 * 1024;
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

async fn admin_loop(listener: tokio::net::TcpListener, state: Arc<SingleState>) {
    let mut errors = crate::worker::accept::AcceptErrors::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Some(line) = errors.succeeded() {
                    log(&format!("admin {line}"));
                }
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(ADMIN_TIMEOUT, admin_conn(stream, &state)).await;
                });
            }
            Err(e) => {
                let (line, delay) = errors.failed(&e, std::time::Instant::now());
                if let Some(line) = line {
                    log(&format!("admin {line}"));
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One request per connection, like the master's admin server.
async fn admin_conn(mut stream: tokio::net::TcpStream, src: &SingleState) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if head.len() > ADMIN_MAX_HEAD {
            return Ok(());
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let resp = admin::route(method, target, src);
    stream.write_all(&admin::to_http(&resp, method == "HEAD")).await?;
    stream.shutdown().await
}
