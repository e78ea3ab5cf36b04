//! The optional HTTPS listener's TLS setup: a certificate chain and its private key from PEM files (CARTO is
//! only reached over HTTPS; the tests of the client's `ca_file` and `insecure` need a server with a certificate
//! of their own CA). rustls with ring, the same provider as the client's reqwest.
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// An acceptor serving `cert` (PEM: the server's certificate, then any intermediates) with `key` (PEM:
/// PKCS#8, PKCS#1 or SEC1). Errors name the file and what is wrong with it.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid certificate file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("invalid key file {}: {e}", key.display()))?
        .ok_or_else(|| format!("{} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("TLS certificate {} with key {}: {e}", cert.display(), key.display()))?;
    // The server speaks HTTP/1.1 only (as the plain listener).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
