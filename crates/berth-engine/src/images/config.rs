//! The image configuration document (what an image ID is the digest of):
//! its serde shape, validation of what a load hands us, and the history
//! and layer list derived from it.

use bollard_stubs::models::ImageConfig;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One `history` entry of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image config (docker's v1 image JSON / OCI image config).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    pub rootfs: RootFs,
}

impl ImageConfigFile {
    /// Parses and checks a config as a load or pull hands it over.
    pub fn parse(raw: &[u8]) -> Result<ImageConfigFile> {
        let cfg: ImageConfigFile = serde_json::from_slice(raw)
            .map_err(|e| EngineError::InvalidParameter(format!("invalid image config: {e}")))?;
        if cfg.rootfs.typ != "layers" {
            return Err(EngineError::InvalidParameter(format!(
                "invalid image config: rootfs type {:?} is not \"layers\"",
                cfg.rootfs.typ
            )));
        }
        for d in &cfg.rootfs.diff_ids {
            if !is_sha256_digest(d) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid image config: invalid diff ID {d:?}"
                )));
            }
        }
        if let Some(os) = &cfg.os {
            if !os.is_empty() && os != "linux" {
                return Err(EngineError::InvalidParameter(format!(
                    "image operating system {os:?} cannot be used on this platform"
                )));
            }
        }
        Ok(cfg)
    }

    /// The creation time as a timestamp (0 when absent or unreadable).
    pub fn created_unix(&self) -> i64 {
        self.created
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0)
    }

    /// Labels of the image's container config.
    pub fn labels(&self) -> std::collections::HashMap<String, String> {
        self.config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }
}

/// Whether `s` is `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A timestamp in the RFC 3339 form dockerd writes (nanoseconds, `Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_docker_config() {
        let raw = br#"{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.5Z",
            "config":{"Cmd":["sh"],"Env":["PATH=/bin"],"ExposedPorts":{"80/tcp":{}},"Labels":{"a":"b"}},
            "history":[{"created":"2024-01-02T03:04:05Z","created_by":"x","empty_layer":true}],
            "rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let cfg = ImageConfigFile::parse(raw).unwrap();
        assert_eq!(cfg.created_unix(), 1704164645);
        assert_eq!(cfg.labels().get("a").map(String::as_str), Some("b"));
        assert!(cfg.history[0].empty_layer);
        let c = cfg.config.unwrap();
        assert_eq!(c.exposed_ports, Some(vec!["80/tcp".to_string()]));
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(ImageConfigFile::parse(b"{").is_err());
        assert!(ImageConfigFile::parse(br#"{"rootfs":{"type":"x","diff_ids":[]}}"#).is_err());
        assert!(ImageConfigFile::parse(
            br#"{"rootfs":{"type":"layers","diff_ids":["sha256:zz"]}}"#
        )
        .is_err());
        assert!(ImageConfigFile::parse(
            br#"{"os":"windows","rootfs":{"type":"layers","diff_ids":[]}}"#
        )
        .is_err());
    }
}
