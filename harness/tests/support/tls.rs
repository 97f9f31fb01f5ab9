//! Certificates for the TLS tests, made at run time with rcgen (as
//! reference-server's tests/common/tls.rs does): a CA, and server
//! certificates it signs (good, expired, for another name), written as PEM
//! files; and a small in-process HTTPS server (tokio-rustls) that answers
//! every request with 200 and counts its handshakes.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA and the directory its files are written to.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// The CA certificate as PEM, for `target.ca_file`.
    pub ca_file: PathBuf,
}

/// A server certificate's PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Which certificate to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// For 127.0.0.1 and localhost, valid now.
    Good,
    /// For 127.0.0.1 and localhost, expired in 2021.
    Expired,
    /// Valid now, but only for shop.example.
    WrongName,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "harness test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        TestPki { dir, ca, ca_key, ca_file }
    }

    /// A server certificate of `kind`, written to `<dir>/<name>.crt|.key`.
    pub fn issue(&self, name: &str, kind: Kind) -> Issued {
        let names = match kind {
            Kind::WrongName => vec!["shop.example".to_string()],
            _ => vec!["localhost".to_string()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        if kind != Kind::WrongName {
            params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        }
        if kind == Kind::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued { cert: cert_path, key: key_path }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

impl Issued {
    /// `--tls-cert <cert> --tls-key <key>` for the reference server.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".to_string(),
            self.cert.display().to_string(),
            "--tls-key".to_string(),
            self.key.display().to_string(),
        ]
    }
}

/// A rustls server config (ring) for `issued`, ALPN http/1.1.
pub fn server_config(issued: &Issued) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&issued.cert).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&issued.key).unwrap();
    #[allow(deprecated)] // ring, like the harness and the reference server
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An in-process HTTPS server on 127.0.0.1:0: keep-alive, every request
/// answered `200 ok`. `close_notify: false` ends each connection after one
/// close-delimited response by closing TCP without close_notify.
pub struct TlsServer {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsServer {
    pub async fn start(issued: &Issued, close_notify: bool) -> TlsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        TlsServer::serve(issued, close_notify, listener)
    }

    /// The same server on an address of the caller's (e.g. `[::1]:PORT`);
    /// None when it cannot be bound.
    pub async fn start_on(issued: &Issued, addr: SocketAddr) -> Option<TlsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        Some(TlsServer::serve(issued, true, listener))
    }

    fn serve(issued: &Issued, close_notify: bool, listener: tokio::net::TcpListener) -> TlsServer {
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(issued));
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (h, r) = (handshakes.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    h.fetch_add(1, Ordering::Relaxed);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        r.fetch_add(1, Ordering::Relaxed);
                        // Without close_notify: a close-delimited body, so the
                        // client reads to the end and sees how the close came.
                        let resp: &[u8] = if close_notify {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nok"
                        };
                        if tls.write_all(resp).await.is_err() || tls.flush().await.is_err() {
                            return;
                        }
                        if !close_notify {
                            // Close TCP under the TLS session: no close_notify.
                            let (tcp, _) = tls.into_inner();
                            drop(tcp);
                            return;
                        }
                    }
                });
            }
        });
        TlsServer { addr, handshakes, requests, task }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }
}

/// A `target` JSON object for an https URL trusting `ca_file`.
pub fn target_json(url: &str, ca_file: &Path) -> String {
    format!(r#"{{"base_url": "{url}", "ca_file": "{}", "ready_timeout": "2s"}}"#, ca_file.display())
}
