//! The API over TCP, driven by the real docker CLI: mutual TLS with
//! certificates from `berth tls generate` (info, run --rm), handshakes that
//! fail without a client certificate or with one from another CA, berthd
//! refusing to start with unauthenticated TCP beyond loopback, plain TCP on
//! loopback beside the socket, and systemd socket activation (`-H fd://`).

mod remote;
#[allow(unused_macros)] // this file runs on one driver, not per driver
mod support;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::{busybox, DockerCli};
use remote::TlsCli;
use support::Backend;

#[test]
fn docker_cli_over_mutual_tls() {
    let certs = remote::cert_dir();
    let files = remote::pki(certs.path());
    let d = remote::with_tls(Backend::Vfs.builder(), &files).start();
    let port = remote::tcp_port(&d);
    assert!(
        d.run_log().contains("(TLS, client certificates required)"),
        "{}",
        d.run_log()
    );
    support::load_busybox(&d);

    let client = TlsCli::new(
        &d,
        port,
        &files.ca_cert,
        Some((&files.client_cert, &files.client_key)),
    );
    let info = client.run(&["info", "--format", "{{json .}}"]).ok().json();
    assert_eq!(info["Driver"], "vfs", "{info}");
    let out = client
        .run(&["run", "--rm", busybox::IMAGE, "echo", "hello over tls"])
        .ok();
    assert_eq!(out.out(), "hello over tls", "{out}");
    // --rm removed it, as seen over the unix socket too.
    assert_eq!(d.docker(&["ps", "-aq"]).ok().out(), "");

    // No client certificate: the server ends the handshake.
    let anonymous = TlsCli::new(&d, port, &files.ca_cert, None);
    let out = anonymous.run(&["info"]).failed();
    assert!(out.stderr.contains("tls"), "{out}");

    // A certificate from another CA, even one the client trusts.
    let other_dir = remote::cert_dir();
    let other = remote::pki(other_dir.path());
    let stranger = TlsCli::new(
        &d,
        port,
        &files.ca_cert,
        Some((&other.client_cert, &other.client_key)),
    );
    let out = stranger.run(&["info"]).failed();
    assert!(out.stderr.contains("tls"), "{out}");

    // The server certificate is checked by the client as well: one that
    // trusts only the other CA refuses to talk.
    let wrong_ca = TlsCli::new(
        &d,
        port,
        &other.ca_cert,
        Some((&other.client_cert, &other.client_key)),
    );
    let out = wrong_ca.run(&["info"]).failed();
    assert!(out.stderr.contains("certificate"), "{out}");

    // Plain HTTP to the TLS port gets nowhere.
    let plain = DockerCli::new(
        format!("tcp://127.0.0.1:{port}"),
        &d.scratch_dir().join("docker-config-plain"),
    );
    plain.run(&["info"]).failed();

    let log = d.run_log();
    assert!(
        log.contains("TLS handshake with 127.0.0.1:"),
        "refused handshakes are logged:\n{log}"
    );
    // And the daemon still serves the good client and the socket.
    client.run(&["version"]).ok();
    d.docker(&["info"]).ok();
}

