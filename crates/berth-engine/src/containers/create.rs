//! `docker create`: validating the request in dockerd's words, merging the
//! image's defaults into the container config, making the writable layer,
//! resolving binds, volumes and tmpfs mounts, and writing the files the
//! container gets bind-mounted (/etc/hostname, /etc/hosts, resolv.conf).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_storage::RwLayerOpts;
use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, ContainerCreateResponse, EventMessageTypeEnum,
    HostConfig, ImageConfig, MountType, RestartPolicyNameEnum, VolumeCreateRequest,
};

use super::record::{Container, ContainerPaths, MountRecord, RunState};
use super::store::{generate_name, validate_name, ContainerHandle};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// Splits a create body into the container config and host config.
fn split_body(body: ContainerCreateBody) -> (ContainerConfig, HostConfig) {
    let host = body.host_config.unwrap_or_default();
    let config = ContainerConfig {
        hostname: body.hostname,
        domainname: body.domainname,
        user: body.user,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports,
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: body.env,
        cmd: body.cmd,
        healthcheck: body.healthcheck,
        args_escaped: body.args_escaped,
        image: body.image,
        volumes: body.volumes,
        working_dir: body.working_dir,
        entrypoint: body.entrypoint,
        network_disabled: body.network_disabled,
        on_build: body.on_build,
        labels: body.labels,
        stop_signal: body.stop_signal,
        stop_timeout: body.stop_timeout,
        shell: body.shell,
    };
    (config, host)
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map_or(e, |(k, _)| k)
}

/// dockerd's merge of image defaults into a user config.
pub fn merge_image_config(user: &mut ContainerConfig, image: &ImageConfig) {
    if user.user.as_deref().unwrap_or("").is_empty() {
        user.user = image.user.clone();
    }
    if let Some(ports) = &image.exposed_ports {
        let mine = user.exposed_ports.get_or_insert_with(Vec::new);
        for p in ports {
            if !mine.contains(p) {
                mine.push(p.clone());
            }
        }
    }
    if let Some(env) = &image.env {
        let mine = user.env.get_or_insert_with(Vec::new);
        let keys: HashSet<String> = mine.iter().map(|e| env_key(e).to_string()).collect();
        let mut merged: Vec<String> = env
            .iter()
            .filter(|e| !keys.contains(env_key(e)))
            .cloned()
            .collect();
        merged.append(mine);
        *mine = merged;
    }
    if let Some(labels) = &image.labels {
        let mine = user.labels.get_or_insert_with(HashMap::new);
        for (k, v) in labels {
            mine.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let no_entrypoint = user.entrypoint.as_ref().is_none_or(|e| e.is_empty());
    if no_entrypoint {
        if user.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            user.cmd = image.cmd.clone();
            user.args_escaped = image.args_escaped;
        }
        if user.entrypoint.is_none() {
            user.entrypoint = image.entrypoint.clone();
        }
    }
    // `--entrypoint ""` arrives as [""]: an explicit empty entrypoint.
    if user
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty())
    {
        user.entrypoint = Some(Vec::new());
    }
    if user.working_dir.as_deref().unwrap_or("").is_empty() {
        user.working_dir = image.working_dir.clone();
    }
    if let Some(vols) = &image.volumes {
        let mine = user.volumes.get_or_insert_with(Vec::new);
        for v in vols {
            if !mine.contains(v) {
                mine.push(v.clone());
            }
        }
    }
    if user.stop_signal.is_none() {
        user.stop_signal = image.stop_signal.clone();
    }
    if user.healthcheck.is_none() {
        user.healthcheck = image.healthcheck.clone();
    }
    if user.on_build.as_ref().is_none_or(|o| o.is_empty()) {
        user.on_build = image.on_build.clone();
    }
    if user.shell.as_ref().is_none_or(|s| s.is_empty()) {
        user.shell = image.shell.clone();
    }
}

