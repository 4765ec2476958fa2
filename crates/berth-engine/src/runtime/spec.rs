//! Docker's container configuration turned into an OCI runtime spec: the
//! process (args, env, user resolved in the image's /etc/passwd, cwd,
//! capabilities, rlimits, TTY), mounts (the defaults dockerd gives every
//! container plus binds, volumes and tmpfs), namespaces, cgroup limits,
//! and the isolation dockerd adds: masked/read-only paths, seccomp,
//! AppArmor, no-new-privileges and the remapped user namespace.

mod caps;
mod mounts;
mod namespaces;
mod resources;
mod rootfs;
pub mod seccomp;
pub mod security_opt;
mod user;
mod userns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, ExecConfig, HostConfig};
use oci_spec::runtime::{Box as ConsoleBox, BoxBuilder, Linux, Process, Root, Spec};

use namespaces::NsMode;

use crate::error::{EngineError, Result};
use crate::security::{apparmor, DaemonSeccomp, SecurityPolicy};

/// What kind of mount a [`MountSpec`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

/// A mount the containers module resolved (binds checked, volumes
/// created, anonymous volumes made) for the spec to include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path (ignored for tmpfs).
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: String,
    pub read_only: bool,
    /// Extra mount options (`size=64m`, `mode=1777` for tmpfs...).
    pub options: Vec<String>,
    /// `rprivate`, `rshared`, ... (binds only).
    pub propagation: Option<String>,
}

/// How the container is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// The host's network namespace (`--network host`).
    Host,
    /// A private namespace with loopback only (`none`, and for now `bridge`).
    Private,
    /// Join an existing namespace at this path (`container:<id>` and later
    /// bridge networking).
    Path(PathBuf),
}

/// Everything the spec is built from.
#[derive(Debug, Clone)]
pub struct SpecInputs<'a> {
    /// The 64-hex container ID (names the cgroup: `/berth/<id>`).
    pub id: &'a str,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The container config, already merged with the image's defaults.
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    pub mounts: &'a [MountSpec],
    /// Host files bind-mounted over /etc/hosts, /etc/resolv.conf, /etc/hostname.
    pub hosts_path: &'a Path,
    pub resolv_conf_path: &'a Path,
    pub hostname_path: &'a Path,
    pub network: NetworkMode,
    /// The init binary for `--init` (mounted at /sbin/docker-init). Used
    /// when `HostConfig.Init` is true, or unset and this is given (the
    /// daemon-wide `--init`); `Init: false` always wins.
    pub init_binary: Option<&'a Path>,
    /// The daemon's isolation policy (seccomp, AppArmor, no-new-privileges,
    /// user namespace remapping).
    pub security: &'a SecurityPolicy,
}

/// The OCI runtime-spec version berth writes (what runc 1.1 and crun 1.8
/// implement).
const OCI_VERSION: &str = "1.0.2";
/// dockerd's PATH for containers whose config has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The cgroup parent of containers unless HostConfig.CgroupParent says.
const CGROUP_PARENT: &str = "/berth";

const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn spec_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("spec: {e}"))
}

/// The create-time checks dockerd makes of a container's isolation
/// settings: `SecurityOpt` is well formed, and nothing conflicts with the
/// daemon's user namespace remapping.
pub fn check_isolation(hc: &HostConfig, policy: &SecurityPolicy) -> Result<()> {
    let security = security_opt::parse(hc.security_opt.as_deref().unwrap_or(&[]))?;
    if policy.userns.is_some() && !userns::wants_host(hc)? {
        userns::check(hc)?;
        if security.writable_cgroups.is_some() {
            return Err(EngineError::InvalidParameter(
                "option WritableCgroups conflicts with user namespaces and rootless mode".into(),
            ));
        }
    }
    Ok(())
}

/// `--network container:NAME`.
fn shares_netns(hc: &HostConfig) -> bool {
    hc.network_mode
        .as_deref()
        .is_some_and(|m| m.starts_with("container:"))
}

/// Whether the container runs in a remapped user namespace
/// (`--userns-remap` on, and no `--userns=host`).
pub fn is_remapped(hc: &HostConfig, policy: &SecurityPolicy) -> bool {
    policy.userns.is_some() && !userns::wants_host(hc).unwrap_or(false)
}

