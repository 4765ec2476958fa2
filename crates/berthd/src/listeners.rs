//! The `-H` addresses berthd serves on: parsing them as dockerd does, and
//! binding them safely. A unix socket is never taken from a live daemon,
//! replaces a stale one atomically, gets mode 0660 and the `--group`, and
//! is removed at shutdown only if it is still ours.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::unistd::{Gid, Group};

/// Where berthd listens when no `-H` is given.
pub const DEFAULT_UNIX_SOCKET: &str = "/run/berth.sock";

/// The group the socket gets when `--group` is not given, if it exists.
const DEFAULT_SOCKET_GROUP: &str = "docker";

/// Longest path a unix socket address can hold (sun_path minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// One parsed `-H` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    Unix(PathBuf),
    Tcp(String, u16),
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            HostAddr::Tcp(h, port) => write!(f, "tcp://{h}:{port}"),
        }
    }
}

/// Parses a `-H` value: `unix:///path`, `tcp://host:port`, or a bare
/// `host:port` (TCP), as dockerd reads them.
pub fn parse_host(raw: &str) -> Result<HostAddr> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(HostAddr::Unix(PathBuf::from(DEFAULT_UNIX_SOCKET)));
    }
    let (scheme, rest) = raw.split_once("://").unwrap_or(("tcp", raw));
    match scheme {
        "unix" => {
            let path = if rest.is_empty() {
                DEFAULT_UNIX_SOCKET
            } else {
                rest
            };
            if !path.starts_with('/') {
                bail!("invalid unix socket address {raw:?}: the path must be absolute");
            }
            Ok(HostAddr::Unix(PathBuf::from(path)))
        }
        "tcp" => {
            let rest = rest.trim_end_matches('/');
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, p),
                None => (rest, ""),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            let port = if port.is_empty() {
                2375
            } else {
                port.parse()
                    .with_context(|| format!("invalid bind address format: {raw}"))?
            };
            Ok(HostAddr::Tcp(host.to_string(), port))
        }
        "fd" => bail!("socket activation (-H {raw}) is not supported by berthd yet"),
        _ => bail!("invalid bind address format: {raw}"),
    }
}

/// A bound listener and what to clean up when it closes.
pub enum Bound {
    Unix(tokio::net::UnixListener, SocketFile),
    /// The listener and its address for logs (`tcp://127.0.0.1:2375`).
    Tcp(tokio::net::TcpListener, String),
}

/// Binds every address; the first failure aborts (already bound unix
/// sockets are removed again by their [`SocketFile`]).
pub async fn bind_all(hosts: &[String], group: Option<&str>) -> Result<Vec<Bound>> {
    let mut addrs = Vec::new();
    for h in hosts.iter().filter(|h| !h.trim().is_empty()) {
        addrs.push(parse_host(h)?);
    }
    if addrs.is_empty() {
        addrs.push(HostAddr::Unix(PathBuf::from(DEFAULT_UNIX_SOCKET)));
    }
    let gid = if addrs.iter().any(|a| matches!(a, HostAddr::Unix(_))) {
        socket_gid(group)?
    } else {
        Gid::current()
    };
    let mut bound = Vec::new();
    for addr in addrs {
        bound.push(match &addr {
            HostAddr::Unix(path) => {
                let (l, file) = bind_unix(path, gid)
                    .await
                    .with_context(|| format!("can't create unix socket {}", path.display()))?;
                Bound::Unix(l, file)
            }
            HostAddr::Tcp(host, port) => {
                let l = bind_tcp(host, *port).await?;
                let shown = l
                    .local_addr()
                    .map(|a| format!("tcp://{a}"))
                    .unwrap_or(addr.to_string());
                Bound::Tcp(l, shown)
            }
        });
    }
    Ok(bound)
}

/// The group the unix sockets belong to: `--group` (name or number), or
/// `docker` when that group exists, else the daemon's own group.
fn socket_gid(group: Option<&str>) -> Result<Gid> {
    let Some(name) = group else {
        return Ok(match Group::from_name(DEFAULT_SOCKET_GROUP) {
            Ok(Some(g)) => g.gid,
            _ => Gid::current(),
        });
    };
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        _ => match name.parse::<u32>() {
            Ok(n) => Ok(Gid::from_raw(n)),
            Err(_) => bail!("group {name:?} not found"),
        },
    }
}

/// A unix socket path berthd created; removed on drop if the path still
/// names the same socket (a later daemon may have replaced it).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl std::fmt::Display for SocketFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unix://{}", self.path.display())
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

