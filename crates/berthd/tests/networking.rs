//! Bridge networking through the real docker CLI: containers on a user
//! network reach each other by name, published ports serve from the host
//! (loopback hairpin), `docker port`, network events, NET I/O in `docker
//! stats`, `network connect`/`disconnect` of a running container, restarts
//! that keep addresses and ports, bad input in dockerd's words, and nothing
//! (veth, rule, allocation) left behind. Each daemon has its own bridge and
//! table.

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_testkit::{network, Daemon};
use support::{load_busybox, Backend};

const IMAGE: &str = berth_testkit::busybox::IMAGE;

fn daemon() -> Daemon {
    let d = Backend::Vfs.daemon();
    load_busybox(&d);
    d
}

/// A host port nobody uses right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `curl` against the host's loopback, retried while the server starts.
fn fetch(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "3", url])
            .output()
            .expect("curl");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts a busybox httpd serving `body` on port 80 of a new container.
fn web(d: &Daemon, args: &[&str], body: &str) -> String {
    let script =
        format!("mkdir -p /www && echo '{body}' > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut argv = vec!["run", "-d"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&[IMAGE, "sh", "-c", &script]);
    d.docker(&argv).ok().stdout.trim().to_string()
}

fn inspect(d: &Daemon, what: &str) -> serde_json::Value {
    d.docker(&["inspect", what]).ok().json()[0].clone()
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let d = daemon();
    d.docker(&["network", "create", "appnet"]).ok();
    web(
        &d,
        &[
            "--name",
            "web",
            "--network",
            "appnet",
            "--network-alias",
            "site",
        ],
        "hello",
    );
    let ping = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            IMAGE,
            "ping",
            "-c1",
            "-W2",
            "web",
        ])
        .ok();
    assert!(ping.stdout.contains("1 packets received"), "{ping}");
    let got = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            IMAGE,
            "wget",
            "-qO-",
            "http://site/",
        ])
        .ok();
    assert_eq!(got.stdout.trim(), "hello");
    // The resolv.conf dockerd writes for user networks.
    let resolv = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            IMAGE,
            "cat",
            "/etc/resolv.conf",
        ])
        .ok();
    assert!(
        resolv.stdout.contains("nameserver 127.0.0.11\n"),
        "{resolv}"
    );
    assert!(resolv.stdout.contains("(internal resolver)"), "{resolv}");
    let w = inspect(&d, "web");
    let ep = &w["NetworkSettings"]["Networks"]["appnet"];
    assert!(
        ep["IPAddress"].as_str().unwrap().starts_with("10.213."),
        "{ep}"
    );
    assert_eq!(ep["Aliases"], serde_json::json!(["site"]));
    let net = d.docker(&["network", "inspect", "appnet"]).ok().json();
    assert_eq!(net[0]["Containers"].as_object().unwrap().len(), 1);
    d.docker(&["rm", "-f", "web"]).ok();
    d.docker(&["network", "rm", "appnet"]).ok();
}

#[test]
fn published_port_serves_loopback_and_leaves_nothing_after_rm() {
    let d = daemon();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    let id = web(&d, &["-p", &spec], "published");
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")).trim(),
        "published"
    );
    let mapping = d.docker(&["port", &id]).ok();
    assert_eq!(mapping.stdout.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let c = inspect(&d, &id);
    assert_eq!(
        c["NetworkSettings"]["Ports"]["80/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": port.to_string()}])
    );
    let ip = c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c["NetworkSettings"]["IPAddress"], ip.as_str());
    let hosts = d.docker(&["exec", &id, "cat", "/etc/hosts"]).ok();
    assert!(
        hosts.stdout.contains(&format!("{ip}\t{}", &id[..12])),
        "{hosts}"
    );
    let bridge = d.bridge().unwrap().to_string();
    let table = d.firewall_table().unwrap();
    assert_eq!(network::bridge_ports(&bridge).len(), 1);
    assert!(network::list_table(&table)
        .unwrap()
        .contains(&format!("dport {port}")));
    // Ephemeral ports with -P.
    let eph = d
        .docker(&["run", "-d", "-P", "--expose", "80", IMAGE, "sleep", "300"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let ps = d.docker(&["port", &eph, "80/tcp"]).ok();
    assert!(ps.stdout.starts_with("0.0.0.0:"), "{ps}");
    d.docker(&["rm", "-f", &id, &eph]).ok();
    assert!(network::bridge_ports(&bridge).is_empty(), "veths left");
    let rules = network::list_table(&table).unwrap();
    assert!(!rules.contains("dnat to"), "rules left:\n{rules}");
    let att = d.data_root().join("network/containers");
    let left: Vec<_> = std::fs::read_dir(&att)
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "allocations left: {left:?}");
    // The address is free again: the next container gets the same one.
    let again = d
        .docker(&[
            "run", "--rm", IMAGE, "ip", "-4", "-o", "addr", "show", "eth0",
        ])
        .ok();
    assert!(again.stdout.contains(&format!("{ip}/")), "{again}");
}

