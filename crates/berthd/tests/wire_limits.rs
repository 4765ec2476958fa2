//! Malformed and abusive input on the wire, sent as raw bytes: invalid JSON,
//! wrong types, huge headers, bodies over the limit, bodies that stall,
//! 1,000 connections that send nothing (on the socket and as TLS clients
//! that never handshake) and more connections than the cap. Each gets an
//! error or is closed, other clients are served all along, berthd's memory
//! stays within a bound, and nothing in the engine changes.

mod remote;
#[allow(unused_macros)] // this file runs on one driver, not per driver
mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_testkit::daemon::layer_state;
use berth_testkit::Daemon;
use support::Backend;

/// How long berthd gives a client to send a request head (berth-api's
/// `Limits::header_timeout`), and a margin for a loaded test machine.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const MARGIN: Duration = Duration::from_secs(60);

/// Everything the daemon can be seen to hold, to check nothing changed.
#[derive(Debug, PartialEq, Eq)]
struct EngineState {
    images: String,
    containers: String,
    volumes: String,
    networks: String,
    layers: BTreeSet<PathBuf>,
}

fn engine_state(d: &Daemon) -> EngineState {
    EngineState {
        images: d.docker(&["images", "-a", "--no-trunc", "-q"]).ok().stdout,
        containers: d.docker(&["ps", "-a", "--no-trunc", "-q"]).ok().stdout,
        volumes: d.docker(&["volume", "ls", "-q"]).ok().stdout,
        networks: d.docker(&["network", "ls", "-q"]).ok().stdout,
        layers: layer_state(d.data_root(), "vfs"),
    }
}

/// Sends `bytes` on a fresh connection to the socket and returns what
/// came back before the server closed (or 60 s passed).
fn exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // The server may answer and close before taking all of a huge request.
    let _ = s.write_all(bytes);
    read_until_close(&mut s)
}