/// Whether containers get a cgroup namespace of their own unless they ask
/// otherwise (cgroup v2, as dockerd decides); `docker info` says
/// `name=cgroupns` then.
pub fn private_cgroupns_by_default() -> bool {
    namespaces::cgroup_unified()
}

/// Docker's env merge: an override `K=V` replaces `K`, a bare `K` removes
/// it, anything else is appended in order.
pub fn replace_or_append_env(mut base: Vec<String>, overrides: &[String]) -> Vec<String> {
    let index: HashMap<String, usize> = base
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string(),
                i,
            )
        })
        .collect();
    let mut removed = vec![false; base.len()];
    for o in overrides {
        match o.split_once('=') {
            None => {
                if let Some(&i) = index.get(o) {
                    removed[i] = true;
                }
            }
            Some((k, _)) => match index.get(k) {
                Some(&i) => {
                    base[i] = o.clone();
                    removed[i] = false;
                }
                None => base.push(o.clone()),
            },
        }
    }
    let mut i = 0;
    base.retain(|_| {
        let keep = !removed.get(i).copied().unwrap_or(false);
        i += 1;
        keep
    });
    base
}

/// Masked paths: dockerd's list plus the thermal-throttle files of every
/// possible CPU.
fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    for range in possible.trim().split(',').filter(|r| !r.is_empty()) {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            continue;
        };
        for cpu in a..=b {
            let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
            if Path::new(&p).exists() {
                paths.push(p);
            }
        }
    }
    paths
}

fn console_size(size: Option<&Vec<usize>>) -> Result<Option<ConsoleBox>> {
    match size.map(|v| v.as_slice()) {
        Some([h, w]) if *h > 0 && *w > 0 => BoxBuilder::default()
            .height(*h as u64)
            .width(*w as u64)
            .build()
            .map(Some)
            .map_err(spec_err),
        _ => Ok(None),
    }
}

