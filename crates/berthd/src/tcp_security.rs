//! Who may reach the API over TCP. dockerd's TLS flags mean what they mean
//! for dockerd (`--tlsverify`, or `--tls` alone, demands client certificates
//! signed by `--tlscacert`; files default to `$DOCKER_CERT_PATH` or
//! `~/.docker`), and berth adds one rule dockerd only warns about: TCP that
//! anyone can use is served on loopback only, unless `--insecure-tcp`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_api::tls::{self, TlsFiles, TlsServerConfig};

use crate::config::DaemonConfig;

/// File names dockerd looks for in its certificate directory.
const DEFAULT_CA_FILE: &str = "ca.pem";
const DEFAULT_CERT_FILE: &str = "cert.pem";
const DEFAULT_KEY_FILE: &str = "key.pem";

/// What TCP listeners get, resolved from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPolicy {
    /// `Some` when TLS is on; its `client_ca` is set when clients must
    /// present a certificate (`--tlsverify`).
    pub tls: Option<TlsFiles>,
    /// `--insecure-tcp`: serve TCP without client verification on any
    /// address, not only loopback.
    pub insecure_tcp: bool,
}

impl TcpPolicy {
    /// dockerd's rules: setting `tlsverify` at all (flag or daemon.json,
    /// either value) turns TLS on; with `tlsverify` unset, verification
    /// follows `tls`, so `--tls` alone also requires client certificates.
    pub fn from_config(config: &DaemonConfig) -> TcpPolicy {
        let tls_on = config.tls == Some(true) || config.tlsverify.is_some();
        let verify = config.tlsverify.or(config.tls).unwrap_or(false);
        let tls = tls_on.then(|| {
            let dir = default_cert_dir();
            TlsFiles {
                cert: config
                    .tlscert
                    .clone()
                    .unwrap_or_else(|| dir.join(DEFAULT_CERT_FILE)),
                key: config
                    .tlskey
                    .clone()
                    .unwrap_or_else(|| dir.join(DEFAULT_KEY_FILE)),
                client_ca: verify.then(|| {
                    config
                        .tlscacert
                        .clone()
                        .unwrap_or_else(|| dir.join(DEFAULT_CA_FILE))
                }),
            }
        });
        TcpPolicy {
            tls,
            insecure_tcp: config.insecure_tcp,
        }
    }

    /// Whether clients must prove who they are with a certificate.
    pub fn verifies_clients(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }

    /// The rustls configuration when TLS is on, with the flag names in
    /// the error so the operator knows which file is wrong.
    pub fn server_config(&self) -> Result<Option<Arc<TlsServerConfig>>> {
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        let config = tls::server_config(files).with_context(|| {
            format!(
                "TLS is on ({}) but cannot be set up from --tlscert {} --tlskey {}{}; \
                 `berth tls generate` makes a CA, server and client certificates",
                if files.client_ca.is_some() {
                    "--tlsverify"
                } else {
                    "--tls --tlsverify=false"
                },
                files.cert.display(),
                files.key.display(),
                files
                    .client_ca
                    .as_ref()
                    .map(|c| format!(" --tlscacert {}", c.display()))
                    .unwrap_or_default()
            )
        })?;
        Ok(Some(config))
    }

    /// Refuses a TCP listener on `addr` that anyone who can reach it could
    /// use, unless it is loopback or the operator said `--insecure-tcp`;
    /// warns about the ones it lets through.
    pub fn check(&self, addr: SocketAddr, shown: &str) -> Result<()> {
        if self.verifies_clients() {
            return Ok(());
        }
        let what = if self.tls.is_some() {
            "TLS without client verification (--tlsverify=false)"
        } else {
            "plain TCP"
        };
        if addr.ip().is_loopback() {
            tracing::warn!(
                "serving the API over {what} on {shown}: every local user, and scripts \
                 in a local browser, can control this host through it"
            );
            return Ok(());
        }
        if self.insecure_tcp {
            tracing::warn!(
                "--insecure-tcp: serving the API over {what} on {shown}; anyone who can \
                 reach it has root access to this host"
            );
            return Ok(());
        }
        bail!(
            "refusing to serve the API over {what} on {shown}: anyone who can reach that \
             address would have root access to this host. Protect it with TLS client \
             certificates: run `berth tls generate --hostname <name> --ip <address>` and \
             start berthd with --tlsverify --tlscacert=ca.pem --tlscert=server-cert.pem \
             --tlskey=server-key.pem (see docs/remote-api.md). Or listen on a unix socket \
             or on 127.0.0.1 instead, or pass --insecure-tcp to serve it unprotected anyway"
        )
    }
}