fn read_until_close(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn post_json(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status code and the `message` of a dockerd-style error response.
#[track_caller]
fn status_and_message(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let message = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, message)
}

#[test]
fn malformed_requests_get_errors_and_change_nothing() {
    let d = Backend::Vfs.daemon();
    support::load_busybox(&d);
    let before = engine_state(&d);
    let sock = d.socket();

    // Invalid JSON.
    let r = exchange(sock, &post_json("/v1.47/containers/create", "{\"Image\": "));
    let (status, message) = status_and_message(&r);
    assert_eq!(status, 400, "{r}");
    assert!(message.starts_with("invalid JSON"), "{r}");
    let r = exchange(sock, &post_json("/v1.47/containers/create", "not json"));
    assert_eq!(status_and_message(&r).0, 400, "{r}");

    // Wrong types.
    for body in [
        r#"{"Image": 7}"#,
        r#"{"Image": "berth-test/busybox:latest", "Env": "A=1"}"#,
        r#"{"Image": "berth-test/busybox:latest", "HostConfig": {"Memory": "lots"}}"#,
    ] {
        let r = exchange(sock, &post_json("/v1.47/containers/create", body));
        let (status, message) = status_and_message(&r);
        assert_eq!(status, 400, "{body}: {r}");
        assert!(message.contains("invalid"), "{body}: {r}");
    }
    let r = exchange(
        sock,
        &post_json("/v1.47/volumes/create", r#"{"Name": ["x"]}"#),
    );
    assert_eq!(status_and_message(&r).0, 400, "{r}");

    // Not JSON at all where JSON is required.
    let r = exchange(
        sock,
        b"POST /v1.47/containers/create HTTP/1.1\r\nHost: b\r\nContent-Type: text/plain\r\n\
          Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    let (status, message) = status_and_message(&r);
    assert_eq!(status, 400, "{r}");
    assert!(message.contains("Content-Type"), "{r}");

    // A request line that is not HTTP.
    let r = exchange(sock, b"HELLO THERE\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r:?}");

    // A 1 MiB header: 431 and the connection closed.
    let big = "x".repeat(1 << 20);
    let r = exchange(
        sock,
        format!("GET /_ping HTTP/1.1\r\nHost: b\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert!(
        r.starts_with("HTTP/1.1 431"),
        "{:?}",
        &r[..r.len().min(200)]
    );
    // Many small headers add up the same way.
    let many: String = (0..20_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = exchange(
        sock,
        format!("GET /_ping HTTP/1.1\r\nHost: b\r\n{many}\r\n").as_bytes(),
    );
    assert!(
        r.starts_with("HTTP/1.1 431"),
        "{:?}",
        &r[..r.len().min(200)]
    );

    // A JSON body over the 4 MiB limit, declared: refused before reading.
    let head = format!(
        "POST /v1.47/containers/create HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        64 << 20
    );
    let r = exchange(sock, head.as_bytes());
    let (status, message) = status_and_message(&r);
    assert_eq!(status, 413, "{r}");
    assert!(message.contains("too large"), "{r}");
    // Sent chunked, so the size shows only while reading: cut off at the limit.
    let mut chunked = b"POST /v1.47/containers/create HTTP/1.1\r\nHost: b\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..6 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(sock, &chunked);
    assert_eq!(status_and_message(&r).0, 413, "{r}");

    // Through all of it the daemon kept serving, and nothing changed.
    d.docker(&["info"]).ok();
    assert_eq!(engine_state(&d), before);
}

#[test]
fn idle_and_stalled_connections_are_closed_while_others_are_served() {
    let certs = remote::cert_dir();
    let files = remote::pki(certs.path());
    let d = remote::with_tls(Backend::Vfs.builder(), &files).start();
    let port = remote::tcp_port(&d);
    support::load_busybox(&d);
    let pid = d.pid().expect("berthd runs");
    let before = engine_state(&d);
    // Let the daemon settle (start-up, the load) before the baseline.
    d.docker(&["info"]).ok();
    let rss_before = remote::rss_kib(pid);

    // 1,000 clients that connect to the socket and send nothing, and 100
    // that connect to the TLS port and never start the handshake.
    let idle: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    let idle_tls: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // A client that sends half a request head, and one that sends a head
    // promising a JSON body and stops after a few bytes of it.
    let mut partial = UnixStream::connect(d.socket()).unwrap();
    partial
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: b")
        .unwrap();
    let mut stalled = UnixStream::connect(d.socket()).unwrap();
    stalled
        .write_all(
            b"POST /v1.47/volumes/create HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"Name\": ",
        )
        .unwrap();
    let opened = Instant::now();

    // Other clients are served while all of those are open.
    let served = d.api("GET", "/_ping", None);
    assert_eq!(served.status, 200, "{served:?}");
    d.docker(&["info"]).ok();
    d.docker(&["run", "--rm", berth_testkit::busybox::IMAGE, "true"])
        .ok();
    let tls = remote::TlsCli::new(
        &d,
        port,
        &files.ca_cert,
        Some((&files.client_cert, &files.client_key)),
    );
    tls.run(&["version"]).ok();

    let rss_during = remote::rss_kib(pid);
    eprintln!(
        "berthd RSS: {rss_before} KiB before, {rss_during} KiB with 1,100 idle connections (+{} KiB)",
        rss_during.saturating_sub(rss_before)
    );
    // A bound, not a benchmark: 64 KiB per connection at most (about 11
    // KiB were measured: hyper's read buffer and the task).
    assert!(
        rss_during < rss_before + 1100 * 64,
        "RSS grew from {rss_before} KiB to {rss_during} KiB for 1,100 idle connections"
    );

    // Every one of them is closed by the daemon once the head timeout
    // passes; none gets a response but the stalled body, which gets 408.
    let deadline = opened + HEADER_TIMEOUT + MARGIN;
    for mut s in idle {
        s.set_read_timeout(Some(remaining(deadline))).unwrap();
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .expect("idle connection still open past the deadline");
        assert_eq!(n, 0, "an idle connection got {:?}", &buf[..n]);
    }
    for mut s in idle_tls {
        s.set_read_timeout(Some(remaining(deadline))).unwrap();
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .expect("TLS connection still open past the deadline");
        assert_eq!(n, 0, "a silent TLS client got {:?}", &buf[..n]);
    }
    partial.set_read_timeout(Some(remaining(deadline))).unwrap();
    assert_eq!(read_until_close(&mut partial), "");
    stalled.set_read_timeout(Some(remaining(deadline))).unwrap();
    let r = read_until_close(&mut stalled);
    let (status, message) = status_and_message(&r);
    assert_eq!(status, 408, "{r}");
    assert!(message.contains("stalled"), "{r}");
    // Closed by the daemon, not by the test: none came back early either.
    assert!(opened.elapsed() >= HEADER_TIMEOUT - Duration::from_secs(1));

    let rss_after = remote::rss_kib(pid);
    eprintln!("berthd RSS after they were closed: {rss_after} KiB");
    d.docker(&["info"]).ok();
    assert_eq!(engine_state(&d), before);
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

#[test]
fn connections_over_the_cap_are_turned_away() {
    let d = support::builder()
        .arg("--api-max-connections")
        .arg("40")
        .start();
    // The fixture's own readiness probe may still hold one for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    // Wait until the daemon has taken all forty (the accept loop is
    // asynchronous), then the next client is turned away with a 503.
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let r = exchange(
            d.socket(),
            b"GET /_ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        );
        if r.starts_with("HTTP/1.1 503") {
            break r;
        }
        assert!(Instant::now() < deadline, "never refused: {r}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, message) = status_and_message(&refused);
    assert!(message.contains("too many open connections"), "{refused}");
    assert!(
        d.run_log().contains("--api-max-connections"),
        "the refusal is logged with the flag to raise:\n{}",
        d.run_log()
    );
    // Once clients leave, others get in again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = exchange(
            d.socket(),
            b"GET /_ping HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
        );
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.docker(&["info"]).ok();
}
