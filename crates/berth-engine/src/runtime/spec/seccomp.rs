//! Seccomp profiles in Docker's format — `archMap`, rules with `name` or
//! `names`, and `includes`/`excludes` conditions on the container's
//! capabilities, the host's architecture and kernel version — resolved
//! into the OCI `linux.seccomp` the runtime loads. The default policy is
//! Docker's own `default.json`, shipped as data (`seccomp_default.json`).

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::EngineError;

/// Docker's default profile (moby/profiles seccomp v0.2.3, Apache-2.0; see
/// docs/security.md).
pub const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// What went wrong with a profile, in dockerd's words where it has them.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("Decoding seccomp profile failed: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'")]
    ArchitecturesAndArchMap,
    #[error("both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'")]
    NameAndNames,
    #[error("invalid kernel version: {0}, expected \"<kernel>.<major>\"")]
    KernelVersion(String),
    #[error("seccomp profile: unknown {what} {value:?}")]
    Unknown { what: &'static str, value: String },
}

impl From<ProfileError> for EngineError {
    fn from(e: ProfileError) -> EngineError {
        EngineError::InvalidParameter(e.to_string())
    }
}

/// A profile as Docker's JSON has it. Unknown fields are ignored, as Go's
/// decoder ignores them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchEntry>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchEntry {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    /// The old single-name form.
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    includes: Option<Filter>,
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// A rule's condition. Empty lists and an empty `minKernel` are no
/// condition at all.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The facts about the host a profile's conditions test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// libseccomp's name of the native architecture (`amd64`, `arm64`...),
    /// which is what `arches` conditions name.
    pub arch: &'static str,
    /// The OCI name of the native architecture, matched against `archMap`.
    pub seccomp_arch: Option<&'static str>,
    /// `(kernel, major)` of the running kernel (`6.18` → `(6, 18)`).
    pub kernel: Option<(u64, u64)>,
}

impl Host {
    /// This host.
    pub fn current() -> Host {
        let (arch, seccomp_arch) = native_arch();
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        Host {
            arch,
            seccomp_arch,
            kernel: parse_release(&release),
        }
    }
}

/// The native architecture by libseccomp's and the OCI spec's names, as
/// moby/profiles maps GOARCH.
fn native_arch() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", Some("SCMP_ARCH_X86_64")),
        "x86" => ("x86", Some("SCMP_ARCH_X86")),
        "aarch64" => ("arm64", Some("SCMP_ARCH_AARCH64")),
        "arm" => ("arm", Some("SCMP_ARCH_ARM")),
        "riscv64" => ("riscv64", Some("SCMP_ARCH_RISCV64")),
        "s390x" => ("s390x", Some("SCMP_ARCH_S390X")),
        "loongarch64" => ("loongarch64", Some("SCMP_ARCH_LOONGARCH64")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", Some("SCMP_ARCH_PPC64LE")),
        "powerpc64" => ("ppc64", Some("SCMP_ARCH_PPC64")),
        "mips64" if cfg!(target_endian = "little") => ("mipsel64", Some("SCMP_ARCH_MIPSEL64")),
        "mips64" => ("mips64", Some("SCMP_ARCH_MIPS64")),
        other => (other, None),
    }
}

/// `3.12.25-gentoo`, `3.12-1-amd64` → `(3, 12)`: only the kernel version
/// and major revision count, as in moby/profiles.
fn parse_release(release: &str) -> Option<(u64, u64)> {
    let mut parts = release.splitn(2, '.');
    let kernel = leading_number(parts.next()?)?;
    let major = leading_number(parts.next()?)?;
    Some((kernel, major))
}

fn leading_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// A `minKernel` value: `"<kernel>.<major>"`, each fitting a byte, not
/// `0.0`; empty means no condition.
fn parse_min_kernel(v: &str) -> Result<Option<(u64, u64)>, ProfileError> {
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || ProfileError::KernelVersion(format!("{v:?}"));
    let (k, m) = v.split_once('.').ok_or_else(bad)?;
    if m.contains('.') {
        return Err(bad());
    }
    let k: u8 = k.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if (k, m) == (0, 0) {
        return Err(bad());
    }
    Ok(Some((k as u64, m as u64)))
}

