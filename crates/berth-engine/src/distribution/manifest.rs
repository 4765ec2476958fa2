//! Manifests as registries serve them: Docker schema2 and OCI image
//! manifests, Docker manifest lists and OCI indexes; choosing the entry
//! for a platform (`linux/amd64` unless `platform=` says otherwise); and
//! the schema2 manifest a push writes, formatted as dockerd formats it.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// A content descriptor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A platform, as index entries and `platform=` name one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(default, rename = "os.features", skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// What berth runs: `linux/amd64`.
    pub fn host() -> Platform {
        Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        }
    }

    /// Parses `os[/arch[/variant]]` with containerd's normalizations
    /// (`x86_64` → `amd64`, `aarch64` → `arm64`).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            EngineError::InvalidParameter(format!(
                "\"{s}\": unknown operating system or architecture: invalid argument"
            ))
        };
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let os = parts[0].to_ascii_lowercase();
        if os != "linux" {
            return Err(EngineError::InvalidParameter(format!(
                "\"{s}\": operating system {os:?} is not supported by berth (linux only)"
            )));
        }
        let arch = parts.get(1).map(|a| a.to_ascii_lowercase());
        let (architecture, mut variant) = match arch.as_deref() {
            None => ("amd64".to_string(), String::new()),
            Some("x86_64" | "x86-64" | "amd64") => ("amd64".to_string(), String::new()),
            Some("aarch64" | "arm64") => ("arm64".to_string(), String::new()),
            Some("armhf") => ("arm".to_string(), "v7".to_string()),
            Some("armel") => ("arm".to_string(), "v6".to_string()),
            Some("i386" | "386") => ("386".to_string(), String::new()),
            Some(a) => (a.to_string(), String::new()),
        };
        if let Some(v) = parts.get(2) {
            variant = v.to_ascii_lowercase();
        }
        if architecture == "arm64" && variant == "v8" {
            variant.clear();
        }
        Ok(Platform {
            architecture,
            os,
            variant,
            ..Default::default()
        })
    }

    fn matches(&self, other: &Platform) -> bool {
        let variant = if other.architecture == "arm64" && other.variant == "v8" {
            ""
        } else {
            other.variant.as_str()
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_empty() || self.variant == variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A fetched manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// One image: its config and layers.
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// Several manifests, one per platform.
    Index {
        media_type: String,
        manifests: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

impl Manifest {
    /// Parses a manifest given the registry's `Content-Type` (which wins
    /// over the body's `mediaType`, as in dockerd).
    pub fn parse(content_type: &str, raw: &[u8], reference: &str) -> Result<Manifest> {
        let body: Raw = serde_json::from_slice(raw)
            .map_err(|e| invalid(format!("unsupported manifest format: {e}")))?;
        let mut media_type = content_type.to_string();
        if media_type.is_empty() || media_type == "application/json" || media_type == "text/plain" {
            media_type = body.media_type.clone().unwrap_or_default();
        }
        if SCHEMA1.contains(&media_type.as_str()) || body.schema_version == Some(1) {
            return Err(invalid(format!(
                "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of {reference} to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
            )));
        }
        if media_type.is_empty() {
            // An OCI manifest may leave mediaType out; its shape tells.
            media_type = if body.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            };
        }
        match media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => {
                let config = body
                    .config
                    .ok_or_else(|| invalid("unsupported manifest format: no config"))?;
                Ok(Manifest::Image {
                    media_type,
                    config,
                    layers: body.layers.unwrap_or_default(),
                })
            }
            DOCKER_LIST | OCI_INDEX => Ok(Manifest::Index {
                media_type,
                manifests: body.manifests.unwrap_or_default(),
            }),
            other => Err(invalid(format!(
                "Encountered remote {other:?}(unknown) when fetching"
            ))),
        }
    }

    /// The media type the registry served it as.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image { media_type, .. } | Manifest::Index { media_type, .. } => media_type,
        }
    }
}

/// The index entry for `want`, as dockerd picks it.
pub fn choose(manifests: &[Descriptor], want: &Platform) -> Result<Descriptor> {
    manifests
        .iter()
        .filter(|d| {
            matches!(
                d.media_type.as_str(),
                DOCKER_MANIFEST | OCI_MANIFEST | "" | DOCKER_LIST | OCI_INDEX
            )
        })
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .cloned()
        .ok_or_else(|| {
            EngineError::NotFound(format!(
                "no matching manifest for {want} in the manifest list entries"
            ))
        })
}

