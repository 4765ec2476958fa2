//! Keeps test daemons' bridge networking apart: each berthd under test gets
//! its own default bridge name (and so its own nftables table), subnets
//! come from a test-only pool, and what a daemon leaves in the kernel
//! (bridges, its table) is removed once it is gone.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The address pool test daemons draw bridge subnets from (berthd skips
/// subnets the host already routes, under a host-wide lock).
pub const TEST_POOL: &str = "base=10.213.0.0/16,size=24";

/// A bridge name unique to the daemon whose scratch dir is `seed` (at
/// most 15 characters, as the kernel requires).
pub fn bridge_name(seed: &Path) -> String {
    let digest = Sha256::digest(seed.to_string_lossy().as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("bt{hex}")
}

/// Whether the testkit should give this daemon its own bridge: berthd
/// only (dockerd's `--bridge` wants an existing bridge), and only when the
/// test did not choose one.
pub fn wants_own_bridge(binary: &Path, settings: &crate::daemon::Settings) -> bool {
    binary.file_name().is_some_and(|n| n == "berthd") && !mentions(settings, "bridge")
}

/// Whether the test set an option itself, as a flag or a daemon.json key.
pub fn mentions(settings: &crate::daemon::Settings, option: &str) -> bool {
    let flag = format!("--{option}");
    let in_args = settings.extra_args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag
            || a.starts_with(&format!("{flag}="))
            || (option == "bridge" && (a == "-b" || a.starts_with("-b=")))
    });
    let in_file = match &settings.config {
        crate::daemon::ConfigFile::Json(v) => {
            v.get(option).is_some() || v.get(format!("{option}s")).is_some()
        }
        crate::daemon::ConfigFile::Raw(text) => text.contains(&format!("\"{option}")),
    };
    in_args || in_file
}

/// The nftables table berthd uses with this default bridge (see berth's
/// `NetworkConfig::firewall_table`).
pub fn firewall_table(bridge: &str) -> String {
    let name: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("berth_{name}")
}

/// Whether a network interface exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The host ends of veths attached to `bridge`.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    std::fs::read_dir(Path::new("/sys/class/net").join(bridge).join("brif"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `nft list table ip <table>`, or `None` when the table does not exist.
pub fn list_table(table: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes bridges and the table a stopped daemon left (it leaves them when
/// containers were still running at shutdown, for live restore).
pub fn remove_leftovers(bridges: &[String], table: &str) {
    for b in bridges {
        if link_exists(b) {
            let _ = Command::new("ip")
                .args(["link", "delete", b])
                .stderr(Stdio::null())
                .status();
        }
    }
    if list_table(table).is_some() {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", table])
            .stderr(Stdio::null())
            .status();
    }
}
