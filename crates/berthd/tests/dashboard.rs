//! `--metrics-addr` end to end: Debian's Prometheus scraping two berthds
//! and answering `rate(container_cpu_usage_seconds_total[30s])` for every
//! running container; the dashboard in headless Chromium with a second
//! berthd as a remote host (screenshots under target/test-output/dashboard);
//! a real dockerd as a remote host; a host over mutual TLS (and one whose
//! client certificate it refuses); `container_fs_usage_bytes` and
//! `container_fs_limit_bytes` for `--storage-opt size=` on btrfs and zfs.

mod remote;
#[macro_use]
mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_testkit::chromium::{http_get, Browser};
use berth_testkit::{busybox, scratch, Daemon, DaemonBuilder, ZfsPool};
use serde_json::Value;
use support::{builder, load_busybox, Backend};

/// A port free on loopback right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// berthd with `/metrics` and the dashboard on a fresh loopback port.
fn with_metrics(b: DaemonBuilder) -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = b.arg("--metrics-addr").arg(&addr).start();
    (d, addr)
}

/// Where screenshots go: `target/test-output/dashboard` (or
/// `$BERTH_TEST_OUTPUT/dashboard`).
fn output_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-output")
        })
        .join("dashboard")
}

/// Polls `f` until it gives `Some`, or fails with `what` (a safety net
/// against hangs, not a performance bound).
#[track_caller]
fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The samples of `metric` on a `/metrics` page: (labels text, value).
fn samples(text: &str, metric: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let (labels, v) = r.split_once("} ")?;
                    (labels.to_string(), v)
                }
                None => (String::new(), rest.strip_prefix(' ')?),
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// Removes every container of a daemon when dropped (declared after the
/// daemon, it drops first): a daemon stopped with running containers
/// leaves their processes behind, failed test or not.
struct RemoveContainers<'a>(&'a Daemon);

impl Drop for RemoveContainers<'_> {
    fn drop(&mut self) {
        let ids = self.0.docker(&["ps", "-aq"]);
        let ids: Vec<&str> = ids.out().split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.0.docker(&args);
        }
    }
}

