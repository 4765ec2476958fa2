//! The `-H` addresses berthd serves on: parsing them as dockerd does, and
//! binding them safely. A unix socket is never taken from a live daemon,
//! replaces a stale one atomically, gets mode 0660 and the `--group`, and
//! is removed at shutdown only if it is still ours. TCP listeners get TLS
//! and the loopback-only rule from `tcp_security`; `fd://` serves the
//! sockets systemd passed (`systemd`).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_api::tls::{TlsListener, TlsServerConfig};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};
use nix::unistd::{Gid, Group};

use crate::systemd::Activation;
use crate::tcp_security::TcpPolicy;

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
    /// Sockets passed by systemd: all of them, or the one at fd N.
    Fd(Option<RawFd>),
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            HostAddr::Tcp(h, port) if h.contains(':') => write!(f, "tcp://[{h}]:{port}"),
            HostAddr::Tcp(h, port) => write!(f, "tcp://{h}:{port}"),
            HostAddr::Fd(None) => write!(f, "fd://"),
            HostAddr::Fd(Some(n)) => write!(f, "fd://{n}"),
        }
    }
}

/// Parses a `-H` value: `unix:///path`, `tcp://host:port`, a bare
/// `host:port` (TCP), or `fd://` / `fd://N`, as dockerd reads them.
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
        "fd" => match rest {
            "" | "*" => Ok(HostAddr::Fd(None)),
            n => n.parse().map(|n| HostAddr::Fd(Some(n))).map_err(|_| {
                anyhow::anyhow!("failed to parse systemd fd address: should be a number: {n}")
            }),
        },
        _ => bail!("invalid bind address format: {raw}"),
    }
}

/// A bound listener with its address for logs (`tcp://127.0.0.1:2375`,
/// `fd://3 (unix:///run/berth.sock)`).
pub enum Bound {
    /// The socket file is `None` for a socket systemd created (and removes).
    Unix(tokio::net::UnixListener, String, Option<SocketFile>),
    Tcp(tokio::net::TcpListener, String),
    Tls(TlsListener, String),
}

/// What binding needs besides the addresses.
pub struct ListenOptions<'a> {
    /// `--group` for unix sockets.
    pub group: Option<&'a str>,
    /// TLS and the loopback rule for TCP.
    pub tcp: &'a TcpPolicy,
}

/// Binds every address; the first failure aborts (already bound unix
/// sockets are removed again by their [`SocketFile`]). Repeated addresses
/// are bound once, as dockerd does.
pub async fn bind_all(
    hosts: &[String],
    options: ListenOptions<'_>,
    activation: &mut Activation,
) -> Result<Vec<Bound>> {
    let mut addrs: Vec<HostAddr> = Vec::new();
    for h in hosts.iter().filter(|h| !h.trim().is_empty()) {
        let addr = parse_host(h)?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        addrs.push(HostAddr::Unix(PathBuf::from(DEFAULT_UNIX_SOCKET)));
    }
    let gid = if addrs.iter().any(|a| matches!(a, HostAddr::Unix(_))) {
        socket_gid(options.group)?
    } else {
        Gid::current()
    };
    let mut tcp = TcpBinder {
        policy: options.tcp,
        tls: None,
    };
    let mut bound = Vec::new();
    for addr in addrs {
        match &addr {
            HostAddr::Unix(path) => {
                let (l, file) = bind_unix(path, gid)
                    .await
                    .with_context(|| format!("can't create unix socket {}", path.display()))?;
                bound.push(Bound::Unix(l, file.to_string(), Some(file)));
            }
            HostAddr::Tcp(host, port) => {
                // Refused before binding: an address berthd will not serve
                // is never open, not even for a moment.
                let addr = resolve_tcp(host, *port).await?;
                tcp.policy.check(addr, &format!("tcp://{addr}"))?;
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listen on tcp://{addr}"))?;
                let local = l.local_addr()?;
                bound.push(tcp.wrap(l, format!("tcp://{local}"))?);
            }
            HostAddr::Fd(which) => {
                for (n, fd) in activation.claim(*which)? {
                    bound.push(
                        adopt_fd(n, fd, &mut tcp)
                            .with_context(|| format!("socket activation, fd {n}"))?,
                    );
                }
            }
        }
    }
    Ok(bound)
}

/// TCP's policy, and TLS for its listeners (built once, at the first).
struct TcpBinder<'a> {
    policy: &'a TcpPolicy,
    tls: Option<Arc<TlsServerConfig>>,
}

