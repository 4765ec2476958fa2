//! `docker version` and `docker info`: what the engine reports about
//! itself (version, persistent engine ID, storage driver) and the host
//! (kernel, OS, CPUs, memory, cgroup version and controllers, runc).
//! Host facts are read fresh on each call; none of this is cached state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use bollard_stubs::models::{
    Commit, LocalNodeState, PluginsInfo, Runtime, SwarmInfo, SystemInfo,
    SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum, SystemVersion,
    SystemVersionComponents, SystemVersionPlatform,
};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Where the engine ID lives under the data root.
const ENGINE_ID_FILE: &str = "engine-id";

/// Serialises first-time creation of the engine ID within the process
/// (berthd's pidfile and socket keep other processes off the data root).
static ENGINE_ID_CREATION: Mutex<()> = Mutex::new(());

/// The runtime berth runs containers with by default.
const DEFAULT_RUNTIME: &str = "runc";

impl Engine {
    /// The `GET /version` body.
    pub fn version(&self) -> SystemVersion {
        let kernel = uname_field(|u| u.release());
        let arch = go_arch();
        let details: HashMap<String, String> = [
            ("ApiVersion", crate::API_VERSION),
            ("MinAPIVersion", crate::MIN_API_VERSION),
            ("GitCommit", GIT_COMMIT),
            // The docker CLI prints this key under "Go version"; berth is
            // not written in Go.
            ("GoVersion", "n/a (rust)"),
            ("Os", "linux"),
            ("Arch", arch),
            ("BuildTime", BUILD_TIME),
            ("KernelVersion", kernel.as_str()),
            ("Experimental", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut components = vec![SystemVersionComponents {
            name: "Engine".to_string(),
            version: crate::VERSION.to_string(),
            details: Some(details),
        }];
        if let Some(runc) = runtime_version(DEFAULT_RUNTIME) {
            components.push(SystemVersionComponents {
                name: DEFAULT_RUNTIME.to_string(),
                version: runc.version,
                details: Some(HashMap::from([("GitCommit".to_string(), runc.commit)])),
            });
        }
        SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: "berth".to_string(),
            }),
            components: Some(components),
            version: Some(crate::VERSION.to_string()),
            api_version: Some(crate::API_VERSION.to_string()),
            min_api_version: Some(crate::MIN_API_VERSION.to_string()),
            git_commit: Some(GIT_COMMIT.to_string()),
            go_version: Some("n/a (rust)".to_string()),
            os: Some("linux".to_string()),
            arch: Some(arch.to_string()),
            kernel_version: Some(kernel),
            experimental: None,
            build_time: Some(BUILD_TIME.to_string()),
        }
    }

    /// The `GET /info` body. Blocking: reads /proc and /sys and runs the
    /// default runtime's `--version`.
    pub fn info(&self) -> SystemInfo {
        let cgroups = CgroupSupport::probe(Path::new("/sys/fs/cgroup"));
        let ipv4_forwarding = read_trimmed("/proc/sys/net/ipv4/ip_forward").as_deref() == Some("1");
        let os_release = OsRelease::read(Path::new("/etc/os-release"));
        let id = self.engine_id().unwrap_or_else(|e| {
            tracing::warn!("engine ID: {e}");
            String::new()
        });
        let runc_commit = runtime_version(DEFAULT_RUNTIME)
            .map(|v| v.commit)
            .unwrap_or_else(|| "N/A".to_string());
        let settings = self.settings();
        let mut warnings = cgroups.warnings();
        if !ipv4_forwarding {
            warnings.push("WARNING: IPv4 forwarding is disabled".to_string());
        }
        // The storage driver's own (devicemapper on loop files, for one).
        warnings.extend(self.driver.warnings());
        // dockerd's counting: by state string, restarting ones as stopped.
        let (mut running, mut paused, mut stopped) = (0i64, 0i64, 0i64);
        for h in self.containers.all() {
            match h.lock().state.status {
                crate::containers::record::Status::Running => running += 1,
                crate::containers::record::Status::Paused => paused += 1,
                _ => stopped += 1,
            }
        }
        warnings.extend(self.security.warnings());
        SystemInfo {
            id: Some(id),
            containers: Some(running + paused + stopped),
            containers_running: Some(running),
            containers_paused: Some(paused),
            containers_stopped: Some(stopped),
            images: Some(self.image_count() as i64),
            driver: Some(self.driver.name().to_string()),
            driver_status: Some(
                self.driver
                    .status()
                    .into_iter()
                    .map(|(k, v)| vec![k, v])
                    .collect(),
            ),
            docker_root_dir: Some(self.config.data_root.display().to_string()),
            plugins: Some(PluginsInfo {
                volume: Some(vec!["local".to_string()]),
                network: Some(vec![
                    "bridge".to_string(),
                    "host".to_string(),
                    "null".to_string(),
                ]),
                authorization: None,
                log: Some(vec!["json-file".to_string()]),
            }),
            memory_limit: Some(cgroups.memory),
            swap_limit: Some(cgroups.swap),
            cpu_cfs_period: Some(cgroups.cpu_cfs),
            cpu_cfs_quota: Some(cgroups.cpu_cfs),
            cpu_shares: Some(cgroups.cpu_shares),
            cpu_set: Some(cgroups.cpuset),
            pids_limit: Some(cgroups.pids),
            oom_kill_disable: Some(cgroups.oom_kill_disable),
            ipv4_forwarding: Some(ipv4_forwarding),
            debug: Some(settings.debug),
            nfd: Some(open_fds()),
            n_goroutines: Some(async_tasks()),
            system_time: Some(
                chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            logging_driver: Some("json-file".to_string()),
            cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
            cgroup_version: Some(if cgroups.unified {
                SystemInfoCgroupVersionEnum::_2
            } else {
                SystemInfoCgroupVersionEnum::_1
            }),
            n_events_listener: Some(self.events.listener_count() as i64),
            kernel_version: Some(uname_field(|u| u.release())),
            operating_system: Some(os_release.pretty_name),
            os_version: Some(os_release.version_id),
            os_type: Some("linux".to_string()),
            architecture: Some(uname_field(|u| u.machine())),
            ncpu: Some(
                std::thread::available_parallelism()
                    .map(|n| n.get() as i64)
                    .unwrap_or(1),
            ),
            mem_total: Some(mem_total().unwrap_or(0)),
            index_server_address: Some("https://index.docker.io/v1/".to_string()),
            registry_config: Some(self.distribution.registries().service_config()),
            generic_resources: None,
            http_proxy: Some(mask_credentials(&proxy_env("HTTP_PROXY"))),
            https_proxy: Some(mask_credentials(&proxy_env("HTTPS_PROXY"))),
            no_proxy: Some(proxy_env("NO_PROXY")),
            name: Some(uname_field(|u| u.nodename())),
            labels: Some(settings.labels),
            experimental_build: Some(false),
            server_version: Some(crate::VERSION.to_string()),
            runtimes: Some(HashMap::from([(
                DEFAULT_RUNTIME.to_string(),
                Runtime {
                    path: Some(DEFAULT_RUNTIME.to_string()),
                    ..Default::default()
                },
            )])),
            default_runtime: Some(DEFAULT_RUNTIME.to_string()),
            swarm: Some(SwarmInfo {
                node_id: Some(String::new()),
                node_addr: Some(String::new()),
                local_node_state: Some(LocalNodeState::INACTIVE),
                control_available: Some(false),
                error: Some(String::new()),
                remote_managers: None,
                ..Default::default()
            }),
            live_restore_enabled: Some(false),
            isolation: None,
            init_binary: Some(String::new()),
            containerd_commit: Some(Commit {
                id: Some("N/A".to_string()),
            }),
            runc_commit: Some(Commit {
                id: Some(runc_commit),
            }),
            init_commit: Some(Commit {
                id: Some("N/A".to_string()),
            }),
            security_options: Some(
                self.security
                    .security_options(crate::runtime::spec::private_cgroupns_by_default()),
            ),
            warnings: Some(warnings),
            cdi_spec_dirs: Some(Vec::new()),
            ..Default::default()
        }
    }

    /// The engine's persistent ID (`docker info` ID), created on first use
    /// under the data root so it survives restarts.
    pub fn engine_id(&self) -> Result<String> {
        let path = self.config.data_root.join(ENGINE_ID_FILE);
        if let Some(id) = read_engine_id(&path) {
            return Ok(id);
        }
        let _guard = ENGINE_ID_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = read_engine_id(&path) {
            return Ok(id);
        }
        let id = new_uuid()?;
        berth_storage::atomic::write_file(&path, format!("{id}\n").as_bytes())?;
        Ok(id)
    }
}

