//! The mounts a container asks for, as records before any volume is made:
//! `-v` specs, `--mount` (bind, volume, tmpfs), `--tmpfs`, and the
//! image's and anonymous volumes; destinations cleaned and checked for
//! duplicates.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, MountType};

use super::bad;
use crate::containers::record::MountRecord;
use crate::error::Result;

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
pub(super) fn requested_mounts(
    config: &ContainerConfig,
    host: &HostConfig,
) -> Result<Vec<MountRecord>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
