//! The harness's one parser of `http://` and `https://` URLs (the scenario's
//! base, readiness and audit URLs, and the command line's): scheme,
//! authority (host and port, IPv6 literals in brackets, port 80 or 443 when
//! absent) and path.
//!
//! Every stage that needs a URL's parts goes through [`HttpUrl::parse`], so
//! the validator, the loopback check, the target's readiness GET and compare's
//! port rewriting agree on what a URL means. Userinfo (`user@host`) is
//! refused: the harness never sends credentials. Not for: resolving names
//! (callers resolve [`HttpUrl::socket_target`] with their own runtime).

use std::fmt;

/// A parsed `http[s]://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// As written, for the Host header: `127.0.0.1:8080`, `[::1]:81`, `localhost`.
    pub authority: String,
    /// Without brackets: `127.0.0.1`, `::1`, `localhost`.
    pub host: String,
    /// 80 (http) or 443 (https) when the URL gives none.
    pub port: u16,
    /// From the first `/` on (query included); `/` when the URL has none.
    pub path: String,
}

/// What is wrong with a URL; callers say which URL and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    NotHttp,
    NoHost,
    Userinfo,
    BadHost(String),
    BadPort(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::NotHttp => {
                write!(f, "is not an http:// or https:// URL (only HTTP/1.1, plain or over TLS, is supported)")
            }
            UrlError::NoHost => write!(f, "has no host"),
            UrlError::Userinfo => write!(f, "has a user@ part: the harness sends no credentials"),
            UrlError::BadHost(h) => write!(f, "has no valid host[:port] ({h:?})"),
            UrlError::BadPort(p) => write!(f, "port {p:?} is not a number in 1..=65535"),
        }
    }
}

impl std::error::Error for UrlError {}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(UrlError::NotHttp),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err(UrlError::NoHost);
        }
        if authority.contains('@') {
            return Err(UrlError::Userinfo);
        }
        // "[::1]:8080", "[::1]", "host:8080" or "host".
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| UrlError::BadHost(authority.into()))?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(UrlError::BadHost(authority.into()));
                }
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or_else(|| UrlError::BadHost(authority.into()))?)),
                }
            }
            None => {
                let (host, port) = match authority.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                };
                if host.is_empty() || host.contains([' ', ':', '[', ']']) {
                    return Err(UrlError::BadHost(authority.into()));
                }
                (host, port)
            }
        };
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| UrlError::BadPort(p.into()))?,
        };
        let path = if tail.starts_with('/') { tail.to_string() } else { format!("/{tail}") };
        Ok(HttpUrl { tls, authority: authority.to_string(), host: host.to_string(), port, path })
    }

    /// `host:port` for name resolution (IPv6 in brackets), port always given.
    pub fn socket_target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The same URL at another `host:port` ("http://a:1/x" -> "http://b:2/x").
    pub fn with_authority(&self, authority: &str) -> String {
        let path = if self.path == "/" { "" } else { self.path.as_str() };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{authority}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_paths() {
        let u = HttpUrl::parse("http://127.0.0.1:9090/audit?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1:9090", "127.0.0.1", 9090, "/audit?x=1")
        );
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.socket_target().as_str()), (80, "/", "localhost:80"));
        let u = HttpUrl::parse("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.socket_target().as_str()), ("::1", 81, "[::1]:81"));
        let u = HttpUrl::parse("http://[::1]").unwrap();
        assert_eq!((u.authority.as_str(), u.port, u.socket_target().as_str()), ("[::1]", 80, "[::1]:80"));
        assert_eq!(HttpUrl::parse("http://h:1?q").unwrap().path, "/?q");
        let u = HttpUrl::parse("https://shop.example/").unwrap();
        assert_eq!((u.tls, u.port, u.host.as_str()), (true, 443, "shop.example"));
        assert!(!HttpUrl::parse("http://h").unwrap().tls);
        assert_eq!(HttpUrl::parse("https://h:8443/x").unwrap().with_authority("127.0.0.1:1"), "https://127.0.0.1:1/x");
    }

    #[test]
    fn bad_urls_are_named() {
        assert_eq!(HttpUrl::parse("ftp://127.0.0.1/"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("127.0.0.1:8080"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("http:///x"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("http://user:pw@127.0.0.1/"), Err(UrlError::Userinfo));
        assert_eq!(HttpUrl::parse("http://127.0.0.1:99999"), Err(UrlError::BadPort("99999".into())));
        assert_eq!(HttpUrl::parse("http://127.0.0.1:0"), Err(UrlError::BadPort("0".into())));
        assert_eq!(HttpUrl::parse("http://h:"), Err(UrlError::BadPort("".into())));
        assert!(matches!(HttpUrl::parse("http://[::1"), Err(UrlError::BadHost(_))));
        assert!(matches!(HttpUrl::parse("http://[nope]:1"), Err(UrlError::BadHost(_))));
        assert!(matches!(HttpUrl::parse("http://::1:80"), Err(UrlError::BadHost(_))));
        assert!(HttpUrl::parse("http://a b/").is_err());
        assert!(UrlError::NotHttp.to_string().contains("https://"));
    }

    #[test]
    fn authority_is_replaced_and_the_path_kept() {
        let u = HttpUrl::parse("http://127.0.0.1:9090/audit").unwrap();
        assert_eq!(u.with_authority("127.0.0.1:1234"), "http://127.0.0.1:1234/audit");
        assert_eq!(HttpUrl::parse("http://h:1").unwrap().with_authority("127.0.0.1:2"), "http://127.0.0.1:2");
    }
}
