//! TLS client settings for the connections syslog2ban opens (webhooks, feeds, RDAP, the
//! cluster's engine): rustls with the ring provider, the Mozilla roots of `webpki-roots`, and
//! optionally a private CA. A leaf: it knows nothing of who connects.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates of a CA file's PEM text. Err: a block that does not parse, or none at
/// all (a file that holds no certificate would otherwise leave only the Mozilla roots,
/// and the private CA's server refused at its first connection instead of at load).
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Checks the CA file at `path` as [`ca_certificates`] reads it (the config's check).
pub fn check_ca_file(path: &std::path::Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ca_certificates(&pem)
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A connector trusting the Mozilla roots and, when given, the certificates of `ca_pem`.
pub fn connector(ca_pem: Option<&[u8]>) -> Result<tokio_rustls::TlsConnector, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let certs =
            ca_certificates(pem).map_err(|e| std::io::Error::other(format!("CA file: {e}")))?;
        for cert in certs {
            roots.add(cert).map_err(std::io::Error::other)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        for text in [
            &b""[..],
            b"not a certificate\n",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = ca_certificates(text).unwrap_err();
            assert!(e.contains("no PEM certificate"), "{e}");
        }
        assert!(
            ca_certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        assert!(connector(Some(b"nothing")).is_err());
        assert!(connector(None).is_ok());
    }
}
