//! The reference clustered shop: a master that forks a worker per core,
//! respawns them, rolls restarts and drains gracefully, and the shop they serve.

pub mod admin;
pub mod build_info;
pub mod cli;
pub mod duration;
pub mod handoff;
pub mod ipc;
pub mod limits;
pub mod listen;
pub mod live;
pub mod master;
pub mod metrics;
pub mod pid_file;
pub mod routes;
pub mod shop;
pub mod single;
pub mod systemd;
pub mod tls;
pub mod worker;

use anyhow::Result;

/// Write one line to stderr in a single `write(2)`: master and workers share
/// the stream, and `eprintln!` may split a line into pieces that interleave.
pub fn log_line(line: &str) {
    use std::io::Write;
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

/// Exit codes of the `reference-server` binary (see docs/CLUSTER.md).
pub mod exit {
    /// Stopped on request (SIGINT, `--on-sigterm stop`, SIGQUIT).
    pub const OK: u8 = 0;
    /// A runtime error after start-up; a worker that fails also exits 1.
    pub const RUNTIME: u8 = 1;
    /// Bad flags or a start-up error (address in use, unwritable path...).
    pub const STARTUP: u8 = 2;
    /// Crash-loop protection gave up: a worker slot kept dying at start-up.
    pub const GAVE_UP: u8 = 3;
}

/// An error before the server was up; exits with [`exit::STARTUP`].
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct StartupError(pub anyhow::Error);

/// Tag an error as a start-up error.
pub fn startup<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| StartupError(e).into())
}

/// Run as whatever this process was started as: worker, single process or
/// master. Returns the exit code.
pub fn run(cli: &cli::Cli) -> Result<u8> {
    if let Some(env) = worker::WorkerEnv::from_env()? {
        worker::run(cli, env)?;
        return Ok(exit::OK);
    }
    let admin_warning = startup(listen::check_admin_exposure(cli.admin, cli.admin_public))?;
    // Before any worker is forked, so every worker inherits the raised limit.
    let nofile = limits::raise_nofile();
    let log: fn(&str) = if cli.cluster_size().is_some() { master::log } else { single::log };
    log(&nofile.to_string());
    if let Some(warning) = admin_warning {
        log(&warning);
    }
    match cli.cluster_size() {
        None => with_pid_file(cli, single::run),
        Some(n) => master::run(cli, n),
    }
}

/// Run `f` with `--pid-file` (if given) naming this process meanwhile. The
/// master writes its own (a new master only once it has taken over).
fn with_pid_file(cli: &cli::Cli, f: impl FnOnce(&cli::Cli) -> Result<u8>) -> Result<u8> {
    let pid = std::process::id();
    if let Some(path) = &cli.pid_file {
        startup(pid_file::write(path, pid))?;
    }
    let result = f(cli);
    if let Some(path) = &cli.pid_file {
        pid_file::remove_if_ours(path, pid);
    }
    result
}

/// The exit code for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<StartupError>().is_some() { exit::STARTUP } else { exit::RUNTIME }
}
