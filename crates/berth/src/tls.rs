//! `berth tls generate`: the CA, server and client certificates Docker's
//! "Protect the Docker daemon socket" guide has operators make by hand with
//! openssl, made in one step with the same file names (`ca.pem`,
//! `ca-key.pem`, `server-cert.pem`, `server-key.pem`, `cert.pem`, `key.pem`).
//! Private keys are written 0600, certificates 0644, never over existing files.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// Where the six files go (created 0700 when missing).
    pub dir: PathBuf,
    /// The daemon's host name: the server certificate's common name and
    /// first DNS name. Clients must dial it (or one of `dns_names`, `ips`).
    pub hostname: String,
    /// More DNS names for the server certificate.
    pub dns_names: Vec<String>,
    /// IP addresses clients may dial (`localhost`, 127.0.0.1 and ::1 are
    /// always in).
    pub ips: Vec<IpAddr>,
    /// The client certificate's common name.
    pub client_name: String,
    /// How long the certificates are valid.
    pub days: u32,
    /// Replace existing files.
    pub force: bool,
}

/// The files [`generate`] writes, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Files {
    /// The names Docker's guide uses, in `dir`.
    pub fn in_dir(dir: &Path) -> Files {
        Files {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server-cert.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("cert.pem"),
            client_key: dir.join("key.pem"),
        }
    }

    fn all(&self) -> [&Path; 6] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.client_cert,
            &self.client_key,
        ]
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsGenError {
    #[error("{} already exists; pass --force to replace the certificates in {}", path.display(), dir.display())]
    Exists { path: PathBuf, dir: PathBuf },
    #[error("invalid name {name:?} for a certificate: {reason}")]
    BadName { name: String, reason: String },
    #[error("--days must be between 1 and 36500")]
    BadValidity,
    #[error("generating the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Generates a CA and a server and a client certificate signed by it, and
/// writes them to `req.dir`. Nothing is written unless all of it can be.
pub fn generate(req: &Request) -> Result<Files, TlsGenError> {
    if req.days == 0 || req.days > 36500 {
        return Err(TlsGenError::BadValidity);
    }
    let files = Files::in_dir(&req.dir);
    if !req.force {
        for path in files.all() {
            if path.symlink_metadata().is_ok() {
                return Err(TlsGenError::Exists {
                    path: path.to_path_buf(),
                    dir: req.dir.clone(),
                });
            }
        }
    }
    // An hour of slack for clocks behind ours, as a CA signing by hand
    // with `openssl x509 -days` effectively gets from copying files around.
    let not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    let not_after = OffsetDateTime::now_utc() + Duration::days(i64::from(req.days));

    let ca_key = KeyPair::generate()?;
    let mut ca = base_params(
        &format!("berth CA for {}", req.hostname),
        not_before,
        not_after,
    )?;
    // May sign end-entity certificates only, not further CAs.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = base_params(&req.hostname, not_before, not_after)?;
    server.subject_alt_names = server_names(req)?;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = base_params(&req.client_name, not_before, not_after)?;
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;

    create_dir(&req.dir)?;
    // Stage every file under a temporary name first, then rename them all:
    // a failure half-way leaves the old set (or nothing) in place.
    let contents: [(&Path, String, u32); 6] = [
        (&files.ca_cert, ca_cert.pem(), 0o644),
        (&files.ca_key, ca_key.serialize_pem(), 0o600),
        (&files.server_cert, server_cert.pem(), 0o644),
        (&files.server_key, server_key.serialize_pem(), 0o600),
        (&files.client_cert, client_cert.pem(), 0o644),
        (&files.client_key, client_key.serialize_pem(), 0o600),
    ];
    let mut staged = Vec::new();
    for (path, pem, mode) in &contents {
        match stage(path, pem.as_bytes(), *mode) {
            Ok(tmp) => staged.push((tmp, *path)),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    for (tmp, path) in &staged {
        fs::rename(tmp, path).map_err(|source| TlsGenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if let Ok(d) = fs::File::open(&req.dir) {
        let _ = d.sync_all();
    }
    Ok(files)
}

/// Parameters every certificate shares: subject CN, validity, a random
/// serial number (X.509 wants them unique per CA; 16 random bytes are).
fn base_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, TlsGenError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| TlsGenError::Io {
        path: PathBuf::from("/dev/urandom"),
        source: io::Error::other(e.to_string()),
    })?;
    // A positive DER integer.
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

/// The server certificate's subject alternative names: the host name and
/// extra DNS names, `localhost`, the given IPs, 127.0.0.1 and ::1.
fn server_names(req: &Request) -> Result<Vec<SanType>, TlsGenError> {
    let mut dns: Vec<&str> = vec![req.hostname.as_str()];
    dns.extend(req.dns_names.iter().map(String::as_str));
    dns.push("localhost");
    let mut ips: Vec<IpAddr> = req.ips.clone();
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));

    let mut names = Vec::new();
    for name in dns {
        // A host name given as an address belongs with the addresses.
        if let Ok(ip) = name.parse::<IpAddr>() {
            ips.push(ip);
            continue;
        }
        check_dns_name(name)?;
        let san =
            SanType::DnsName(
                name.try_into()
                    .map_err(|e: rcgen::Error| TlsGenError::BadName {
                        name: name.to_string(),
                        reason: e.to_string(),
                    })?,
            );
        if !names.contains(&san) {
            names.push(san);
        }
    }
    for ip in ips {
        let san = SanType::IpAddress(ip);
        if !names.contains(&san) {
            names.push(san);
        }
    }
    Ok(names)
}

/// A host name as clients' verifiers accept it: dot-separated labels of
/// letters, digits and inner hyphens (RFC 1123), at most 253 characters.
/// rcgen takes any ASCII, which would make a certificate no client matches.
fn check_dns_name(name: &str) -> Result<(), TlsGenError> {
    let bad = |reason: &str| TlsGenError::BadName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 253 {
        return Err(bad("a host name has 1 to 253 characters"));
    }
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label has 1 to 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "labels hold letters, digits and hyphens, and do not start or end with a hyphen",
            ));
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsGenError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsGenError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `data` to a new temporary file beside `path` with `mode` from
/// the first byte (a key is never readable by others, not even briefly).
fn stage(path: &Path, data: &[u8], mode: u32) -> Result<PathBuf, TlsGenError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io_err = |source| TlsGenError::Io {
        path: tmp.clone(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err)?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn request(dir: &Path) -> Request {
        Request {
            dir: dir.to_path_buf(),
            hostname: "docker.example.com".into(),
            dns_names: vec!["alias.example.com".into()],
            ips: vec!["10.0.0.7".parse().unwrap()],
            client_name: "client".into(),
            days: 30,
            force: false,
        }
    }

    #[test]
    fn writes_six_files_with_private_keys_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let files = generate(&request(&dir)).unwrap();
        assert_eq!(files, Files::in_dir(&dir));
        for (path, mode) in [
            (&files.ca_cert, 0o644),
            (&files.ca_key, 0o600),
            (&files.server_cert, 0o644),
            (&files.server_key, 0o600),
            (&files.client_cert, 0o644),
            (&files.client_key, 0o600),
        ] {
            let meta = fs::metadata(path).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                mode,
                "{}",
                path.display()
            );
            let text = fs::read_to_string(path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{text}");
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // Nothing staged is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 6);
    }

    #[test]
    fn never_overwrites_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let req = request(tmp.path());
        generate(&req).unwrap();
        let before = fs::read(tmp.path().join("ca.pem")).unwrap();
        let err = generate(&req).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(fs::read(tmp.path().join("ca.pem")).unwrap(), before);
        let forced = Request {
            force: true,
            ..req.clone()
        };
        generate(&forced).unwrap();
        assert_ne!(fs::read(tmp.path().join("ca.pem")).unwrap(), before);
    }

    #[test]
    fn server_names_cover_host_aliases_and_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        let mut req = request(tmp.path());
        req.ips.push("127.0.0.1".parse().unwrap());
        let names = server_names(&req).unwrap();
        let shown: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        for want in [
            "docker.example.com",
            "alias.example.com",
            "localhost",
            "10.0.0.7",
            "127.0.0.1",
            "::1",
        ] {
            assert!(
                shown.iter().any(|s| s.contains(want)),
                "{want} missing from {shown:?}"
            );
        }
        // 127.0.0.1 given twice appears once.
        assert_eq!(
            shown.iter().filter(|s| s.contains("127.0.0.1")).count(),
            1,
            "{shown:?}"
        );
        req.hostname = "bad name!".into();
        assert!(matches!(
            server_names(&req),
            Err(TlsGenError::BadName { .. })
        ));
    }
}
