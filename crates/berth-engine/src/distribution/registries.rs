//! Which registries berth trusts and how it reaches them: dockerd's
//! `insecure-registries` (hosts and CIDRs, loopback always included),
//! `registry-mirrors` (used for Docker Hub pulls only), and the per-host
//! TLS material under the certs directory (`<host:port>/*.crt` CAs,
//! `*.cert`/`*.key` client pairs). An endpoint is a base URL plus the HTTP
//! client configured for it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{EngineError, Result};

/// The registry behind `docker.io` names.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's v2 API lives.
const DOCKER_HUB_V2: &str = "https://registry-1.docker.io";
/// Where berth looks for per-registry certificates unless configured.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";

/// The registry options berthd was started with (flags and daemon.json).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `--insecure-registry` / `insecure-registries`: `host[:port]` or CIDRs.
    pub insecure_registries: Vec<String>,
    /// `--registry-mirror` / `registry-mirrors`: `http(s)://host[:port]/`.
    pub mirrors: Vec<String>,
    /// `--registry-certs-dir` (berth's; dockerd hard-codes
    /// `/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            mirrors: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
        }
    }
}

/// An IP network (`127.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (a, b) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let bits: u8 = b.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { addr, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// The validated registry configuration.
#[derive(Debug, Clone)]
pub struct Registries {
    insecure_cidrs: Vec<Cidr>,
    insecure_hosts: Vec<String>,
    mirrors: Vec<String>,
    certs_dir: PathBuf,
}

impl Default for Registries {
    fn default() -> Self {
        Registries::new(&RegistryOptions::default()).expect("the defaults are valid")
    }
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidParameter(msg)
}

/// dockerd's `ValidateMirror`: a URL with scheme and nothing after the path.
fn validate_mirror(m: &str) -> Result<String> {
    let Some((scheme, _)) = m.split_once("://").filter(|(s, _)| !s.is_empty()) else {
        return Err(invalid(format!(
            "invalid mirror: no scheme specified for {m:?}: must use either 'https://' or 'http://'"
        )));
    };
    let url = reqwest::Url::parse(m)
        .map_err(|e| invalid(format!("invalid mirror: {m:?} is not a valid URI: {e}")))?;
    if scheme != "http" && scheme != "https" {
        return Err(invalid(format!(
            "invalid mirror: unsupported scheme {scheme:?} in {m:?}: must use either 'https://' or 'http://'"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "invalid mirror: query or fragment at end of the URI {m:?}"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "invalid mirror: username/password not allowed in URI {m:?}"
        )));
    }
    Ok(format!("{}/", m.trim_end_matches('/')))
}

/// A `host[:port]` as dockerd accepts one for an insecure registry.
fn valid_host_port(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    (host_ok || s.parse::<IpAddr>().is_ok()) && port_ok
}

impl Registries {
    /// Validates `opts` with dockerd's rules and messages.
    pub fn new(opts: &RegistryOptions) -> Result<Registries> {
        let mut mirrors: Vec<String> = Vec::new();
        for m in &opts.mirrors {
            let m = validate_mirror(m)?;
            if !mirrors.contains(&m) {
                mirrors.push(m);
            }
        }
        let mut insecure_cidrs = Vec::new();
        let mut insecure_hosts = Vec::new();
        // Loopback is always insecure: dockerd's stop-gap for registries
        // people run on localhost.
        let defaults = ["::1/128".to_string(), "127.0.0.0/8".to_string()];
        for r in opts.insecure_registries.iter().chain(defaults.iter()) {
            let mut r = r.as_str();
            if r.starts_with('-') || r.ends_with('-') {
                return Err(invalid(format!(
                    "invalid index name ({r}). Cannot begin or end with a hyphen"
                )));
            }
            if let Some((scheme, host)) = r.split_once("://") {
                match scheme.to_ascii_lowercase().as_str() {
                    "http" | "https" => r = host,
                    _ => {
                        return Err(invalid(format!(
                            "insecure registry {r} should not contain '://'"
                        )))
                    }
                }
            }
            if let Some(c) = Cidr::parse(r) {
                if !insecure_cidrs.contains(&c) {
                    insecure_cidrs.push(c);
                }
            } else if valid_host_port(r) {
                insecure_hosts.push(r.to_string());
            } else {
                return Err(invalid(format!(
                    "insecure registry {r} is not valid: invalid host {r:?}"
                )));
            }
        }
        Ok(Registries {
            insecure_cidrs,
            insecure_hosts,
            mirrors,
            certs_dir: opts.certs_dir.clone(),
        })
    }

