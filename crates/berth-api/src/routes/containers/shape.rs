//! Container responses in the shape dockerd gives a client at a given API
//! version: the zero values Go always writes where the engine's optional
//! fields are absent, fields newer than the client's version dropped, and
//! the legacy bridge fields at the top of `NetworkSettings`.

use serde_json::{json, Map, Value};

use crate::routes::images::LEGACY_CONFIG_FIELDS;
use crate::version::ApiVersion;

/// Go's zero `time.Time`, as container timestamps read before they happen.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Inserts each `(key, value)` the object does not have yet.
fn fill(obj: &mut Map<String, Value>, fields: impl IntoIterator<Item = (&'static str, Value)>) {
    for (key, value) in fields {
        obj.entry(key).or_insert(value);
    }
}

fn object<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// `GET /containers/json` for a client at `v`.
pub(super) fn container_list(list: &mut Value, v: &ApiVersion) {
    let Some(items) = list.as_array_mut() else {
        return;
    };
    for c in items.iter_mut().filter_map(Value::as_object_mut) {
        fill(
            c,
            [
                ("Id", json!("")),
                ("Names", json!([])),
                ("Image", json!("")),
                ("ImageID", json!("")),
                ("Command", json!("")),
                ("Created", json!(0)),
                ("Ports", json!([])),
                ("Labels", json!({})),
                ("State", json!("")),
                ("Status", json!("")),
                ("HostConfig", json!({})),
                ("NetworkSettings", json!({"Networks": {}})),
                ("Mounts", json!([])),
            ],
        );
        if v.lt("1.46") {
            object(c, "HostConfig").remove("Annotations");
        }
        // Added in 1.48 and 1.52: newer than any version berth speaks.
        c.remove("ImageManifestDescriptor");
        c.remove("Health");
        mount_points(c);
        if let Some(Value::Object(networks)) = object(c, "NetworkSettings").get_mut("Networks") {
            networks
                .values_mut()
                .filter_map(Value::as_object_mut)
                .for_each(endpoint);
        }
    }
}

/// `GET /containers/{id}/json` for a client at `v`.
pub(super) fn container_inspect(value: &mut Value, v: &ApiVersion) {
    let Some(c) = value.as_object_mut() else {
        return;
    };
    fill(
        c,
        [
            ("Id", json!("")),
            ("Created", json!(ZERO_TIME)),
            ("Path", json!("")),
            ("Args", json!([])),
            ("State", json!({})),
            ("Image", json!("")),
            ("ResolvConfPath", json!("")),
            ("HostnamePath", json!("")),
            ("HostsPath", json!("")),
            ("LogPath", json!("")),
            ("Name", json!("")),
            ("RestartCount", json!(0)),
            ("Driver", json!("")),
            ("Platform", json!("linux")),
            ("MountLabel", json!("")),
            ("ProcessLabel", json!("")),
            ("AppArmorProfile", json!("")),
            ("ExecIDs", Value::Null),
            ("HostConfig", json!({})),
            ("Mounts", json!([])),
            ("Config", json!({})),
            ("NetworkSettings", json!({})),
        ],
    );
    fill(
        object(c, "State"),
        [
            ("Status", json!("")),
            ("Running", json!(false)),
            ("Paused", json!(false)),
            ("Restarting", json!(false)),
            ("OOMKilled", json!(false)),
            ("Dead", json!(false)),
            ("Pid", json!(0)),
            ("ExitCode", json!(0)),
            ("Error", json!("")),
            ("StartedAt", json!(ZERO_TIME)),
            ("FinishedAt", json!(ZERO_TIME)),
        ],
    );
    fill(object(c, "Config"), LEGACY_CONFIG_FIELDS.iter().cloned());
    host_config(object(c, "HostConfig"));
    mount_points(c);

    // The snapshotter-era `Storage` (1.52) folds back into GraphDriver.
    if let Some(storage) = c.remove("Storage") {
        let name = storage
            .pointer("/RootFS/Snapshot/Name")
            .cloned()
            .unwrap_or(json!(""));
        c.entry("GraphDriver")
            .or_insert_with(|| json!({"Name": name, "Data": null}));
    }
    fill(c, [("GraphDriver", json!({"Name": "", "Data": null}))]);
    c.remove("ImageManifestDescriptor");

    let id = c
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let hostname = c
        .get("Config")
        .and_then(|cfg| cfg.get("Hostname"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    network_settings(object(c, "NetworkSettings"), v, &id, &hostname);
}

/// HostConfig with every field Go writes without `omitempty`. The log
/// driver is json-file when none was recorded: the only one berth has,
/// and what clients such as docker-py's `run` look for before reading logs.
fn host_config(hc: &mut Map<String, Value>) {
    let log = object(hc, "LogConfig");
    if log
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        log.insert("Type".into(), json!("json-file"));
    }
    fill(log, [("Config", json!({}))]);
    fill(
        hc,
        [
            ("CpuShares", json!(0)),
            ("Memory", json!(0)),
            ("NanoCpus", json!(0)),
            ("CgroupParent", json!("")),
            ("BlkioWeight", json!(0)),
            ("BlkioWeightDevice", Value::Null),
            ("BlkioDeviceReadBps", Value::Null),
            ("BlkioDeviceWriteBps", Value::Null),
            ("BlkioDeviceReadIOps", Value::Null),
            ("BlkioDeviceWriteIOps", Value::Null),
            ("CpuPeriod", json!(0)),
            ("CpuQuota", json!(0)),
            ("CpuRealtimePeriod", json!(0)),
            ("CpuRealtimeRuntime", json!(0)),
            ("CpusetCpus", json!("")),
            ("CpusetMems", json!("")),
            ("Devices", Value::Null),
            ("DeviceCgroupRules", Value::Null),
            ("DeviceRequests", Value::Null),
            ("MemoryReservation", json!(0)),
            ("MemorySwap", json!(0)),
            ("MemorySwappiness", Value::Null),
            ("OomKillDisable", Value::Null),
            ("PidsLimit", Value::Null),
            ("Ulimits", Value::Null),
            ("CpuCount", json!(0)),
            ("CpuPercent", json!(0)),
            ("IOMaximumIOps", json!(0)),
            ("IOMaximumBandwidth", json!(0)),
            ("Binds", Value::Null),
            ("ContainerIDFile", json!("")),
            ("NetworkMode", json!("")),
            ("PortBindings", json!({})),
            (
                "RestartPolicy",
                json!({"Name": "no", "MaximumRetryCount": 0}),
            ),
            ("AutoRemove", json!(false)),
            ("VolumeDriver", json!("")),
            ("VolumesFrom", Value::Null),
            ("ConsoleSize", json!([0, 0])),
            ("CapAdd", Value::Null),
            ("CapDrop", Value::Null),
            ("CgroupnsMode", json!("")),
            ("Dns", Value::Null),
            ("DnsOptions", Value::Null),
            ("DnsSearch", Value::Null),
            ("ExtraHosts", Value::Null),
            ("GroupAdd", Value::Null),
            ("IpcMode", json!("")),
            ("Cgroup", json!("")),
            ("Links", Value::Null),
            ("OomScoreAdj", json!(0)),
            ("PidMode", json!("")),
            ("Privileged", json!(false)),
            ("PublishAllPorts", json!(false)),
            ("ReadonlyRootfs", json!(false)),
            ("SecurityOpt", Value::Null),
            ("UTSMode", json!("")),
            ("UsernsMode", json!("")),
            ("ShmSize", json!(0)),
            ("Isolation", json!("")),
            ("MaskedPaths", Value::Null),
            ("ReadonlyPaths", Value::Null),
        ],
    );
}

/// NetworkSettings as dockerd 28 writes it for API 1.47 and older: the
/// deprecated fields present (empty), and the default bridge endpoint's
/// addresses repeated at the top.
fn network_settings(ns: &mut Map<String, Value>, v: &ApiVersion, id: &str, hostname: &str) {
    fill(
        ns,
        [
            ("Bridge", json!("")),
            ("SandboxID", json!("")),
            ("SandboxKey", json!("")),
            ("Ports", json!({})),
            ("HairpinMode", json!(false)),
            ("LinkLocalIPv6Address", json!("")),
            ("LinkLocalIPv6PrefixLen", json!(0)),
            ("SecondaryIPAddresses", Value::Null),
            ("SecondaryIPv6Addresses", Value::Null),
            ("Networks", json!({})),
        ],
    );
    let bridge = ns
        .get("Networks")
        .and_then(|n| n.get("bridge"))
        .cloned()
        .unwrap_or(json!({}));
    for (key, zero) in [
        ("EndpointID", json!("")),
        ("Gateway", json!("")),
        ("GlobalIPv6Address", json!("")),
        ("GlobalIPv6PrefixLen", json!(0)),
        ("IPAddress", json!("")),
        ("IPPrefixLen", json!(0)),
        ("IPv6Gateway", json!("")),
        ("MacAddress", json!("")),
    ] {
        let value = bridge.get(key).cloned().unwrap_or(zero);
        ns.entry(key).or_insert(value);
    }
    let Some(Value::Object(networks)) = ns.get_mut("Networks") else {
        return;
    };
    for (name, ep) in networks.iter_mut() {
        let Some(ep) = ep.as_object_mut() else {
            continue;
        };
        endpoint(ep);
        let user_defined = !matches!(name.as_str(), "bridge" | "host" | "none" | "default")
            && !name.starts_with("container:");
        if v.lt("1.45") && user_defined {
            // Old clients expect the short ID and hostname among the
            // aliases of user-defined networks.
            let aliases = ep.entry("Aliases").or_insert(json!([]));
            if !aliases.is_array() {
                *aliases = json!([]);
            }
            let list = aliases.as_array_mut().expect("just made an array");
            for alias in [id.get(..12).unwrap_or(id), hostname] {
                if !alias.is_empty() && !list.iter().any(|a| a == alias) {
                    list.push(json!(alias));
                }
            }
        }
    }
}

/// An endpoint's settings with Go's zero values; `GwPriority` is 1.48.
fn endpoint(ep: &mut Map<String, Value>) {
    fill(
        ep,
        [
            ("IPAMConfig", Value::Null),
            ("Links", Value::Null),
            ("Aliases", Value::Null),
            ("MacAddress", json!("")),
            ("DriverOpts", Value::Null),
            ("NetworkID", json!("")),
            ("EndpointID", json!("")),
            ("Gateway", json!("")),
            ("IPAddress", json!("")),
            ("IPPrefixLen", json!(0)),
            ("IPv6Gateway", json!("")),
            ("GlobalIPv6Address", json!("")),
            ("GlobalIPv6PrefixLen", json!(0)),
            ("DNSNames", Value::Null),
        ],
    );
    ep.remove("GwPriority");
}

/// Mount points as Go's `MountPoint` writes them (Type, Name and Driver
/// are the only optional ones).
fn mount_points(c: &mut Map<String, Value>) {
    if let Some(Value::Array(mounts)) = c.get_mut("Mounts") {
        for m in mounts.iter_mut().filter_map(Value::as_object_mut) {
            fill(
                m,
                [
                    ("Source", json!("")),
                    ("Destination", json!("")),
                    ("Mode", json!("")),
                    ("RW", json!(false)),
                    ("Propagation", json!("")),
                ],
            );
        }
    }
}

/// A prune report: dockerd always sends both fields, `null` when nothing
/// was deleted.
pub(super) fn prune_report(report: &mut Value) {
    if let Some(obj) = report.as_object_mut() {
        fill(
            obj,
            [
                ("ContainersDeleted", Value::Null),
                ("SpaceReclaimed", json!(0)),
            ],
        );
    }
}

/// `POST /containers/{id}/update`: `Warnings` is always there.
pub(super) fn update_response(resp: &mut Value) {
    if let Some(obj) = resp.as_object_mut() {
        fill(obj, [("Warnings", Value::Null)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_has_every_field_an_old_client_reads() {
        let mut c = json!({
            "Id": "0123456789abcdef0123",
            "State": {"Status": "running", "Running": true, "Pid": 42},
            "Config": {"Cmd": ["sh"], "Hostname": "box"},
            "ImageManifestDescriptor": {"digest": "sha256:x"},
            "NetworkSettings": {"Networks": {
                "bridge": {"IPAddress": "172.17.0.2", "GwPriority": 0},
                "mynet": {"Aliases": ["web"]},
            }},
            "Mounts": [{"Type": "volume", "Name": "v", "Destination": "/data", "RW": true}],
        });
        container_inspect(&mut c, &ApiVersion::new("1.44"));
        assert_eq!(c["State"]["Running"], true);
        assert_eq!(c["State"]["OOMKilled"], false);
        assert_eq!(c["State"]["FinishedAt"], ZERO_TIME);
        assert_eq!(c["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(c["Config"]["Env"], Value::Null);
        assert_eq!(c["Config"]["Tty"], false);
        assert!(c.get("ImageManifestDescriptor").is_none());
        assert_eq!(c["GraphDriver"], json!({"Name": "", "Data": null}));
        assert_eq!(c["ExecIDs"], Value::Null);
        let ns = &c["NetworkSettings"];
        assert_eq!(ns["IPAddress"], "172.17.0.2");
        assert_eq!(ns["HairpinMode"], false);
        assert_eq!(ns["Ports"], json!({}));
        assert!(ns["Networks"]["bridge"].get("GwPriority").is_none());
        assert_eq!(ns["Networks"]["bridge"]["DNSNames"], Value::Null);
        assert_eq!(
            ns["Networks"]["mynet"]["Aliases"],
            json!(["web", "0123456789ab", "box"])
        );
        assert_eq!(c["Mounts"][0]["Propagation"], "");
        assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file");
        assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "no");
        assert_eq!(c["HostConfig"]["Binds"], Value::Null);
        assert_eq!(c["Mounts"][0]["Source"], "");
    }

    #[test]
    fn newer_clients_keep_user_aliases_as_given() {
        let mut c =
            json!({"Id": "abc", "NetworkSettings": {"Networks": {"mynet": {"Aliases": ["web"]}}}});
        container_inspect(&mut c, &ApiVersion::new("1.45"));
        assert_eq!(
            c["NetworkSettings"]["Networks"]["mynet"]["Aliases"],
            json!(["web"])
        );
        assert_eq!(c["NetworkSettings"]["IPAddress"], "");
    }

    #[test]
    fn storage_folds_back_into_graph_driver() {
        let mut c = json!({"Storage": {"RootFS": {"Snapshot": {"Name": "overlayfs"}}}});
        container_inspect(&mut c, &ApiVersion::newest());
        assert!(c.get("Storage").is_none());
        assert_eq!(c["GraphDriver"]["Name"], "overlayfs");
    }

    #[test]
    fn list_items_get_go_zero_values_and_lose_newer_fields() {
        let mut list = json!([{
            "Id": "abc", "Names": ["/x"], "State": "exited",
            "HostConfig": {"NetworkMode": "none", "Annotations": {"a": "b"}},
            "Health": {"Status": "healthy"},
        }]);
        container_list(&mut list, &ApiVersion::new("1.45"));
        let c = &list[0];
        assert_eq!(c["Ports"], json!([]));
        assert_eq!(c["Mounts"], json!([]));
        assert_eq!(c["Labels"], json!({}));
        assert_eq!(c["HostConfig"], json!({"NetworkMode": "none"}));
        assert!(c.get("Health").is_none());
        assert_eq!(c["NetworkSettings"], json!({"Networks": {}}));
    }

    #[test]
    fn reports_always_carry_their_fields() {
        let mut prune = json!({});
        prune_report(&mut prune);
        assert_eq!(
            prune,
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0})
        );
        let mut update = json!({});
        update_response(&mut update);
        assert_eq!(update, json!({"Warnings": null}));
    }
}
