//! `POST /containers/create` as dockerd's router treats it before the
//! daemon sees it: decoding with its error texts, the network-mode
//! conflicts it refuses up front, and every per-API-version rewrite (old
//! defaults, fields a client could not have sent, the deprecated MacAddress
//! and interface sysctls moved to the endpoint). The rest is the engine's.

use std::collections::HashMap;

use berth_engine::ErrorKind;
use bollard_stubs::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigIsolationEnum, MountType,
};
use serde_json::Value;

use crate::error::ApiError;
use crate::json_body;
use crate::version::ApiVersion;

/// The fields of Go's `container.Config`, which the create request embeds:
/// a request naming none of them has no config at all.
const CONFIG_FIELDS: [&str; 25] = [
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

/// The endpoint driver option interface sysctls migrate to.
const ENDPOINT_SYSCTLS: &str = "com.docker.network.endpoint.sysctls";

/// A create request ready for the engine, and the warnings dockerd's
/// router adds to the engine's own.
#[derive(Debug)]
pub(super) struct CreateRequest {
    pub body: ContainerCreateBody,
    pub warnings: Vec<String>,
}

/// Decodes and rewrites a create body for a client at `v`.
pub(super) fn decode(bytes: &[u8], v: &ApiVersion) -> Result<CreateRequest, ApiError> {
    let raw: Value = json_body::decode(bytes)?;
    let empty_config =
        || ApiError::invalid("config cannot be empty in order to create a container");
    if raw.is_null() {
        // Go decodes `null` into nothing at all.
        return Err(empty_config());
    }
    let has_config = raw.as_object().is_some_and(|obj| {
        obj.keys()
            .any(|k| CONFIG_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(k)))
    });
    let mut body: ContainerCreateBody = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    if !has_config {
        return Err(empty_config());
    }
    if let Some(host) = body.host_config.as_mut() {
        if host.network_mode.as_deref().unwrap_or("").is_empty() {
            host.network_mode = Some("default".into());
        }
        validate(&body, host_of(&body))?;
    }
    // Only the old wire format still carries it.
    let legacy_mac = raw
        .get("MacAddress")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut warnings = Vec::new();
    rewrite_for_version(&mut body, v)?;
    if let Some(w) = migrate_mac_address(&mut body, &legacy_mac, v)? {
        warnings.push(w);
    }
    if let Some(w) = migrate_interface_sysctls(&mut body, v)? {
        warnings.push(w);
    }
    let host = body.host_config.get_or_insert_with(Default::default);
    if host.pids_limit.is_some_and(|n| n <= 0) {
        // 0 and every negative value mean "unlimited": no limit at all.
        host.pids_limit = None;
    }
    Ok(CreateRequest { body, warnings })
}

fn host_of(body: &ContainerCreateBody) -> &HostConfig {
    body.host_config.as_ref().expect("host config present")
}

/// Go's `container.NetworkMode` predicates on Linux.
mod netmode {
    pub fn is_container(m: &str) -> bool {
        m.split_once(':')
            .is_some_and(|(kind, _)| kind == "container")
    }
    pub fn is_user_defined(m: &str) -> bool {
        !matches!(m, "default" | "bridge" | "host" | "none") && !is_container(m)
    }
    /// Whether the container gets its own network namespace.
    pub fn is_private(m: &str) -> bool {
        m != "host" && !is_container(m)
    }
    /// The network a mode attaches to, as EndpointsConfig keys it.
    pub fn network_name(m: &str) -> String {
        if is_container(m) {
            "container".into()
        } else {
            m.to_string()
        }
    }
}