    /// The mirrors, normalized (`docker info`).
    pub fn mirrors(&self) -> &[String] {
        &self.mirrors
    }

    /// The insecure networks (`docker info`).
    pub fn insecure_cidrs(&self) -> Vec<String> {
        self.insecure_cidrs.iter().map(Cidr::to_string).collect()
    }

    /// The insecure `host[:port]` names (`docker info`).
    pub fn insecure_hosts(&self) -> &[String] {
        &self.insecure_hosts
    }

    /// The `RegistryConfig` of `docker info`.
    pub fn service_config(&self) -> bollard_stubs::models::RegistryServiceConfig {
        use bollard_stubs::models::IndexInfo;
        let mut index = std::collections::HashMap::new();
        index.insert(
            DOCKER_HUB.to_string(),
            IndexInfo {
                name: Some(DOCKER_HUB.to_string()),
                mirrors: Some(self.mirrors.clone()),
                secure: Some(true),
                official: Some(true),
            },
        );
        for h in &self.insecure_hosts {
            index.insert(
                h.clone(),
                IndexInfo {
                    name: Some(h.clone()),
                    mirrors: Some(Vec::new()),
                    secure: Some(false),
                    official: Some(false),
                },
            );
        }
        bollard_stubs::models::RegistryServiceConfig {
            insecure_registry_cidrs: Some(self.insecure_cidrs()),
            index_configs: Some(index),
            mirrors: Some(self.mirrors.clone()),
        }
    }

    /// Whether `host` (`host[:port]`) must be reached with verified TLS.
    /// Names are resolved to check them against the insecure networks,
    /// as dockerd does; a name that does not resolve is secure.
    pub async fn is_secure(&self, host: &str) -> bool {
        if self.insecure_hosts.iter().any(|h| h == host) {
            return false;
        }
        if host == DOCKER_HUB {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::net::lookup_host((name, 0)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(_) => return true,
            },
        };
        !addrs
            .iter()
            .any(|ip| self.insecure_cidrs.iter().any(|c| c.contains(*ip)))
    }

    /// Where to reach registry `host`, in the order to try: mirrors first
    /// for Docker Hub pulls; HTTPS, then plain HTTP for insecure hosts.
    pub async fn endpoints(&self, host: &str, with_mirrors: bool) -> Result<Vec<Endpoint>> {
        let mut out = Vec::new();
        if host == DOCKER_HUB {
            if with_mirrors {
                for m in &self.mirrors {
                    let url = reqwest::Url::parse(m)
                        .map_err(|e| invalid(format!("invalid mirror {m:?}: {e}")))?;
                    let authority = url_authority(&url);
                    let secure = self.is_secure(&authority).await;
                    let base = m.trim_end_matches('/').to_string();
                    out.push(Endpoint::new(
                        &base,
                        &authority,
                        secure,
                        true,
                        &self.certs_dir,
                    )?);
                }
            }
            out.push(Endpoint::new(
                DOCKER_HUB_V2,
                "registry-1.docker.io",
                true,
                false,
                &self.certs_dir,
            )?);
            return Ok(out);
        }
        let secure = self.is_secure(host).await;
        out.push(Endpoint::new(
            &format!("https://{host}"),
            host,
            secure,
            false,
            &self.certs_dir,
        )?);
        if !secure {
            out.push(Endpoint::new(
                &format!("http://{host}"),
                host,
                false,
                false,
                &self.certs_dir,
            )?);
        }
        Ok(out)
    }
}