/// Build identification, when the build passes it in the environment.
const GIT_COMMIT: &str = match option_env!("BERTH_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
const BUILD_TIME: &str = match option_env!("BERTH_BUILD_TIME") {
    Some(t) => t,
    None => "unknown",
};

/// An ID file is valid when it holds one short printable token; anything
/// else (torn write from an old crash, hand edits) is replaced.
fn read_engine_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    let valid = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b':');
    valid.then(|| id.to_string())
}

/// A random (version 4) UUID, the form dockerd's engine IDs take.
fn new_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| EngineError::Internal(format!("generate engine ID: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn uname_field(f: impl Fn(&rustix::system::Uname) -> &std::ffi::CStr) -> String {
    f(&rustix::system::uname()).to_string_lossy().into_owned()
}

/// The architecture in Go's spelling, as Docker clients expect (`amd64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `PRETTY_NAME` and `VERSION_ID` of /etc/os-release.
#[derive(Debug, Default, PartialEq, Eq)]
struct OsRelease {
    pretty_name: String,
    version_id: String,
}

impl OsRelease {
    fn read(path: &Path) -> OsRelease {
        std::fs::read_to_string(path)
            .map(|t| OsRelease::parse(&t))
            .unwrap_or_else(|_| OsRelease {
                pretty_name: "Linux".to_string(),
                version_id: String::new(),
            })
    }

    fn parse(text: &str) -> OsRelease {
        let mut out = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .to_string();
            match key.trim() {
                "PRETTY_NAME" => out.pretty_name = value,
                "VERSION_ID" => out.version_id = value,
                _ => {}
            }
        }
        if out.pretty_name.is_empty() {
            out.pretty_name = "Linux".to_string();
        }
        out
    }
}