/// The request checks dockerd makes while decoding (runconfig): network
/// mode conflicts, isolation and QoS, with its messages.
fn validate(body: &ContainerCreateBody, host: &HostConfig) -> Result<(), ApiError> {
    let mode = host.network_mode.as_deref().unwrap_or("");
    let non_empty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let hostname = body.hostname.as_deref().unwrap_or("");
    if mode == "container" || netmode::is_container(mode) {
        let target = mode.split_once(':').map_or("", |(_, t)| t);
        let conflict = if target.is_empty() {
            Some("invalid network mode: invalid container format container:<name|id>")
        } else if !hostname.is_empty() {
            Some("conflicting options: hostname and the network mode")
        } else if non_empty(&host.links) {
            Some("conflicting options: container type network can't be used with links. This would result in undefined behavior")
        } else if non_empty(&host.dns) {
            Some("conflicting options: dns and the network mode")
        } else if non_empty(&host.extra_hosts) {
            Some("conflicting options: custom host-to-IP mapping and the network mode")
        } else if host.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
            || host.publish_all_ports.unwrap_or(false)
        {
            Some("conflicting options: port publishing and the container type network mode")
        } else if non_empty(&body.exposed_ports) {
            Some("conflicting options: port exposing and the container type network mode")
        } else {
            None
        };
        if let Some(msg) = conflict {
            return Err(ApiError::invalid(msg));
        }
    }
    if host.uts_mode.as_deref() == Some("host") && !hostname.is_empty() {
        return Err(ApiError::invalid(
            "conflicting options: hostname and the UTS mode",
        ));
    }
    if mode == "host" && non_empty(&host.links) {
        return Err(ApiError::invalid("conflicting options: host type networking can't be used with links. This would result in undefined behavior"));
    }
    if let Some(iso) = host.isolation {
        if !matches!(
            iso,
            HostConfigIsolationEnum::EMPTY | HostConfigIsolationEnum::DEFAULT
        ) {
            return Err(ApiError::invalid(format!(
                "invalid isolation ({iso}): linux only supports 'default'"
            )));
        }
    }
    if host.io_maximum_bandwidth.unwrap_or(0) != 0 {
        return Err(ApiError::invalid(
            "invalid option: QoS maximum bandwidth configuration is not supported on linux",
        ));
    }
    if host.io_maximum_iops.unwrap_or(0) != 0 {
        return Err(ApiError::invalid(
            "invalid option: QoS maximum IOPs configuration is not supported on linux",
        ));
    }
    Ok(())
}

/// Fields a client at `v` could not have meant, reset or refused as
/// dockerd does; `default` network mode resolved to `bridge`.
fn rewrite_for_version(body: &mut ContainerCreateBody, v: &ApiVersion) -> Result<(), ApiError> {
    let host = body.host_config.get_or_insert_with(Default::default);
    let endpoints = body
        .networking_config
        .get_or_insert_with(Default::default)
        .endpoints_config
        .get_or_insert_with(HashMap::new);
    if matches!(
        host.network_mode.as_deref(),
        None | Some("") | Some("default")
    ) {
        host.network_mode = Some("bridge".into());
        if let Some(ep) = endpoints.remove("default") {
            endpoints.insert("bridge".into(), ep);
        }
    }
    if v.lt("1.25") {
        // The client removed the container itself.
        host.auto_remove = Some(false);
    }
    let mounts = host.mounts.as_deref_mut().unwrap_or_default();
    if v.lt("1.40") {
        for m in mounts.iter_mut() {
            if let Some(bo) = m.bind_options.as_mut() {
                bo.non_recursive = None;
            }
        }
        if host.ipc_mode.as_deref().unwrap_or("").is_empty() {
            host.ipc_mode = Some("shareable".into());
        }
    }
    let mounts = host.mounts.as_deref_mut().unwrap_or_default();
    if v.lt("1.42") {
        for m in mounts.iter_mut() {
            if let Some(bo) = m.bind_options.as_mut() {
                bo.create_mountpoint = None;
            }
            // Invalid, but not refused before 1.42.
            if m.typ != Some(MountType::VOLUME) {
                m.volume_options = None;
            }
            if m.typ != Some(MountType::TMPFS) {
                m.tmpfs_options = None;
            }
        }
        host.console_size = Some(vec![0, 0]);
    } else {
        for m in mounts.iter() {
            let kind = m.typ.map(|t| t.to_string()).unwrap_or_default();
            let misplaced = if m.volume_options.is_some() && m.typ != Some(MountType::VOLUME) {
                Some("VolumeOptions")
            } else if m.bind_options.is_some() && m.typ != Some(MountType::BIND) {
                Some("BindOptions")
            } else if m.tmpfs_options.is_some() && m.typ != Some(MountType::TMPFS) {
                Some("TmpfsOptions")
            } else {
                None
            };
            if let Some(field) = misplaced {
                return Err(ApiError::invalid(format!(
                    "{field} must not be specified on mount type {kind:?}"
                )));
            }
        }
    }
    if v.lt("1.43") {
        host.annotations = None;
    }
    if v.lt("1.44") {
        if let Some(hc) = body.healthcheck.as_mut() {
            hc.start_interval = None;
        }
        let force_recursive = mounts.iter().any(|m| {
            m.typ == Some(MountType::BIND)
                && m.bind_options
                    .as_ref()
                    .is_some_and(|b| b.read_only_force_recursive == Some(true))
        });
        if force_recursive {
            return Err(ApiError::invalid(
                "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer",
            ));
        }
        if endpoints.len() > 1 {
            let mut names: Vec<&str> = endpoints.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(ApiError::invalid(format!(
                "Container cannot be created with multiple network endpoints: {}",
                names.join(", ")
            )));
        }
    }
    if v.lt("1.45")
        && mounts.iter().any(|m| {
            m.volume_options
                .as_ref()
                .and_then(|o| o.subpath.as_deref())
                .is_some_and(|s| !s.is_empty())
        })
    {
        return Err(ApiError::invalid(
            "VolumeOptions.Subpath needs API v1.45 or newer",
        ));
    }
    // Every version berth speaks predates 1.48: endpoints share one
    // priority and image mounts do not exist.
    for ep in endpoints.values_mut() {
        ep.gw_priority = None;
    }
    if mounts.iter().any(|m| m.typ == Some(MountType::IMAGE)) {
        return Err(ApiError::invalid(
            r#"Mount type "Image" needs API v1.48 or newer"#,
        ));
    }
    Ok(())
}