/// The container's seccomp filter, chosen as dockerd chooses: the
/// container's `seccomp=` option, else the daemon's profile; nothing for
/// `unconfined`, and for `--privileged` unless it names a profile itself.
fn seccomp_filter(
    asked: Option<&str>,
    policy: &SecurityPolicy,
    privileged: bool,
    bounding: &[String],
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>> {
    let host = seccomp::Host::current();
    let resolve = |json: &str| -> Result<_> { Ok(seccomp::resolve(json, bounding, &host)?) };
    if asked == Some("unconfined") {
        return Ok(None);
    }
    if privileged {
        return match asked {
            None => Ok(None),
            Some("builtin") => resolve(seccomp::DEFAULT_PROFILE),
            Some(json) => resolve(json),
        };
    }
    if !policy.seccomp_supported {
        if asked.is_some_and(|p| p != "builtin") {
            return Err(EngineError::InvalidParameter(
                "seccomp is not enabled in your kernel, cannot run a custom seccomp profile".into(),
            ));
        }
        tracing::warn!(
            "seccomp is not enabled in your kernel, running container without default profile"
        );
        return Ok(None);
    }
    match (asked, &policy.seccomp) {
        (Some("builtin"), _) | (None, DaemonSeccomp::Builtin) => resolve(seccomp::DEFAULT_PROFILE),
        (Some(json), _) => resolve(json),
        (None, DaemonSeccomp::Custom { json, .. }) => resolve(json),
        (None, DaemonSeccomp::Unconfined) => Ok(None),
    }
}

/// The AppArmor profile of the container's processes, where AppArmor is
/// on: the one asked for, else `unconfined` for `--privileged`, else
/// `berth-default` (loaded again if something unloaded it).
fn apparmor_profile(
    asked: Option<&str>,
    policy: &SecurityPolicy,
    privileged: bool,
) -> Result<Option<String>> {
    if !policy.apparmor {
        return Ok(None);
    }
    let profile = match asked {
        Some(p) if !p.is_empty() => p,
        _ if privileged => apparmor::UNCONFINED,
        _ => apparmor::DEFAULT_PROFILE,
    };
    if profile == apparmor::DEFAULT_PROFILE {
        apparmor::ensure_default_loaded()?;
    }
    Ok(Some(profile.to_string()))
}

/// Builds the OCI spec of a container's init process.
pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec> {
    let c = inputs.config;
    let hc = inputs.host_config;
    let privileged = hc.privileged.unwrap_or(false);
    let tty = c.tty.unwrap_or(false);

    let modes = namespaces::modes(hc)?;
    check_isolation(hc, inputs.security)?;
    let security = security_opt::parse(hc.security_opt.as_deref().unwrap_or(&[]))?;
    let remap = match &inputs.security.userns {
        Some(r) if !userns::wants_host(hc)? => Some(&r.ids),
        _ => None,
    };
    // The owner of what the spec creates in the rootfs (the working dir).
    let root_owner = remap.map_or((0, 0), |ids| ids.root());

    let mut args: Vec<String> = c.entrypoint.iter().flatten().cloned().collect();
    args.extend(c.cmd.iter().flatten().cloned());
    if args.is_empty() {
        return Err(EngineError::InvalidParameter("No command specified".into()));
    }
    // An init only makes sense as PID 1 of the container's own namespace.
    let want_init = hc.init.unwrap_or(inputs.init_binary.is_some()) && modes.pid == NsMode::Private;
    let init = match (want_init, inputs.init_binary) {
        (false, _) => None,
        (true, Some(b)) => Some(b),
        (true, None) => {
            return Err(EngineError::InvalidParameter(
                "--init requested but no init binary is configured".into(),
            ))
        }
    };
    if init.is_some() {
        args.splice(0..0, [mounts::INIT_PATH.to_string(), "--".to_string()]);
    }

    let hostname = match c.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => inputs.id.chars().take(12).collect(),
    };
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    let env = replace_or_append_env(env, c.env.as_deref().unwrap_or(&[]));

    let cwd = match c.working_dir.as_deref() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    };
    if !cwd.starts_with('/') {
        return Err(EngineError::InvalidParameter(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    if cwd != "/" {
        rootfs::create_dir_all(inputs.rootfs, &cwd, root_owner)
            .map_err(|e| EngineError::InvalidParameter(format!("Cannot mkdir: {cwd}: {e}")))?;
    }

    let user = user::lookup(
        inputs.rootfs,
        c.user.as_deref().unwrap_or(""),
        hc.group_add.as_deref().unwrap_or(&[]),
    )?;
    let capabilities = caps::tweak(
        hc.cap_add.as_deref().unwrap_or(&[]),
        hc.cap_drop.as_deref().unwrap_or(&[]),
        privileged,
        &caps::available(),
    )?;

    let mut process = Process::default();
    // Every field is set: Process's Default is a template (rlimits,
    // no_new_privileges, capabilities) that must not leak in.
    process.set_terminal(Some(tty));
    process.set_console_size(if tty {
        console_size(hc.console_size.as_ref())?
    } else {
        None
    });
    process.set_user(user);
    process.set_args(Some(args));
    process.set_command_line(None);
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(&cwd));
    process.set_capabilities(Some(caps::to_oci(&capabilities)?));
    let rlimits = resources::rlimits(hc)?;
    process.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    let nnp = security
        .no_new_privileges
        .unwrap_or(inputs.security.no_new_privileges);
    process.set_no_new_privileges(nnp.then_some(true));
    process.set_apparmor_profile(apparmor_profile(
        security.apparmor.as_deref(),
        inputs.security,
        privileged,
    )?);
    process.set_oom_score_adj(Some(hc.oom_score_adj.unwrap_or(0) as i32));
    process.set_selinux_label(None);
    process.set_io_priority(None);
    process.set_scheduler(None);
    process.set_exec_cpu_affinity(None);

    let mut namespaces = namespaces::list(&modes, &inputs.network, hc.cgroupns_mode)?;
    if remap.is_some() {
        let mut user = oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::User);
        // Sharing another container's network namespace means sharing its
        // user namespace too, which owns it, as in dockerd.
        let shared_net = hc
            .network_mode
            .as_deref()
            .is_some_and(|m| m.starts_with("container:"));
        if let (true, NetworkMode::Path(net)) = (shared_net, &inputs.network) {
            if let Some(ns_dir) = net.parent().filter(|_| net.ends_with("ns/net")) {
                user = user.path(ns_dir.join("user"));
            }
        }
        namespaces.push(user.build().map_err(spec_err)?);
    }

    let (mount_table, rootfs_propagation) = mounts::build(&mounts::MountInputs {
        user: inputs.mounts,
        tmpfs: hc.tmpfs.as_ref(),
        network_files: [
            (inputs.hosts_path, "/etc/hosts"),
            (inputs.resolv_conf_path, "/etc/resolv.conf"),
            (inputs.hostname_path, "/etc/hostname"),
        ],
        shm_size: hc
            .shm_size
            .filter(|s| *s > 0)
            .unwrap_or(mounts::DEFAULT_SHM_SIZE),
        ipc_none: modes.ipc == NsMode::None,
        readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
        privileged,
        // A remapped root cannot remount the cgroup tree read-only, so
        // dockerd leaves it writable there.
        writable_cgroups: remap.is_some() || security.writable_cgroups.unwrap_or(privileged),
        init,
    })?;
    let mut mount_table = mount_table;
    if remap.is_some() && inputs.network != NetworkMode::Private && !shares_netns(hc) {
        // A remapped root may mount sysfs only in a network namespace its
        // user namespace owns. Bridge containers get theirs from runc and
        // sharers join the owner's user namespace, so this is a fallback
        // for any other namespace joined by path: /sys is bound from the
        // host instead, read-only — what runc 1.2 does itself when the
        // sysfs mount is refused.
        for m in mount_table.iter_mut() {
            if m.destination() == Path::new("/sys") && m.typ().as_deref() == Some("sysfs") {
                m.set_typ(Some("bind".into()));
                m.set_source(Some("/sys".into()));
                m.set_options(Some(
                    ["rbind", "nosuid", "noexec", "nodev", "ro"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
        }
    }
    if remap.is_some() {
        // runc binds these from inside the new user namespace, where the
        // source mount's locked flags cannot be dropped: repeat them.
        for m in mount_table.iter_mut() {
            if m.typ().as_deref() != Some("bind") {
                continue;
            }
            let Some(source) = m.source().clone() else {
                continue;
            };
            let mut opts = m.options().clone().unwrap_or_default();
            for flag in userns::locked_flags(&source) {
                if !opts.contains(&flag) {
                    opts.push(flag);
                }
            }
            m.set_options(Some(opts));
        }
    }

    let (devices, device_rules) = resources::devices(hc)?;
    let mut sysctl: HashMap<String, String> = HashMap::new();
    // dockerd's "private" network modes: anything but the host's or
    // another container's namespace — the bridge sandbox berthd makes and
    // the container joins by path included.
    let mode = hc.network_mode.as_deref().unwrap_or("");
    let own_netns = inputs.network != NetworkMode::Host
        && mode != "host"
        && !mode.starts_with("container:")
        // A remapped root cannot write the sysctls of a namespace berthd
        // made outside its user namespace (the bridge sandbox).
        && !(remap.is_some() && inputs.network != NetworkMode::Private);
    if own_netns {
        // dockerd's defaults for a namespace of the container's own: ping
        // and low ports without capabilities (ping sockets cannot be set
        // up from a remapped user namespace).
        if remap.is_none() && Path::new("/proc/sys/net/ipv4/ping_group_range").exists() {
            sysctl.insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
        }
        if Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start").exists() {
            sysctl.insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
        }
    }
    sysctl.extend(hc.sysctls.clone().unwrap_or_default());

    let cgroup_parent = hc
        .cgroup_parent
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(CGROUP_PARENT);
    let (masked, readonly) = if privileged {
        (None, None)
    } else {
        (
            Some(masked_paths()),
            Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()),
        )
    };

    // Linux's Default is a template too: every field is set.
    let mut linux = Linux::default();
    linux.set_net_devices(None);
    match remap {
        Some(ids) => {
            let (uids, gids) = userns::mappings(ids)?;
            linux.set_uid_mappings(Some(uids));
            linux.set_gid_mappings(Some(gids));
        }
        None => {
            linux.set_uid_mappings(None);
            linux.set_gid_mappings(None);
        }
    }
    linux.set_sysctl((!sysctl.is_empty()).then_some(sysctl));
    linux.set_resources(Some(resources::resources(hc, device_rules)?));
    linux.set_cgroups_path(Some(Path::new(cgroup_parent).join(inputs.id)));
    linux.set_namespaces(Some(namespaces));
    linux.set_devices((!devices.is_empty()).then_some(devices));
    linux.set_seccomp(seccomp_filter(
        security.seccomp.as_deref(),
        inputs.security,
        privileged,
        &capabilities,
    )?);
    linux.set_rootfs_propagation(rootfs_propagation);
    linux.set_masked_paths(hc.masked_paths.clone().or(masked));
    linux.set_readonly_paths(hc.readonly_paths.clone().or(readonly));
    linux.set_mount_label(None);
    linux.set_intel_rdt(None);
    linux.set_memory_policy(None);
    linux.set_personality(None);
    linux.set_time_offsets(None);

    let mut root = Root::default();
    root.set_path(inputs.rootfs.to_path_buf());
    root.set_readonly(Some(hc.readonly_rootfs.unwrap_or(false)));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mount_table));
    spec.set_process(Some(process));
    let (hostname, domainname) = if modes.uts == NsMode::Private {
        (
            Some(hostname),
            c.domainname.clone().filter(|d| !d.is_empty()),
        )
    } else {
        (None, None)
    };
    spec.set_hostname(hostname);
    spec.set_domainname(domainname);
    spec.set_hooks(None);
    spec.set_annotations(hc.annotations.clone().filter(|a| !a.is_empty()));
    spec.set_linux(Some(linux));
    spec.set_solaris(None);
    spec.set_windows(None);
    spec.set_vm(None);
    spec.set_zos(None);
    spec.set_uid_mappings(None);
    spec.set_gid_mappings(None);
    Ok(spec)
}