/// MemTotal of /proc/meminfo in bytes.
fn mem_total() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(-1)
}

/// Live async tasks: the closest thing berth has to dockerd's goroutine
/// count, which `docker info` prints in debug mode.
fn async_tasks() -> i64 {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks() as i64)
        .unwrap_or(0)
}

/// What the kernel's cgroups let berth limit, as `docker info` reports it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct CgroupSupport {
    /// cgroup v2 mounted at the root (not the v1 + empty v2 hybrid).
    unified: bool,
    memory: bool,
    swap: bool,
    oom_kill_disable: bool,
    cpu_cfs: bool,
    cpu_shares: bool,
    cpuset: bool,
    pids: bool,
    blkio_throttle: bool,
}

const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

impl CgroupSupport {
    fn probe(root: &Path) -> CgroupSupport {
        let unified = rustix::fs::statfs(root)
            .map(|st| st.f_type as u64 == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        if unified {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            CgroupSupport {
                unified,
                memory: has("memory"),
                swap: has("memory"),
                // v2 has no per-cgroup OOM-kill switch.
                oom_kill_disable: false,
                cpu_cfs: has("cpu"),
                cpu_shares: has("cpu"),
                cpuset: has("cpuset"),
                pids: has("pids"),
                blkio_throttle: has("io"),
            }
        } else {
            let exists = |p: &str| root.join(p).exists();
            CgroupSupport {
                unified,
                memory: exists("memory/memory.limit_in_bytes"),
                swap: exists("memory/memory.memsw.limit_in_bytes"),
                oom_kill_disable: exists("memory/memory.oom_control"),
                cpu_cfs: exists("cpu/cpu.cfs_period_us") && exists("cpu/cpu.cfs_quota_us"),
                cpu_shares: exists("cpu/cpu.shares"),
                cpuset: exists("cpuset/cpuset.cpus"),
                pids: exists("pids"),
                blkio_throttle: exists("blkio/blkio.throttle.read_bps_device")
                    && exists("blkio/blkio.throttle.write_bps_device"),
            }
        }
    }

    /// The warnings dockerd prints for missing cgroup features.
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut warn = |ok: bool, what: &str| {
            if !ok {
                w.push(format!("WARNING: No {what} support"));
            }
        };
        warn(self.memory, "memory limit");
        warn(self.swap, "swap limit");
        if !self.unified {
            warn(self.oom_kill_disable, "oom kill disable");
        }
        warn(self.cpu_cfs, "cpu cfs quota");
        warn(self.cpu_cfs, "cpu cfs period");
        warn(self.cpu_shares, "cpu shares");
        warn(self.cpuset, "cpuset");
        if self.unified {
            warn(self.blkio_throttle, "io.max (rbps)");
            warn(self.blkio_throttle, "io.max (wbps)");
        } else {
            warn(self.blkio_throttle, "blkio throttle.read_bps_device");
            warn(self.blkio_throttle, "blkio throttle.write_bps_device");
        }
        w
    }
}

