//! The `--dashboard-host` value: an Engine API address as `-H` takes it
//! (`unix:///run/docker.sock`, `tcp://HOST:PORT`), then comma-separated
//! options: `name=` (shown on the page), and for TLS either `tlsdir=DIR`
//! (the docker CLI's `ca.pem`, `cert.pem`, `key.pem`) or `tlscacert=`,
//! `tlscert=`, `tlskey=`.

use std::path::PathBuf;

use super::client::{tls_config, ClientError, Endpoint, TlsFiles};

/// One host to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// As given, without the options (shown on the page).
    pub address: String,
    /// `name=`, else the address.
    pub name: String,
    pub tls: Option<TlsFiles>,
}

impl HostSpec {
    /// The endpoint, with its TLS configuration read from the files.
    pub fn endpoint(&self) -> Result<Endpoint, ClientError> {
        if let Some(path) = self.address.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let rest = self
            .address
            .strip_prefix("tcp://")
            .ok_or_else(|| ClientError::Tls(format!("unsupported address {}", self.address)))?;
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| ClientError::Tls(format!("no port in {}", self.address)))?;
        let tls = self.tls.as_ref().map(tls_config).transpose()?;
        Ok(Endpoint::Tcp { host, port, tls })
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim_end_matches('/');
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

/// Parses one `--dashboard-host` value.
pub fn parse_host_spec(raw: &str) -> Result<HostSpec, String> {
    let mut parts = raw.split(',');
    let address = parts.next().unwrap_or("").trim().to_string();
    if let Some(path) = address.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!(
                "dashboard host {raw:?}: the socket path must be absolute"
            ));
        }
    } else if let Some(rest) = address.strip_prefix("tcp://") {
        if split_host_port(rest).is_none() {
            return Err(format!("dashboard host {raw:?}: expected tcp://HOST:PORT"));
        }
    } else {
        return Err(format!(
            "dashboard host {raw:?}: expected unix:///PATH or tcp://HOST:PORT"
        ));
    }
    let mut name = None;
    let (mut dir, mut ca, mut cert, mut key) = (None, None, None, None);
    for opt in parts {
        let (k, v) = opt
            .split_once('=')
            .ok_or_else(|| format!("dashboard host {raw:?}: option {opt:?} is not key=value"))?;
        let v = v.trim().to_string();
        match k.trim() {
            "name" => name = Some(v),
            "tlsdir" => dir = Some(PathBuf::from(v)),
            "tlscacert" => ca = Some(PathBuf::from(v)),
            "tlscert" => cert = Some(PathBuf::from(v)),
            "tlskey" => key = Some(PathBuf::from(v)),
            other => return Err(format!("dashboard host {raw:?}: unknown option {other:?}")),
        }
    }
    let tls = if dir.is_some() || ca.is_some() || cert.is_some() || key.is_some() {
        if address.starts_with("unix://") {
            return Err(format!("dashboard host {raw:?}: TLS options need tcp://"));
        }
        let in_dir = |f: &str| dir.as_ref().map(|d| d.join(f));
        let files = TlsFiles {
            ca: ca.or_else(|| in_dir("ca.pem")).ok_or_else(|| {
                format!("dashboard host {raw:?}: TLS needs tlscacert= or tlsdir=")
            })?,
            cert: cert.or_else(|| in_dir("cert.pem")),
            key: key.or_else(|| in_dir("key.pem")),
        };
        if files.cert.is_some() != files.key.is_some() {
            return Err(format!(
                "dashboard host {raw:?}: tlscert and tlskey go together"
            ));
        }
        Some(files)
    } else {
        None
    };
    Ok(HostSpec {
        name: name.unwrap_or_else(|| address.clone()),
        address,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_tcp_and_tls() {
        let h = parse_host_spec("unix:///run/docker.sock").unwrap();
        assert_eq!(h.name, "unix:///run/docker.sock");
        assert!(h.tls.is_none());
        let h = parse_host_spec("tcp://10.0.0.2:2376,name=web1,tlsdir=/etc/b").unwrap();
        assert_eq!(h.address, "tcp://10.0.0.2:2376");
        assert_eq!(h.name, "web1");
        let tls = h.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/b/ca.pem"));
        assert_eq!(tls.cert, Some(PathBuf::from("/etc/b/cert.pem")));
        let h = parse_host_spec("tcp://h:1,tlscacert=/c.pem").unwrap();
        assert_eq!(h.tls.unwrap().key, None);
        assert!(parse_host_spec("tcp://h").is_err());
        assert!(parse_host_spec("http://h:1").is_err());
        assert!(parse_host_spec("unix://rel").is_err());
        assert!(parse_host_spec("tcp://h:1,tlscert=/c").is_err());
        assert!(parse_host_spec("tcp://h:1,colour=red").is_err());
        assert!(parse_host_spec("unix:///s,tlsdir=/x").is_err());
    }

    #[test]
    fn endpoints_for_addresses() {
        let e = parse_host_spec("tcp://[::1]:2375")
            .unwrap()
            .endpoint()
            .unwrap();
        assert!(matches!(e, Endpoint::Tcp { ref host, port: 2375, tls: None } if host == "::1"));
    }
}
