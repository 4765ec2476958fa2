//! A small Engine API client for the dashboard's remote hosts: HTTP/1.1
//! over a unix socket, plain TCP or TCP with TLS client certificates (as
//! the docker CLI's `--tlsverify` with `ca.pem`/`cert.pem`/`key.pem`).
//! One connection per request; every request is bounded in time.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long connecting plus a whole non-streaming exchange may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The API version the dashboard speaks to other hosts (dockerd 20.10+).
const API_VERSION: &str = "v1.41";

/// A failed request, in words for the host's status line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect {0}: {1}")]
    Connect(String, io::Error),
    #[error("HTTP: {}", with_sources(.0))]
    Http(#[from] hyper::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{path}: status {status}: {body}")]
    Status {
        path: String,
        status: u16,
        body: String,
    },
    #[error("{0}: bad JSON: {1}")]
    Json(String, serde_json::Error),
    #[error("TLS set-up: {0}")]
    Tls(String),
}

/// An error with its causes (hyper's say only "connection error"; the
/// TLS alert that caused it is in the source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// TLS files for a TCP host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where a host's Engine API is.
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { host, port, tls } => {
                let scheme = if tls.is_some() { "https" } else { "tcp" };
                write!(f, "{scheme}://{host}:{port}")
            }
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client configuration trusting `files.ca` and presenting the client
/// certificate when one is given.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let bad =
        |p: &Path, e: &dyn std::fmt::Display| ClientError::Tls(format!("{}: {e}", p.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).map_err(|e| bad(&files.ca, &e))? {
        roots
            .add(cert.map_err(|e| bad(&files.ca, &e))?)
            .map_err(|e| bad(&files.ca, &e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Tls(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

impl Endpoint {
    async fn connect(&self) -> Result<Box<dyn Io>, ClientError> {
        let err = |e| ClientError::Connect(format!("{self:?}"), e);
        match self {
            Endpoint::Unix(path) => Ok(Box::new(
                tokio::net::UnixStream::connect(path).await.map_err(err)?,
            )),
            Endpoint::Tcp { host, port, tls } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(err)?;
                let _ = tcp.set_nodelay(true);
                let Some(config) = tls else {
                    return Ok(Box::new(tcp));
                };
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(err)?;
                Ok(Box::new(stream))
            }
        }
    }

    /// Sends `GET /v1.41{path}` and returns the response once its head
    /// arrived; the connection lives as long as the body is read.
    pub async fn open(&self, path: &str) -> Result<hyper::Response<Incoming>, ClientError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = match self {
            Endpoint::Unix(_) => "localhost".to_string(),
            Endpoint::Tcp { host, port, .. } => format!("{host}:{port}"),
        };
        let req = hyper::Request::get(format!("/{API_VERSION}{path}"))
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "berth-dashboard")
            .body(Empty::<Bytes>::new())
            .expect("static request parts");
        Ok(sender.send_request(req).await?)
    }

    /// `GET path` as JSON, within [`REQUEST_TIMEOUT`].
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let exchange = async {
            let resp = self.open(path).await?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            if status >= 300 {
                return Err(ClientError::Status {
                    path: path.to_string(),
                    status,
                    body: String::from_utf8_lossy(&body).trim().to_string(),
                });
            }
            serde_json::from_slice(&body).map_err(|e| ClientError::Json(path.to_string(), e))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout(REQUEST_TIMEOUT))?
    }
}

/// Reads a streaming body line by line (`/events`, `/containers/stats`).
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(body: Incoming) -> Lines {
        Lines {
            body,
            buf: Vec::new(),
        }
    }

    /// The next complete line; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, ClientError>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(Ok(line));
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}
