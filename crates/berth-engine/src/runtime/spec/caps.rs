//! Linux capabilities as dockerd hands them out: its 14 defaults, CapAdd
//! and CapDrop (names with or without `CAP_`, any case, `ALL`), every
//! capability the daemon itself holds for `--privileged`, and refusal of
//! names the kernel does not know or the daemon cannot grant.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{EngineError, Result};

/// Capability names by number (`capability.h`), as far as this build
/// knows them.
const KNOWN: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// dockerd's default set for a container.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities the daemon holds (its effective set): a container
/// cannot be given more, so this is `ALL` and `--privileged`.
pub fn available() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    match mask {
        Some(mask) => KNOWN
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1u64 << bit) != 0)
            .map(|(_, n)| *n)
            .collect(),
        // Unknown: offer all and let the runtime refuse what it must.
        None => KNOWN.to_vec(),
    }
}

/// Upper-cases and `CAP_`-prefixes CapAdd/CapDrop entries, keeping `ALL`;
/// unknown or ungrantable names are a bad parameter (dockerd's wording).
fn normalize(names: &[String], available: &[&str]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| {
            let mut c = n.to_uppercase();
            if c == "ALL" {
                return Ok(c);
            }
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !KNOWN.contains(&c.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "unknown capability: {c:?}"
                )));
            }
            if !available.contains(&c.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "capability not supported by your kernel or not available in the current environment: {c:?}"
                )));
            }
            Ok(c)
        })
        .collect()
}

/// The container's capability list from the defaults, CapAdd, CapDrop and
/// Privileged, with dockerd's precedence: privileged gets everything;
/// `ALL` in CapAdd means everything but CapDrop; `ALL` in CapDrop means
/// only CapAdd; otherwise defaults minus CapDrop plus CapAdd.
pub fn tweak(
    adds: &[String],
    drops: &[String],
    privileged: bool,
    available: &[&str],
) -> Result<Vec<String>> {
    if privileged {
        return Ok(available.iter().map(|s| s.to_string()).collect());
    }
    if adds.is_empty() && drops.is_empty() {
        return Ok(DEFAULT.iter().map(|s| s.to_string()).collect());
    }
    let drops = normalize(drops, available)?;
    let adds = normalize(adds, available)?;
    let all = "ALL".to_string();
    let mut caps: Vec<String> = if adds.contains(&all) {
        available
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drops.contains(c))
            .collect()
    } else if drops.contains(&all) {
        adds
    } else {
        DEFAULT
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drops.contains(c))
            .chain(adds)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// The OCI capability sets dockerd fills (bounding, permitted, effective).
pub fn to_oci(names: &[String]) -> Result<LinuxCapabilities> {
    let set: Capabilities = names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|e| EngineError::Internal(format!("capability {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    // Set field by field: the type's Default is a template with
    // capabilities of its own (inheritable and ambient among them).
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_permitted(Some(set.clone()));
    caps.set_effective(Some(set));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn add_and_drop_with_any_spelling() {
        let all = KNOWN.to_vec();
        let caps = tweak(
            &s(&["sys_admin", "CAP_NET_ADMIN"]),
            &s(&["chown", "Cap_Kill"]),
            false,
            &all,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), 14);
    }

    #[test]
    fn all_and_privileged() {
        let avail = vec!["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"];
        assert_eq!(tweak(&[], &[], true, &avail).unwrap(), s(&avail));
        assert_eq!(
            tweak(&s(&["ALL"]), &s(&["kill"]), false, &avail).unwrap(),
            s(&["CAP_CHOWN", "CAP_SYS_ADMIN"])
        );
        assert_eq!(
            tweak(&s(&["chown"]), &s(&["all"]), false, &avail).unwrap(),
            s(&["CAP_CHOWN"])
        );
        assert_eq!(tweak(&[], &[], false, &avail).unwrap(), s(&DEFAULT));
    }

    #[test]
    fn unknown_and_unavailable_are_bad_parameters() {
        let avail = vec!["CAP_CHOWN"];
        let e = tweak(&s(&["FOO"]), &[], false, &avail).unwrap_err();
        assert_eq!(e.to_string(), "unknown capability: \"CAP_FOO\"");
        let e = tweak(&s(&["SYS_RESOURCE"]), &[], false, &avail).unwrap_err();
        assert!(e.to_string().starts_with("capability not supported"), "{e}");
    }

    #[test]
    fn every_known_name_maps_to_oci() {
        let caps = to_oci(&s(&KNOWN)).unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), KNOWN.len());
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
    }
}