/// `host[:port]` of a URL.
fn url_authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// One way of reaching a registry: a base URL and the client for it.
#[derive(Clone)]
pub struct Endpoint {
    /// `https://host:port` (or a mirror's URL), without a trailing `/`.
    pub base: String,
    /// Whether this is a mirror (pull-only, never sent credentials).
    pub mirror: bool,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .field("mirror", &self.mirror)
            .finish()
    }
}

/// The user agent registries see.
fn user_agent() -> String {
    format!("berth/{} os/linux arch/amd64", crate::VERSION)
}

impl Endpoint {
    fn new(base: &str, authority: &str, secure: bool, mirror: bool, certs: &Path) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .user_agent(user_agent())
            .connect_timeout(Duration::from_secs(15))
            // No read timeout here: it would also run while a slow layer
            // upload is still being sent. Downloads time out per chunk.
            .tcp_keepalive(Duration::from_secs(30));
        // Always preconfigured, also for plain HTTP endpoints: reqwest has
        // no process-wide crypto provider to fall back on, and a registry
        // may redirect blob downloads to HTTPS storage.
        let builder = builder.tls_backend_preconfigured(tls_config(authority, secure, certs)?);
        let http = builder
            .build()
            .map_err(|e| EngineError::Internal(format!("registry client for {base}: {e}")))?;
        Ok(Endpoint {
            base: base.to_string(),
            mirror,
            http,
        })
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The host's trusted CAs, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("system CA certificates: {e}");
        }
        found.certs
    })
}

