//! TLS for syslog listeners (RFC 5425): the server certificate, and who may speak — a client
//! certificate chained to `client_ca`, and/or one whose SHA-256 fingerprint or subject/SAN
//! name is allowed (rsyslog's `x509/certvalid`, `x509/fingerprint`, `x509/name`).
//!
//! Owns certificate loading and the peer check. Framing and everything after are the same as
//! plain TCP; nothing here reads messages.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What a TLS listener needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to; when set, a client certificate is required.
    pub client_ca: Option<PathBuf>,
    /// Allowed client certificate fingerprints, normalised to `SHA256:AA:BB:...`.
    pub allowed_fingerprints: Vec<String>,
    /// Allowed client names (subject CN or SAN DNS names), lower case.
    pub allowed_names: Vec<String>,
}

/// TLS set-up failures, naming the file.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn pem_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE in this PEM file"));
    }
    Ok(certs)
}

/// `SHA256:AB:CD:...` (rsyslog's notation) of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("SHA256:{}", hex.join(":"))
}

/// Normalises a configured fingerprint (`sha256:ab:cd...` or bare hex) to `SHA256:AB:CD:...`.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .trim_start_matches("SHA256:")
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect();
    Some(format!("SHA256:{}", bytes.join(":")))
}

/// Subject CN and SAN DNS names of a DER certificate, lower case.
pub fn names(cert: &[u8]) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let mut out: Vec<String> = parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_lowercase)
        .collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                out.push(dns.to_lowercase());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Requires a client certificate but checks only its handshake signature: for
/// fingerprint/name pinning without a CA (self-signed senders), checked after the handshake.
#[derive(Debug)]
struct PinnedClients {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Identity is decided by `check_peer` (fingerprint or name); the signatures below
        // still prove the client holds the certificate's key.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the rustls server configuration for a listener.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let chain = certificates(&settings.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| pem_error(&settings.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let pinned = !settings.allowed_fingerprints.is_empty() || !settings.allowed_names.is_empty();
    let builder = match (&settings.client_ca, pinned) {
        (Some(ca), _) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| pem_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => builder.with_client_cert_verifier(Arc::new(PinnedClients {
            algorithms: provider.signature_verification_algorithms,
        })),
        (None, false) => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", settings.key.display())))?;
    Ok(Arc::new(config))
}

/// After the handshake: the client's identity (a name, or its fingerprint), or why it is
/// refused. With no client authentication configured, every client is accepted (None).
pub fn check_peer(
    settings: &TlsSettings,
    peer_chain: Option<&[CertificateDer<'_>]>,
) -> Result<Option<String>, String> {
    let required = settings.client_ca.is_some()
        || !settings.allowed_fingerprints.is_empty()
        || !settings.allowed_names.is_empty();
    let Some(cert) = peer_chain.and_then(|c| c.first()) else {
        return if required {
            Err("no client certificate".into())
        } else {
            Ok(None)
        };
    };
    let print = fingerprint(cert);
    let names = names(cert);
    if !settings.allowed_fingerprints.is_empty() && !settings.allowed_fingerprints.contains(&print)
    {
        if settings.allowed_names.is_empty() {
            return Err(format!(
                "certificate {print} is not in allowed_fingerprints"
            ));
        }
    } else if !settings.allowed_fingerprints.is_empty() {
        return Ok(Some(names.first().cloned().unwrap_or(print)));
    }
    if !settings.allowed_names.is_empty() {
        return match names.iter().find(|n| settings.allowed_names.contains(n)) {
            Some(name) => Ok(Some(name.clone())),
            None => Err(format!(
                "certificate names {names:?} are not in allowed_names"
            )),
        };
    }
    Ok(Some(names.first().cloned().unwrap_or(print)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalise() {
        let hex = "ab".repeat(32);
        let want = format!("SHA256:{}", vec!["AB"; 32].join(":"));
        assert_eq!(normalize_fingerprint(&hex).as_deref(), Some(want.as_str()));
        assert_eq!(
            normalize_fingerprint(&format!("sha256:{}", vec!["ab"; 32].join(":"))).as_deref(),
            Some(want.as_str())
        );
        assert_eq!(normalize_fingerprint("SHA256:AB"), None);
        assert_eq!(fingerprint(b"x").len(), "SHA256:".len() + 32 * 3 - 1);
    }

    #[test]
    fn no_client_auth_accepts_anyone_and_required_auth_needs_a_certificate() {
        let open = TlsSettings {
            cert: "c".into(),
            key: "k".into(),
            client_ca: None,
            allowed_fingerprints: vec![],
            allowed_names: vec![],
        };
        assert_eq!(check_peer(&open, None), Ok(None));
        let pinned = TlsSettings {
            allowed_names: vec!["web1".into()],
            ..open
        };
        assert!(check_peer(&pinned, None).is_err());
    }
}