/// The endpoint settings that container-wide network options belong to:
/// the only one given, or a new one for the mode's network; from 1.44 it
/// must be keyed by the mode's network name.
fn endpoint_for_mode<'a>(
    v: &ApiVersion,
    mode: &str,
    endpoints: &'a mut HashMap<String, EndpointSettings>,
) -> Result<&'a mut EndpointSettings, ApiError> {
    let name = netmode::network_name(mode);
    if endpoints.is_empty() {
        return Ok(endpoints.entry(name).or_default());
    }
    if v.lt("1.44") {
        // Before 1.44 there is at most one endpoint, and it is the one.
        return Ok(endpoints.values_mut().next().expect("not empty"));
    }
    endpoints.get_mut(&name).ok_or_else(|| {
        ApiError::invalid(
            "HostConfig.NetworkMode must match the identity of a network in NetworkSettings.Networks",
        )
    })
}

fn mode_and_endpoints(
    body: &mut ContainerCreateBody,
) -> (String, &mut HashMap<String, EndpointSettings>) {
    let mode = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let endpoints = body
        .networking_config
        .get_or_insert_with(Default::default)
        .endpoints_config
        .get_or_insert_with(HashMap::new);
    (mode, endpoints)
}

/// The container-wide `MacAddress` (deprecated in 1.44) moves to the
/// endpoint of the container's network.
fn migrate_mac_address(
    body: &mut ContainerCreateBody,
    mac: &str,
    v: &ApiVersion,
) -> Result<Option<String>, ApiError> {
    let (mode, endpoints) = mode_and_endpoints(body);
    let bridge_or_user = mode == "bridge" || netmode::is_user_defined(&mode);
    if v.lt("1.44") {
        if mac.is_empty() {
            // Old clients could not set per-endpoint addresses.
            for ep in endpoints.values_mut() {
                ep.mac_address = None;
            }
            return Ok(None);
        }
        if !bridge_or_user {
            return Err(ApiError::invalid(
                "conflicting options: mac-address and the network mode",
            ));
        }
        endpoint_for_mode(v, &mode, endpoints)?.mac_address = Some(mac.to_string());
        return Ok(None);
    }
    if mac.is_empty() {
        return Ok(None);
    }
    if bridge_or_user {
        let ep = endpoint_for_mode(v, &mode, endpoints).map_err(|e| {
            e.context("unable to migrate container-wide MAC address to a specific network")
        })?;
        match ep.mac_address.as_deref() {
            None | Some("") => ep.mac_address = Some(mac.to_string()),
            Some(m) if m == mac => {}
            Some(_) => {
                return Err(ApiError::invalid("the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty"))
            }
        }
    }
    Ok(Some(
        "The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead."
            .to_string(),
    ))
}