/// Builds the process of an exec in a container created from `container`
/// (user resolved against `rootfs`).
///
/// It starts from the container's own process (rlimits, capabilities,
/// OOM score, user), as dockerd does, then applies the exec's command,
/// TTY, environment, working directory, user and `--privileged`.
pub fn exec_process(container: &Spec, rootfs: &Path, exec: &ExecConfig) -> Result<Process> {
    let mut p = container
        .process()
        .clone()
        .ok_or_else(|| EngineError::Internal("the container's spec has no process".into()))?;
    let cmd = exec.cmd.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err(EngineError::InvalidParameter(
            "No exec command specified".into(),
        ));
    }
    let container_tty = p.terminal().unwrap_or(false);
    let tty = exec.tty.unwrap_or(false);
    p.set_args(Some(cmd));
    p.set_terminal(Some(tty));
    p.set_console_size(if tty {
        console_size(exec.console_size.as_ref())?
    } else {
        None
    });

    // The container's environment minus what dockerd adds for the
    // container's TTY, plus what it adds for the exec's.
    let mut env = p.env().clone().unwrap_or_default();
    if container_tty && !tty {
        env.retain(|e| e != "TERM=xterm");
    }
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    p.set_env(Some(replace_or_append_env(
        env,
        exec.env.as_deref().unwrap_or(&[]),
    )));

    if let Some(w) = exec.working_dir.as_deref().filter(|w| !w.is_empty()) {
        if !w.starts_with('/') {
            return Err(EngineError::InvalidParameter(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        p.set_cwd(PathBuf::from(w));
    }
    if let Some(u) = exec.user.as_deref().filter(|u| !u.is_empty()) {
        p.set_user(user::lookup(rootfs, u, &[])?);
    }
    if exec.privileged.unwrap_or(false) {
        let all: Vec<String> = caps::available().iter().map(|s| s.to_string()).collect();
        p.set_capabilities(Some(caps::to_oci(&all)?));
        // The AppArmor profile stays the container's: dockerd's
        // `exec --privileged` does not lift it either.
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("etc")).unwrap();
            std::fs::write(
                dir.path().join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nweb:x:33:33:web:/var/www:/bin/false\n",
            )
            .unwrap();
            std::fs::write(
                dir.path().join("etc/group"),
                "root:x:0:\nweb:x:33:\nadm:x:4:web\n",
            )
            .unwrap();
            Fixture { dir }
        }

        fn build(
            &self,
            config: &ContainerConfig,
            hc: &HostConfig,
            network: NetworkMode,
        ) -> Result<Spec> {
            let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
            build(&SpecInputs {
                id,
                rootfs: self.dir.path(),
                config,
                host_config: hc,
                mounts: &[],
                hosts_path: Path::new("/x/hosts"),
                resolv_conf_path: Path::new("/x/resolv.conf"),
                hostname_path: Path::new("/x/hostname"),
                network,
                init_binary: None,
                security: &SecurityPolicy::default(),
            })
        }
    }

    fn cfg(cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn ns_types(s: &Spec) -> Vec<LinuxNamespaceType> {
        s.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn env_merge_follows_docker() {
        let base = vec![
            "PATH=/a".to_string(),
            "HOSTNAME=h".to_string(),
            "X=1".to_string(),
        ];
        let o = ["PATH=/b", "X", "Y=2", "Y=3"].map(String::from);
        assert_eq!(
            replace_or_append_env(base, &o),
            vec!["PATH=/b", "HOSTNAME=h", "Y=2", "Y=3"]
        );
    }

    #[test]
    fn a_plain_container() {
        let f = Fixture::new();
        let mut c = cfg(&["sh", "-c", "true"]);
        c.entrypoint = Some(vec!["/entry".into()]);
        c.env = Some(vec!["FOO=bar".into()]);
        c.tty = Some(true);
        c.working_dir = Some("/work/dir".into());
        c.user = Some("web".into());
        let s = f
            .build(&c, &HostConfig::default(), NetworkMode::Private)
            .unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/entry", "sh", "-c", "true"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &[
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=0123456789ab".to_string(),
                "TERM=xterm".to_string(),
                "FOO=bar".to_string()
            ]
        );
        assert_eq!(p.cwd(), Path::new("/work/dir"));
        assert!(f.dir.path().join("work/dir").is_dir());
        assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[33, 4][..]));
        assert_eq!(
            p.capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len(),
            14
        );
        assert!(p.rlimits().is_none());
        assert_eq!(p.no_new_privileges(), None);
        assert_eq!(p.oom_score_adj(), Some(0));
        assert_eq!(s.hostname().as_deref(), Some("0123456789ab"));
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new(
                "/berth/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ))
        );
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert_eq!(linux.readonly_paths().as_ref().unwrap().len(), 5);
        let ns = ns_types(&s);
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
        ] {
            assert!(ns.contains(&t), "{t:?} missing");
        }
        assert_eq!(
            ns.contains(&LinuxNamespaceType::Cgroup),
            namespaces::cgroup_unified()
        );
        assert_eq!(s.root().as_ref().unwrap().path(), f.dir.path());
        // It serializes to what runc reads.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ociVersion"], "1.0.2");
        assert!(json["process"]["capabilities"].get("inheritable").is_none());
    }

    #[test]
    fn host_modes_privileged_and_limits() {
        let f = Fixture::new();
        let hc = HostConfig {
            privileged: Some(true),
            pid_mode: Some("host".into()),
            ipc_mode: Some("host".into()),
            uts_mode: Some("host".into()),
            init: Some(true),
            memory: Some(32 << 20),
            ulimits: Some(vec![bollard_stubs::models::ResourcesUlimits {
                name: Some("nproc".into()),
                soft: Some(10),
                hard: Some(20),
            }]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        };
        // --init is dropped for a host PID namespace, so no binary needed.
        let s = f.build(&cfg(&["true"]), &hc, NetworkMode::Host).unwrap();
        assert_eq!(ns_types(&s), vec![LinuxNamespaceType::Mount]);
        assert_eq!(s.hostname(), &None);
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["true"]);
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.rlimits().as_ref().unwrap().len(), 1);
        assert!(
            p.capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len()
                > 14
        );
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
        assert_eq!(
            linux
                .resources()
                .as_ref()
                .unwrap()
                .memory()
                .unwrap()
                .limit(),
            Some(32 << 20)
        );

        let joined = f
            .build(
                &cfg(&["true"]),
                &HostConfig::default(),
                NetworkMode::Path("/proc/1/ns/net".into()),
            )
            .unwrap();
        let net = joined
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()[1]
            .clone();
        assert_eq!(net.typ(), LinuxNamespaceType::Network);
        assert_eq!(net.path().as_deref(), Some(Path::new("/proc/1/ns/net")));
        // A bridge sandbox joined by path is still the container's own
        // namespace: dockerd's sysctls apply; another container's is not.
        let sysctl = |s: &Spec| {
            s.linux()
                .as_ref()
                .unwrap()
                .sysctl()
                .clone()
                .unwrap_or_default()
        };
        if Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start").exists() {
            assert!(sysctl(&joined).contains_key("net.ipv4.ip_unprivileged_port_start"));
        }
        let shared = f
            .build(
                &cfg(&["true"]),
                &HostConfig {
                    network_mode: Some("container:abc".into()),
                    ..Default::default()
                },
                NetworkMode::Path("/proc/1/ns/net".into()),
            )
            .unwrap();
        assert!(sysctl(&shared).is_empty());
    }

    #[test]
    fn init_and_bad_input() {
        let f = Fixture::new();
        let hc = HostConfig {
            init: Some(true),
            ..Default::default()
        };
        assert_eq!(
            f.build(&cfg(&["true"]), &hc, NetworkMode::Private)
                .unwrap_err()
                .kind(),
            crate::error::ErrorKind::InvalidParameter
        );
        let mut c = cfg(&["true"]);
        c.user = Some("nobody".into());
        assert!(f
            .build(&c, &HostConfig::default(), NetworkMode::Private)
            .is_err());
        assert!(f
            .build(&cfg(&[]), &HostConfig::default(), NetworkMode::Private)
            .is_err());
        let hc = HostConfig {
            cap_add: Some(vec!["NOT_A_CAP".into()]),
            ..Default::default()
        };
        assert!(f.build(&cfg(&["true"]), &hc, NetworkMode::Private).is_err());
        let hc = HostConfig {
            ipc_mode: Some("container:abc".into()),
            ..Default::default()
        };
        assert_eq!(
            f.build(&cfg(&["true"]), &hc, NetworkMode::Private)
                .unwrap_err()
                .kind(),
            crate::error::ErrorKind::NotImplemented
        );

        let init = Path::new("/usr/bin/tini");
        let s = build(&SpecInputs {
            id: "abc",
            rootfs: f.dir.path(),
            config: &cfg(&["sleep", "1"]),
            host_config: &HostConfig::default(),
            mounts: &[],
            hosts_path: Path::new("/x/hosts"),
            resolv_conf_path: Path::new("/x/resolv.conf"),
            hostname_path: Path::new("/x/hostname"),
            network: NetworkMode::Private,
            init_binary: Some(init),
            security: &SecurityPolicy::default(),
        })
        .unwrap();
        assert_eq!(
            s.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["/sbin/docker-init", "--", "sleep", "1"]
        );
    }

    fn build_with(
        f: &Fixture,
        hc: &HostConfig,
        network: NetworkMode,
        policy: &SecurityPolicy,
    ) -> Result<Spec> {
        build(&SpecInputs {
            id: "abc",
            rootfs: f.dir.path(),
            config: &cfg(&["true"]),
            host_config: hc,
            mounts: &[],
            hosts_path: Path::new("/x/hosts"),
            resolv_conf_path: Path::new("/x/resolv.conf"),
            hostname_path: Path::new("/x/hostname"),
            network,
            init_binary: None,
            security: policy,
        })
    }

    fn opts(v: &[&str]) -> HostConfig {
        HostConfig {
            security_opt: Some(v.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn seccomp_and_no_new_privileges_follow_dockerd() {
        let f = Fixture::new();
        let builtin = SecurityPolicy::default();
        let seccomp = |s: &Spec| s.linux().as_ref().unwrap().seccomp().clone();
        let nnp = |s: &Spec| s.process().as_ref().unwrap().no_new_privileges();
        let plain = build_with(&f, &HostConfig::default(), NetworkMode::Private, &builtin).unwrap();
        let filter = seccomp(&plain).expect("default profile");
        assert_eq!(
            filter.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        assert_eq!(nnp(&plain), None);
        let unconfined = build_with(
            &f,
            &opts(&["seccomp=unconfined"]),
            NetworkMode::Private,
            &builtin,
        )
        .unwrap();
        assert!(seccomp(&unconfined).is_none());
        let privileged = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        assert!(
            seccomp(&build_with(&f, &privileged, NetworkMode::Private, &builtin).unwrap())
                .is_none()
        );
        let privileged_builtin = HostConfig {
            privileged: Some(true),
            ..opts(&["seccomp=builtin"])
        };
        assert!(seccomp(
            &build_with(&f, &privileged_builtin, NetworkMode::Private, &builtin).unwrap()
        )
        .is_some());

        // The daemon's choices, and a container overriding them.
        let daemon = SecurityPolicy {
            seccomp: DaemonSeccomp::Unconfined,
            no_new_privileges: true,
            ..SecurityPolicy::default()
        };
        let s = build_with(&f, &HostConfig::default(), NetworkMode::Private, &daemon).unwrap();
        assert!(seccomp(&s).is_none());
        assert_eq!(nnp(&s), Some(true));
        let s = build_with(
            &f,
            &opts(&["seccomp=builtin", "no-new-privileges=false"]),
            NetworkMode::Private,
            &daemon,
        )
        .unwrap();
        assert!(seccomp(&s).is_some());
        assert_eq!(nnp(&s), None);
        let custom = SecurityPolicy {
            seccomp: DaemonSeccomp::Custom {
                path: "/p.json".into(),
                json: r#"{"defaultAction":"SCMP_ACT_LOG"}"#.into(),
            },
            ..SecurityPolicy::default()
        };
        let s = build_with(&f, &HostConfig::default(), NetworkMode::Private, &custom).unwrap();
        assert_eq!(
            seccomp(&s).unwrap().default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActLog
        );
        assert!(build_with(&f, &opts(&["seccomp={"]), NetworkMode::Private, &builtin).is_err());
        // AppArmor is left out where the host does not enforce it.
        assert_eq!(plain.process().as_ref().unwrap().apparmor_profile(), &None);
    }

    #[test]
    fn remapped_containers_get_a_user_namespace() {
        let f = Fixture::new();
        let policy = SecurityPolicy {
            userns: Some(crate::security::userns::Remap {
                user: "berthremap".into(),
                group: "berthremap".into(),
                ids: berth_storage::IdMap::stacked(&[(100_000, 65_536)], &[(200_000, 65_536)]),
            }),
            ..SecurityPolicy::default()
        };
        let s = build_with(
            &f,
            &HostConfig::default(),
            NetworkMode::Path("/run/netns/x".into()),
            &policy,
        )
        .unwrap();
        assert!(ns_types(&s).contains(&LinuxNamespaceType::User));
        let linux = s.linux().as_ref().unwrap();
        let uids = linux.uid_mappings().as_ref().unwrap();
        assert_eq!((uids[0].host_id(), uids[0].size()), (100_000, 65_536));
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 200_000);
        // No net sysctls in a namespace the remapped root does not own,
        // /sys bound instead of mounted, the cgroup tree writable.
        assert!(linux.sysctl().is_none());
        let mounts = s.mounts().as_ref().unwrap();
        let sys = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        let cgroup = mounts
            .iter()
            .find(|m| m.typ().as_deref() == Some("cgroup"))
            .unwrap();
        assert!(!cgroup
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        // --userns=host opts out; privileged without it is refused.
        let host = HostConfig {
            userns_mode: Some("host".into()),
            privileged: Some(true),
            ..Default::default()
        };
        let s = build_with(&f, &host, NetworkMode::Private, &policy).unwrap();
        assert!(!ns_types(&s).contains(&LinuxNamespaceType::User));
        let privileged = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        assert!(build_with(&f, &privileged, NetworkMode::Private, &policy).is_err());
        assert!(check_isolation(&privileged, &policy).is_err());
        assert!(check_isolation(&privileged, &SecurityPolicy::default()).is_ok());
    }

    #[test]
    fn exec_inherits_and_overrides() {
        let f = Fixture::new();
        let mut c = cfg(&["sleep", "100"]);
        c.tty = Some(true);
        c.env = Some(vec!["A=1".into()]);
        c.working_dir = Some("/srv".into());
        let s = f
            .build(&c, &HostConfig::default(), NetworkMode::Private)
            .unwrap();
        let e = ExecConfig {
            cmd: Some(vec!["id".into()]),
            env: Some(vec!["B=2".into()]),
            user: Some("web".into()),
            privileged: Some(true),
            ..Default::default()
        };
        let p = exec_process(&s, f.dir.path(), &e).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["id"]);
        assert_eq!(p.terminal(), Some(false));
        let env = p.env().as_ref().unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.contains(&"B=2".to_string()));
        assert!(!env.contains(&"TERM=xterm".to_string()));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!(p.user().uid(), 33);
        assert!(
            p.capabilities()
                .as_ref()
                .unwrap()
                .bounding()
                .as_ref()
                .unwrap()
                .len()
                > 14
        );
        assert!(exec_process(&s, f.dir.path(), &ExecConfig::default()).is_err());
    }
}
