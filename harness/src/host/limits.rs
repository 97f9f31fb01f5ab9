//! Pre-run checks of what the machine allows: file descriptors for the
//! connections the scenario needs, ephemeral ports (spread over 127.0.0.0/8
//! source addresses when one is not enough), and that the target is on
//! loopback unless remote targets are allowed.
//!
//! TLS changes neither count: a TLS connection is the same one socket (one
//! descriptor, one local port) as a plain one; rustls holds its state in
//! memory, and the system roots are read once, before the run, with no
//! descriptor kept open. What TLS adds is memory (about 30-40 KiB of
//! buffers per open connection) and the handshake's CPU.
//!
//! Not for anything during the run: a limit hit mid-run shows in the ledger
//! as `local_error` attempts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::scenario::url::HttpUrl;
use crate::scenario::{ConnectionModel, Scenario};

/// Descriptors the harness needs besides its connections (stdio, the ledger,
/// the event log, the runtime's epoll and eventfds, a launched target's pipes).
pub const FD_OVERHEAD: u64 = 64;

/// Fraction of one source address's ephemeral ports the harness lets itself use.
const PORT_SHARE: f64 = 0.8;

/// How long a closed connection's port stays in TIME_WAIT on Linux.
const TIME_WAIT: Duration = Duration::from_secs(60);

/// The peak arrival rate of the scenario at `rate_scale`.
pub fn peak_rate(s: &Scenario, rate_scale: f64) -> f64 {
    s.arrival.iter().map(|st| st.from_rate.max(st.to_rate)).fold(0.0, f64::max) * rate_scale.max(0.0)
}

/// Connections open at the same time, at most: the pool size, or for one
/// connection per shopper the shoppers that can be in their journeys at once
/// (peak rate x the longest journey, never more than the shoppers).
pub fn concurrent_connections(s: &Scenario, rate_scale: f64, longest_journey: Duration) -> u64 {
    match s.connections {
        ConnectionModel::Pool { size, .. } => size as u64,
        ConnectionModel::PerShopper { .. } => {
            let by_rate = (peak_rate(s, rate_scale) * longest_journey.as_secs_f64()).ceil() as u64;
            by_rate.clamp(1, s.shoppers.max(1))
        }
    }
}

/// Ports in use or in TIME_WAIT at once: the concurrent connections plus,
/// for one connection per shopper, those closed within the last minute.
pub fn ports_needed(s: &Scenario, rate_scale: f64, longest_journey: Duration) -> u64 {
    let concurrent = concurrent_connections(s, rate_scale, longest_journey);
    match s.connections {
        ConnectionModel::Pool { .. } => concurrent,
        ConnectionModel::PerShopper { .. } => {
            let churn = (peak_rate(s, rate_scale) * TIME_WAIT.as_secs_f64()).ceil() as u64;
            concurrent + churn.min(s.shoppers)
        }
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit if `needed` is above the
/// soft one. Returns the soft limit in force; `Err` says what is needed and
/// how to get it.
pub fn ensure_nofile(needed: u64) -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
    if needed <= soft {
        return Ok(soft);
    }
    if needed > hard {
        return Err(format!(
            "the scenario needs about {needed} file descriptors (its connections + {FD_OVERHEAD}) but the hard \
             limit is {hard}: raise it (`ulimit -Hn {needed}` as root, LimitNOFILE= in a systemd unit, \
             nofile in /etc/security/limits.conf) or lower the pool size / arrival rate in the scenario"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .map_err(|e| format!("cannot raise the soft file-descriptor limit from {soft} to {hard}: {e}"))?;
    Ok(hard)
}

/// The local ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`).
pub fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|x| x.parse::<u64>().ok());
            Some((it.next()?, it.next()?))
        })
        .map(|(lo, hi)| hi.saturating_sub(lo) + 1)
        .unwrap_or(28_232)
}