/// The TLS client configuration for registry `authority`: system roots
/// plus the CAs in `<certs>/<authority>/*.crt`, a client certificate from
/// `*.cert` + `*.key`, and no verification at all for insecure registries
/// (dockerd's `InsecureSkipVerify`).
pub(crate) fn tls_config(
    authority: &str,
    secure: bool,
    certs: &Path,
) -> Result<rustls::ClientConfig> {
    let dir = certs.join(authority);
    let mut cas = Vec::new();
    let mut client_pair = None;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "crt" => {
                    for cert in CertificateDer::pem_file_iter(&path).map_err(|e| {
                        invalid(format!("unable to read CA file {}: {e}", path.display()))
                    })? {
                        cas.push(cert.map_err(|e| {
                            invalid(format!("unable to read CA file {}: {e}", path.display()))
                        })?);
                    }
                }
                "cert" => {
                    let key = path.with_extension("key");
                    if !key.exists() {
                        return Err(invalid(format!(
                            "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                            key.file_name().unwrap_or_default().to_string_lossy(),
                            path.file_name().unwrap_or_default().to_string_lossy()
                        )));
                    }
                    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                        .and_then(|it| it.collect())
                        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                    let key = PrivateKeyDer::from_pem_file(&key)
                        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
                    client_pair = Some((chain, key));
                }
                "key" if !path.with_extension("cert").exists() => {
                    return Err(invalid(format!(
                        "missing client certificate {} for key {}",
                        path.with_extension("cert")
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy(),
                        path.file_name().unwrap_or_default().to_string_lossy()
                    )));
                }
                _ => {}
            }
        }
    }
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Internal(format!("TLS setup: {e}")))?;
    let builder = if secure {
        let mut roots = RootCertStore::empty();
        let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| invalid(format!("CA certificate for {authority}: {e}")))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
    };
    let mut config = match client_pair {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(format!("client certificate for {authority}: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any server certificate (insecure registries only), but still
/// checks the handshake signatures so the session keys are the server's.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(insecure: &[&str], mirrors: &[&str]) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            certs_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[tokio::test]
    async fn loopback_is_insecure_by_default() {
        let r = Registries::new(&opts(&[], &[])).unwrap();
        assert!(!r.is_secure("127.0.0.1:5000").await);
        assert!(!r.is_secure("[::1]:5000").await);
        assert!(r.is_secure("10.1.2.3:5000").await);
        assert!(r.is_secure("docker.io").await);
        assert_eq!(r.insecure_cidrs(), vec!["::1/128", "127.0.0.0/8"]);
    }

    #[tokio::test]
    async fn configured_hosts_and_networks_are_insecure() {
        let r = Registries::new(&opts(&["reg.test:5000", "http://10.0.0.0/8"], &[])).unwrap();
        assert!(!r.is_secure("reg.test:5000").await);
        assert!(!r.is_secure("10.9.8.7").await);
        assert!(r.is_secure("11.0.0.1").await);
        let eps = r.endpoints("10.9.8.7:443", false).await.unwrap();
        let bases: Vec<&str> = eps.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(bases, vec!["https://10.9.8.7:443", "http://10.9.8.7:443"]);
        let eps = r.endpoints("11.0.0.1", false).await.unwrap();
        assert_eq!(eps.len(), 1);
    }

    #[tokio::test]
    async fn mirrors_come_first_for_docker_hub_pulls_only() {
        let r = Registries::new(&opts(
            &[],
            &["http://127.0.0.1:5000", "http://127.0.0.1:5000/"],
        ))
        .unwrap();
        assert_eq!(r.mirrors(), ["http://127.0.0.1:5000/"]);
        let eps = r.endpoints(DOCKER_HUB, true).await.unwrap();
        assert_eq!(eps[0].base, "http://127.0.0.1:5000");
        assert!(eps[0].mirror);
        assert_eq!(eps[1].base, DOCKER_HUB_V2);
        assert_eq!(r.endpoints(DOCKER_HUB, false).await.unwrap().len(), 1);
    }

    #[test]
    fn bad_options_are_refused_in_dockerd_words() {
        let e = Registries::new(&opts(&[], &["127.0.0.1:5000"]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid mirror: no scheme specified"), "{e}");
        let e = Registries::new(&opts(&[], &["ftp://x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = Registries::new(&opts(&[], &["https://u:p@x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("username/password not allowed"), "{e}");
        let e = Registries::new(&opts(&["ftp://x"], &[]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "insecure registry ftp://x should not contain '://'");
        assert!(Registries::new(&opts(&["-bad"], &[])).is_err());
        assert!(Registries::new(&opts(&["bad host"], &[])).is_err());
    }

    /// Makes a CA and a server certificate for 127.0.0.1 with openssl.
    fn openssl_certs(dir: &Path) -> bool {
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=t-ca",
            "-keyout", "ca.key", "-out", "ca.pem",
        ]) && run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]) && run(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-CAcreateserial",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-out",
            "server.crt",
            "-extfile",
            "ext.cnf",
        ])
    }

    /// Runs a TLS handshake in memory between `client` and a server with
    /// the certificate in `dir`.
    fn handshake(
        client: rustls::ClientConfig,
        dir: &Path,
    ) -> std::result::Result<(), rustls::Error> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn certs_dir_cas_are_trusted_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        if !openssl_certs(dir.path()) {
            eprintln!("openssl is not installed; skipping");
            return;
        }
        let certs = dir.path().join("certs.d");
        std::fs::create_dir_all(certs.join("127.0.0.1:5000")).unwrap();
        // Without the CA a secure registry's certificate is refused...
        let e = handshake(
            tls_config("127.0.0.1:5000", true, &certs).unwrap(),
            dir.path(),
        );
        assert!(e.is_err(), "an unknown CA was accepted");
        // ...accepted once certs.d/<host:port>/*.crt carries the CA...
        std::fs::copy(
            dir.path().join("ca.pem"),
            certs.join("127.0.0.1:5000/ca.crt"),
        )
        .unwrap();
        handshake(
            tls_config("127.0.0.1:5000", true, &certs).unwrap(),
            dir.path(),
        )
        .unwrap();
        // ...and an insecure registry's is not checked at all.
        let other = dir.path().join("empty");
        handshake(
            tls_config("127.0.0.1:5000", false, &other).unwrap(),
            dir.path(),
        )
        .unwrap();
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(c.contains("127.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.contains("128.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
    }
}
