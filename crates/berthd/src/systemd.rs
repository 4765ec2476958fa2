//! systemd integration: the sockets systemd passes under socket activation
//! (`LISTEN_PID`/`LISTEN_FDS`, served with `-H fd://`), and readiness
//! notifications on `NOTIFY_SOCKET` for `Type=notify` units. Both follow
//! sd_listen_fds(3) and sd_notify(3); neither needs libsystemd.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use anyhow::{bail, Result};

/// The first file descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

/// Sockets passed by systemd, by descriptor number, until `-H fd://`
/// takes them. Whatever no `-H fd://` takes is closed when this drops.
#[derive(Debug, Default)]
pub struct Activation {
    fds: BTreeMap<RawFd, OwnedFd>,
    /// Whether systemd passed any (to word the error for `fd://N`).
    passed: usize,
}

impl Activation {
    /// Takes the descriptors systemd passed to this process, marks them
    /// close-on-exec (so shims and runtimes never inherit the API socket)
    /// and removes the variables from the environment. Call first thing in
    /// `main`, while the process has one thread.
    pub fn take() -> Activation {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        let ours = pid
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| p == std::process::id());
        let count = count
            .and_then(|n| n.trim().parse::<RawFd>().ok())
            .filter(|_| ours)
            .unwrap_or(0);
        let mut fds = BTreeMap::new();
        for fd in LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count) {
            // SAFETY: systemd hands these descriptors to this process
            // and nothing else in it has touched them yet.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let _ = nix::fcntl::fcntl(
                &owned,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            fds.insert(fd, owned);
        }
        Activation {
            passed: fds.len(),
            fds,
        }
    }

    /// The sockets `fd://` names: all of them for `fd://` (or `fd://*`),
    /// one for `fd://N`.
    pub fn claim(&mut self, which: Option<RawFd>) -> Result<Vec<(RawFd, OwnedFd)>> {
        if self.passed == 0 {
            bail!(
                "no sockets found via socket activation: make sure the service was started by \
                 systemd (with berth.socket)"
            );
        }
        let claimed = match which {
            None => std::mem::take(&mut self.fds).into_iter().collect(),
            Some(n) => match self.fds.remove(&n) {
                Some(fd) => vec![(n, fd)],
                None if !(LISTEN_FDS_START..LISTEN_FDS_START + self.passed as RawFd)
                    .contains(&n) =>
                {
                    bail!(
                        "socket activation passed {} socket(s) (fd 3 to {}); fd {n} is not one \
                         of them",
                        self.passed,
                        2 + self.passed
                    )
                }
                None => Vec::new(),
            },
        };
        if claimed.is_empty() {
            bail!("the activated socket is already served by another -H fd:// address");
        }
        Ok(claimed)
    }

    /// Sockets as if systemd had passed them at fd 3, 4, ...
    #[cfg(test)]
    pub fn for_tests(fds: Vec<OwnedFd>) -> Activation {
        let fds: BTreeMap<RawFd, OwnedFd> = fds
            .into_iter()
            .enumerate()
            .map(|(i, fd)| (LISTEN_FDS_START + i as RawFd, fd))
            .collect();
        Activation {
            passed: fds.len(),
            fds,
        }
    }
}

/// Tells systemd something about the service (`READY=1`, `STOPPING=1`,
/// `RELOADING=1`); a no-op unless started by a `Type=notify` unit.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> io::Result<()> {
        let bytes = path.as_encoded_bytes();
        // `@name` is an abstract socket (the usual form under systemd).
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&path)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!("notifying systemd ({state}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn claims_all_or_one() {
        let dir = tempfile::tempdir().unwrap();
        let socks: Vec<OwnedFd> = (0..3)
            .map(|i| {
                let l = std::os::unix::net::UnixListener::bind(dir.path().join(format!("{i}")))
                    .unwrap();
                OwnedFd::from(l)
            })
            .collect();
        let mut act = Activation::for_tests(socks);
        let four = act.claim(Some(4)).unwrap();
        assert_eq!(four.len(), 1);
        assert_eq!(four[0].0, 4);
        let err = act.claim(Some(4)).unwrap_err().to_string();
        assert!(err.contains("already served"), "{err}");
        let err = act.claim(Some(9)).unwrap_err().to_string();
        assert!(err.contains("fd 3 to 5") && err.contains("fd 9"), "{err}");
        let rest = act.claim(None).unwrap();
        assert_eq!(rest.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 5]);
        assert!(rest.iter().all(|(_, fd)| fd.as_raw_fd() >= 0));
    }

    #[test]
    fn nothing_passed_is_a_clear_error() {
        let mut act = Activation::default();
        let err = act.claim(None).unwrap_err().to_string();
        assert!(err.contains("started by systemd"), "{err}");
    }

    #[test]
    fn notify_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        // Only this test sets NOTIFY_SOCKET in this process.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
