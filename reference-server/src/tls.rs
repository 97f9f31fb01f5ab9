//! HTTPS on the public address (`--tls-cert`, `--tls-key`): loading the
//! certificate chain and key into a rustls server config, and the bounded
//! handshake. The serving and drain rules are `worker/serve.rs`'s, the same
//! for plain and TLS connections; only the stream type differs.
//!
//! Every serving process (a cluster worker, the single process) loads the
//! files itself when it starts: workers are re-executed with the master's
//! flags, so a rolling restart reads the files on disk *now*, which is how a
//! certificate is rotated. The master loads them once at start-up only to
//! refuse a bad pair before any worker is forked; it never does TLS itself
//! (in sticky mode it passes the TCP connection, the worker does the
//! handshake). Not for: the admin address, which stays plain HTTP on
//! loopback.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// A handshake must finish this long after the connection was accepted: a
/// client that connects and sends nothing holds a descriptor (and a drain)
/// for no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a drain starts, a handshake still running gets this much longer
/// (the same grace as a stalled request body, `worker/body.rs`): a real
/// client finishes in a round trip or two, an idle one is let go.
pub const HANDSHAKE_DRAIN_GRACE: Duration = Duration::from_secs(1);
/// PEM files larger than this are refused rather than read: a chain of a
/// few certificates is a few KiB, and `--tls-cert /dev/zero` must not eat
/// memory.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The rustls server config for `cert` (PEM chain, leaf first) and `key`
/// (PEM PKCS#8, PKCS#1 or SEC1), ALPN `http/1.1`, ring provider. Every error
/// names the file and what is wrong with it.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let cert_pem = read_capped(cert, "--tls-cert")?;
    let key_pem = read_capped(key, "--tls-key")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        bail!("--tls-cert {}: no CERTIFICATE block in it", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!("--tls-key {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}", key.display())
    })?;
    // ring, as issue 14 asks (see Cargo.toml for why not aws-lc-rs). rustls
    // 0.23.48 deprecates this to steer users to aws-lc-rs's post-quantum key
    // exchange, which ring lacks; classical X25519/P-256 is what we serve.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls: the ring provider supports no default protocol version")?
        .with_no_client_auth()
        // Also checks that the key belongs to the leaf certificate.
        .with_single_cert(certs, key_der)
        .with_context(|| {
            format!("--tls-cert {} with --tls-key {}: not a usable pair", cert.display(), key.display())
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `load` for the flags as given: None without `--tls-cert` (clap requires
/// both or neither).
pub fn from_flags(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsAcceptor::from(load(cert, key)?))),
        (None, None) => Ok(None),
        _ => bail!("--tls-cert and --tls-key go together"),
    }
}

fn read_capped(path: &Path, flag: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("{flag} {}: cannot open", path.display()))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        bail!("{flag} {}: larger than {MAX_PEM_BYTES} bytes; not a PEM file", path.display());
    }
    Ok(buf)
}

/// Why a handshake ended without a connection to serve.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}")]
    TimedOut,
    #[error("TLS handshake still running {HANDSHAKE_DRAIN_GRACE:?} after the drain started")]
    Drained,
}

/// The server side of one handshake, bounded by [`HANDSHAKE_TIMEOUT`] and,
/// once `drain` is cancelled, by [`HANDSHAKE_DRAIN_GRACE`].
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    drain: &CancellationToken,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    let accept = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let drained = async {
        drain.cancelled().await;
        tokio::time::sleep(HANDSHAKE_DRAIN_GRACE).await;
    };
    tokio::select! {
        done = accept => match done {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(HandshakeError::Failed(e)),
            Err(_elapsed) => Err(HandshakeError::TimedOut),
        },
        () = drained => Err(HandshakeError::Drained),
    }
}
