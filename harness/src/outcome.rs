//! How one HTTP attempt ended: the vocabulary of the ledger. Shared by the
//! scenario (retry policies name failure classes), the engine (which
//! classifies), the judge and the report. Not the ledger itself.

use serde::{Deserialize, Serialize};

/// Why an attempt failed. Every failed attempt has exactly one class; see
/// docs/LEDGER.md for how each is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The TCP connect was refused (RST to SYN): nothing listening.
    ConnectRefused,
    /// The TCP connect (or, over https, the TLS handshake) did not complete
    /// within the step's timeout.
    ConnectTimeout,
    /// The TLS handshake failed or was cut (reset, EOF, an alert, no common
    /// protocol). Nothing of the request was sent: it cannot have reached
    /// the server.
    TlsHandshakeFailed,
    /// The harness refused the server's certificate (expired, wrong name,
    /// unknown CA). Never retried; any such attempt fails the run.
    TlsCertificate,
    /// The connection was reset before a complete response head arrived.
    ResetBeforeResponse,
    /// The connection was closed (FIN, zero-byte read) before a response head.
    /// The attempt record says whether the connection was a reused keep-alive one.
    ClosedBeforeResponse,
    /// The head arrived but the body ended (or was reset) before its declared length.
    TruncatedBody,
    /// No complete response within the step's timeout after the request was sent.
    ResponseTimeout,
    /// A 5xx status.
    ServerError,
    /// A status that is neither expected nor an expected business refusal.
    UnexpectedStatus,
    /// The status was fine but the body could not be used (not JSON, or a value
    /// the step extracts is missing).
    InvalidBody,
    /// The bytes received were not a valid HTTP/1.1 response.
    ProtocolError,
    /// The harness itself could not send: no free port or file descriptor,
    /// or another local error. Counted as a failure, flagged as the harness's own.
    LocalError,
}

impl FailureClass {
    pub const ALL: [FailureClass; 13] = [
        FailureClass::ConnectRefused,
        FailureClass::ConnectTimeout,
        FailureClass::TlsHandshakeFailed,
        FailureClass::TlsCertificate,
        FailureClass::ResetBeforeResponse,
        FailureClass::ClosedBeforeResponse,
        FailureClass::TruncatedBody,
        FailureClass::ResponseTimeout,
        FailureClass::ServerError,
        FailureClass::UnexpectedStatus,
        FailureClass::InvalidBody,
        FailureClass::ProtocolError,
        FailureClass::LocalError,
    ];

    /// Whether a slow machine alone can cause this class: a timeout, where a
    /// server that was only starved of CPU answered too late. Every other
    /// class is something the server (or the harness) did wrong.
    pub fn is_timeout(self) -> bool {
        matches!(self, FailureClass::ConnectTimeout | FailureClass::ResponseTimeout)
    }

    /// The snake_case name used in scenario files, summary.json and events.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::ConnectRefused => "connect_refused",
            FailureClass::ConnectTimeout => "connect_timeout",
            FailureClass::TlsHandshakeFailed => "tls_handshake_failed",
            FailureClass::TlsCertificate => "tls_certificate",
            FailureClass::ResetBeforeResponse => "reset_before_response",
            FailureClass::ClosedBeforeResponse => "closed_before_response",
            FailureClass::TruncatedBody => "truncated_body",
            FailureClass::ResponseTimeout => "response_timeout",
            FailureClass::ServerError => "server_error",
            FailureClass::UnexpectedStatus => "unexpected_status",
            FailureClass::InvalidBody => "invalid_body",
            FailureClass::ProtocolError => "protocol_error",
            FailureClass::LocalError => "local_error",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether the server may have acted on the request although the client
    /// saw no answer (a checkout that timed out may still have been ordered).
    /// The audit treats such outcomes as unknown, allowed either way. The TLS
    /// classes are not: the request is written only after the handshake.
    pub fn outcome_unknown(self) -> bool {
        matches!(
            self,
            FailureClass::ResetBeforeResponse
                | FailureClass::ClosedBeforeResponse
                | FailureClass::TruncatedBody
                | FailureClass::ResponseTimeout
                | FailureClass::ProtocolError
        )
    }
}

/// Whether an attempt paid a TLS handshake: the ledger's `handshake` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handshake {
    /// A reused connection, or plain http.
    #[default]
    None,
    /// A full TLS handshake (new connection, no session resumed).
    Full,
    /// A resumed TLS session (abbreviated handshake, a session ticket).
    Resumed,
}

impl Handshake {
    /// The name in the ledger (serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            Handshake::None => "none",
            Handshake::Full => "full",
            Handshake::Resumed => "resumed",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "class", rename_all = "snake_case")]
pub enum Outcome {
    /// An expected status (and a usable body).
    Ok,
    /// An expected business refusal, e.g. 409 sold out.
    Refused,
    Failed(FailureClass),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip_and_match_serde() {
        for c in FailureClass::ALL {
            assert_eq!(FailureClass::from_name(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
        }
        assert_eq!(FailureClass::from_name("teapot"), None);
        // Nothing is sent before the handshake completes.
        assert!(!FailureClass::TlsHandshakeFailed.outcome_unknown());
        assert!(!FailureClass::TlsCertificate.outcome_unknown());
    }
}

/// Serde for a `BTreeMap<FailureClass, u64>` as summary.json writes it:
/// every class by name, 0 if absent, so a reader never has to guess whether
/// a missing class means none. Reading drops zeros and unknown names.
pub mod by_class {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::FailureClass;

    pub fn serialize<S: Serializer>(m: &BTreeMap<FailureClass, u64>, s: S) -> Result<S::Ok, S::Error> {
        let all: BTreeMap<&str, u64> =
            FailureClass::ALL.iter().map(|c| (c.as_str(), m.get(c).copied().unwrap_or(0))).collect();
        all.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<FailureClass, u64>, D::Error> {
        let raw = BTreeMap::<String, u64>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(k, n)| FailureClass::from_name(&k).map(|c| (c, n)))
            .collect())
    }
}
