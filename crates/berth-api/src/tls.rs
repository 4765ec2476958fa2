//! TLS for the TCP listeners: the rustls server configuration built from
//! the PEM files dockerd's `--tlscert`, `--tlskey` and `--tlscacert` name
//! (with `--tlsverify` a client must present a certificate signed by that
//! CA), and a [`Listener`] whose handshakes run in each connection's own
//! task, so a client that stalls mid-handshake holds up no one else.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::server::Listener;

/// The configuration a [`TlsListener`] serves with.
pub use rustls::ServerConfig as TlsServerConfig;

/// The files of a TLS listener, as the daemon's flags name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (`--tlscert`), leaf first.
    pub cert: PathBuf,
    /// The server's private key (`--tlskey`): PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
    /// `--tlsverify`: clients must present a certificate that chains to
    /// one of the CA certificates in this file (`--tlscacert`). `None`
    /// (`--tls` with `--tlsverify=false`): no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the {what} {} is not valid PEM: {reason}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the {what} {} holds no {expected}", path.display())]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the CA certificate {} cannot be used: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the server configuration for `files`: TLS 1.2 and 1.3 only (as
/// dockerd's minimum), HTTP/1.1 by ALPN, client certificates required and
/// verified when `client_ca` is set.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "TLS certificate")?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca_path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(ca_path, "CA certificate")? {
                roots.add(ca).map_err(|e| TlsConfigError::BadCa {
                    path: ca_path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsConfigError::BadCa {
                    path: ca_path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    // Only HTTP/1.1 is served (attach and exec hijack the connection, which
    // HTTP/2 cannot). Clients offering h2 and http/1.1 pick http/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let what = "TLS key";
    let pem = read_file(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsConfigError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "private key",
        },
        e => TlsConfigError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// A TCP listener whose connections speak TLS.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl Listener for TlsListener {
    type Accepted = (TcpStream, SocketAddr);
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> io::Result<Self::Accepted> {
        let (stream, peer) = self.tcp.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }

    fn establish(
        &self,
        (stream, peer): Self::Accepted,
    ) -> impl std::future::Future<Output = io::Result<Self::Io>> + Send + 'static {
        let acceptor = self.acceptor.clone();
        async move {
            acceptor.accept(stream).await.inspect_err(|e| {
                // A client without a certificate, or with one from another
                // CA, ends here: the operator wants to see who tried.
                tracing::info!("TLS handshake with {peer} failed: {e}");
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA with a server certificate for 127.0.0.1 and a client certificate.
    struct Pki {
        ca_pem: String,
        server_cert: String,
        server_key: String,
        client_cert: String,
        client_key: String,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, &ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server_cert: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_cert: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A rustls client trusting `ca`, presenting `identity` if given.
    fn client(ca: &str, identity: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Connects, says hello and returns what the server echoed, or the
    /// error that ended the exchange.
    async fn exchange(
        addr: SocketAddr,
        connector: tokio_rustls::TlsConnector,
    ) -> io::Result<Vec<u8>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"hello").await?;
        tls.flush().await?;
        let mut buf = vec![0u8; 5];
        tls.read_exact(&mut buf).await?;
        Ok(buf)
    }

    /// Serves echo-once connections on a TLS listener.
    async fn echo_server(config: Arc<ServerConfig>) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = TlsListener::new(tcp, config);
        tokio::spawn(async move {
            loop {
                let Ok(conn) = listener.accept().await else {
                    continue;
                };
                let handshake = listener.establish(conn);
                tokio::spawn(async move {
                    if let Ok(mut io) = handshake.await {
                        let mut buf = [0u8; 5];
                        if io.read_exact(&mut buf).await.is_ok() {
                            let _ = io.write_all(&buf).await;
                            let _ = io.shutdown().await;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn tlsverify_requires_a_client_certificate_from_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ours = pki();
        let theirs = pki();
        let files = TlsFiles {
            cert: write(dir.path(), "server-cert.pem", &ours.server_cert),
            key: write(dir.path(), "server-key.pem", &ours.server_key),
            client_ca: Some(write(dir.path(), "ca.pem", &ours.ca_pem)),
        };
        let addr = echo_server(server_config(&files).unwrap()).await;

        let good = client(&ours.ca_pem, Some((&ours.client_cert, &ours.client_key)));
        assert_eq!(exchange(addr, good).await.unwrap(), b"hello");
        // No certificate: the server ends the handshake. With TLS 1.3 the
        // client learns it at its first read.
        let anonymous = client(&ours.ca_pem, None);
        assert!(exchange(addr, anonymous).await.is_err());
        // A certificate from another CA is refused the same way.
        let stranger = client(
            &ours.ca_pem,
            Some((&theirs.client_cert, &theirs.client_key)),
        );
        assert!(exchange(addr, stranger).await.is_err());
    }

    #[tokio::test]
    async fn tls_without_verification_takes_anonymous_clients() {
        let dir = tempfile::tempdir().unwrap();
        let ours = pki();
        let files = TlsFiles {
            cert: write(dir.path(), "server-cert.pem", &ours.server_cert),
            key: write(dir.path(), "server-key.pem", &ours.server_key),
            client_ca: None,
        };
        let addr = echo_server(server_config(&files).unwrap()).await;
        let anonymous = client(&ours.ca_pem, None);
        assert_eq!(exchange(addr, anonymous).await.unwrap(), b"hello");
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let ours = pki();
        let cert = write(dir.path(), "cert.pem", &ours.server_cert);
        let key = write(dir.path(), "key.pem", &ours.server_key);
        let missing = dir.path().join("missing.pem");
        let err = server_config(&TlsFiles {
            cert: missing.clone(),
            key: key.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(matches!(err, TlsConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A key file given as the certificate holds no certificate.
        let err = server_config(&TlsFiles {
            cert: key.clone(),
            key: key.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(matches!(err, TlsConfigError::Empty { .. }), "{err}");
        // A certificate given as the key holds no key.
        let err = server_config(&TlsFiles {
            cert: cert.clone(),
            key: cert.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        // The key must match the certificate.
        let other = pki();
        let other_key = write(dir.path(), "other-key.pem", &other.server_key);
        assert!(server_config(&TlsFiles {
            cert,
            key: other_key,
            client_ca: None,
        })
        .is_err());
    }
}