/// `runc --version` as dockerd parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RuntimeVersion {
    version: String,
    commit: String,
}

fn runtime_version(binary: &str) -> Option<RuntimeVersion> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_runtime_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_runtime_version(text: &str) -> Option<RuntimeVersion> {
    let mut version = String::new();
    let mut commit = String::new();
    for line in text.trim().lines() {
        if let Some(rest) = line.strip_prefix("commit:") {
            commit = rest.trim().to_string();
        } else if let Some((_, v)) = line.rsplit_once("version") {
            if version.is_empty() {
                version = v.trim().to_string();
            }
        }
    }
    (!version.is_empty() || !commit.is_empty()).then_some(RuntimeVersion { version, commit })
}

/// A proxy variable, upper case first, as dockerd reads them.
fn proxy_env(name: &str) -> String {
    std::env::var(name)
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// Hides the user and password of a proxy URL (`http://xxxxx:xxxxx@host`).
fn mask_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://xxxxx:xxxxx@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            OsRelease::parse(text),
            OsRelease {
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                version_id: "12".into()
            }
        );
        assert_eq!(OsRelease::parse("ID=x\n").pretty_name, "Linux");
    }

    #[test]
    fn parses_meminfo() {
        assert_eq!(
            parse_mem_total("MemTotal:       24683636 kB\nMemFree: 1 kB\n"),
            Some(24683636 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn parses_runc_version() {
        let out =
            "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8\n";
        assert_eq!(
            parse_runtime_version(out),
            Some(RuntimeVersion {
                version: "1.1.5+ds1".into(),
                commit: "1.1.5+ds1-1+deb12u1".into()
            })
        );
        assert_eq!(parse_runtime_version("garbage"), None);
    }

    #[test]
    fn masks_proxy_credentials() {
        assert_eq!(
            mask_credentials("http://user:pw@proxy:3128/x"),
            "http://xxxxx:xxxxx@proxy:3128/x"
        );
        assert_eq!(mask_credentials("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_credentials(""), "");
    }

    #[test]
    fn uuid_is_version_4() {
        let id = new_uuid().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(new_uuid().unwrap(), id);
    }

    #[test]
    fn v1_hierarchy_is_probed_by_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "memory/memory.limit_in_bytes",
            "memory/memory.oom_control",
            "cpu/cpu.shares",
            "pids/x",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let s = CgroupSupport::probe(dir.path());
        assert!(!s.unified && s.memory && !s.swap && s.cpu_shares && s.pids && !s.cpu_cfs);
        let w = s.warnings();
        assert!(w.contains(&"WARNING: No swap limit support".to_string()));
        assert!(w.contains(&"WARNING: No cpu cfs quota support".to_string()));
        assert!(!w.contains(&"WARNING: No memory limit support".to_string()));
    }

    #[test]
    fn engine_id_is_read_back_or_replaced_when_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENGINE_ID_FILE);
        assert_eq!(read_engine_id(&path), None);
        std::fs::write(&path, "abc-123\n").unwrap();
        assert_eq!(read_engine_id(&path).as_deref(), Some("abc-123"));
        std::fs::write(&path, "\0\0\0").unwrap();
        assert_eq!(read_engine_id(&path), None);
    }
}
