//! Certificates for the TLS tests, made at run time with rcgen: a CA, and
//! server certificates it signs for 127.0.0.1 and localhost, written as PEM
//! files for `--tls-cert`/`--tls-key`; and a rustls client config that
//! trusts only that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A test CA and the directory its server certificates are written to.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    /// A client config (ring provider) trusting this CA only, ALPN http/1.1.
    pub client: Arc<rustls::ClientConfig>,
}

/// A server certificate: its PEM files and its DER, to recognise it on the wire.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "reference-server test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        #[allow(deprecated)] // ring, like the server (src/tls.rs says why)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestPki { dir: tempfile::tempdir().unwrap(), ca, ca_key, client: Arc::new(client) }
    }

    /// A new server certificate for 127.0.0.1 and localhost (common name
    /// `name`), written to `<dir>/<name>.crt` and `<dir>/<name>.key`.
    pub fn issue(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_path, key_path) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Issued { cert: cert_path, key: key_path, der: cert.der().to_vec() }
    }

    /// A path in this PKI's directory (e.g. for the live files a rotation replaces).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

impl Issued {
    /// Put this certificate's files at `cert` and `key` the way a deploy
    /// does: written beside and renamed over, so a worker starting at that
    /// moment reads the old file or the new one, never half of one.
    pub fn install_at(&self, cert: &Path, key: &Path) {
        for (from, to) in [(&self.key, key), (&self.cert, cert)] {
            let tmp = to.with_extension("tmp");
            std::fs::copy(from, &tmp).unwrap();
            std::fs::rename(&tmp, to).unwrap();
        }
    }

    /// `--tls-cert <cert> --tls-key <key>` for these files.
    pub fn flags(&self) -> Vec<String> {
        flags(&self.cert, &self.key)
    }
}

/// `--tls-cert <cert> --tls-key <key>`.
pub fn flags(cert: &Path, key: &Path) -> Vec<String> {
    vec!["--tls-cert".to_string(), cert.display().to_string(), "--tls-key".to_string(), key.display().to_string()]
}