/// Checks resource and policy settings as dockerd does, with its messages.
pub fn validate_host_config(host: &HostConfig) -> Result<()> {
    let memory = host.memory.unwrap_or(0);
    if memory > 0 && memory < 6 * 1024 * 1024 {
        return Err(bad("Minimum memory limit allowed is 6MB"));
    }
    if memory < 0 {
        return Err(bad(format!("invalid memory limit: {memory}")));
    }
    if let Some(swap) = host.memory_swap.filter(|s| *s > 0) {
        if memory == 0 {
            return Err(bad(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        if swap < memory {
            return Err(bad(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if let Some(r) = host.memory_reservation.filter(|r| *r > 0) {
        if r < 6 * 1024 * 1024 {
            return Err(bad("Minimum memory reservation allowed is 6MB"));
        }
        if memory > 0 && r > memory {
            return Err(bad(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ));
        }
    }
    let nano = host.nano_cpus.unwrap_or(0);
    if nano != 0 {
        if host.cpu_period.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if host.cpu_quota.unwrap_or(0) > 0 {
            return Err(bad(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        if nano < 0 || nano > ncpu * 1_000_000_000 {
            return Err(bad(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    if let Some(p) = host.cpu_period.filter(|p| *p != 0) {
        if !(1000..=1_000_000).contains(&p) {
            return Err(bad(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ));
        }
    }
    if let Some(q) = host.cpu_quota.filter(|q| *q > 0) {
        if q < 1000 {
            return Err(bad("CPU cfs quota can not be less than 1ms (i.e. 1000)"));
        }
    }
    if host.cpu_shares.unwrap_or(0) < 0 {
        return Err(bad(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            host.cpu_shares.unwrap_or(0)
        )));
    }
    if let Some(cpus) = host.cpuset_cpus.as_deref().filter(|c| !c.is_empty()) {
        let available = host_cpuset("cpus");
        if !cpuset_available(cpus, available.as_deref())
            .map_err(|e| bad(format!("Invalid value {cpus} for cpuset cpus: {e}")))?
        {
            return Err(bad(format!(
                "Requested CPUs are not available - requested {cpus}, available: {}",
                available.unwrap_or_default()
            )));
        }
    }
    if let Some(mems) = host.cpuset_mems.as_deref().filter(|m| !m.is_empty()) {
        let available = host_cpuset("mems");
        if !cpuset_available(mems, available.as_deref())
            .map_err(|e| bad(format!("Invalid value {mems} for cpuset mems: {e}")))?
        {
            return Err(bad(format!(
                "Requested memory nodes are not available - requested {mems}, available: {}",
                available.unwrap_or_default()
            )));
        }
    }
    if host.shm_size.unwrap_or(0) < 0 {
        return Err(bad("SHM size can not be less than 0"));
    }
    if let Some(policy) = &host.restart_policy {
        let retries = policy.maximum_retry_count.unwrap_or(0);
        match policy.name {
            Some(RestartPolicyNameEnum::ON_FAILURE) if retries < 0 => {
                return Err(bad("maximum retry count cannot be negative"));
            }
            Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED)
                if retries != 0 =>
            {
                return Err(bad(format!(
                    "maximum retry count cannot be used with restart policy '{}'",
                    policy.name.map(|n| n.to_string()).unwrap_or_default()
                )));
            }
            _ => {}
        }
        let restarts = matches!(
            policy.name,
            Some(RestartPolicyNameEnum::ALWAYS)
                | Some(RestartPolicyNameEnum::UNLESS_STOPPED)
                | Some(RestartPolicyNameEnum::ON_FAILURE)
        );
        if restarts && host.auto_remove.unwrap_or(false) {
            return Err(bad(
                "can't create 'AutoRemove' container with restart policy",
            ));
        }
    }
    // Network modes naming networks are checked by `plan_networks`.
    if let Some(opts) = &host.storage_opt {
        for key in opts.keys() {
            if key != "size" {
                return Err(bad(format!("Unknown option {key}")));
            }
        }
    }
    Ok(())
}

/// The host's `cpuset.cpus` or `cpuset.mems` (`0-3,6`) from the root cpuset
/// cgroup, v1 or v2, as dockerd's sysinfo reads it; `None` when there is no
/// cpuset controller (dockerd then skips the check).
fn host_cpuset(what: &str) -> Option<String> {
    [
        format!("/sys/fs/cgroup/cpuset/cpuset.{what}"),
        format!("/sys/fs/cgroup/cpuset.{what}.effective"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

/// Whether every CPU (or memory node) in `requested` is in `available`;
/// `Err` with dockerd's words when `requested` does not parse.
fn cpuset_available(requested: &str, available: Option<&str>) -> std::result::Result<bool, String> {
    let have = available.map(|a| parse_uint_list(a, 0)).transpose()?;
    // dockerd's bound against `0-9223372036854775807` eating all memory.
    let max = have
        .as_ref()
        .and_then(|h| h.iter().max().copied())
        .unwrap_or(0)
        .max(8192);
    let want = parse_uint_list(requested, max)?;
    Ok(have.is_none_or(|have| want.is_subset(&have)))
}

/// dockerd's `parseUintList`: `7`, `1-6`, `0,3-4,7,8-10`; values above
/// `max` (when not 0) are refused.
fn parse_uint_list(
    s: &str,
    max: u64,
) -> std::result::Result<std::collections::BTreeSet<u64>, String> {
    let mut out = std::collections::BTreeSet::new();
    if s.is_empty() {
        return Ok(out);
    }
    let invalid = || format!("invalid format: {s}");
    let too_big = |v: u64| max != 0 && v > max;
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: u64 = lo.parse().map_err(|_| invalid())?;
        let hi: u64 = hi.parse().map_err(|_| invalid())?;
        if hi < lo {
            return Err(invalid());
        }
        if too_big(hi) {
            return Err(format!("value of out range, maximum is {max}"));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Parses `-v` bind/volume specs (`src:dst[:opts]`, `name:dst`, `/dst`).
fn parse_bind(spec: &str) -> Result<MountRecord> {
    let invalid = || bad(format!("invalid volume specification: '{spec}'"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(invalid()),
    };
    if !dst.starts_with('/') {
        return Err(bad(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"volume\": invalid mount path: '{dst}' mount path must be absolute"
        )));
    }
    let mut read_only = false;
    let mut propagation = String::new();
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "z" | "Z" | "nocopy" | "copy" => {}
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                propagation = opt.to_string()
            }
            _ => return Err(bad(format!("invalid mode: {opt}"))),
        }
    }
    let (kind, name, source) = if src.is_empty() {
        ("volume", None, PathBuf::new())
    } else if src.starts_with('/') {
        ("bind", None, PathBuf::from(src))
    } else {
        ("volume", Some(src.to_string()), PathBuf::new())
    };
    Ok(MountRecord {
        kind: kind.into(),
        name,
        source,
        destination: clean_dest(dst),
        read_only,
        mode: mode.to_string(),
        propagation: if kind == "bind" && propagation.is_empty() {
            "rprivate".into()
        } else {
            propagation
        },
        options: Vec::new(),
        anonymous: src.is_empty(),
    })
}

fn clean_dest(dst: &str) -> String {
    let cleaned =
        berth_storage::archive::beneath::clean_entry_path(Path::new(dst.trim_start_matches('/')))
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| dst.to_string());
    if cleaned == "/" {
        "/".into()
    } else {
        cleaned
    }
}

/// The mounts a container asks for, before volumes are made.
fn requested_mounts(config: &ContainerConfig, host: &HostConfig) -> Result<Vec<MountRecord>> {
    let mut out: Vec<MountRecord> = Vec::new();
    let push = |m: MountRecord, out: &mut Vec<MountRecord>| -> Result<()> {
        if m.destination == "/" {
            return Err(bad("invalid specification: destination can't be '/'"));
        }
        if out.iter().any(|o| o.destination == m.destination) {
            return Err(bad(format!("Duplicate mount point: {}", m.destination)));
        }
        out.push(m);
        Ok(())
    };
    for spec in host.binds.iter().flatten() {
        push(parse_bind(spec)?, &mut out)?;
    }
    for m in host.mounts.iter().flatten() {
        let target = m.target.clone().unwrap_or_default();
        if !target.starts_with('/') {
            return Err(bad(format!(
                "invalid mount config: invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        let source = m.source.clone().unwrap_or_default();
        let read_only = m.read_only.unwrap_or(false);
        let record = match m.typ {
            Some(MountType::BIND) => {
                if !Path::new(&source).exists() {
                    return Err(bad(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                    )));
                }
                MountRecord {
                    kind: "bind".into(),
                    name: None,
                    source: PathBuf::from(&source),
                    destination: clean_dest(&target),
                    read_only,
                    mode: String::new(),
                    propagation: m
                        .bind_options
                        .as_ref()
                        .and_then(|b| b.propagation.map(|p| p.to_string()))
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "rprivate".into()),
                    options: Vec::new(),
                    anonymous: false,
                }
            }
            Some(MountType::VOLUME) | None => MountRecord {
                kind: "volume".into(),
                name: (!source.is_empty()).then(|| source.clone()),
                source: PathBuf::new(),
                destination: clean_dest(&target),
                read_only,
                mode: String::new(),
                propagation: String::new(),
                options: Vec::new(),
                anonymous: source.is_empty(),
            },
            Some(MountType::TMPFS) => {
                let mut options = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(size) = t.size_bytes.filter(|s| *s > 0) {
                        options.push(format!("size={size}"));
                    }
                    if let Some(mode) = t.mode.filter(|m| *m > 0) {
                        options.push(format!("mode={mode:o}"));
                    }
                }
                MountRecord {
                    kind: "tmpfs".into(),
                    name: None,
                    source: PathBuf::new(),
                    destination: clean_dest(&target),
                    read_only,
                    mode: String::new(),
                    propagation: String::new(),
                    options,
                    anonymous: false,
                }
            }
            Some(other) => {
                return Err(bad(format!("mount type {other} is not supported")));
            }
        };
        push(record, &mut out)?;
    }
    for (dst, opts) in host.tmpfs.iter().flatten() {
        push(
            MountRecord {
                kind: "tmpfs".into(),
                name: None,
                source: PathBuf::new(),
                destination: clean_dest(dst),
                read_only: false,
                mode: String::new(),
                propagation: String::new(),
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_string)
                    .collect(),
                anonymous: false,
            },
            &mut out,
        )?;
    }
    // Image and `-v /path` volumes not covered by an explicit mount.
    for dst in config.volumes.iter().flatten() {
        let dst = clean_dest(dst);
        if out.iter().any(|o| o.destination == dst) {
            continue;
        }
        out.push(MountRecord {
            kind: "volume".into(),
            name: None,
            source: PathBuf::new(),
            destination: dst,
            read_only: false,
            mode: String::new(),
            propagation: String::new(),
            options: Vec::new(),
            anonymous: true,
        });
    }
    Ok(out)
}

/// dockerd's init layer: the mount points and placeholder files every
/// container gets, made where the image lacks them (never through a
/// symlink of the image: everything is resolved beneath the layer root),
/// owned by container root (`owner` on the host under `--userns-remap`).
fn fill_init_layer(root: &Path, owner: (u32, u32)) -> berth_storage::Result<()> {
    use berth_storage::archive::beneath::{ensure_dir, open_dir, open_root, split_leaf};
    use rustix::fs::{AtFlags, Mode, OFlags};
    let rootfd = open_root(root)?;
    let exists = |rel: &str| -> berth_storage::Result<bool> {
        let (parent, name) = split_leaf(Path::new(rel));
        Ok(match open_dir(&rootfd, parent)? {
            Some(dir) => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok(),
            None => false,
        })
    };
    let mut made: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["dev/pts", "dev/shm", "proc", "sys", "etc"] {
        if !exists(dir)? {
            ensure_dir(&rootfd, Path::new(dir), |p| {
                made.push(p.to_path_buf());
                Ok(())
            })?;
        }
    }
    for file in [
        ".dockerenv",
        "etc/resolv.conf",
        "etc/hosts",
        "etc/hostname",
        "dev/console",
    ] {
        if exists(file)? {
            continue;
        }
        let (parent, name) = split_leaf(Path::new(file));
        let dir = ensure_dir(&rootfd, parent, |p| {
            made.push(p.to_path_buf());
            Ok(())
        })?;
        made.push(Path::new(file).to_path_buf());
        rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o755),
        )
        .map_err(|e| berth_storage::StorageError::io(format!("init layer {file}"), e.into()))?;
    }
    if !exists("etc/mtab")? {
        let dir = ensure_dir(&rootfd, Path::new("etc"), |_| Ok(()))?;
        rustix::fs::symlinkat("/proc/mounts", &dir, "mtab")
            .map_err(|e| berth_storage::StorageError::io("init layer etc/mtab", e.into()))?;
        made.push("etc/mtab".into());
    }
    if owner != (0, 0) {
        for rel in &made {
            let (parent, name) = split_leaf(rel);
            if let Some(dir) = open_dir(&rootfd, parent)? {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(owner.0)),
                    Some(rustix::fs::Gid::from_raw(owner.1)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| {
                    berth_storage::StorageError::io(format!("init layer {rel:?}"), e.into())
                })?;
            }
        }
    }
    Ok(())
}

/// The lines of the host's resolv.conf a private-network container gets:
/// loopback nameservers cannot be reached from its namespace.
fn resolv_conf_for(host_network: bool) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if host_network {
        return host;
    }
    host.lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn hosts_for(host_network: bool, hostname: &str) -> String {
    if host_network {
        return std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    }
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

impl Engine {
    /// The body of `create_container`.
    pub(crate) async fn create_container_impl(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let networking = body.networking_config.clone();
        let (mut config, host) = split_body(body);
        let image_name = config.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(bad("Config cannot be empty in order to create a container"));
        }
        let image = self.images.resolve(&image_name)?;
        validate_host_config(&host)?;
        super::health::validate(config.healthcheck.as_ref())?;
        let networks = self.plan_networks(&host, networking.as_ref())?;
        crate::runtime::spec::check_isolation(&host, &self.security)?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => validate_name(&n)?,
            None => format!("/{}", generate_name(&self.containers)),
        };
        if let Some(owner) = self.containers.name_owner(&name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"{name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        if let Some(img_cfg) = &image.config.config {
            merge_image_config(&mut config, img_cfg);
        }
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(bad("No command specified"));
        }
        let runtime = host
            .runtime
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| self.config.default_runtime.clone());
        if !self.config.runtimes.contains_key(&runtime) {
            return Err(bad(format!("unknown or invalid runtime name: {runtime}")));
        }
        let id = berth_storage::random_id();
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(if host.network_mode.as_deref() == Some("host") {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            } else {
                id[..12].to_string()
            });
        }
        let mounts = requested_mounts(&config, &host)?;
        let size = match host.storage_opt.as_ref().and_then(|o| o.get("size")) {
            Some(s) => Some(berth_storage::drivers::parse_size(s)?),
            None => None,
        };
        let paths = ContainerPaths::new(&self.config.data_root, &id);
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| EngineError::io(format!("create {}", paths.dir.display()), e))?;
        let engine = Arc::clone(self);
        let top = image.top_layer.clone();
        let layer_id = id.clone();
        let made = tokio::task::spawn_blocking(move || {
            let owner = engine.layers.id_map().root();
            engine.layers.create_rw_with_init(
                &layer_id,
                top.as_deref(),
                &RwLayerOpts { size },
                Some(&|root: &Path| fill_init_layer(root, owner)),
            )
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&paths.dir);
            return Err(e.into());
        }
        let container = Container {
            id: id.clone(),
            name,
            created: chrono::Utc::now(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config: host,
            image_id: image.id.clone(),
            state: RunState::default(),
            restart_count: 0,
            mounts,
            manually_stopped: false,
            has_been_started: false,
            runtime,
        };
        let engine = Arc::clone(self);
        let (result, container) = tokio::task::spawn_blocking(move || {
            let mut container = container;
            let result = engine.finish_create(&mut container, &paths);
            (result, container)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        if let Err(e) = result {
            self.discard_container(&container).await;
            return Err(e);
        }
        if let Err(e) = self.adopt_networks(&container.id, networks) {
            self.discard_container(&container).await;
            return Err(e);
        }
        let handle = ContainerHandle::new(container.clone());
        if let Err(e) = self.containers.insert(handle) {
            self.discard_container(&container).await;
            return Err(e);
        }
        let mut attrs = container.config.labels.clone().unwrap_or_default();
        attrs.insert("image".into(), image_name);
        attrs.insert("name".into(), container.short_name().to_string());
        self.events
            .publish(EventMessageTypeEnum::CONTAINER, "create", &id, attrs);
        Ok(ContainerCreateResponse {
            id,
            warnings: Vec::new(),
        })
    }

    /// Volumes, bind checks, the /etc files, and the record on disk.
    fn finish_create(&self, c: &mut Container, paths: &ContainerPaths) -> Result<()> {
        for m in c.mounts.iter_mut() {
            match m.kind.as_str() {
                "volume" => match m.name.clone() {
                    Some(name) => m.source = self.volume_acquire(&name, &c.id)?,
                    None => {
                        let v = self.volume_acquire_new(VolumeCreateRequest::default(), &c.id)?;
                        m.source = PathBuf::from(&v.mountpoint);
                        m.name = Some(v.name);
                    }
                },
                // `-v /host/path:/dst` creates a missing source, as dockerd does.
                "bind" if !m.source.exists() => {
                    std::fs::create_dir_all(&m.source).map_err(|e| {
                        bad(format!(
                            "error while creating mount source path '{}': {e}",
                            m.source.display()
                        ))
                    })?;
                }
                _ => {}
            }
        }
        let host_net = c.host_config.network_mode.as_deref() == Some("host");
        let hostname = c.config.hostname.clone().unwrap_or_default();
        let write = |p: PathBuf, data: String| {
            std::fs::write(&p, data)
                .map_err(|e| EngineError::io(format!("write {}", p.display()), e))
        };
        write(paths.hostname(), format!("{hostname}\n"))?;
        write(paths.hosts(), hosts_for(host_net, &hostname))?;
        write(paths.resolv_conf(), resolv_conf_for(host_net))?;
        write(paths.log(&c.id), String::new())?;
        self.copy_up_volumes(c)?;
        c.save(&self.config.data_root)
    }

    /// dockerd fills a new, empty volume with what the image has at its
    /// mount point when the container is created.
    fn copy_up_volumes(&self, c: &Container) -> Result<()> {
        let wanted: Vec<_> = c
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.mode.split(',').any(|o| o == "nocopy"))
            .filter_map(|m| m.name.as_ref().map(|n| (n, &m.destination)))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rootfs = self.layers.mount_rw(&c.id)?;
        let result = wanted
            .iter()
            .try_for_each(|(name, dest)| self.volume_copy_up(name, &rootfs, dest));
        self.layers.unmount_rw(&c.id)?;
        result
    }

    /// Undoes a half-made container: volumes, layer, files.
    pub(crate) async fn discard_container(self: &Arc<Self>, c: &Container) {
        self.forget_networks(&c.id).await;
        for m in &c.mounts {
            if let (Some(name), "volume") = (&m.name, m.kind.as_str()) {
                if !m.source.as_os_str().is_empty() {
                    let _ = self.volume_release(name, &c.id);
                    if m.anonymous {
                        let _ = self.remove_volume(name, true).await;
                    }
                }
            }
        }
        let engine = Arc::clone(self);
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || engine.layers.remove_rw(&id)).await;
        let _ = std::fs::remove_dir_all(ContainerPaths::new(&self.config.data_root, &c.id).dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_like_dockerd() {
        let image = ImageConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            working_dir: Some("/w".into()),
            ..Default::default()
        };
        let mut user = ContainerConfig {
            env: Some(vec!["A=user".into()]),
            ..Default::default()
        };
        merge_image_config(&mut user, &image);
        assert_eq!(user.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            user.env,
            Some(vec!["PATH=/bin".to_string(), "A=user".to_string()])
        );
        assert_eq!(user.working_dir.as_deref(), Some("/w"));
        let mut user = ContainerConfig {
            entrypoint: Some(vec!["echo".into()]),
            ..Default::default()
        };
        merge_image_config(&mut user, &image);
        assert_eq!(
            user.cmd, None,
            "an entrypoint without cmd does not inherit the image cmd"
        );
    }

    #[test]
    fn validates_resources_in_dockerd_words() {
        let h = HostConfig {
            memory: Some(1024),
            ..Default::default()
        };
        assert_eq!(
            validate_host_config(&h).unwrap_err().to_string(),
            "Minimum memory limit allowed is 6MB"
        );
        let h = HostConfig {
            nano_cpus: Some(1_000_000_000_000),
            ..Default::default()
        };
        assert!(validate_host_config(&h)
            .unwrap_err()
            .to_string()
            .starts_with("Range of CPUs"));
        assert_eq!(cpuset_available("0-1,3", Some("0-3")), Ok(true));
        assert_eq!(cpuset_available("4", Some("0-3")), Ok(false));
        assert_eq!(cpuset_available("4", None), Ok(true));
        assert_eq!(
            cpuset_available("1-0", Some("0-3")),
            Err("invalid format: 1-0".to_string())
        );
        assert_eq!(
            cpuset_available("0-9223372036854775807", Some("0-3")),
            Err("value of out range, maximum is 8192".to_string())
        );
    }

    #[test]
    fn parses_binds() {
        let m = parse_bind("/src:/dst:ro").unwrap();
        assert_eq!((m.kind.as_str(), m.read_only), ("bind", true));
        let m = parse_bind("data:/dst").unwrap();
        assert_eq!(m.name.as_deref(), Some("data"));
        let m = parse_bind("/anon").unwrap();
        assert!(m.anonymous);
        assert!(parse_bind("rel:dst").is_err());
    }
}
