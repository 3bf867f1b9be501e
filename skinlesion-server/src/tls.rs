//! TLS with rustls: TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 offered by ALPN, and the
//! certificate reloadable (SIGHUP) for new connections while open ones carry on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate or key cannot serve; the server refuses to start (or, on a reload,
/// keeps the certificate in use).
#[derive(Debug)]
pub struct TlsError {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for TlsError {}

/// The TLS settings in force, replaced whole on a reload.
pub struct Tls {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            config: RwLock::new(config),
        })
    }

    /// Rereads the files; on an error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// An acceptor for the next connection, with the settings in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.config.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(Arc::clone(&config))
    }
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| error(&files.cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| error(&files.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, e))?;
    match chain.is_empty() {
        true => Err(error(path, "no PEM certificate in the file")),
        false => Ok(chain),
    }
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| error(path, format!("no usable private key: {e}")))
}

fn error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> TlsFiles {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, key.cert.pem()).unwrap();
        std::fs::write(&files.key, key.key_pair.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_generated_pair_loads_and_offers_h2_then_http1() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::load(write_pair(dir.path())).unwrap();
        let config = tls.config.read().unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn bad_files_are_refused_by_name_and_a_failed_reload_keeps_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path());
        let tls = Tls::load(files.clone()).unwrap();
        std::fs::write(&files.cert, "not a certificate").unwrap();
        let err = tls.reload().unwrap_err();
        assert_eq!(err.path, files.cert, "{err}");
        let missing = TlsFiles {
            key: dir.path().join("absent.pem"),
            ..write_pair(dir.path())
        };
        let err = Tls::load(missing.clone()).err().unwrap();
        assert_eq!(err.path, missing.key, "{err}");
        // A key that is not the certificate's.
        let other = tempfile::tempdir().unwrap();
        let mismatched = TlsFiles {
            key: write_pair(other.path()).key,
            ..write_pair(dir.path())
        };
        let err = Tls::load(mismatched.clone()).err().unwrap();
        assert_eq!(err.path, mismatched.key, "{err}");
        let _ = tls.acceptor();
    }
}
