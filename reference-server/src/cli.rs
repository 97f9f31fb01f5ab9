//! Command-line flags. Workers are re-exec'd with the master's own arguments,
//! so every flag here reaches them unchanged; what differs per worker comes
//! through the environment (see `worker::WorkerEnv`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::duration::parse_duration;
use crate::shop::ShopArgs;

/// How connections reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Balance {
    /// Every worker accepts on the one shared listener (the kernel picks).
    Shared,
    /// The master accepts and hands each connection to the worker of the
    /// client IP's hash slot (affinity for long-lived and stateful clients).
    Sticky,
}

/// What SIGTERM means to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnSigterm {
    /// Rolling restart, like SIGHUP (the pre-fork convention).
    Restart,
    /// Graceful stop, like SIGINT (systemd and Kubernetes mean stop).
    Stop,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "reference-server", version, about = "A pre-fork clustered web shop")]
pub struct Cli {
    /// Public address for shop traffic.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Admin address (metrics, workers, audit). Loopback by default; never
    /// the public port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,

    /// Allow a non-loopback --admin (e.g. 0.0.0.0:9090). The admin address
    /// has no authentication and its /audit lists every order, cart id and
    /// idempotency key; without this flag such an address is refused.
    #[arg(long)]
    pub admin_public: bool,

    /// Number of worker processes (default: number of CPUs). 0 means single
    /// process, like --single.
    #[arg(long)]
    pub workers: Option<usize>,

    /// Run the single-process baseline: one process, one event loop, no master.
    #[arg(long, conflicts_with = "workers")]
    pub single: bool,

    /// Listen backlog: connections that wait while no worker accepts.
    #[arg(long, default_value_t = 4096)]
    pub backlog: i32,

    /// HTTPS on the public address: the PEM certificate chain, leaf first
    /// (needs --tls-key). Every worker reads it when it starts, so a rolling
    /// restart serves the file on disk then (certificate rotation). ALPN
    /// http/1.1; the admin address stays plain HTTP.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Connection balancing: `shared` listener (default) or `sticky`
    /// (master-accepted, a client IP keeps its worker slot; docs/CLUSTER.md).
    #[arg(long, value_enum, default_value_t = Balance::Shared)]
    pub balance: Balance,

    /// BENCH ONLY: with `--balance sticky`, hash the client's source port
    /// too, so a load generator on one address spreads over the workers
    /// (breaks affinity across reconnects).
    #[arg(long, hide = true)]
    pub bench_sticky_by_port: bool,

    /// How often a worker's live stock feed (`/live/stock`) looks for changes.
    #[arg(long, value_parser = parse_duration, default_value = "250ms")]
    pub live_interval: Duration,

    /// What SIGTERM does to the master.
    #[arg(long, value_enum, default_value_t = OnSigterm::Restart)]
    pub on_sigterm: OnSigterm,

    /// Per-worker drain timeout; a worker still draining then is SIGKILLed.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,

    /// A worker whose heartbeats stop for this long is killed and replaced.
    /// Must exceed the longest CPU-bound handler (heartbeats share its loop).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub hang_timeout: Duration,

    /// How often a worker reports to the master.
    #[arg(long, value_parser = parse_duration, default_value = "250ms")]
    pub heartbeat_interval: Duration,

    /// Consecutive early crashes of one worker slot after which the master
    /// gives up and exits with code 3.
    #[arg(long, default_value_t = 8)]
    pub max_crashes: u32,

    /// First respawn delay after an early crash; doubles per crash, capped at 10 s.
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub crash_backoff: Duration,

    /// A worker that dies within this time after starting counts as an early crash.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub min_uptime: Duration,

    /// Idle keep-alive connections are closed after this long (also during a
    /// drain). Clients' idle timeouts must be shorter, or they race the close.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub keepalive_timeout: Duration,

    /// A request body must be complete this long after its head, or the
    /// request gets 408 and its connection closes. While draining, a body
    /// that stalls for 1 s is ended at once (docs/CLUSTER.md, drain rules).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub body_timeout: Duration,