/// Source addresses to spread `ports` connections over: empty (let the
/// kernel choose) when one address is enough, else 127.0.0.1, 127.0.0.2, ...
/// Only for an IPv4 loopback target (the whole 127/8 is local on Linux).
pub fn source_addresses(target: SocketAddr, ports: u64, per_address: u64) -> Result<Vec<IpAddr>, String> {
    let usable = ((per_address as f64) * PORT_SHARE) as u64;
    if ports <= usable.max(1) {
        return Ok(Vec::new());
    }
    let n = ports.div_ceil(usable.max(1));
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            Ok((1..=n.min(250)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8))).collect())
        }
        _ => Err(format!(
            "the scenario needs about {ports} local ports but one source address has {per_address} \
             ephemeral ports; spreading over several source addresses is only done for 127.0.0.0/8 targets"
        )),
    }
}

/// The scenario's base URL, resolved: where to connect and what to send as
/// the Host header. (Not the target's process: that is chaos::target::Target.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddr {
    /// The first address (what source-address spreading is decided for).
    pub addr: SocketAddr,
    /// Every address the host resolved to (or is pinned to: `target.resolve`),
    /// IPv4 and IPv6, each once, in the resolver's order: new connections
    /// are spread over them.
    pub addrs: Vec<SocketAddr>,
    /// For the Host header.
    pub authority: String,
    /// The host alone (no port, no brackets): the TLS server name.
    pub host: String,
    /// `https://`.
    pub tls: bool,
}

/// Resolves the base URL and refuses non-loopback addresses unless
/// `allow_remote` (the harness generates real load; aiming it elsewhere by
/// accident is a denial of service).
pub fn resolve_target(base_url: &str, allow_remote: bool) -> Result<TargetAddr, String> {
    let url = HttpUrl::parse(base_url).map_err(|e| format!("target {base_url:?} {e}"))?;
    let with_port = url.socket_target();
    let addrs = crate::host::names::lookup(&url.host, url.port)
        .map_err(|e| format!("target {base_url:?}: cannot resolve {with_port}: {e}"))?;
    let addr = *addrs.first().ok_or_else(|| format!("target {base_url:?}: {with_port} resolves to nothing"))?;
    if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback())
        && !allow_remote
    {
        return Err(format!(
            "target {base_url:?} resolves to {}, which is not a loopback address: pass --allow-remote to load a \
             remote server on purpose",
            remote.ip()
        ));
    }
    Ok(TargetAddr { addr, addrs, authority: url.authority, host: url.host, tls: url.tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        let t = resolve_target("http://127.0.0.1:8080", false).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(resolve_target("http://localhost:9", false).unwrap().addr.port(), 9);
        let e = resolve_target("http://192.0.2.1:80", false).unwrap_err();
        assert!(e.contains("--allow-remote"), "{e}");
        assert!(resolve_target("http://192.0.2.1:80", true).is_ok());
        let t = resolve_target("https://127.0.0.1", false).unwrap();
        assert_eq!((t.tls, t.addr.port(), t.host.as_str()), (true, 443, "127.0.0.1"));
        assert!(resolve_target("ftp://127.0.0.1", false).unwrap_err().contains("https://"));
        assert_eq!(resolve_target("http://[::1]:81/x", false).unwrap().addr.port(), 81);
    }

    #[test]
    fn sources_spread_only_when_needed() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(source_addresses(t, 1000, 28_000).unwrap().is_empty());
        let s = source_addresses(t, 50_000, 28_000).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[2], IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        let remote: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert!(source_addresses(remote, 50_000, 28_000).is_err());
    }

    #[test]
    fn nofile_within_soft_limit_is_fine_and_beyond_hard_is_explained() {
        assert!(ensure_nofile(10).is_ok());
        let e = ensure_nofile(u64::MAX / 2).unwrap_err();
        // Unlimited hard limits (some CI boxes) fail on the raise instead.
        assert!(e.contains("hard limit") || e.contains("cannot raise"), "{e}");
    }
}
