//! Optional TLS (rustls): `tally serve --tls-cert chain.pem --tls-key key.pem`.
//!
//! Handshakes run in their own tasks, each bounded by `HANDSHAKE_TIMEOUT`, so a slow or hostile
//! client cannot hold up the acceptance of others; finished connections queue (bounded) for the
//! HTTP server. ALPN offers HTTP/2 and HTTP/1.1.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections that finished their handshake and wait for the HTTP server, at most.
pub const HANDSHAKED_QUEUE_MAX: usize = 1_024;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key: {detail}")]
    NoKey { path: String, detail: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl TlsError {
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "tls_file_unreadable",
            TlsError::NoCertificate { .. } => "tls_certificate_missing",
            TlsError::NoKey { .. } => "tls_key_missing",
            TlsError::Config(_) => "tls_config_invalid",
        }
    }
}

/// Builds the acceptor from PEM files: the certificate chain (leaf first) and its private key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source });
    acceptor_from_pem(&read(cert)?, &read(key)?, &cert.display().to_string(), &key.display().to_string())
}

pub fn acceptor_from_pem(cert: &[u8], key: &[u8], cert_name: &str, key_name: &str) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name.to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|error| TlsError::NoKey { path: key_name.to_owned(), detail: error.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub type TlsStream<S> = tokio_rustls::server::TlsStream<S>;

/// A listener whose connections are TLS: wraps a listener of plain connections.
pub struct TlsListener<S> {
    handshaked: mpsc::Receiver<(TlsStream<S>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl<S> TlsListener<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    /// Starts accepting from `plain` and handshaking in the background.
    pub fn new<L>(mut plain: L, acceptor: TlsAcceptor) -> io::Result<TlsListener<S>>
    where
        L: axum::serve::Listener<Io = S, Addr = SocketAddr>,
    {
        let local_addr = plain.local_addr()?;
        let (sender, handshaked) = mpsc::channel(HANDSHAKED_QUEUE_MAX);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    accepted = plain.accept() => accepted,
                    // The server stopped listening: stop accepting too.
                    _ = sender.closed() => return,
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, addr)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%addr, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { handshaked, local_addr })
    }
}

impl<S> axum::serve::Listener for TlsListener<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = TlsStream<S>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaked.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
