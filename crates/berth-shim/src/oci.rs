//! Running the OCI runtime (runc or crun) from the shim: `create` of a
//! container's init or `exec --detach` of an extra process, with the stdio
//! the shim prepared, the PTY master received over the console socket, the
//! pid from the pid file, and the runtime's own error message taken from
//! its JSON log (its stderr may be the container's stderr pipe).

use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

/// How to call the runtime binary for one container.
pub struct Runtime<'a> {
    pub binary: &'a Path,
    /// `--root`: the runtime's state directory.
    pub root: &'a Path,
    /// `--log` (JSON): where the runtime's error messages are read from.
    pub log: &'a Path,
    pub id: &'a str,
}

/// What the runtime is asked to do.
pub enum Action<'a> {
    Create { bundle: &'a Path },
    Exec { process: &'a Path },
}

/// The process's standard streams for the runtime call: either three
/// stdio handles the process inherits, or a console socket the runtime
/// sends the PTY master to.
pub enum ProcessIo {
    Pipes {
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
    },
    Console {
        socket: PathBuf,
    },
}

/// The started process: its pid, and the PTY master with a TTY.
pub struct Started {
    pub pid: u32,
    pub console: Option<OwnedFd>,
}

/// Runs `create` or `exec --detach` to completion. The error is the
/// runtime's own message, fit to show a user.
pub fn start(
    rt: &Runtime<'_>,
    action: &Action<'_>,
    pid_file: &Path,
    io: ProcessIo,
) -> Result<Started, String> {
    let _ = fs::remove_file(rt.log);
    let _ = fs::remove_file(pid_file);
    let mut cmd = Command::new(rt.binary);
    cmd.arg("--root")
        .arg(rt.root)
        .arg("--log")
        .arg(rt.log)
        .arg("--log-format")
        .arg("json");
    match action {
        Action::Create { bundle } => {
            cmd.arg("create").arg("--bundle").arg(bundle);
            // dockerd's DOCKER_RAMDISK: the root is a ramdisk (an
            // initramfs), where pivot_root cannot work; the runtime moves
            // the rootfs over / and chroots instead.
            if std::env::var_os("DOCKER_RAMDISK").is_some_and(|v| !v.is_empty()) {
                cmd.arg("--no-pivot");
            }
        }
        Action::Exec { process } => {
            // Detached, the process is reparented to the shim (a child
            // subreaper) when the runtime exits, so the shim reaps it and
            // sees its real wait status.
            cmd.arg("exec")
                .arg("--detach")
                .arg("--process")
                .arg(process);
        }
    }
    cmd.arg("--pid-file").arg(pid_file);
    let console = match io {
        ProcessIo::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            cmd.stdin(stdin).stdout(stdout).stderr(stderr);
            None
        }
        ProcessIo::Console { socket } => {
            let _ = fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket)
                .map_err(|e| format!("console socket {}: {e}", socket.display()))?;
            cmd.arg("--console-socket").arg(&socket);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            Some((listener, socket))
        }
    };
    cmd.arg(rt.id);

    let status = cmd
        .spawn()
        .and_then(|mut child| {
            // Dropping `cmd` closes the shim's copies of the process's
            // pipe ends, so the shim sees EOF when the process exits.
            drop(cmd);
            child.wait()
        })
        .map_err(|e| format!("{}: {e}", rt.binary.display()))?;
    let received = match &console {
        Some((listener, _)) if status.success() => Some(receive_console(listener)),
        _ => None,
    };
    if let Some((_, path)) = &console {
        let _ = fs::remove_file(path);
    }
    if !status.success() {
        return Err(runtime_error(rt, status));
    }
    let console = received
        .transpose()
        .map_err(|e| format!("receiving the console from {}: {e}", rt.binary.display()))?;
    let pid = fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| format!("{} wrote no pid file", rt.binary.display()))?;
    Ok(Started { pid, console })
}

/// The last error the runtime logged, or its exit status.
fn runtime_error(rt: &Runtime<'_>, status: std::process::ExitStatus) -> String {
    #[derive(serde::Deserialize)]
    struct LogLine {
        level: Option<String>,
        msg: Option<String>,
    }
    let logged = fs::read_to_string(rt.log).unwrap_or_default();
    logged
        .lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .filter(|l| l.level.as_deref() == Some("error"))
        .filter_map(|l| l.msg)
        .next_back()
        .unwrap_or_else(|| format!("{} failed: {status}", rt.binary.display()))
}

/// Takes the PTY master the runtime sent (SCM_RIGHTS) on the console
/// socket. The runtime has exited, so its connection is already queued.
fn receive_console(listener: &UnixListener) -> io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (conn, _) = listener.accept()?;
    conn.set_nonblocking(false)?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut owned = fds
                .into_iter()
                // SAFETY: the kernel just installed these descriptors in
                // this process for us; nothing else owns them.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
            if let Some(master) = owned.next() {
                return Ok(master);
            }
        }
    }
    Err(io::Error::other(
        "no file descriptor in the console message",
    ))
}