/// `--sysctl net.*.*.eth0.*` cannot be applied before the interface exists;
/// dockerd (up to API 1.47) moves such settings to the primary endpoint's
/// driver options, with `IFNAME` for the interface.
fn migrate_interface_sysctls(
    body: &mut ContainerCreateBody,
    v: &ApiVersion,
) -> Result<Option<String>, ApiError> {
    let mode = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    if !netmode::is_private(&mode) {
        return Ok(None);
    }
    let sysctls = body
        .host_config
        .as_ref()
        .and_then(|h| h.sysctls.clone())
        .unwrap_or_default();
    // Go walks a map; sorting keeps the warning stable.
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    let mut moved = Vec::new();
    let mut settings = Vec::new();
    for key in keys {
        let parts: Vec<&str> = key.splitn(5, '.').collect();
        if parts.len() != 5 || parts[0] != "net" || !parts[3].starts_with("eth") {
            continue;
        }
        if parts[3] != "eth0" {
            // dockerd returns this one unclassified: a 500.
            return Err(ApiError::new(
                ErrorKind::Internal,
                format!("unable to determine network endpoint for sysctl {key}, use driver option '{ENDPOINT_SYSCTLS}' to set per-interface sysctls"),
            ));
        }
        moved.push(key.clone());
        settings.push(format!(
            "net.{}.{}.IFNAME.{}={}",
            parts[1], parts[2], parts[4], sysctls[key]
        ));
    }
    if moved.is_empty() {
        return Ok(None);
    }
    let (mode, endpoints) = mode_and_endpoints(body);
    let ep = endpoint_for_mode(v, &mode, endpoints)
        .map_err(|e| e.context(format!("unable to find a network for sysctl {}", moved[0])))?;
    let mut value = settings.join(",");
    let warning = format!(
        "Migrated sysctl {:?} to DriverOpts{{{:?}:{:?}}}.",
        moved.join(","),
        ENDPOINT_SYSCTLS,
        value
    );
    let opts = ep.driver_opts.get_or_insert_with(HashMap::new);
    if let Some(old) = opts.get(ENDPOINT_SYSCTLS) {
        // Settings already on the endpoint win: they come last.
        value = format!("{value},{old}");
    }
    opts.insert(ENDPOINT_SYSCTLS.to_string(), value);
    if let Some(all) = body.host_config.as_mut().and_then(|h| h.sysctls.as_mut()) {
        for key in &moved {
            all.remove(key);
        }
    }
    Ok(Some(warning))
}

