//! `docker import`: one rootfs tar becomes a one-layer image whose config
//! is shaped by `--change` Dockerfile instructions (CMD, ENV, LABEL, ...),
//! parsed here with dockerd's rules and wording.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{EventMessageTypeEnum, HealthConfig, ImageConfig};

use super::config::{timestamp, HistoryEntry, ImageConfigFile, RootFs};
use super::reference::ImageRef;
use super::store::ImageMeta;
use super::{BodyReader, ImportOptions};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::progress::{Progress, ProgressSender};

const CHANGE_COMMANDS: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// A JSON array argument (`["a", "b"]`), if the text is one.
fn json_args(rest: &str) -> Option<Vec<String>> {
    if rest.starts_with('[') {
        serde_json::from_str(rest).ok()
    } else {
        None
    }
}

/// `KEY=VALUE ...` pairs with shell quoting, or the legacy `KEY VALUE`.
fn key_values(cmd: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let words = shell_words::split(rest).map_err(|e| bad(format!("{cmd}: {e}")))?;
    if words.first().is_some_and(|w| !w.contains('=')) {
        let (k, v) = rest
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(format!("{cmd} requires at least one argument")))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| bad(format!("{cmd} names must be followed by =")))?;
            if k.is_empty() {
                return Err(bad(format!("{cmd} names can not be blank")));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Applies `--change` instructions to `config`, as `docker import` does.
pub fn apply_changes(config: &mut ImageConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        for line in change.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let cmd = cmd.to_ascii_uppercase();
            let rest = rest.trim();
            if !CHANGE_COMMANDS.contains(&cmd.as_str()) {
                return Err(bad(format!("{cmd} is not a valid change command")));
            }
            let shell = |s: &str| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()];
            match cmd.as_str() {
                "CMD" => config.cmd = Some(json_args(rest).unwrap_or_else(|| shell(rest))),
                "ENTRYPOINT" => {
                    config.entrypoint = Some(json_args(rest).unwrap_or_else(|| shell(rest)))
                }
                "ENV" => {
                    let env = config.env.get_or_insert_with(Vec::new);
                    for (k, v) in key_values("ENV", rest)? {
                        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                        env.push(format!("{k}={v}"));
                    }
                }
                "LABEL" => {
                    let labels = config.labels.get_or_insert_with(HashMap::new);
                    for (k, v) in key_values("LABEL", rest)? {
                        labels.insert(k, v);
                    }
                }
                "EXPOSE" => {
                    let ports = config.exposed_ports.get_or_insert_with(Vec::new);
                    for p in rest.split_whitespace() {
                        let p = if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        };
                        if !ports.contains(&p) {
                            ports.push(p);
                        }
                    }
                }
                "USER" => config.user = Some(rest.to_string()),
                "WORKDIR" => config.working_dir = Some(rest.to_string()),
                "STOPSIGNAL" => config.stop_signal = Some(rest.to_string()),
                "ONBUILD" => config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(rest.to_string()),
                "VOLUME" => {
                    let vols = json_args(rest)
                        .unwrap_or_else(|| rest.split_whitespace().map(str::to_string).collect());
                    config.volumes.get_or_insert_with(Vec::new).extend(vols);
                }
                "HEALTHCHECK" => config.healthcheck = Some(healthcheck(rest)?),
                _ => unreachable!("checked against CHANGE_COMMANDS"),
            }
        }
    }
    Ok(())
}

fn healthcheck(rest: &str) -> Result<HealthConfig> {
    if rest.eq_ignore_ascii_case("NONE") {
        return Ok(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
    }
    let (kind, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !kind.eq_ignore_ascii_case("CMD") {
        return Err(bad(
            "HEALTHCHECK takes NONE or CMD; options are not supported by import",
        ));
    }
    let test = match json_args(cmd.trim()) {
        Some(args) => std::iter::once("CMD".to_string()).chain(args).collect(),
        None => vec!["CMD-SHELL".into(), cmd.trim().to_string()],
    };
    Ok(HealthConfig {
        test: Some(test),
        ..Default::default()
    })
}

impl Engine {
    /// The blocking body of `import_image`; returns the new image ID.
    pub(crate) fn import_blocking(
        self: &Arc<Self>,
        body: BodyReader,
        opts: &ImportOptions,
        image_config: ImageConfig,
        tag: Option<ImageRef>,
        progress: &ProgressSender,
    ) -> Result<String> {
        let mut input = tokio_util::io::SyncIoBridge::new(body);
        let layer = self.layers.register(None, &mut input, None)?;
        let now = timestamp(chrono::Utc::now());
        let comment = opts
            .message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "Imported from -".to_string());
        let config = ImageConfigFile {
            architecture: Some("amd64".into()),
            os: Some("linux".into()),
            created: Some(now.clone()),
            comment: opts.message.clone().filter(|m| !m.is_empty()),
            config: Some(image_config),
            history: vec![HistoryEntry {
                created: Some(now),
                comment: Some(comment),
                ..Default::default()
            }],
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            ..Default::default()
        };
        let raw = serde_json::to_vec(&config).map_err(|e| EngineError::Internal(e.to_string()))?;
        let _guard = self.image_lock();
        let (image, is_new) = match self.images.add(raw, config, ImageMeta::default()) {
            Ok(v) => v,
            Err(e) => {
                self.release_layers(std::slice::from_ref(&layer.chain_id));
                return Err(e);
            }
        };
        if !is_new {
            self.release_layers(std::slice::from_ref(&layer.chain_id));
        }
        self.publish_image(EventMessageTypeEnum::IMAGE, "import", &image.id, &image.id);
        if let Some(t) = tag {
            self.images.tag(&image.id, &t)?;
            self.touch_tag_time(&image.id)?;
            self.publish_image(EventMessageTypeEnum::IMAGE, "tag", &image.id, &t.familiar());
        }
        progress.send(Progress::Status {
            id: None,
            status: image.id.clone(),
            current: None,
            total: None,
        });
        Ok(image.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_dockerfile_changes() {
        let mut c = ImageConfig::default();
        apply_changes(
            &mut c,
            &[
                "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV C 3 4".into(),
                "LABEL com.x=y".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
                "ENTRYPOINT echo".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env.unwrap(), vec!["A=1", "B=two words", "C=3 4"]);
        assert_eq!(c.labels.unwrap().get("com.x").unwrap(), "y");
        assert_eq!(c.exposed_ports.unwrap(), vec!["80/tcp", "53/udp"]);
        assert_eq!(c.working_dir.unwrap(), "/srv");
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo"]);
    }

    #[test]
    fn refuses_unknown_changes() {
        let e = apply_changes(&mut ImageConfig::default(), &["RUN x".into()]).unwrap_err();
        assert_eq!(e.to_string(), "RUN is not a valid change command");
    }
}