    /// Names this host in a fleet: every worker id becomes `ID-N`
    /// (`X-Worker-Id: b-3`, `/version`'s `worker_id`; `ID-single` in
    /// single-process mode), so a client behind a load balancer sees which
    /// host and which worker served it. 1 to 32 of `A-Z a-z 0-9 . _ -`.
    #[arg(long, value_name = "ID", value_parser = parse_host_id)]
    pub host_id: Option<String>,

    /// Write the current master's pid (or the single process's) to this file,
    /// atomically (write + rename). After a binary upgrade (SIGUSR2) the new
    /// master rewrites it once it has taken over; a master removes it at its
    /// exit if it still holds its own pid.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,

    /// Binary upgrade (SIGUSR2): how long the new master has to get every
    /// worker ready; after that the old master kills it and keeps serving.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub upgrade_timeout: Duration,

    /// TEST ONLY: drain by dropping every connection at once (the bug the
    /// harness must catch).
    #[arg(long, hide = true)]
    pub unsafe_drain: bool,

    /// TEST ONLY (defect 2): when the drain starts, close every keep-alive
    /// connection with nothing in flight at once, without ever having sent
    /// `Connection: close` (the nginx/PM2 reload bug).
    #[arg(long, hide = true)]
    pub unsafe_close_idle: bool,

    /// TEST ONLY (defect 4): each worker accepts on a listener of its own
    /// bound with SO_REUSEPORT, and closes it when its drain starts, which
    /// resets the connections queued on it. Cluster mode, shared balance.
    #[arg(long, hide = true)]
    pub unsafe_reuseport: bool,

    /// TEST ONLY (defect 3): the rolling restart drains the old worker first
    /// and starts its replacement only after it exited (a capacity gap).
    #[arg(long, hide = true)]
    pub unsafe_old_before_new: bool,

    /// TEST ONLY (defect 8): every request leaks memory and a file
    /// descriptor that nothing frees (what `make soak` must catch).
    #[arg(long, hide = true)]
    pub unsafe_leak: bool,

    /// TEST ONLY: each worker waits up to this long (spread by its id)
    /// before it serves and says `ready`, so tests can interleave events
    /// with slow starts.
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub test_ready_delay: Option<Duration>,

    /// TEST ONLY: workers exit with status 1 right after start.
    #[arg(long, hide = true)]
    pub test_crash_on_start: bool,

    #[command(flatten)]
    pub shop: ShopArgs,
}

impl Cli {
    /// The TLS acceptor for `--tls-cert`/`--tls-key`, loaded from disk now;
    /// None for plain HTTP.
    pub fn tls(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        crate::tls::from_flags(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// The id a worker (or the single process) shows clients: `id` itself,
    /// or `HOST-id` with `--host-id HOST`.
    pub fn worker_label(&self, id: &str) -> String {
        match &self.host_id {
            Some(host) => format!("{host}-{id}"),
            None => id.to_string(),
        }
    }

    /// Worker count, or None for single-process mode.
    pub fn cluster_size(&self) -> Option<usize> {
        if self.single {
            return None;
        }
        match self.workers {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
        }
    }
}

/// A `--host-id`: it goes into a header value and into live-stream event
/// ids (`<worker>:<seq>`), so no `:`, space or control character; short,
/// because it is on every response.
pub fn parse_host_id(s: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if s.is_empty() || s.len() > 32 || !s.chars().all(ok) {
        return Err(format!("'{s}' is not a host id (1 to 32 of A-Z a-z 0-9 . _ -, e.g. 'a' or 'web-2')"));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_id_prefixes_worker_ids() {
        let cli = Cli::parse_from(["rs", "--host-id", "b"]);
        assert_eq!(cli.worker_label("3"), "b-3");
        let cli = Cli::parse_from(["rs"]);
        assert_eq!(cli.worker_label("3"), "3");
        for bad in ["", "a:b", "a b", "x\r\ny", &"h".repeat(33)] {
            assert!(Cli::try_parse_from(["rs", "--host-id", bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn workers_zero_is_single() {
        let cli = Cli::parse_from(["rs", "--workers", "0"]);
        assert_eq!(cli.cluster_size(), None);
        let cli = Cli::parse_from(["rs", "--workers", "3"]);
        assert_eq!(cli.cluster_size(), Some(3));
        let cli = Cli::parse_from(["rs", "--single"]);
        assert_eq!(cli.cluster_size(), None);
    }
}