fn run_busy(d: &Daemon, name: &str) -> String {
    d.docker(&[
        "run",
        "-d",
        "--name",
        name,
        busybox::IMAGE,
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .ok()
    .out()
    .trim()
    .to_string()
}

fn run_idle(d: &Daemon, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend([busybox::IMAGE, "sleep", "100000"]);
    d.docker(&args).ok().out().trim().to_string()
}

/// Debian's Prometheus on a loopback port with its own data directory;
/// killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        let dir = scratch::scratch_dir("prometheus-").unwrap();
        let config = dir.path().join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run prometheus (apt-get install prometheus)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// An instant query's result vector (empty while not ready).
    fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        http_get(&self.addr, &format!("/api/v1/query?query={q}"))
            .ok()
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_two_daemons() {
    let (a, addr_a) = with_metrics(builder());
    let (b, addr_b) = with_metrics(builder());
    let _clean = (RemoveContainers(&a), RemoveContainers(&b));
    load_busybox(&a);
    load_busybox(&b);
    run_busy(&a, "busy");
    run_idle(&a, "idle-a", &["--label", "com.example.team=db"]);
    run_idle(&b, "idle-b", &[]);

    // The page itself: names, labels and content negotiation.
    // (Once the sampler has read both containers.)
    let (text, cpu) = eventually(
        "both containers on /metrics",
        Duration::from_secs(30),
        || {
            let text = http_get(&addr_a, "/metrics").ok()?;
            let cpu = samples(&text, "container_cpu_usage_seconds_total");
            (cpu.len() == 2).then_some((text, cpu))
        },
    );
    assert!(
        cpu.iter().any(|(l, _)| l.contains(r#"name="idle-a""#)
            && l.contains(r#"container_label_com_example_team="db""#)
            && l.contains(r#"id="/berth/"#)
            && l.contains(&format!(r#"image="{}""#, busybox::IMAGE))),
        "{cpu:?}"
    );
    for family in [
        "container_memory_working_set_bytes",
        "container_memory_failcnt",
        "container_oom_events_total",
        "container_network_receive_bytes_total",
        "container_spec_memory_limit_bytes",
        "machine_memory_bytes",
        "engine_daemon_engine_info",
        "engine_daemon_events_total",
        "berth_storage_pool_used_bytes",
        "container_processes",
        "container_start_time_seconds",
        "machine_cpu_cores",
        "engine_daemon_container_states_containers",
        "berth_api_requests_total",
        "berth_build_info",
    ] {
        assert!(
            !samples(&text, family).is_empty(),
            "{family} missing:\n{text}"
        );
    }

    let prom = Prometheus::start(&[&addr_a, &addr_b]);
    let rates = eventually(
        "rates of three containers on two hosts",
        Duration::from_secs(90),
        || {
            let r = prom.query("rate(container_cpu_usage_seconds_total[30s])");
            (r.len() == 3).then_some(r)
        },
    );
    let by_name = |name: &str| {
        rates
            .iter()
            .find(|s| s["metric"]["name"] == name)
            .unwrap_or_else(|| panic!("no series for {name}: {rates:?}\n{}", prom.log()))
    };
    assert_eq!(by_name("busy")["metric"]["instance"], addr_a.as_str());
    assert_eq!(by_name("idle-b")["metric"]["instance"], addr_b.as_str());
    let value = |s: &Value| -> f64 { s["value"][1].as_str().unwrap().parse().unwrap() };
    // A busy loop uses one CPU — as much of one as a 2-CPU machine running
    // the rest of the test suite (qemu under TCG, builds) leaves it, so
    // "near 1" is wide; the idle ones stay near 0.
    let mut seen = Vec::new();
    let busy = eventually(
        "the busy container's rate near 1",
        Duration::from_secs(60),
        || {
            let r = prom.query("rate(container_cpu_usage_seconds_total{name=\"busy\"}[30s])");
            let v = r.first().map(value)?;
            seen.push(v);
            (v > 0.6 || (seen.len() > 40 && v > 0.3)).then_some(v)
        },
    );
    eprintln!("busy container: rate {busy:.3} (seen {seen:?})");
    assert!(busy < 1.3, "busy rate {busy}");
    assert!(value(by_name("idle-b")) < 0.1, "{rates:?}");
    // Prometheus asked for OpenMetrics and understood it: its own
    // scrape health says so.
    let up = prom.query("up");
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|s| s["value"][1] == "1"), "{up:?}");
}

#[test]
fn dashboard_in_chromium_shows_both_hosts() {
    let second = builder().start();
    let clean_second = RemoveContainers(&second);
    load_busybox(&second);
    run_idle(&second, "remote-one", &[]);
    // In daemon.json, not on the command line: the testkit takes a process
    // naming another daemon's directory for that daemon's leftover.
    let (d, addr) = with_metrics(builder().config_json(serde_json::json!({
        "dashboard-hosts": [format!("unix://{},name=second", second.socket().display())]
    })));
    let _clean = RemoveContainers(&d);
    load_busybox(&d);
    let out = output_dir();

    let mut page = Browser::launch(&format!("http://{addr}/"), 1500, 1100).unwrap();
    page.wait_for(
        "the second host's container in the merged table",
        r#"!!document.querySelector('#containers tr[data-host="h1"][data-name="remote-one"]')"#,
        Duration::from_secs(60),
    )
    .unwrap();
    let id = run_busy(&d, "busy-ui");
    page.wait_for(
        "the new container with a CPU chart",
        r#"(() => {
            const svg = document.querySelector('#containers tr[data-name="busy-ui"] svg.spark-cpu');
            return svg && Number(svg.dataset.points) >= 3 && svg.querySelector('polyline') !== null;
        })()"#,
        Duration::from_secs(60),
    )
    .unwrap();
    // The host charts and pools have drawn too.
    page.wait_for(
        "host charts",
        r#"Number(document.getElementById('ov-cpu').dataset.points) >= 3 && document.querySelectorAll('#ov-pools .pool').length >= 1"#,
        Duration::from_secs(30),
    )
    .unwrap();
    let hosts = page
        .eval(r#"[...document.querySelectorAll('.host')].map(h => h.dataset.host + ':' + h.className).join(' ')"#)
        .unwrap();
    assert_eq!(hosts, "local:host up h1:host up");
    page.screenshot(&out.join("home.png")).unwrap();

    // The container's page: history charts and its processes.
    page.eval(&format!("location.hash = '#/c/local/{id}'"))
        .unwrap();
    page.wait_for(
        "the container page's CPU chart and process table",
        r#"Number(document.getElementById('c-cpu').dataset.points) >= 3
           && document.querySelectorAll('#c-procs tbody tr').length >= 1
           && document.querySelector('#c-cpu polyline') !== null"#,
        Duration::from_secs(30),
    )
    .unwrap();
    let procs = page
        .eval(r#"document.querySelector('#c-procs tbody').textContent"#)
        .unwrap();
    assert!(procs.as_str().unwrap().contains("while"), "{procs}");
    page.screenshot(&out.join("container.png")).unwrap();

    // Back home; the container stops and its die event shows in the feed.
    page.eval("location.hash = '#/'").unwrap();
    d.docker(&["stop", "-t", "1", "busy-ui"]).ok();
    page.wait_for(
        "the die event in the feed",
        r#"!!document.querySelector('#events tr[data-action="die"][data-name="busy-ui"]')"#,
        Duration::from_secs(30),
    )
    .unwrap();
    // docker events filters: only die events of busy-ui, replayed from
    // the log when the feed reopens.
    page.eval(
        r#"document.getElementById('ev-filter').value = 'type=container event=die container=busy-ui';
           document.getElementById('ev-form').requestSubmit(); true"#,
    )
    .unwrap();
    page.wait_for(
        "the filtered feed",
        r#"(() => {
            const rows = [...document.querySelectorAll('#events tr')];
            return rows.length >= 1 && rows.every(r => r.dataset.action === 'die' && r.dataset.name === 'busy-ui');
        })()"#,
        Duration::from_secs(30),
    )
    .unwrap();
    page.screenshot(&out.join("events.png")).unwrap();

    // The second host goes away: shown as down, the page keeps working.
    drop(clean_second);
    drop(second);
    page.wait_for(
        "the second host shown as down",
        r#"!!document.querySelector('.host.down[data-host="h1"]')"#,
        Duration::from_secs(30),
    )
    .unwrap();
    page.screenshot(&out.join("host-down.png")).unwrap();
    eprintln!("screenshots in {}", out.display());
}

/// A bridge for a reference dockerd (never `--bridge=none`, which would
/// delete a shared docker0), deleted when dropped.
struct TestBridge(String);

impl TestBridge {
    fn new() -> TestBridge {
        let digits: String = scratch::unique_name("")
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let name = format!("bd{}", &digits[digits.len().saturating_sub(12)..]);
        let ok = Command::new("ip")
            .args(["link", "add", "name", &name, "type", "bridge"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link add {name}");
        TestBridge(name)
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// The dashboard watching Debian's dockerd through its Engine API: its
/// containers appear in the merged table with CPU series (one-shot stats),
/// and its events reach the feed.
#[test]
fn dashboard_watches_a_real_dockerd() {
    let dockerd = std::env::var_os("BERTH_TEST_DOCKERD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/dockerd"));
    if !dockerd.exists() {
        eprintln!("skipped: no dockerd (apt-get install docker.io, or set BERTH_TEST_DOCKERD)");
        return;
    }
    let bridge = TestBridge::new();
    let docker = Daemon::builder(dockerd)
        .on_loopfs(Backend::Vfs.loopfs())
        .storage_driver("vfs")
        .arg(format!("--bridge={}", bridge.0))
        .arg("--iptables=false")
        .arg("--ip-masq=false")
        .start();
    let _clean = RemoveContainers(&docker);
    load_busybox(&docker);
    docker
        .docker(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "on-dockerd",
            busybox::IMAGE,
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .ok();
    let (_d, addr) = with_metrics(builder().config_json(serde_json::json!({
        "dashboard-hosts": [format!("unix://{},name=reference", docker.socket().display())]
    })));
    let row = eventually(
        "the dockerd container with CPU figures",
        Duration::from_secs(60),
        || {
            let v: Value = serde_json::from_str(&http_get(&addr, "/api/containers").ok()?).ok()?;
            let row = v["containers"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == "on-dockerd")?
                .clone();
            let cpu = row["series"]["cpu"].as_array()?;
            (cpu.iter().filter(|c| c.is_number()).count() >= 2).then_some(row)
        },
    );
    assert_eq!(row["host"], "h1");
    assert_eq!(row["state"], "running");
    let hosts: Value = serde_json::from_str(&http_get(&addr, "/api/hosts").unwrap()).unwrap();
    assert_eq!(hosts[1]["kind"], "dockerd", "{hosts}");
    assert_eq!(hosts[1]["up"], true, "{hosts}");
    assert_eq!(hosts[1]["info"]["driver"], "vfs", "{hosts}");
    // Its processes, through dockerd's /top.
    let top = http_get(
        &addr,
        &format!(
            "/api/containers/h1/{}/processes",
            row["id"].as_str().unwrap()
        ),
    )
    .unwrap();
    assert!(top.contains("while"), "{top}");
}

/// A remote host over TCP with mutual TLS (`tlsdir=` with the docker
/// CLI's file names); the same host with a client certificate from another
/// CA is shown down with the handshake's error, not as a failure of the
/// page.
#[test]
fn dashboard_reaches_a_host_over_mutual_tls() {
    let certs = remote::cert_dir();
    let files = remote::pki(certs.path());
    let far = remote::with_tls(builder(), &files).start();
    let port = remote::tcp_port(&far);
    let _clean_far = RemoveContainers(&far);
    load_busybox(&far);
    run_idle(&far, "over-tls", &[]);
    let other = remote::cert_dir();
    let stranger = remote::pki(other.path());
    let (_d, addr) = with_metrics(builder().config_json(serde_json::json!({
        "dashboard-hosts": [
            format!("tcp://127.0.0.1:{port},name=tls,tlsdir={}", certs.path().display()),
            format!(
                "tcp://127.0.0.1:{port},name=stranger,tlscacert={},tlscert={},tlskey={}",
                files.ca_cert.display(),
                stranger.client_cert.display(),
                stranger.client_key.display()
            ),
        ]
    })));
    let hosts = eventually("both hosts polled", Duration::from_secs(60), || {
        let v: Value = serde_json::from_str(&http_get(&addr, "/api/hosts").ok()?).ok()?;
        (v[1]["up"] == true && v[2]["error"].is_string()).then_some(v)
    });
    assert_eq!(hosts[1]["kind"], "berth", "{hosts}");
    assert_eq!(hosts[2]["up"], false, "{hosts}");
    let err = hosts[2]["error"].as_str().unwrap();
    assert!(!err.is_empty(), "{hosts}");
    eprintln!("the stranger host: {err}");
    eventually(
        "the TLS host's container with stats",
        Duration::from_secs(60),
        || {
            let v: Value = serde_json::from_str(&http_get(&addr, "/api/containers").ok()?).ok()?;
            let row = v["containers"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == "over-tls" && r["host"] == "h1")?
                .clone();
            (!row["series"]["t"].as_array()?.is_empty()).then_some(row)
        },
    );
}

/// `container_fs_usage_bytes` follows what the container writes (the
/// sampler refreshes it; scrapes never measure) and
/// `container_fs_limit_bytes` is the `--storage-opt size=` limit.
fn fs_metrics_follow_writes(d: &Daemon, addr: &str, driver: &str) {
    let _clean = RemoveContainers(d);
    load_busybox(d);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "sized",
        "--storage-opt",
        "size=64M",
        busybox::IMAGE,
        "sh",
        "-c",
        "dd if=/dev/zero of=/blob bs=1M count=20 && sync && sleep 100000",
    ])
    .ok();
    run_idle(d, "unsized", &[]);
    let (usage, limit, unsized_limit) = eventually(
        "the 20 MB write in container_fs_usage_bytes",
        Duration::from_secs(60),
        || {
            let text = http_get(addr, "/metrics").ok()?;
            let of = |metric: &str, name: &str| {
                samples(&text, metric)
                    .into_iter()
                    .find(|(l, _)| l.contains(&format!(r#"name="{name}""#)))
                    .map(|(l, v)| {
                        assert!(l.contains(&format!(r#"device="{driver}""#)), "{l}");
                        v
                    })
            };
            let usage = of("container_fs_usage_bytes", "sized")?;
            (usage >= 20.0 * 1024.0 * 1024.0).then(|| {
                (
                    usage,
                    of("container_fs_limit_bytes", "sized"),
                    of("container_fs_limit_bytes", "unsized"),
                )
            })
        },
    );
    assert!(usage < 40.0 * 1024.0 * 1024.0, "usage {usage}");
    assert_eq!(limit, Some(64.0 * 1024.0 * 1024.0));
    assert_eq!(unsized_limit, None, "no limit, no sample");
    // The driver's pool, as the sampler last measured it.
    let text = http_get(addr, "/metrics").unwrap();
    let pools = samples(&text, "berth_storage_pool_size_bytes");
    assert!(
        pools
            .iter()
            .any(|(l, v)| l.contains(&format!(r#"driver="{driver}""#)) && *v > 0.0),
        "{pools:?}"
    );
}

#[test]
fn fs_metrics_with_a_size_limit_on_btrfs() {
    let (d, addr) = with_metrics(Backend::Btrfs.builder());
    fs_metrics_follow_writes(&d, &addr, "btrfs");
}

#[test]
fn fs_metrics_with_a_size_limit_on_zfs() {
    let pool = ZfsPool::new().unwrap();
    let (d, addr) = with_metrics(
        builder()
            .data_root(pool.path().join("data-root"))
            .storage_driver("zfs"),
    );
    fs_metrics_follow_writes(&d, &addr, "zfs");
}
