//! Host names pinned to addresses (`target.resolve`), like curl's
//! `--resolve` or k6's `hosts`: a staging shop is tested under its real
//! name (SNI, the certificate, the Host header) on the load-balancer
//! addresses it will have, before DNS points there, or on a chosen subset
//! of them.
//!
//! One table for the process, filled from the scenario before anything
//! resolves: the run's connections, its readiness probe, the audit and
//! the metrics scrapes all ask [`lookup`], so a pinned name never reaches
//! DNS by one path and the table by another. A name not in the table is
//! resolved by the system as before.
//!
//! Not for: refusing remote addresses (limits::resolve_target does that
//! for every answer, pinned or not).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::RwLock;

static PINNED: RwLock<BTreeMap<String, Vec<IpAddr>>> = RwLock::new(BTreeMap::new());

/// Makes `table` the process's pinned names (replacing any earlier table).
/// Names are matched without regard to ASCII case, as DNS does.
pub fn pin(table: &BTreeMap<String, Vec<IpAddr>>) {
    let lowered = table.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    *PINNED.write().unwrap_or_else(|p| p.into_inner()) = lowered;
}

/// The pinned addresses of `host` with `port`, or None when it is not pinned.
pub fn pinned(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    let table = PINNED.read().unwrap_or_else(|p| p.into_inner());
    if table.is_empty() {
        return None;
    }
    table.get(&host.to_ascii_lowercase()).map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

/// Every address of `host:port`: the pinned ones, or the system resolver's
/// answers (IPv4 and IPv6), each once, in the resolver's order. Blocking.
pub fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let answers = match pinned(host, port) {
        Some(pinned) => pinned,
        // Brackets for an IPv6 literal: "::1:443" would not parse.
        None if host.contains(':') => format!("[{host}]:{port}").to_socket_addrs()?.collect(),
        None => (host, port).to_socket_addrs()?.collect(),
    };
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(answers.len());
    for a in answers {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    Ok(unique)
}

/// [`lookup`] off the async runtime's threads (the system resolver blocks).
pub async fn lookup_async(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if let Some(pinned) = pinned(host, port) {
        return Ok(pinned);
    }
    let host = host.to_string();
    tokio::task::spawn_blocking(move || lookup(&host, port)).await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the table is the process's, and tests run in parallel.
    #[test]
    fn pinned_names_answer_before_dns_and_others_resolve_as_before() {
        let table = BTreeMap::from([(
            "Shop.Example".to_string(),
            vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        )]);
        pin(&table);
        let got = lookup("shop.example", 8443).unwrap();
        assert_eq!(got, vec!["127.0.0.1:8443".parse().unwrap(), "[::1]:8443".parse().unwrap()]);
        assert_eq!(pinned("SHOP.EXAMPLE", 1).unwrap().len(), 3);
        assert_eq!(pinned("other.example", 1), None);
        assert_eq!(lookup("127.0.0.1", 80).unwrap(), vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(lookup("::1", 80).unwrap(), vec!["[::1]:80".parse().unwrap()]);
        pin(&BTreeMap::new());
        assert_eq!(pinned("shop.example", 1), None);
    }
}