async fn bind_unix(path: &Path, gid: Gid) -> Result<(tokio::net::UnixListener, SocketFile)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if socket_is_live(path).await {
                bail!(
                    "another daemon is already listening on unix://{} (is berthd already running?)",
                    path.display()
                );
            }
            tracing::info!("replacing stale socket {}", path.display());
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;

    // Bind under a temporary name, fix mode and group, then rename over
    // the final path: clients never see a socket with the wrong
    // permissions, and a stale socket is replaced in one step.
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let staged = tmp.as_os_str().len() <= MAX_SOCKET_PATH;
    let bind_path = if staged { tmp.as_path() } else { path };
    if !staged {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(bind_path)
        .with_context(|| format!("bind {}", bind_path.display()))?;
    let prepared = (|| -> Result<()> {
        std::fs::set_permissions(bind_path, std::fs::Permissions::from_mode(0o660))
            .context("chmod 0660")?;
        nix::unistd::chown(bind_path, None, Some(gid)).with_context(|| format!("chgrp {gid}"))?;
        if staged {
            std::fs::rename(bind_path, path).context("rename into place")?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(bind_path);
        return Err(e);
    }
    listener.set_nonblocking(true)?;
    let meta = std::fs::symlink_metadata(path)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((tokio::net::UnixListener::from_std(listener)?, file))
}

/// Whether something accepts connections on the socket at `path`. A hung
/// owner with a full backlog counts as live: better refuse than steal.
async fn socket_is_live(path: &Path) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::UnixStream::connect(path),
    )
    .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            e.kind() != std::io::ErrorKind::ConnectionRefused
                && e.kind() != std::io::ErrorKind::NotFound
        }
        Err(_) => true,
    }
}

/// Plain TCP serves the API only on loopback: on any other address it
/// would hand control of the host to whoever can reach the port, and
/// berthd has no TLS yet.
async fn bind_tcp(host: &str, port: u16) -> Result<tokio::net::TcpListener> {
    let ip: IpAddr = if host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().with_context(|| {
            format!("invalid bind address tcp://{host}:{port}: not an IP address")
        })?
    };
    if !ip.is_loopback() {
        bail!(
            "refusing to serve the API over plain TCP on tcp://{host}:{port}: anyone who can \
             reach that address would control this host, and TLS is not supported yet; \
             listen on a unix socket or a loopback address (127.0.0.1) instead"
        );
    }
    let addr = SocketAddr::new(ip, port);
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on tcp://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_like_dockerd() {
        assert_eq!(
            parse_host("unix:///tmp/x.sock").unwrap(),
            HostAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            parse_host("unix://").unwrap(),
            HostAddr::Unix(DEFAULT_UNIX_SOCKET.into())
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2376").unwrap(),
            HostAddr::Tcp("127.0.0.1".into(), 2376)
        );
        assert_eq!(
            parse_host("tcp://:2375").unwrap(),
            HostAddr::Tcp("127.0.0.1".into(), 2375)
        );
        assert_eq!(
            parse_host("localhost:1234").unwrap(),
            HostAddr::Tcp("localhost".into(), 1234)
        );
        assert_eq!(
            parse_host("tcp://[::1]:80").unwrap(),
            HostAddr::Tcp("::1".into(), 80)
        );
        assert!(parse_host("http://x").is_err());
        assert!(parse_host("unix://relative.sock").is_err());
        assert!(parse_host("tcp://h:notaport").is_err());
        assert!(parse_host("fd://")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
    }

    #[tokio::test]
    async fn plain_tcp_only_on_loopback() {
        let err = bind_tcp("0.0.0.0", 0).await.unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        let l = bind_tcp("127.0.0.1", 0).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn unix_socket_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let gid = Gid::current();

        let (live, file) = bind_unix(&path, gid).await.unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o660);

        // A second daemon must not take a live socket.
        let err = bind_unix(&path, gid).await.unwrap_err().to_string();
        assert!(err.contains("already listening"), "{err}");

        // Once the owner is gone without cleaning up, the socket is stale.
        drop(live);
        std::mem::forget(file);
        let (_l2, file2) = bind_unix(&path, gid).await.unwrap();
        assert!(path.exists());
        drop(file2);
        assert!(!path.exists());

        // A regular file is never replaced.
        std::fs::write(&path, "x").unwrap();
        assert!(bind_unix(&path, gid).await.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x");
    }

    #[tokio::test]
    async fn cleanup_spares_a_replaced_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let (l1, f1) = bind_unix(&path, Gid::current()).await.unwrap();
        drop(l1);
        let (_l2, f2) = bind_unix(&path, Gid::current()).await.unwrap();
        drop(f1);
        assert!(path.exists(), "the newer daemon's socket must survive");
        drop(f2);
        assert!(!path.exists());
    }
}