/// Whether the kernel has seccomp filters (`CONFIG_SECCOMP_FILTER`),
/// probed as dockerd probes it: `PR_GET_SECCOMP` is known, and
/// `PR_SET_SECCOMP` with a null filter fails with EFAULT rather than EINVAL.
pub fn kernel_supports() -> bool {
    // SAFETY: PR_GET_SECCOMP reads the calling thread's mode; the
    // SECCOMP_MODE_FILTER call passes a null program, which the kernel
    // rejects before installing anything.
    unsafe {
        if libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
        {
            return false;
        }
        let r = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::null::<libc::c_void>(),
            0,
            0,
        );
        !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL))
    }
}

/// An OCI enum from its JSON name (`SCMP_ACT_ALLOW`, `SCMP_ARCH_X86_64`...).
fn oci_name<T: DeserializeOwned>(what: &'static str, value: &str) -> Result<T, ProfileError> {
    serde_json::from_value(serde_json::Value::String(value.to_string())).map_err(|_| {
        ProfileError::Unknown {
            what,
            value: value.to_string(),
        }
    })
}

/// Whether a rule applies to this container on this host, by moby's rules:
/// an exclusion matches if any listed capability is in the bounding set,
/// an inclusion needs all of them.
fn applies(rule: &Rule, bounding: &[String], host: &Host) -> Result<bool, ProfileError> {
    let kernel_at_least = |v: &str| -> Result<Option<bool>, ProfileError> {
        match parse_min_kernel(v)? {
            None => Ok(None),
            Some(min) => {
                let have = host.kernel.ok_or_else(|| {
                    ProfileError::KernelVersion("of the running kernel".to_string())
                })?;
                Ok(Some(have >= min))
            }
        }
    };
    if let Some(ex) = &rule.excludes {
        if let Some(arches) = ex.arches.as_ref().filter(|a| !a.is_empty()) {
            if arches.iter().any(|a| a == host.arch) {
                return Ok(false);
            }
        }
        if let Some(caps) = ex.caps.as_ref().filter(|c| !c.is_empty()) {
            if caps.iter().any(|c| bounding.contains(c)) {
                return Ok(false);
            }
        }
        if let Some(v) = &ex.min_kernel {
            if kernel_at_least(v)? == Some(true) {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &rule.includes {
        if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
            if !arches.iter().any(|a| a == host.arch) {
                return Ok(false);
            }
        }
        if let Some(caps) = inc.caps.as_ref().filter(|c| !c.is_empty()) {
            if !caps.iter().all(|c| bounding.contains(c)) {
                return Ok(false);
            }
        }
        if let Some(v) = &inc.min_kernel {
            if kernel_at_least(v)? == Some(false) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn syscall(rule: &Rule) -> Result<LinuxSyscall, ProfileError> {
    let names = match (rule.name.is_empty(), &rule.names) {
        (false, Some(n)) if !n.is_empty() => return Err(ProfileError::NameAndNames),
        (false, _) => vec![rule.name.clone()],
        (true, n) => n.clone().unwrap_or_default(),
    };
    let args = match &rule.args {
        None => None,
        Some(args) => Some(
            args.iter()
                .map(|a| {
                    let mut arg = LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .op(oci_name::<LinuxSeccompOperator>("operator", &a.op)?);
                    // Go's omitempty: a zero second value is not written.
                    if a.value_two != 0 {
                        arg = arg.value_two(a.value_two);
                    }
                    arg.build().map_err(|e| ProfileError::Unknown {
                        what: "argument",
                        value: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, ProfileError>>()?,
        ),
    };
    let mut s = LinuxSyscall::default();
    s.set_names(names);
    s.set_action(oci_name::<LinuxSeccompAction>("action", &rule.action)?);
    s.set_errno_ret(rule.errno_ret);
    s.set_args(args);
    Ok(s)
}

/// Resolves the profile `json` for a container whose bounding set is
/// `bounding`. `None`: the profile asks for no filter (no default action
/// and no rules), which dockerd treats as seccomp off.
pub fn resolve(
    json: &str,
    bounding: &[String],
    host: &Host,
) -> Result<Option<LinuxSeccomp>, ProfileError> {
    let profile: Profile = serde_json::from_str(json)?;
    let rules = profile.syscalls.unwrap_or_default();
    if profile.default_action.is_empty() && rules.is_empty() {
        return Ok(None);
    }
    let explicit = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !explicit.is_empty() && !arch_map.is_empty() {
        return Err(ProfileError::ArchitecturesAndArchMap);
    }
    let mut arch_names = explicit;
    if let Some(native) = host.seccomp_arch {
        if let Some(entry) = arch_map.iter().find(|e| e.architecture == native) {
            arch_names.push(entry.architecture.clone());
            arch_names.extend(entry.sub_architectures.clone().unwrap_or_default());
        }
    }
    let architectures = arch_names
        .iter()
        .map(|a| oci_name::<Arch>("architecture", a))
        .collect::<Result<Vec<_>, _>>()?;
    let flags = profile
        .flags
        .unwrap_or_default()
        .iter()
        .map(|f| oci_name::<LinuxSeccompFilterFlag>("flag", f))
        .collect::<Result<Vec<_>, _>>()?;

    let mut syscalls = Vec::new();
    for rule in &rules {
        // Converted before the conditions are tested, so a malformed rule
        // is refused whatever the container's capabilities.
        let converted = syscall(rule)?;
        if applies(rule, bounding, host)? {
            syscalls.push(converted);
        }
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(if profile.default_action.is_empty() {
        // Go's zero value: runc refuses it, as it refuses it from dockerd.
        return Err(ProfileError::Unknown {
            what: "default action",
            value: String::new(),
        });
    } else {
        oci_name::<LinuxSeccompAction>("default action", &profile.default_action)?
    });
    seccomp.set_default_errno_ret(profile.default_errno_ret);
    seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
    seccomp.set_flags((!flags.is_empty()).then_some(flags));
    seccomp.set_listener_path(profile.listener_path.map(Into::into));
    seccomp.set_listener_metadata(profile.listener_metadata);
    seccomp.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
    Ok(Some(seccomp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64(kernel: (u64, u64)) -> Host {
        Host {
            arch: "amd64",
            seccomp_arch: Some("SCMP_ARCH_X86_64"),
            kernel: Some(kernel),
        }
    }

    fn caps(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|r| r.names().clone())
            .collect()
    }

    const DEFAULT_CAPS: [&str; 14] = super::super::caps::DEFAULT;

    #[test]
    fn default_profile_for_a_default_container() {
        let s = resolve(DEFAULT_PROFILE, &caps(&DEFAULT_CAPS), &amd64((6, 18)))
            .unwrap()
            .unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let allowed = names(&s);
        for n in ["read", "chown", "chroot", "arch_prctl", "ptrace", "socket"] {
            assert!(allowed.contains(&n.to_string()), "{n} not allowed");
        }
        for n in [
            "mount", "unshare", "reboot", "acct", "keyctl", "add_key", "bpf",
        ] {
            assert!(!allowed.contains(&n.to_string()), "{n} allowed");
        }
        // Without CAP_SYS_ADMIN, clone3 answers ENOSYS so libcs fall back
        // to clone, whose namespace flags are masked out.
        let syscalls = s.syscalls().as_ref().unwrap();
        let clone3 = syscalls.iter().find(|r| r.names() == &["clone3"]).unwrap();
        assert_eq!(
            (clone3.action(), clone3.errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(38))
        );
        let clone = syscalls
            .iter()
            .find(|r| r.names() == &["clone"] && r.args().is_some())
            .unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 2114060288, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        assert_eq!(arg.value_two(), None);
    }

    #[test]
    fn capabilities_open_their_syscalls() {
        let mut c = caps(&DEFAULT_CAPS);
        c.extend(caps(&["CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_PACCT"]));
        let s = resolve(DEFAULT_PROFILE, &c, &amd64((6, 18)))
            .unwrap()
            .unwrap();
        let allowed = names(&s);
        for n in ["mount", "unshare", "reboot", "acct", "clone3", "setns"] {
            assert!(allowed.contains(&n.to_string()), "{n} not allowed");
        }
        // The masked clone rule and the clone3 ENOSYS rule are excluded.
        let syscalls = s.syscalls().as_ref().unwrap();
        assert!(!syscalls
            .iter()
            .any(|r| r.names() == &["clone3"] && r.action() == LinuxSeccompAction::ScmpActErrno));
        assert!(!syscalls
            .iter()
            .any(|r| r.names() == &["clone"] && r.args().is_some()));
    }

    #[test]
    fn kernel_and_arch_conditions() {
        let old = resolve(DEFAULT_PROFILE, &caps(&DEFAULT_CAPS), &amd64((4, 4)))
            .unwrap()
            .unwrap();
        assert!(!names(&old).contains(&"ptrace".to_string()));
        let arm = Host {
            arch: "arm64",
            seccomp_arch: Some("SCMP_ARCH_AARCH64"),
            kernel: Some((6, 1)),
        };
        let s = resolve(DEFAULT_PROFILE, &caps(&DEFAULT_CAPS), &arm)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        let allowed = names(&s);
        assert!(allowed.contains(&"arm_fadvise64_64".to_string()));
        assert!(!allowed.contains(&"arch_prctl".to_string()));
    }

    #[test]
    fn custom_profiles_in_the_old_and_new_forms() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO"},
                {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 448, "valueTwo": 448, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["acct"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "3.0"}},
                {"names": ["iopl"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_RAWIO", "CAP_CHOWN"]}}
            ],
            "comment": "ignored"
        }"#;
        let s = resolve(json, &caps(&["CAP_CHOWN"]), &amd64((6, 1)))
            .unwrap()
            .unwrap();
        let rules = s.syscalls().as_ref().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].names(), &["mkdir"]);
        assert_eq!(rules[1].errno_ret(), Some(13));
        assert_eq!(rules[1].args().as_ref().unwrap()[0].value_two(), Some(448));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64][..])
        );
        // It serializes back to what runc reads.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(v["syscalls"][1]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    }

    #[test]
    fn bad_profiles_are_refused_in_dockerds_words() {
        let h = amd64((6, 1));
        let e = resolve("{", &[], &h).unwrap_err();
        assert!(e.to_string().starts_with("Decoding seccomp profile failed"));
        let e = resolve(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
            &[],
            &h,
        )
        .unwrap_err();
        assert!(matches!(e, ProfileError::ArchitecturesAndArchMap));
        let e = resolve(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
            &[],
            &h,
        )
        .unwrap_err();
        assert!(matches!(e, ProfileError::NameAndNames));
        let e = resolve(
            r#"{"defaultAction":"SCMP_ACT_NOPE","syscalls":[]}"#,
            &[],
            &h,
        )
        .unwrap_err();
        assert!(e.to_string().contains("SCMP_ACT_NOPE"), "{e}");
        assert!(parse_min_kernel("0.0").is_err());
        assert!(parse_min_kernel("4").is_err());
        assert!(parse_min_kernel("4.1.2").is_err());
        assert_eq!(parse_min_kernel("").unwrap(), None);
        // No default action and no rules: seccomp off.
        assert!(resolve("{}", &[], &h).unwrap().is_none());
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("3.12.25-gentoo"), Some((3, 12)));
        assert_eq!(parse_release("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse_release("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(parse_release("garbage"), None);
    }
}
