//! The two sides of a comparison, ready to run: the reference server as a
//! single process and as a cluster, each on fresh loopback ports with a
//! fresh database in its own run folder, or the user's own commands.
//!
//! Not for: what the sides play (plan.rs) or running them (mod.rs, lifecycle).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::CompareOptions;
use crate::judge::versus::SINGLE;
use crate::scenario::url::HttpUrl;
use crate::scenario::{LaunchSpec, MetricsEndpoint, Scenario, default_series};

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("picking a free loopback port")?;
    Ok(l.local_addr().context("reading a picked port")?.port())
}

fn command_text(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// One side of the comparison, ready to run.
pub(super) struct Side {
    pub label: &'static str,
    pub dir: PathBuf,
    pub scenario: Scenario,
    pub launch: LaunchSpec,
    /// The command line, for the console and the page.
    pub command: String,
}

/// The launch spec for `argv`, with the scenario's env and stop settings.
fn launch_of(argv: Vec<String>, base: Option<&LaunchSpec>) -> LaunchSpec {
    match base {
        Some(b) => LaunchSpec { argv, ..b.clone() },
        None => LaunchSpec {
            argv,
            env: Default::default(),
            stop_signal: "SIGINT".into(),
            stop_timeout: Duration::from_secs(10),
        },
    }
}

/// Delete a database and its WAL files, so a run starts from a fresh shop.
/// (Not `--reset-db`: a naive restart reuses the command line and would
/// wipe the orders the audit then looks for.)
fn remove_db(db: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing the old database {}", Path::new(&p).display())),
        }
    }
    Ok(())
}

/// The side for the reference server with `mode` flags, on fresh ports.
fn reference_side(
    s: &Scenario,
    o: &CompareOptions,
    label: &'static str,
    dir: PathBuf,
    mode: &[String],
) -> Result<Side> {
    let (port, admin) = (free_port()?, free_port()?);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = dir.join("shop.db");
    remove_db(&db)?;
    let mut argv = vec![o.server_bin.display().to_string()];
    argv.extend(mode.iter().cloned());
    argv.extend([
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--admin".into(),
        format!("127.0.0.1:{admin}"),
        "--db".into(),
        db.display().to_string(),
    ]);
    argv.extend(o.server_tls.iter().cloned());
    let mut scenario = s.clone();
    let scheme = if o.server_tls.is_empty() { "http" } else { "https" };
    scenario.target.base_url = format!("{scheme}://127.0.0.1:{port}");
    scenario.target.pid_file = None;
    let mut old_admin = None;
    if let Some(a) = scenario.audit.as_mut() {
        let url = HttpUrl::parse(&a.url).map_err(|e| anyhow!("audit.url {:?} {e}", a.url))?;
        old_admin = Some(url.authority.clone());
        a.url = url.with_authority(&format!("127.0.0.1:{admin}"));
    }
    admin_metrics(&mut scenario.target.metrics, old_admin.as_deref(), admin)?;
    let launch = launch_of(argv, s.target.launch.as_ref());
    scenario.target.launch = Some(launch.clone());
    Ok(Side { label, dir, command: command_text(&launch.argv), scenario, launch })
}

/// The reference server's admin `/metrics` for the run's scrapes: endpoints
/// the scenario points at its admin address (the audit URL's host:port) move
/// to this side's fresh admin port; a scenario without any gets the admin
/// endpoint with the default series.
fn admin_metrics(metrics: &mut Vec<MetricsEndpoint>, old_admin: Option<&str>, admin: u16) -> Result<()> {
    if metrics.is_empty() {
        metrics.push(MetricsEndpoint {
            url: format!("http://127.0.0.1:{admin}/metrics"),
            label: "reference-server".into(),
            interval: Duration::from_secs(1),
            series: default_series(),
        });
        return Ok(());
    }
    for (i, m) in metrics.iter_mut().enumerate() {
        let url = HttpUrl::parse(&m.url).map_err(|e| anyhow!("target.metrics[{i}].url {:?} {e}", m.url))?;
        if Some(url.authority.as_str()) == old_admin {
            m.url = url.with_authority(&format!("127.0.0.1:{admin}"));
        }
    }
    Ok(())
}

/// The side for a user's command line, serving where the scenario says.
fn custom_side(s: &Scenario, label: &'static str, dir: PathBuf, cmd: &str) -> Result<Side> {
    let launch =
        crate::chaos::target::launch_from_command_line(cmd, s.target.launch.as_ref()).map_err(|e| anyhow!(e))?;
    let mut scenario = s.clone();
    scenario.target.launch = Some(launch.clone());
    scenario.target.pid_file = None;
    Ok(Side { label, dir, command: command_text(&launch.argv), scenario, launch })
}

pub(super) fn side(s: &Scenario, o: &CompareOptions, label: &'static str, dir: &str) -> Result<Side> {
    let (cmd, mode) = if label == SINGLE {
        (&o.single_cmd, vec!["--single".to_string()])
    } else {
        (&o.cluster_cmd, vec!["--workers".to_string(), o.workers.to_string()])
    };
    let dir = o.out.join(dir);
    match cmd {
        Some(c) => custom_side(s, label, dir, c),
        None => reference_side(s, o, label, dir, &mode),
    }
}
