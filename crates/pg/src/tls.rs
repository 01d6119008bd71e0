//! The wire's TLS, from PEM files read once at start. A certificate or key that does not load
//! is an error that stops the process: a door configured for TLS never serves in the clear.

use std::{path::Path, sync::Arc};

use anyhow::{Context, bail};
use pgwire::tokio::tokio_rustls::{TlsAcceptor, rustls};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A TLS acceptor for `cert` (the chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1).
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("sql.tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("sql.tls_cert: {} is not PEM", cert.display()))?;
    if chain.is_empty() {
        bail!("sql.tls_cert: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("sql.tls_key: no private key read from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("sql.tls_cert and sql.tls_key do not make a certificate and its key")?;
    // PostgreSQL 17's direct TLS negotiation names this protocol.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
