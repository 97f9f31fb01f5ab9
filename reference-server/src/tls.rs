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
//!
//! Session resumption: a returning client's next connection lands on any
//! worker (a shared listener) and must resume there, as with nginx's
//! workers. So sessions are stateless tickets sealed with one key per
//! cluster ([`TicketKey`]): the master makes it at start-up and hands it to
//! every worker it starts (and to a new master on an upgrade) in
//! [`ENV_TICKET_KEY`]; tickets outlive a rolling restart, as a deploy
//! should not force every shopper into a full handshake. A new certificate
//! does end them: the key that seals tickets is derived from the cluster's
//! key and the certificate chain, so after a rotation (perhaps because the
//! old key leaked) every client pays a full handshake and sees the new
//! certificate. The key sits in the processes' environment, readable by
//! their user and root only.

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

/// The environment variable that carries the cluster's ticket key (hex).
pub const ENV_TICKET_KEY: &str = "RS_TLS_TICKET_KEY";

/// How long a session ticket may be used (the ticket's lifetime hint; the
/// client's limit is 7 days for TLS 1.3).
const TICKET_LIFETIME_S: u32 = 6 * 60 * 60;

/// The 256-bit AES-GCM key that seals session tickets, one per cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKey([u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// A fresh random key.
    pub fn generate() -> Result<TicketKey> {
        let mut k = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| anyhow::anyhow!("no randomness for the TLS ticket key"))?;
        Ok(TicketKey(k))
    }

    /// The key in [`ENV_TICKET_KEY`] (a worker's, or a new master's), or a
    /// fresh one when it is absent (a master, the single process).
    pub fn from_env_or_generate() -> Result<TicketKey> {
        match std::env::var(ENV_TICKET_KEY) {
            Ok(hex) => TicketKey::from_hex(&hex).with_context(|| format!("{ENV_TICKET_KEY}: not 64 hex digits")),
            Err(_) => TicketKey::generate(),
        }
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<TicketKey> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(TicketKey(k))
    }
}

/// Stateless session tickets sealed with the cluster's key: a random
/// 96-bit nonce, then the AES-256-GCM ciphertext and tag.
struct Tickets {
    key: ring::aead::LessSafeKey,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets(cluster key)")
    }
}

const TICKET_AAD: &[u8] = b"reference-server session ticket v1";

impl Tickets {
    /// Sealing with HMAC-SHA256(cluster key, SHA-256 of the chain): one
    /// key per cluster and certificate.
    fn new(key: &TicketKey, certs: &[CertificateDer<'_>]) -> Result<Tickets> {
        let mut chain = ring::digest::Context::new(&ring::digest::SHA256);
        for c in certs {
            chain.update(&(c.len() as u64).to_be_bytes());
            chain.update(c);
        }
        let derived = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0), chain.finish().as_ref());
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, derived.as_ref())
            .map_err(|_| anyhow::anyhow!("AES-256-GCM refused the ticket key"))?;
        Ok(Tickets { key: ring::aead::LessSafeKey::new(unbound), rng: ring::rand::SystemRandom::new() })
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_S
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        ring::rand::SecureRandom::fill(&self.rng, &mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        let aad = ring::aead::Aad::from(TICKET_AAD);
        self.key.seal_in_place_append_tag(ring::aead::Nonce::assume_unique_for_key(nonce), aad, &mut sealed).ok()?;
        let mut out = Vec::with_capacity(nonce.len() + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < ring::aead::NONCE_LEN + ring::aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, sealed) = ticket.split_at(ring::aead::NONCE_LEN);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self.key.open_in_place(nonce, ring::aead::Aad::from(TICKET_AAD), &mut sealed).ok()?;
        Some(plain.to_vec())
    }
}

/// The rustls server config for `cert` (PEM chain, leaf first) and `key`
/// (PEM PKCS#8, PKCS#1 or SEC1), ALPN `http/1.1`, ring provider, session
/// tickets sealed with `tickets`. Every error names the file and what is
/// wrong with it.
pub fn load(cert: &Path, key: &Path, tickets: &TicketKey) -> Result<Arc<ServerConfig>> {
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
    let tickets = Tickets::new(tickets, &certs)?;
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
    config.ticketer = Arc::new(tickets);
    Ok(Arc::new(config))
}

/// `load` for the flags as given, with the cluster's ticket key (from the
/// environment, or a fresh one): None without `--tls-cert` (clap requires
/// both or neither).
pub fn from_flags(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsAcceptor::from(load(cert, key, &TicketKey::from_env_or_generate()?)?))),
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
