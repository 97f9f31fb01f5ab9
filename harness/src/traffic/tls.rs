//! HTTPS for the client: the one rustls client config of a run (roots,
//! verification, resumption, ALPN), the handshake's failure classes, and
//! the close_notify check on an idle connection.
//!
//! One `ClientConfig` per run, whose session cache the connection pool
//! shares (a pool is one client, like a proxy in front of the shop). A
//! shopper with its own connection (`per_shopper`) is a browser of its own:
//! [`TlsConnect::for_one_client`] gives it its own session memory, so its
//! first connection pays a full handshake and its reconnects resume its own
//! session (what browsers do), and 30,000 arriving shoppers are 30,000 full
//! handshakes for the shop, as on the day. `connections.tls_resumption:
//! false` keeps no sessions at all: every new connection pays a full
//! handshake. rustls with the ring
//! provider, the reference server's stack (Cargo.toml says why).
//!
//! Not for: the HTTP exchange itself (client.rs, the same over TLS and
//! plain TCP), or deciding what a refused certificate means for the run
//! (judge/verdict.rs: it fails the run).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use crate::outcome::FailureClass;

/// The pool's session cache (rustls's default size). rustls keeps at most
/// 8 TLS 1.3 tickets per server name: a pool that reconnects many
/// connections at once (after a worker is killed) resumes 8 of them and
/// pays full handshakes for the rest until new tickets arrive.
const SESSION_CACHE: usize = 256;

/// A run's TLS settings, from the scenario (`target.ca_file`,
/// `target.insecure_skip_verify`, `connections.tls_resumption`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the CAs to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate. Reported in the report header and summary.json.
    pub insecure_skip_verify: bool,
    /// Keep session tickets so new connections resume (default on).
    pub resumption: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings { ca_file: None, insecure_skip_verify: false, resumption: true }
    }
}

/// What the harness connects with over TLS: the shared config and the name
/// the certificate must be valid for (also the SNI, unless an IP address).
#[derive(Clone)]
pub struct TlsConnect {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
    /// Sessions are kept for resumption (`connections.tls_resumption`).
    pub resumption: bool,
}

impl TlsConnect {
    /// The same client with session memory of its own (one browser): the
    /// latest session and ticket from the target, nothing shared with
    /// other shoppers. With resumption off, the same client (it keeps none).
    pub fn for_one_client(&self) -> TlsConnect {
        if !self.resumption {
            return self.clone();
        }
        let mut config = (**self.connector.config()).clone();
        config.resumption = rustls::client::Resumption::store(Arc::new(OneSession::default()));
        TlsConnect {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
            resumption: true,
        }
    }
}

/// One browser's session memory for the run's one target: the latest TLS
/// 1.2 session and the latest TLS 1.3 ticket (servers send two per
/// handshake; one is enough for the next reconnect, which brings new ones).
/// About a kilobyte once filled, so 30,000 shoppers hold tens of MiB.
#[derive(Default)]
struct OneSession(std::sync::Mutex<OneSlot>);

#[derive(Default)]
struct OneSlot {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: Option<rustls::client::Tls13ClientSessionValue>,
}

impl std::fmt::Debug for OneSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneSession")
    }
}

impl OneSession {
    fn slot(&self) -> std::sync::MutexGuard<'_, OneSlot> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl rustls::client::ClientSessionStore for OneSession {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.slot().kx_hint = Some(group);
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.slot().kx_hint
    }
    fn set_tls12_session(&self, _: ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
        self.slot().tls12 = Some(value);
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.slot().tls12.clone()
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.slot().tls12 = None;
    }
    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: rustls::client::Tls13ClientSessionValue) {
        self.slot().tls13 = Some(value);
    }
    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.slot().tls13.take()
    }
}

impl std::fmt::Debug for TlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnect").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

/// Builds the run's TLS client for `host` (the URL's host, without brackets).
/// An IP literal gets no SNI (rustls sends none for an IP) and is verified
/// against the certificate's IP SANs. Errors name the file or field.
pub fn connect_for(host: &str, settings: &TlsSettings) -> Result<TlsConnect, String> {
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("target.base_url: host {host:?} is not a valid TLS server name: {e}"))?;
    let config = client_config(settings)?;
    Ok(TlsConnect {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
        resumption: settings.resumption,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring, like the reference server (see harness/Cargo.toml). rustls
    // 0.23.48 deprecates it to steer users to aws-lc-rs's post-quantum key
    // exchange; classical X25519/P-256 is what a shop's TLS offers today.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // The same release also moved P-384 to the front of ring's key-exchange
    // groups, so the client's one key share was P-384, which ring computes
    // in generic code: measured against nginx, a full handshake cost about
    // 1 ms of client CPU, 90% of it P-384 (perf). Browsers lead with X25519;
    // so does the harness.
    use rustls::crypto::ring::kx_group;
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

/// The rustls client config for `settings`: ALPN `http/1.1`, TLS 1.2 and 1.3.
pub fn client_config(settings: &TlsSettings) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = if settings.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider()))).with_no_client_auth()
    } else {
        builder.with_root_certificates(roots(settings.ca_file.as_deref())?).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if settings.resumption {
        rustls::client::Resumption::in_memory_sessions(SESSION_CACHE)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(config)
}

/// PEM files larger than this are refused: a CA bundle is a few hundred KiB.
const MAX_CA_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The CAs of `ca_file`, or the system's (Debian: ca-certificates).
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let len = std::fs::metadata(path).map_err(|e| format!("target.ca_file {}: {e}", path.display()))?.len();
            if len > MAX_CA_FILE_BYTES {
                return Err(format!("target.ca_file {}: {len} bytes is not a PEM CA bundle", path.display()));
            }
            let pem = std::fs::read(path).map_err(|e| format!("target.ca_file {}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("target.ca_file {}: not a PEM certificate file: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("target.ca_file {}: no CERTIFICATE block in it", path.display()));
            }
            for (i, c) in certs.into_iter().enumerate() {
                store.add(c).map_err(|e| format!("target.ca_file {}: certificate #{}: {e}", path.display(), i + 1))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unparsable entries in the system store are skipped (as curl
            // does); only an empty store is an error.
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "no system CA certificates found ({}); install ca-certificates or give target.ca_file",
                    if why.is_empty() { "the store is empty".to_string() } else { why.join("; ") }
                ));
            }
        }
    }
    Ok(store)
}