impl TcpBinder<'_> {
    /// The listener as it will serve: TLS-wrapped when TLS is on. The
    /// address must have passed `TcpPolicy::check`.
    fn wrap(&mut self, l: tokio::net::TcpListener, shown: String) -> Result<Bound> {
        if self.tls.is_none() {
            self.tls = self.policy.server_config()?;
        }
        Ok(match &self.tls {
            Some(config) => {
                let mode = if self.policy.verifies_clients() {
                    "TLS, client certificates required"
                } else {
                    "TLS, no client verification"
                };
                Bound::Tls(
                    TlsListener::new(l, config.clone()),
                    format!("{shown} ({mode})"),
                )
            }
            None => Bound::Tcp(l, shown),
        })
    }
}

/// Serves a socket systemd passed: a listening unix or TCP stream socket.
fn adopt_fd(n: RawFd, fd: OwnedFd, tcp: &mut TcpBinder<'_>) -> Result<Bound> {
    if getsockopt(&fd, sockopt::SockType).context("not a socket")? != SockType::Stream {
        bail!("not a stream socket (use ListenStream= in the .socket unit)");
    }
    if !getsockopt(&fd, sockopt::AcceptConn).context("getsockopt SO_ACCEPTCONN")? {
        bail!("the socket is not listening (Accept=no is required)");
    }
    let family = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .context("getsockname")?
        .family();
    match family {
        Some(AddressFamily::Unix) => {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            let shown = match l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            {
                Some(p) => format!("fd://{n} (unix://{})", p.display()),
                None => format!("fd://{n} (unix)"),
            };
            Ok(Bound::Unix(
                tokio::net::UnixListener::from_std(l)?,
                shown,
                None,
            ))
        }
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true)?;
            let local = l.local_addr()?;
            let shown = format!("fd://{n} (tcp://{local})");
            tcp.policy.check(local, &shown)?;
            tcp.wrap(tokio::net::TcpListener::from_std(l)?, shown)
        }
        other => bail!("unsupported socket family {other:?}"),
    }
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

/// The address `-H tcp://host:port` binds: an IP address, `localhost`, or a
/// name resolved to its first address (IPv4 first), as Go's net.Listen does.
async fn resolve_tcp(host: &str, port: u16) -> Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host == "localhost" {
        return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
    }
    let mut found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| {
            format!("invalid bind address tcp://{host}:{port}: cannot resolve {host}")
        })?
        .collect();
    found.sort_by_key(|a| !a.is_ipv4());
    found
        .first()
        .copied()
        .with_context(|| format!("invalid bind address tcp://{host}:{port}: {host} has no address"))
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
        assert_eq!(
            parse_host("tcp://[::]:2376").unwrap(),
            HostAddr::Tcp("::".into(), 2376)
        );
        assert!(parse_host("http://x").is_err());
        assert!(parse_host("unix://relative.sock").is_err());
        assert!(parse_host("tcp://h:notaport").is_err());
        assert_eq!(parse_host("fd://").unwrap(), HostAddr::Fd(None));
        assert_eq!(parse_host("fd://*").unwrap(), HostAddr::Fd(None));
        assert_eq!(parse_host("fd://4").unwrap(), HostAddr::Fd(Some(4)));
        assert!(parse_host("fd://x")
            .unwrap_err()
            .to_string()
            .contains("should be a number"));
    }

    fn plain() -> TcpPolicy {
        TcpPolicy {
            tls: None,
            insecure_tcp: false,
        }
    }

    #[tokio::test]
    async fn plain_tcp_only_on_loopback() {
        let policy = plain();
        let opts = || ListenOptions {
            group: None,
            tcp: &policy,
        };
        let mut act = Activation::default();
        let err = bind_all(&["tcp://0.0.0.0:0".into()], opts(), &mut act)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("refusing"), "{err}");
        let bound = bind_all(&["tcp://127.0.0.1:0".into()], opts(), &mut act)
            .await
            .unwrap();
        assert!(matches!(&bound[..], [Bound::Tcp(..)]));
        let bound = bind_all(&["localhost:0".into()], opts(), &mut act)
            .await
            .unwrap();
        let [Bound::Tcp(l, _)] = &bound[..] else {
            panic!("not one TCP listener")
        };
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn activated_sockets_are_served_by_family() {
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let open = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let mut act = Activation::for_tests(vec![unix.into(), tcp.into(), open.into()]);
        let policy = plain();
        let opts = || ListenOptions {
            group: None,
            tcp: &policy,
        };
        let bound = bind_all(&["fd://3".into(), "fd://4".into()], opts(), &mut act)
            .await
            .unwrap();
        match &bound[..] {
            [Bound::Unix(_, a, None), Bound::Tcp(_, b)] => {
                assert!(a.starts_with("fd://3 (unix://"), "{a}");
                assert_eq!(b, &format!("fd://4 (tcp://{tcp_addr})"));
            }
            _ => panic!("wrong listeners"),
        }
        // Plain TCP on all interfaces is refused from systemd too.
        let err = bind_all(&["fd://5".into()], opts(), &mut act)
            .await
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("refusing"), "{err:#}");
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
