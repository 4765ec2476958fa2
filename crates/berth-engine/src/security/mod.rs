//! The daemon's container-isolation policy: what berthd was asked for
//! (`--seccomp-profile`, `--no-new-privileges`, `--userns-remap`) resolved
//! once at start-up against what the host offers (seccomp filters,
//! AppArmor, subordinate id ranges). The spec builder applies it to every
//! container; `docker info` reports it as `SecurityOptions`.

pub mod apparmor;
pub mod userns;

use berth_storage::IdMap;

use crate::error::{EngineError, Result};
use crate::runtime::spec::seccomp;

/// What berthd's flags and daemon.json ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `--seccomp-profile`: empty or `builtin`, `unconfined`, or the path
    /// of a profile in Docker's JSON format.
    pub seccomp_profile: String,
    /// `--no-new-privileges`: set it for every new container.
    pub no_new_privileges: bool,
    /// `--userns-remap`: `default` (the `berthremap` user, made when
    /// missing), `user`, `user:group`, `uid` or `uid:gid`; empty is off.
    pub userns_remap: String,
}

/// The daemon-wide seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonSeccomp {
    /// Docker's default profile.
    Builtin,
    /// No filter unless a container asks for one.
    Unconfined,
    /// A profile read from `path` at start-up.
    Custom { path: String, json: String },
}

/// The policy in force.
#[derive(Debug, Clone)]
pub struct SecurityPolicy {
    /// The kernel has seccomp filters.
    pub seccomp_supported: bool,
    pub seccomp: DaemonSeccomp,
    pub no_new_privileges: bool,
    /// AppArmor confines containers (`berth-default` is loaded).
    pub apparmor: bool,
    /// `--userns-remap` in force.
    pub userns: Option<userns::Remap>,
}

impl Default for SecurityPolicy {
    /// dockerd's defaults on a host without AppArmor: the builtin seccomp
    /// profile, no user namespaces.
    fn default() -> SecurityPolicy {
        SecurityPolicy {
            seccomp_supported: true,
            seccomp: DaemonSeccomp::Builtin,
            no_new_privileges: false,
            apparmor: false,
            userns: None,
        }
    }
}

impl SecurityPolicy {
    /// Resolves `config` on this host: reads and checks a custom seccomp
    /// profile, loads the AppArmor profile where AppArmor is on, and sets
    /// up the remapped user's id ranges (creating `berthremap` for
    /// `default`).
    pub fn probe(config: &SecurityConfig) -> Result<SecurityPolicy> {
        let seccomp = match config.seccomp_profile.as_str() {
            "" | "builtin" => DaemonSeccomp::Builtin,
            "unconfined" => DaemonSeccomp::Unconfined,
            path => {
                let json = std::fs::read_to_string(path).map_err(|e| {
                    EngineError::InvalidParameter(format!(
                        "opening seccomp profile ({path}) failed: {e}"
                    ))
                })?;
                // Checked now, so a bad file fails the start rather than
                // every container.
                seccomp::resolve(&json, &[], &seccomp::Host::current())?;
                DaemonSeccomp::Custom {
                    path: path.to_string(),
                    json,
                }
            }
        };
        let apparmor = apparmor::host_supports();
        if apparmor {
            apparmor::ensure_default_loaded()?;
        }
        let userns = match config.userns_remap.as_str() {
            "" => None,
            spec => userns::Remap::setup(spec)?,
        };
        Ok(SecurityPolicy {
            seccomp_supported: seccomp::kernel_supports(),
            seccomp,
            no_new_privileges: config.no_new_privileges,
            apparmor,
            userns,
        })
    }

    /// The id mapping of remapped containers (identity when off).
    pub fn id_map(&self) -> IdMap {
        self.userns
            .as_ref()
            .map(|r| r.ids.clone())
            .unwrap_or_default()
    }

    /// `SecurityOptions` of `docker info`, in dockerd's order and words.
    pub fn security_options(&self, cgroupns: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.apparmor {
            out.push("name=apparmor".to_string());
        }
        if self.seccomp_supported {
            let profile = match &self.seccomp {
                DaemonSeccomp::Builtin => "builtin",
                DaemonSeccomp::Unconfined => "unconfined",
                DaemonSeccomp::Custom { path, .. } => path.as_str(),
            };
            out.push(format!("name=seccomp,profile={profile}"));
        }
        if self.userns.is_some() {
            out.push("name=userns".to_string());
        }
        if cgroupns {
            out.push("name=cgroupns".to_string());
        }
        if self.no_new_privileges {
            out.push("name=no-new-privileges".to_string());
        }
        out
    }

    /// The `docker info` warning dockerd gives for a non-default profile.
    pub fn warnings(&self) -> Vec<String> {
        match (&self.seccomp, self.seccomp_supported) {
            (DaemonSeccomp::Builtin, _) | (_, false) => Vec::new(),
            _ => vec!["WARNING: daemon is not using the default seccomp profile".to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lists_what_is_active() {
        let p = SecurityPolicy::default();
        assert_eq!(p.security_options(false), ["name=seccomp,profile=builtin"]);
        assert!(p.warnings().is_empty());
        let p = SecurityPolicy {
            apparmor: true,
            no_new_privileges: true,
            seccomp: DaemonSeccomp::Unconfined,
            userns: Some(userns::Remap {
                user: "berthremap".into(),
                group: "berthremap".into(),
                ids: IdMap::stacked(&[(100_000, 65_536)], &[(100_000, 65_536)]),
            }),
            ..SecurityPolicy::default()
        };
        assert_eq!(
            p.security_options(true),
            [
                "name=apparmor",
                "name=seccomp,profile=unconfined",
                "name=userns",
                "name=cgroupns",
                "name=no-new-privileges"
            ]
        );
        assert_eq!(p.warnings().len(), 1);
        assert_eq!(p.id_map().root(), (100_000, 100_000));
    }

    #[test]
    fn a_bad_daemon_profile_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{ nope").unwrap();
        let e = SecurityPolicy::probe(&SecurityConfig {
            seccomp_profile: path.display().to_string(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("Decoding seccomp profile failed"),
            "{e}"
        );
        let e = SecurityPolicy::probe(&SecurityConfig {
            seccomp_profile: "/nonexistent/p.json".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("opening seccomp profile"), "{e}");
    }
}