/// `target.insecure_skip_verify`: every certificate is accepted, handshake
/// signatures are still checked (so the connection is at least encrypted to
/// whoever holds the key it presented).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The failure class and a detail naming the problem for a handshake that
/// did not complete: `tls_certificate` when the harness refused the
/// server's certificate, `tls_handshake_failed` for anything else (cut,
/// reset, an alert, no common protocol).
pub fn handshake_failure(e: &io::Error) -> (FailureClass, String) {
    let rustls_error = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => {
            (FailureClass::TlsCertificate, format!("TLS handshake: {}", certificate_problem(c)))
        }
        Some(other) => (FailureClass::TlsHandshakeFailed, format!("TLS handshake: {other}")),
        None => (FailureClass::TlsHandshakeFailed, format!("TLS handshake: {e}")),
    }
}

/// Plain words for a refused certificate, leading with what an operator
/// searches for ("certificate expired", "certificate not valid for name").
pub fn certificate_problem(c: &CertificateError) -> String {
    #[allow(deprecated)]
    match c {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("certificate expired ({c:?})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("certificate not valid yet ({c:?})")
        }
        CertificateError::NotValidForName => "certificate not valid for name".to_string(),
        CertificateError::NotValidForNameContext { expected, presented } => {
            format!("certificate not valid for name {expected:?} (it names {})", presented.join(", "))
        }
        CertificateError::UnknownIssuer => {
            "certificate issued by an unknown CA (give its CA in target.ca_file)".to_string()
        }
        CertificateError::Revoked => "certificate revoked".to_string(),
        CertificateError::BadSignature => "certificate has a bad signature".to_string(),
        other => format!("certificate refused: {other:?}"),
    }
}

/// What a non-blocking look at an idle TLS connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleTls {
    /// Nothing arrived: usable.
    Open,
    /// The server sent close_notify (a clean TLS close).
    ClosedClean,
    /// The TCP connection ended without close_notify (counted, not a failure).
    ClosedUnclean,
    /// Something unsolicited or invalid arrived: not reusable.
    Broken,
}

/// Reads whatever the server sent to an idle connection, without blocking,
/// through rustls (so a close_notify is seen as one).
pub fn probe_idle(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) -> IdleTls {
    struct TryRead<'a>(&'a TcpStream);
    impl io::Read for TryRead<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.try_read(buf)
        }
    }
    let (tcp, conn) = tls.get_mut();
    let mut eof = false;
    // Bounded: an idle connection holds at most a few records (a ticket, a close_notify).
    for _ in 0..8 {
        match conn.read_tls(&mut TryRead(tcp)) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return IdleTls::Broken,
        }
    }
    match conn.process_new_packets() {
        Err(_) => IdleTls::Broken,
        Ok(state) if state.peer_has_closed() => IdleTls::ClosedClean,
        Ok(state) if state.plaintext_bytes_to_read() > 0 => IdleTls::Broken,
        Ok(_) if eof => IdleTls::ClosedUnclean,
        Ok(_) => IdleTls::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_problems_are_named() {
        assert!(certificate_problem(&CertificateError::Expired).starts_with("certificate expired"));
        assert_eq!(certificate_problem(&CertificateError::NotValidForName), "certificate not valid for name");
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let (class, detail) = handshake_failure(&e);
        assert_eq!(class, FailureClass::TlsCertificate);
        assert!(detail.contains("unknown CA"), "{detail}");
        let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(handshake_failure(&cut).0, FailureClass::TlsHandshakeFailed);
    }

    #[test]
    fn settings_build_configs_and_bad_ca_files_are_named() {
        let insecure = TlsSettings { insecure_skip_verify: true, resumption: false, ..TlsSettings::default() };
        let c = client_config(&insecure).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // X25519 first: the key share a full handshake pays for.
        assert_eq!(c.crypto_provider().kx_groups[0].name(), rustls::NamedGroup::X25519);
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let e = client_config(&TlsSettings { ca_file: Some(bad), ..TlsSettings::default() }).unwrap_err();
        assert!(e.contains("target.ca_file") && e.contains("no CERTIFICATE"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = client_config(&TlsSettings { ca_file: Some(missing), ..TlsSettings::default() }).unwrap_err();
        assert!(e.contains("target.ca_file"), "{e}");
        assert!(connect_for("127.0.0.1", &insecure).is_ok());
    }
}
