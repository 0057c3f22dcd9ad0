//! Native TLS: the certificate chain and key of `tls.cert_file` and `tls.key_file`, the rustls
//! server configuration that serves them, and their reload on SIGHUP.
//!
//! The configuration does not hold the certificate: it asks [`TlsCerts`] for it at every
//! handshake ([`ResolvesServerCert`]), so a reload swaps one `Arc` and the next handshake gets
//! the new certificate, while connections already established keep the session they
//! negotiated (a TLS session never re-reads the certificate) and are not dropped.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use secrecy::zeroize::Zeroizing;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

pub const CERT_KEY: &str = "tls.cert_file";
pub const KEY_KEY: &str = "tls.key_file";

/// Why a certificate or key could not be loaded. The messages name the configuration key and
/// the file, never the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {}: cannot read it: {source}", .path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} {}: {problem}", .path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "tls.key_file {} is not the key of the certificate in tls.cert_file {}",
        .key.display(),
        .cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate being served, and the files it comes from.
pub struct TlsCerts {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    /// Read at every handshake, written by a reload. An `RwLock` rather than an atomic swap
    /// cell: a read is one uncontended atomic, a handshake costs thousands of times more, and
    /// no further crate is needed.
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for TlsCerts {
    // Paths only: the key stays out of every `Debug` print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCerts")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl TlsCerts {
    /// Loads both files, refusing a missing or unreadable file, one that holds no PEM
    /// certificate or key, and a key that does not belong to the certificate.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<TlsCerts>, TlsError> {
        // ring, and only ring: the process-wide default provider is left alone, so nothing else
        // in the process can change which crypto this server uses.
        #[allow(
            deprecated,
            reason = "rustls 0.23.48 deprecates its ring provider for want of a post-quantum \
                      key exchange (X25519MLKEM768, aws-lc-rs only); ring stays the one backend \
                      (Cargo.toml) until it has one: X25519 and the NIST curves still negotiate"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load_pair(&provider, cert_file, key_file)?;
        Ok(Arc::new(TlsCerts {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(current),
        }))
    }

    /// Reads both files again and serves them from the next handshake on. On failure the
    /// current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.provider, &self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The DER of the certificate served now (the chain's first).
    pub fn end_entity(&self) -> CertificateDer<'static> {
        self.now().cert[0].clone()
    }

    fn now(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The server configuration over these certificates: TLS 1.2 and 1.3 (rustls' safe
    /// defaults), no client certificates, HTTP/1.1 announced by ALPN (RFC 7301), the one
    /// protocol the accept loop speaks.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reloads on every SIGHUP until the process ends. A failed reload is logged (the files and
    /// the reason, never their contents) and the current certificate stays.
    #[cfg(unix)]
    pub fn reload_on_sighup(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered before returning, so that a SIGHUP sent once the server answers is never
        // taken by the default disposition, which ends the process.
        let mut hup = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert_file = %self.cert_file.display(),
                        key_file = %self.key_file.display(),
                        "SIGHUP: TLS certificate reloaded"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "SIGHUP: TLS certificate reload failed; still serving the previous one"
                    ),
                }
            }
        }))
    }
}

impl ResolvesServerCert for TlsCerts {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.now())
    }
}

fn read(key: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            key,
            path: path.to_path_buf(),
            source,
        })
}

fn load_pair(
    provider: &CryptoProvider,
    cert_file: &Path,
    key_file: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let invalid = |key, path: &Path, problem: String| TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&read(CERT_KEY, cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(CERT_KEY, cert_file, format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            CERT_KEY,
            cert_file,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    // The buffer is wiped on drop (`Zeroizing`), and so is the parsed key (pki-types).
    let key = match PrivateKeyDer::from_pem_slice(&read(KEY_KEY, key_file)?) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(invalid(
                KEY_KEY,
                key_file,
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----, or RSA or EC PRIVATE \
                 KEY)"
                    .into(),
            ));
        }
        // pki-types' messages quote at most a BEGIN or END line, never the key's body.
        Err(e) => return Err(invalid(KEY_KEY, key_file, format!("not valid PEM: {e}"))),
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(KEY_KEY, key_file, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive: the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(invalid(
                CERT_KEY,
                cert_file,
                format!("not a usable X.509 certificate: {e}"),
            ));
        }
    }
    Ok(Arc::new(certified))
}
