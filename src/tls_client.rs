//! TLS client settings for the connections syslog2ban opens (webhooks, feeds, RDAP, the
//! cluster's engine): rustls with the ring provider, the Mozilla roots of `webpki-roots`, and
//! optionally a private CA. A leaf: it knows nothing of who connects.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A connector trusting the Mozilla roots and, when given, the certificates of `ca_pem`.
pub fn connector(ca_pem: Option<&[u8]>) -> Result<tokio_rustls::TlsConnector, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| std::io::Error::other(format!("CA file: {e}")))?;
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