#[test]
fn unauthenticated_tcp_beyond_loopback_refuses_to_start() {
    let port = free_port();
    for extra in [
        vec![],
        // TLS without client verification is no protection either.
        vec!["--tls", "--tlsverify=false"],
    ] {
        let mut b = support::builder()
            .arg("-H")
            .arg(format!("tcp://0.0.0.0:{port}"));
        for a in &extra {
            b = b.arg(*a);
        }
        let failure = b.try_start().expect_err("berthd must refuse to start");
        assert!(failure.exit.is_some_and(|s| !s.success()), "{failure}");
        let log = &failure.log;
        assert!(log.contains("refusing to serve the API over"), "{log}");
        assert!(log.contains(&format!("tcp://0.0.0.0:{port}")), "{log}");
        // The message says why and how to do it properly or override.
        for want in [
            "root access",
            "--tlsverify",
            "berth tls generate",
            "--insecure-tcp",
        ] {
            assert!(log.contains(want), "missing {want:?}:\n{log}");
        }
        // Nothing was ever listening there.
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}

#[test]
fn tls_with_missing_certificates_refuses_to_start() {
    let certs = remote::cert_dir();
    let failure = support::builder()
        .arg("-H")
        .arg("tcp://127.0.0.1:0")
        .arg("--tlsverify")
        .arg(format!(
            "--tlscacert={}",
            certs.path().join("ca.pem").display()
        ))
        .arg(format!(
            "--tlscert={}",
            certs.path().join("nope.pem").display()
        ))
        .arg(format!(
            "--tlskey={}",
            certs.path().join("nope-key.pem").display()
        ))
        .try_start()
        .expect_err("berthd must refuse to start");
    assert!(failure.log.contains("nope.pem"), "{failure}");
    assert!(failure.log.contains("berth tls generate"), "{failure}");
}

#[test]
fn plain_tcp_on_loopback_beside_the_socket() {
    let d = support::builder()
        .arg("-H")
        .arg("tcp://127.0.0.1:0")
        .start();
    let port = remote::tcp_port(&d);
    assert!(
        d.run_log().contains("every local user"),
        "loopback TCP is served with a warning:\n{}",
        d.run_log()
    );
    let tcp = DockerCli::new(
        format!("tcp://127.0.0.1:{port}"),
        &d.scratch_dir().join("docker-config-tcp"),
    );
    let over_tcp = tcp.run(&["info", "--format", "{{.ID}}"]).ok();
    let over_unix = d.docker(&["info", "--format", "{{.ID}}"]).ok();
    assert_eq!(over_tcp.out(), over_unix.out());
}

/// A TCP port that was free a moment ago (for addresses berthd must refuse
/// before binding, so there is no race to lose).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn systemd_socket_activation() {
    berth_testkit::require_root();
    let fs = Backend::Vfs.loopfs();
    let scratch = berth_testkit::scratch::scratch_dir("activated-").unwrap();
    let dir = scratch.path();
    // What systemd would do for berth.socket with a unix and a TCP stream.
    let sock_path = dir.join("api.sock");
    let unix = UnixListener::bind(&sock_path).unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let notify = UnixDatagram::bind(dir.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();

    let fds: Vec<OwnedFd> = vec![unix.into(), tcp.into()];
    // Above the descriptors the child may already use, so dup2 to 3 and 4
    // cannot clobber one before it is moved.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))
                .map(|raw| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
                .unwrap()
        })
        .collect();
    drop(fds);
    let raw: Vec<i32> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let log_path = dir.join("berthd.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new("sh");
    // $$ is the shell's pid, which exec hands on to berthd: the way
    // systemd sets LISTEN_PID for the process it starts.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\"")
        .arg(support::berthd())
        .args(["-H", "fd://", "-s", "vfs", "--config-file"])
        .arg(dir.join("daemon.json"))
        .arg("--data-root")
        .arg(fs.path().join("data-root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("berthd.pid"))
        .env("NOTIFY_SOCKET", dir.join("notify"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::fs::write(dir.join("daemon.json"), "{}").unwrap();
    unsafe {
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                // dup2 leaves the new descriptor without close-on-exec.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(high);
    let mut guard = ChildGuard(child);

    // READY=1 comes once the API is served.
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 from berthd ({e}):\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    });
    assert_eq!(&buf[..n], b"READY=1");

    let over_unix = DockerCli::new(
        format!("unix://{}", sock_path.display()),
        &dir.join("docker-config"),
    );
    let info = over_unix.run(&["info", "--format", "{{.Driver}}"]).ok();
    assert_eq!(info.out(), "vfs");
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");

    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log_text.contains("API listen on fd://3 (unix://"),
        "{log_text}"
    );
    assert!(
        log_text.contains(&format!("API listen on fd://4 (tcp://127.0.0.1:{port})")),
        "{log_text}"
    );
    // The passed sockets must not leak into what berthd runs.
    let fd_dir = format!("/proc/{}/fd", guard.0.id());
    let pid = guard.0.id();
    for entry in std::fs::read_dir(&fd_dir).unwrap().flatten() {
        let n: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        if n == 3 || n == 4 {
            let flags = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap();
            let flags = flags
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(|f| i64::from_str_radix(f.trim(), 8).unwrap())
                .unwrap();
            assert_ne!(flags & libc::O_CLOEXEC as i64, 0, "fd {n} is inheritable");
        }
    }

    // SIGTERM: STOPPING=1, a clean exit, and the socket file stays (it is
    // systemd's, and the next start reuses it).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let n = notify.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = guard.wait(Duration::from_secs(120));
    assert!(status.success(), "berthd exited with {status}");
    assert!(sock_path.exists(), "berthd removed systemd's socket");
    drop(fs);
}

/// Kills the daemon if the test fails before it exits.
struct ChildGuard(std::process::Child);

impl ChildGuard {
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(start.elapsed() < limit, "berthd did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