/// Checks a `platform` query value's form (`os[/arch[/variant]]`). berth
/// runs only images for its own platform, so the value is not used further.
pub(super) fn check_platform(spec: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = spec.split('/').collect();
    let well_formed = parts.len() <= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        });
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{spec:?}: invalid platform specifier"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    /// What docker CLI 28.2 sends for `docker create --name foo -e A=b -v /x busybox echo hi`.
    const CLI_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=b"],"Cmd":["echo","hi"],"Image":"busybox","Volumes":{"/x":{}},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}"#;

    fn at(v: &str, body: Value) -> Result<CreateRequest, ApiError> {
        decode(body.to_string().as_bytes(), &ApiVersion::new(v))
    }

    #[test]
    fn decodes_what_the_docker_cli_sends() {
        let req = decode(CLI_BODY.as_bytes(), &ApiVersion::new("1.47")).unwrap();
        let host = req.body.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.pids_limit, None);
        let eps = req
            .body
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert!(eps.contains_key("bridge") && !eps.contains_key("default"));
        assert_eq!(
            req.body.cmd,
            Some(vec!["echo".to_string(), "hi".to_string()])
        );
        assert!(req.warnings.is_empty());
    }

    #[test]
    fn malformed_and_empty_bodies_get_dockerd_texts() {
        let msg = |b: &str| {
            decode(b.as_bytes(), &ApiVersion::newest())
                .unwrap_err()
                .message()
                .to_string()
        };
        assert_eq!(msg(""), "invalid JSON: got EOF while reading request body");
        assert_eq!(
            msg("{}"),
            "config cannot be empty in order to create a container"
        );
        assert_eq!(
            msg(r#"{"HostConfig":{}}"#),
            "config cannot be empty in order to create a container"
        );
        assert_eq!(
            msg("null"),
            "config cannot be empty in order to create a container"
        );
        assert!(msg(r#"{"Image":"x","Cmd":"ls"}"#).starts_with("invalid JSON: invalid type"));
        assert_eq!(msg(r#"{"Image":"x"} x"#), "unexpected content after JSON");
    }

    #[test]
    fn refuses_network_mode_conflicts() {
        let cases = [
            (
                json!({"Image": "x", "HostConfig": {"NetworkMode": "container:"}}),
                "invalid network mode: invalid container format container:<name|id>",
            ),
            (
                json!({"Image": "x", "Hostname": "h", "HostConfig": {"NetworkMode": "container:c"}}),
                "conflicting options: hostname and the network mode",
            ),
            (
                json!({"Image": "x", "HostConfig": {"NetworkMode": "container:c", "Dns": ["1.1.1.1"]}}),
                "conflicting options: dns and the network mode",
            ),
            (
                json!({"Image": "x", "Hostname": "h", "HostConfig": {"UTSMode": "host"}}),
                "conflicting options: hostname and the UTS mode",
            ),
            (
                json!({"Image": "x", "HostConfig": {"Isolation": "hyperv"}}),
                "invalid isolation (hyperv): linux only supports 'default'",
            ),
            (
                json!({"Image": "x", "HostConfig": {"IOMaximumBandwidth": 5}}),
                "invalid option: QoS maximum bandwidth configuration is not supported on linux",
            ),
        ];
        for (body, want) in cases {
            let err = at("1.47", body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert_eq!(err.message(), want);
        }
    }

    #[test]
    fn old_clients_get_old_defaults() {
        let req = at(
            "1.39",
            json!({"Image": "x", "HostConfig": {"AutoRemove": true,
                "Mounts": [{"Type": "bind", "Source": "/a", "Target": "/b",
                            "BindOptions": {"NonRecursive": true, "CreateMountpoint": true},
                            "TmpfsOptions": {"SizeBytes": 1}}]}}),
        )
        .unwrap();
        let host = req.body.host_config.unwrap();
        assert_eq!(host.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(host.console_size, Some(vec![0, 0]));
        let m = &host.mounts.unwrap()[0];
        let bo = m.bind_options.as_ref().unwrap();
        assert_eq!((bo.non_recursive, bo.create_mountpoint), (None, None));
        assert!(m.tmpfs_options.is_none());
        assert_eq!(
            at(
                "1.24",
                json!({"Image": "x", "HostConfig": {"AutoRemove": true}})
            )
            .unwrap()
            .body
            .host_config
            .unwrap()
            .auto_remove,
            Some(false)
        );
    }

    #[test]
    fn newer_fields_are_refused_or_dropped_by_version() {
        let misplaced = json!({"Image": "x", "HostConfig": {"Mounts": [
            {"Type": "bind", "Source": "/a", "Target": "/b", "VolumeOptions": {"NoCopy": true}}]}});
        assert_eq!(
            at("1.42", misplaced).unwrap_err().message(),
            r#"VolumeOptions must not be specified on mount type "bind""#
        );
        let subpath = json!({"Image": "x", "HostConfig": {"Mounts": [
            {"Type": "volume", "Source": "v", "Target": "/b", "VolumeOptions": {"Subpath": "s"}}]}});
        assert_eq!(
            at("1.44", subpath.clone()).unwrap_err().message(),
            "VolumeOptions.Subpath needs API v1.45 or newer"
        );
        assert!(at("1.45", subpath).is_ok());
        let image = json!({"Image": "x", "HostConfig": {"Mounts": [
            {"Type": "image", "Source": "i", "Target": "/b"}]}});
        assert_eq!(
            at("1.47", image).unwrap_err().message(),
            r#"Mount type "Image" needs API v1.48 or newer"#
        );
        let two =
            json!({"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"b": {}, "a": {}}}});
        assert_eq!(
            at("1.43", two.clone()).unwrap_err().message(),
            "Container cannot be created with multiple network endpoints: a, b"
        );
        let annotated = json!({"Image": "x", "HostConfig": {"Annotations": {"a": "b"}},
                               "Healthcheck": {"StartInterval": 5}});
        let req = at("1.42", annotated).unwrap();
        assert!(req.body.host_config.unwrap().annotations.is_none());
        assert!(req.body.healthcheck.unwrap().start_interval.is_none());
    }

    #[test]
    fn container_wide_mac_moves_to_the_endpoint() {
        let req = at(
            "1.43",
            json!({"Image": "x", "MacAddress": "02:42:ac:11:00:02"}),
        )
        .unwrap();
        let eps = req
            .body
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert_eq!(
            eps["bridge"].mac_address.as_deref(),
            Some("02:42:ac:11:00:02")
        );
        assert!(req.warnings.is_empty());

        let req = at(
            "1.44",
            json!({"Image": "x", "MacAddress": "02:42:ac:11:00:02"}),
        )
        .unwrap();
        assert_eq!(req.warnings.len(), 1);
        assert!(
            req.warnings[0].starts_with("The container-wide MacAddress field is now deprecated")
        );

        let err = at(
            "1.43",
            json!({"Image": "x", "MacAddress": "02:42:ac:11:00:02", "HostConfig": {"NetworkMode": "host"}}),
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "conflicting options: mac-address and the network mode"
        );

        // Old clients could not set endpoint addresses: they are dropped.
        let req = at(
            "1.43",
            json!({"Image": "x", "NetworkingConfig": {"EndpointsConfig":
            {"bridge": {"MacAddress": "02:00:00:00:00:01"}}}}),
        )
        .unwrap();
        let eps = req
            .body
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert_eq!(eps["bridge"].mac_address, None);
    }

    #[test]
    fn interface_sysctls_move_to_endpoint_options() {
        let req = at(
            "1.47",
            json!({"Image": "x", "HostConfig": {"Sysctls": {
                "net.ipv6.conf.eth0.accept_ra": "2", "net.ipv4.ip_forward": "1"}}}),
        )
        .unwrap();
        assert_eq!(
            req.warnings,
            vec![
                r#"Migrated sysctl "net.ipv6.conf.eth0.accept_ra" to DriverOpts{"com.docker.network.endpoint.sysctls":"net.ipv6.conf.IFNAME.accept_ra=2"}."#
            ]
        );
        let host = req.body.host_config.unwrap();
        let sysctls = host.sysctls.unwrap();
        assert_eq!(sysctls.len(), 1);
        assert!(sysctls.contains_key("net.ipv4.ip_forward"));
        let eps = req
            .body
            .networking_config
            .unwrap()
            .endpoints_config
            .unwrap();
        assert_eq!(
            eps["bridge"].driver_opts.as_ref().unwrap()[ENDPOINT_SYSCTLS],
            "net.ipv6.conf.IFNAME.accept_ra=2"
        );

        let err = at(
            "1.47",
            json!({"Image": "x", "HostConfig": {"Sysctls": {
            "net.ipv4.conf.eth1.rp_filter": "1"}}}),
        )
        .unwrap_err();
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // Host networking has no interface of its own to migrate to.
        assert!(at(
            "1.47",
            json!({"Image": "x", "HostConfig": {"NetworkMode": "host",
            "Sysctls": {"net.ipv4.conf.eth1.rp_filter": "1"}}})
        )
        .is_ok());
    }

    #[test]
    fn pids_limit_zero_or_negative_is_unlimited() {
        for n in [0, -1, -5] {
            let req = at(
                "1.47",
                json!({"Image": "x", "HostConfig": {"PidsLimit": n}}),
            )
            .unwrap();
            assert_eq!(req.body.host_config.unwrap().pids_limit, None);
        }
        let req = at(
            "1.47",
            json!({"Image": "x", "HostConfig": {"PidsLimit": 7}}),
        )
        .unwrap();
        assert_eq!(req.body.host_config.unwrap().pids_limit, Some(7));
    }

    #[test]
    fn platform_values_must_be_well_formed() {
        assert!(check_platform("linux").is_ok());
        assert!(check_platform("linux/amd64").is_ok());
        assert!(check_platform("linux/arm64/v8").is_ok());
        assert!(check_platform("linux//amd64").is_err());
        assert!(check_platform("a/b/c/d").is_err());
        assert!(check_platform("linux/am d64").is_err());
    }
}