/// Whether a layer's media type is one berth can unpack.
pub fn check_layer_type(media_type: &str) -> Result<()> {
    const KNOWN: &[&str] = &[
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.v1.tar",
        OCI_LAYER_GZIP,
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "",
    ];
    if KNOWN.contains(&media_type) {
        return Ok(());
    }
    Err(invalid(format!("unsupported media type {media_type}")))
}

/// Whether a config media type is an image config (not, say, a Helm
/// chart or an AI model).
pub fn check_config_type(media_type: &str) -> Result<()> {
    match media_type {
        DOCKER_CONFIG | OCI_CONFIG | "" | "application/octet-stream" => Ok(()),
        "application/vnd.docker.ai.model.config.v0.1+json" => Err(invalid(
            "AI models are not yet supported by the Engine, please use \"docker model pull/run\" instead",
        )),
        other => Err(invalid(format!(
            "Encountered remote {other:?}(configuration) when fetching"
        ))),
    }
}

/// Whether a blob of this media type is gzip, so a push can reuse it.
pub fn is_gzip_layer(media_type: &str) -> bool {
    media_type == DOCKER_LAYER_GZIP || media_type == OCI_LAYER_GZIP
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushDescriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: PushDescriptor<'a>,
    layers: Vec<PushDescriptor<'a>>,
}

/// The schema2 manifest for a push, with dockerd's three-space
/// indentation (its digest is what `docker push` prints).
pub fn schema2(config: (&str, u64), layers: &[(String, u64)]) -> Vec<u8> {
    let m = PushManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: PushDescriptor {
            media_type: DOCKER_CONFIG,
            size: config.1,
            digest: config.0,
        },
        layers: layers
            .iter()
            .map(|(d, s)| PushDescriptor {
                media_type: DOCKER_LAYER_GZIP,
                size: *s,
                digest: d,
            })
            .collect(),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    m.serialize(&mut ser).expect("a manifest serializes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:aa","platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:bb","platform":{"architecture":"amd64","os":"linux"}},
        {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:cc","platform":{"architecture":"unknown","os":"unknown"}}]}"#;

    #[test]
    fn picks_amd64_or_the_requested_platform() {
        let Manifest::Index { manifests, .. } = Manifest::parse("", INDEX.as_bytes(), "x").unwrap()
        else {
            panic!("not an index")
        };
        assert_eq!(
            choose(&manifests, &Platform::host()).unwrap().digest,
            "sha256:bb"
        );
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(choose(&manifests, &arm).unwrap().digest, "sha256:aa");
        let e = choose(&manifests, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no matching manifest for linux/s390x in the manifest list entries"
        );
    }

    #[test]
    fn parses_platforms() {
        assert_eq!(Platform::parse("linux").unwrap(), Platform::host());
        assert_eq!(Platform::parse("linux/x86_64").unwrap(), Platform::host());
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64"
        );
        assert!(Platform::parse("windows/amd64").is_err());
        assert!(Platform::parse("linux//").is_err());
    }

    #[test]
    fn content_type_wins_and_schema1_is_refused() {
        let raw = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":2},"layers":[]}"#;
        let m = Manifest::parse(DOCKER_MANIFEST, raw, "x").unwrap();
        assert_eq!(m.media_type(), DOCKER_MANIFEST);
        let m = Manifest::parse("", raw, "x").unwrap();
        assert_eq!(m.media_type(), OCI_MANIFEST);
        let e = Manifest::parse("", br#"{"schemaVersion":1}"#, "r/x:1").unwrap_err();
        assert!(e.to_string().contains("schema 1 support has been removed"));
    }

    #[test]
    fn push_manifest_is_indented_like_dockerd() {
        let m = schema2(("sha256:c", 5), &[("sha256:l".to_string(), 7)]);
        let text = String::from_utf8(m).unwrap();
        assert!(text.starts_with("{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n   \"config\": {\n      \"mediaType\""), "{text}");
        assert!(text.ends_with("\n   ]\n}"), "{text}");
    }
}
