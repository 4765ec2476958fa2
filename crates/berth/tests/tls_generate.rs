//! `berth tls generate` as an operator runs it: the six files of Docker's
//! openssl guide with their modes, certificates openssl itself verifies
//! (chain, names, key usages), the printed berthd and docker invocations,
//! and a second run that refuses to overwrite without --force.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("running berth")
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn generates_what_dockers_guide_makes_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let d = dir.to_str().unwrap();
    let out = berth(&[
        "tls",
        "generate",
        "--hostname",
        "docker.example.com",
        "--ip",
        "10.0.0.7",
        "--dir",
        d,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, mode) in [
        ("ca.pem", 0o644),
        ("ca-key.pem", 0o600),
        ("server-cert.pem", 0o644),
        ("server-key.pem", 0o600),
        ("cert.pem", 0o644),
        ("key.pem", 0o600),
    ] {
        let meta = std::fs::metadata(dir.join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
    }
    // The invocations to use them, with these paths.
    assert!(
        stdout.contains(&format!(
            "berthd --tlsverify --tlscacert={} --tlscert={} --tlskey={}",
            path(&dir, "ca.pem"),
            path(&dir, "server-cert.pem"),
            path(&dir, "server-key.pem")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("-H tcp://docker.example.com:2376 info"),
        "{stdout}"
    );

    // openssl agrees with the chain and the names.
    let ca = path(&dir, "ca.pem");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &ca,
        &path(&dir, "server-cert.pem"),
        &path(&dir, "cert.pem"),
    ]);
    assert_eq!(verified.matches(": OK").count(), 2, "{verified}");
    openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "docker.example.com",
        &path(&dir, "server-cert.pem"),
    ]);
    openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslserver",
        "-verify_ip",
        "10.0.0.7",
        &path(&dir, "server-cert.pem"),
    ]);
    openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslclient",
        &path(&dir, "cert.pem"),
    ]);
    let server = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        &path(&dir, "server-cert.pem"),
    ]);
    for want in [
        "DNS:docker.example.com",
        "DNS:localhost",
        "IP Address:10.0.0.7",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
    ] {
        assert!(server.contains(want), "missing {want}:\n{server}");
    }
    // The client certificate is no server certificate.
    let client = openssl(&["x509", "-noout", "-text", "-in", &path(&dir, "cert.pem")]);
    assert!(client.contains("TLS Web Client Authentication"), "{client}");
    assert!(
        !client.contains("TLS Web Server Authentication"),
        "{client}"
    );

    // A second run refuses and leaves the files as they were.
    let before = std::fs::read(dir.join("ca-key.pem")).unwrap();
    let again = berth(&["tls", "generate", "--hostname", "h", "--dir", d]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(dir.join("ca-key.pem")).unwrap(), before);
    let forced = berth(&["tls", "generate", "--hostname", "h", "--dir", d, "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(dir.join("ca-key.pem")).unwrap(), before);
}
