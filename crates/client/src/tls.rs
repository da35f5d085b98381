//! An extra CA ([`crate::HubConnectionBuilder::extra_ca_pem`]) for HTTPS (reqwest) and WSS
//! (tungstenite with rustls), trusted besides the system's roots.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// The certificates of `pem`; at least one.
pub(crate) fn extra_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Certificate("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// Checks an extra CA as [`crate::HubConnectionBuilder::extra_ca_pem`] takes it (one or more
/// PEM `CERTIFICATE` blocks, text around them ignored) and returns how many certificates it
/// holds: each must be a certificate rustls can trust as a root (RFC 5280 X.509, parsed as
/// webpki trust anchors), so a PEM that would fail at connect fails here.
///
/// Errors: [`Error::Certificate`] with why (no certificate in it, a block that is not base64,
/// a certificate that cannot be parsed).
pub fn check_extra_ca_pem(pem: &[u8]) -> Result<usize, Error> {
    let certs = extra_roots(pem)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| Error::Certificate(e.to_string()))?;
    }
    Ok(certs.len())
}

/// The WSS client configuration: the system's roots (as tokio-tungstenite's own
/// `rustls-tls-native-roots` loads them) and `extra`.
pub(crate) fn websocket_config(extra: &[u8]) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot read is skipped, as tokio-tungstenite does.
        let _ = roots.add(cert);
    }
    for cert in extra_roots(extra)? {
        roots
            .add(cert)
            .map_err(|e| Error::Certificate(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Certificate(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Adds `extra` to an HTTP client's roots.
pub(crate) fn http_client(extra: Option<&[u8]>) -> Result<reqwest::ClientBuilder, Error> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = extra {
        for cert in extra_roots(pem)? {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_der(&cert)
                    .map_err(|e| Error::Certificate(e.to_string()))?,
            );
        }
    }
    Ok(builder)
}