#[test]
fn network_events_connect_and_disconnect() {
    let d = daemon();
    let since = chrono_now(&d);
    d.docker(&["network", "create", "evnet"]).ok();
    d.docker(&["run", "--rm", "--network", "evnet", IMAGE, "true"])
        .ok();
    d.docker(&["network", "rm", "evnet"]).ok();
    let ev = network_events(
        &d,
        &since,
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}",
    );
    assert_eq!(
        ev.lines(),
        vec![
            "create evnet bridge",
            "connect evnet bridge",
            "disconnect evnet bridge",
            "destroy evnet bridge"
        ],
        "{ev}"
    );
}

/// `docker events --filter type=network` from `since` until now, in
/// `format`.
fn network_events(d: &Daemon, since: &str, format: &str) -> berth_testkit::DockerOutput {
    let until = chrono_now(d);
    d.docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=network",
        "--format",
        format,
    ])
    .ok()
}

fn chrono_now(d: &Daemon) -> String {
    let _ = d;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

#[test]
fn kill9_and_restart_keep_addresses_and_ports() {
    let mut d = daemon();
    d.docker(&["network", "create", "--subnet", "10.214.7.0/24", "keep"])
        .ok();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    web(
        &d,
        &[
            "--name",
            "kweb",
            "--network",
            "keep",
            "--ip",
            "10.214.7.50",
            "-p",
            &spec,
        ],
        "kept",
    );
    d.docker(&[
        "run",
        "-d",
        "--name",
        "kclient",
        "--network",
        "keep",
        IMAGE,
        "sleep",
        "600",
    ])
    .ok();
    let before = inspect(&d, "kclient")["NetworkSettings"]["Networks"]["keep"]["IPAddress"].clone();
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")).trim(), "kept");
    d.kill9();
    d.start();
    let after = inspect(&d, "kclient")["NetworkSettings"]["Networks"]["keep"]["IPAddress"].clone();
    assert_eq!(before, after);
    assert_eq!(
        inspect(&d, "kweb")["NetworkSettings"]["Networks"]["keep"]["IPAddress"],
        "10.214.7.50"
    );
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")).trim(), "kept");
    // Name resolution is served again, and a new container gets a new address.
    let got = d
        .docker(&["exec", "kclient", "wget", "-qO-", "http://kweb/"])
        .ok();
    assert_eq!(got.stdout.trim(), "kept");
    let third = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "keep",
            IMAGE,
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "eth0",
        ])
        .ok();
    let after = after.as_str().unwrap();
    assert!(!third.stdout.contains(&format!("{after}/")), "{third}");
    d.docker(&["rm", "-f", "kweb", "kclient"]).ok();
    d.docker(&["network", "rm", "keep"]).ok();
}

