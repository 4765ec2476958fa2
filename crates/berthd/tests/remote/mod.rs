//! What the remote-API tests share: certificates made by `berth tls
//! generate`'s library, berthd started with a TLS (or plain loopback) TCP
//! listener beside its unix socket on an ephemeral port read back from its
//! log, and berthd's resident memory for the abuse tests' bounds.
#![allow(dead_code)] // each test binary uses a different part of this

use std::path::Path;
use std::time::{Duration, Instant};

use berth::tls::{Files, Request};
use berth_testkit::{Daemon, DaemonBuilder, DockerCli};

/// A CA with server and client certificates, in `dir`. The server's are
/// for `localhost` (127.0.0.1 and ::1 are always in).
pub fn pki(dir: &Path) -> Files {
    berth::tls::generate(&Request {
        dir: dir.to_path_buf(),
        hostname: "localhost".into(),
        dns_names: Vec::new(),
        ips: Vec::new(),
        client_name: "client".into(),
        days: 2,
        force: false,
    })
    .unwrap_or_else(|e| panic!("berth tls generate into {}: {e}", dir.display()))
}

/// `builder` with `-H tcp://127.0.0.1:0` and `--tlsverify` with `files`.
pub fn with_tls(builder: DaemonBuilder, files: &Files) -> DaemonBuilder {
    builder
        .arg("-H")
        .arg("tcp://127.0.0.1:0")
        .arg("--tlsverify")
        .arg(format!("--tlscacert={}", files.ca_cert.display()))
        .arg(format!("--tlscert={}", files.server_cert.display()))
        .arg(format!("--tlskey={}", files.server_key.display()))
}

/// The port of the daemon's TCP listener, from its `API listen on
/// tcp://127.0.0.1:PORT` line (berthd binds port 0 to an ephemeral one).
#[track_caller]
pub fn tcp_port(d: &Daemon) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = d.run_log();
        if let Some(rest) = log
            .lines()
            .find_map(|l| l.split("API listen on tcp://127.0.0.1:").nth(1))
        {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return digits
                .parse()
                .unwrap_or_else(|_| panic!("no port in {rest:?}"));
        }
        assert!(
            Instant::now() < deadline,
            "no TCP listener in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A docker CLI for `tcp://127.0.0.1:port` whose every command starts with
/// `tls_args` (`--tlsverify --tlscacert ...`).
pub struct TlsCli {
    pub cli: DockerCli,
    pub tls_args: Vec<String>,
}

impl TlsCli {
    /// Verifies the server with `ca` and presents `identity` (cert, key).
    pub fn new(d: &Daemon, port: u16, ca: &Path, identity: Option<(&Path, &Path)>) -> TlsCli {
        let config = d
            .scratch_dir()
            .join(format!("docker-config-tls-{}", identity.is_some()));
        let mut tls_args = vec![
            "--tlsverify".to_string(),
            format!("--tlscacert={}", ca.display()),
        ];
        if let Some((cert, key)) = identity {
            tls_args.push(format!("--tlscert={}", cert.display()));
            tls_args.push(format!("--tlskey={}", key.display()));
        }
        TlsCli {
            cli: DockerCli::new(format!("tcp://127.0.0.1:{port}"), &config),
            tls_args,
        }
    }

    pub fn run(&self, args: &[&str]) -> berth_testkit::DockerOutput {
        let mut all: Vec<&str> = self.tls_args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        self.cli.run(&all)
    }
}

/// berthd's resident set size in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// A scratch directory for certificates (removed on drop).
pub fn cert_dir() -> tempfile::TempDir {
    berth_testkit::scratch::scratch_dir("certs-").expect("scratch dir for certificates")
}