/// dockerd's certificate directory: `$DOCKER_CERT_PATH`, else
/// `$DOCKER_CONFIG`, else `~/.docker` of the user the daemon runs as.
fn default_cert_dir() -> PathBuf {
    for var in ["DOCKER_CERT_PATH", "DOCKER_CONFIG"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::current())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(tls: Option<bool>, tlsverify: Option<bool>, insecure: bool) -> TcpPolicy {
        let config = DaemonConfig {
            tls,
            tlsverify,
            tlscacert: Some("/c/ca.pem".into()),
            tlscert: Some("/c/server-cert.pem".into()),
            tlskey: Some("/c/server-key.pem".into()),
            insecure_tcp: insecure,
            ..DaemonConfig::default()
        };
        TcpPolicy::from_config(&config)
    }

    #[test]
    fn tls_flags_mean_what_they_mean_for_dockerd() {
        // Nothing set: plain.
        assert_eq!(policy(None, None, false).tls, None);
        assert_eq!(policy(Some(false), None, false).tls, None);
        // --tls alone verifies clients (tlsverify follows tls when unset).
        assert!(policy(Some(true), None, false).verifies_clients());
        // --tlsverify turns TLS on whatever --tls says.
        assert!(policy(None, Some(true), false).verifies_clients());
        assert!(policy(Some(false), Some(true), false).verifies_clients());
        // --tlsverify=false: TLS on, no client certificates.
        let p = policy(None, Some(false), false);
        assert!(p.tls.is_some() && !p.verifies_clients());
        let p = policy(Some(true), Some(false), false);
        assert!(p.tls.is_some() && !p.verifies_clients());
        assert_eq!(
            policy(None, Some(true), false).tls.unwrap(),
            TlsFiles {
                cert: "/c/server-cert.pem".into(),
                key: "/c/server-key.pem".into(),
                client_ca: Some("/c/ca.pem".into()),
            }
        );
    }

    #[test]
    fn default_files_are_dockers() {
        let config = DaemonConfig {
            tlsverify: Some(true),
            ..DaemonConfig::default()
        };
        let files = TcpPolicy::from_config(&config).tls.unwrap();
        let dir = default_cert_dir();
        assert_eq!(files.cert, dir.join("cert.pem"));
        assert_eq!(files.key, dir.join("key.pem"));
        assert_eq!(files.client_ca, Some(dir.join("ca.pem")));
    }

    #[test]
    fn unauthenticated_tcp_only_on_loopback_or_when_asked() {
        let lo: SocketAddr = "127.0.0.1:2375".parse().unwrap();
        let lo6: SocketAddr = "[::1]:2375".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:2375".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:2376".parse().unwrap();
        for p in [policy(None, None, false), policy(None, Some(false), false)] {
            assert!(p.check(lo, "tcp://127.0.0.1:2375").is_ok());
            assert!(p.check(lo6, "tcp://[::1]:2375").is_ok());
            for addr in [any, lan] {
                let err = p.check(addr, "tcp://x").unwrap_err().to_string();
                assert!(err.starts_with("refusing"), "{err}");
                assert!(err.contains("--tlsverify") && err.contains("--insecure-tcp"));
                assert!(err.contains("berth tls generate"), "{err}");
            }
        }
        assert!(policy(None, None, true)
            .check(any, "tcp://0.0.0.0:2375")
            .is_ok());
        assert!(policy(None, Some(true), false)
            .check(lan, "tcp://x")
            .is_ok());
    }

    #[test]
    fn missing_certificates_name_the_flag_and_the_generator() {
        let p = TcpPolicy {
            tls: Some(TlsFiles {
                cert: "/nonexistent/server-cert.pem".into(),
                key: "/nonexistent/server-key.pem".into(),
                client_ca: Some("/nonexistent/ca.pem".into()),
            }),
            insecure_tcp: false,
        };
        let err = format!("{:#}", p.server_config().unwrap_err());
        assert!(
            err.contains("--tlscert /nonexistent/server-cert.pem"),
            "{err}"
        );
        assert!(err.contains("berth tls generate"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }
}