#[test]
fn bad_input_gets_dockerds_errors_and_makes_nothing() {
    let d = daemon();
    d.docker(&["network", "create", "--subnet", "10.215.1.0/24", "one"])
        .ok();
    let out = d
        .docker(&["network", "create", "--subnet", "10.215.1.128/25", "two"])
        .failed();
    assert!(
        out.stderr
            .contains("Pool overlaps with other one on this address space"),
        "{out}"
    );
    let out = d
        .docker(&[
            "run",
            "--rm",
            "--network",
            "one",
            "--ip",
            "10.99.0.5",
            IMAGE,
            "true",
        ])
        .failed();
    assert!(
        out.stderr
            .contains("no configured subnet contains IP address 10.99.0.5"),
        "{out}"
    );
    // As with dockerd, the create succeeds and the start fails.
    let out = d
        .docker(&[
            "run",
            "--name",
            "lost",
            "--network",
            "nosuch",
            IMAGE,
            "true",
        ])
        .failed();
    assert!(out.stderr.contains("network nosuch not found"), "{out}");
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = d
        .docker(&[
            "run",
            "--name",
            "clash",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            IMAGE,
            "true",
        ])
        .failed();
    assert!(
        out.stderr.contains(&format!(
            "failed to bind host port 127.0.0.1:{port}/tcp: address already in use"
        )),
        "{out}"
    );
    let c = inspect(&d, "clash");
    assert_eq!(c["State"]["Running"], false);
    assert!(network::bridge_ports(d.bridge().unwrap()).is_empty());
    let nets = d.docker(&["network", "ls", "--format", "{{.Name}}"]).ok();
    assert!(!nets.stdout.contains("two"), "{nets}");
    d.docker(&["rm", "clash", "lost"]).ok();
    d.docker(&["network", "rm", "one"]).ok();
    drop(holder);
}

/// Traffic shows in `docker stats` NET I/O; `docker network connect` and
/// `disconnect` on a running container add and remove its interface (the
/// other network's containers reach it by name meanwhile) with their events.
#[test]
fn stats_net_io_and_live_connect_and_disconnect() {
    let d = daemon();
    d.docker(&["network", "create", "front"]).ok();
    d.docker(&["network", "create", "back"]).ok();
    let start = |name: &str, net: &str| {
        d.docker(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            IMAGE,
            "sleep",
            "300",
        ])
        .ok();
    };
    start("a", "front");
    start("b", "back");
    // Traffic to the gateway crosses the container's veth.
    let gateway = inspect(&d, "a")["NetworkSettings"]["Networks"]["front"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let ping = d
        .docker(&["exec", "a", "ping", "-c3", "-i0.2", "-s1000", &gateway])
        .ok();
    assert!(ping.stdout.contains("3 packets received"), "{ping}");
    let net_io = d
        .docker(&["stats", "--no-stream", "--format", "{{.NetIO}}", "a"])
        .ok();
    let (rx, tx) = net_io.stdout.trim().split_once(" / ").expect("NetIO");
    assert!(rx != "0B" && tx != "0B", "{net_io}");
    let raw = d.api("GET", "/containers/a/stats?stream=false", None);
    let eth0 = &raw.json()["networks"]["eth0"];
    assert!(eth0["tx_bytes"].as_u64().unwrap() >= 3000, "{eth0}");
    assert!(eth0["rx_bytes"].as_u64().unwrap() >= 3000, "{eth0}");

    let since = chrono_now(&d);
    d.docker(&["network", "connect", "back", "a"]).ok();
    let addrs = d
        .docker(&["exec", "a", "ip", "-4", "-o", "addr", "show"])
        .ok();
    assert!(addrs.stdout.contains("eth1"), "{addrs}");
    let ping = d.docker(&["exec", "b", "ping", "-c1", "-W2", "a"]).ok();
    assert!(ping.stdout.contains("1 packets received"), "{ping}");
    let networks = inspect(&d, "a")["NetworkSettings"]["Networks"].clone();
    assert!(networks.get("back").is_some(), "{networks}");
    d.docker(&["network", "disconnect", "back", "a"]).ok();
    let addrs = d
        .docker(&["exec", "a", "ip", "-4", "-o", "addr", "show"])
        .ok();
    assert!(!addrs.stdout.contains("eth1"), "{addrs}");
    let ping = d.docker(&["exec", "b", "ping", "-c1", "-W2", "a"]);
    assert!(!ping.status.success(), "{ping}");
    let ev = network_events(
        &d,
        &since,
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}",
    );
    let id = inspect(&d, "a")["Id"].as_str().unwrap().to_string();
    assert_eq!(
        ev.lines(),
        vec![
            format!("connect back {id}"),
            format!("disconnect back {id}")
        ],
        "{ev}"
    );
    d.docker(&["rm", "-f", "a", "b"]).ok();
    d.docker(&["network", "rm", "front", "back"]).ok();
}
