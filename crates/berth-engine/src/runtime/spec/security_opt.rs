//! `HostConfig.SecurityOpt` read the way dockerd reads it: `no-new-privileges`
//! (bare or `=bool`), `seccomp=`, `apparmor=`, `label=` (accepted and
//! ignored: no SELinux here), `writable-cgroups`, with `:` still taken as
//! the old separator. The docker CLI has already replaced a profile path
//! in `seccomp=` with the file's content.

use crate::error::{EngineError, Result};

/// The per-container security options; `None` leaves the daemon's choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: Option<bool>,
    /// `unconfined`, `builtin`, or a profile's JSON.
    pub seccomp: Option<String>,
    /// An AppArmor profile name (`unconfined` included).
    pub apparmor: Option<String>,
    pub writable_cgroups: Option<bool>,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses the options, refusing what dockerd refuses with its messages.
pub fn parse(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        match opt.as_str() {
            "no-new-privileges" => {
                out.no_new_privileges = Some(true);
                continue;
            }
            "writable-cgroups" => {
                out.writable_cgroups = Some(true);
                continue;
            }
            "disable" => continue,
            _ => {}
        }
        let split = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((key, value)) = split else {
            return Err(EngineError::InvalidParameter(format!(
                "invalid --security-opt 1: {opt:?}"
            )));
        };
        let bad2 = || EngineError::InvalidParameter(format!("invalid --security-opt 2: {opt:?}"));
        match key {
            "label" => {}
            "apparmor" => out.apparmor = Some(value.to_string()),
            "seccomp" => out.seccomp = Some(value.to_string()),
            "no-new-privileges" => {
                out.no_new_privileges = Some(parse_bool(value).ok_or_else(bad2)?)
            }
            "writable-cgroups" => out.writable_cgroups = Some(parse_bool(value).ok_or_else(bad2)?),
            _ => return Err(bad2()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<SecurityOpts> {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_form_dockerd_takes() {
        let o = p(&[
            "no-new-privileges",
            "seccomp=unconfined",
            "apparmor:my-profile",
            "label=disable",
            "disable",
        ])
        .unwrap();
        assert_eq!(o.no_new_privileges, Some(true));
        assert_eq!(o.seccomp.as_deref(), Some("unconfined"));
        assert_eq!(o.apparmor.as_deref(), Some("my-profile"));
        assert_eq!(
            p(&["no-new-privileges=false"]).unwrap().no_new_privileges,
            Some(false)
        );
        assert_eq!(
            p(&["no-new-privileges:true"]).unwrap().no_new_privileges,
            Some(true)
        );
        // A profile's JSON keeps its own '=' and ':' characters.
        let json = r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","x":"a=b"}"#;
        assert_eq!(
            p(&[json]).unwrap().seccomp.as_deref(),
            Some(r#"{"defaultAction":"SCMP_ACT_ALLOW","x":"a=b"}"#)
        );
    }

    #[test]
    fn refusals_in_dockerds_words() {
        assert_eq!(
            p(&["bogus"]).unwrap_err().to_string(),
            "invalid --security-opt 1: \"bogus\""
        );
        assert_eq!(
            p(&["bogus=1"]).unwrap_err().to_string(),
            "invalid --security-opt 2: \"bogus=1\""
        );
        assert_eq!(
            p(&["no-new-privileges=maybe"]).unwrap_err().to_string(),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
    }
}
