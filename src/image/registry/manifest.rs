//! Parsing of the four manifest kinds we accept (OCI image manifest and index, Docker schema2
//! manifest and manifest list) and the choice of this machine's entry of an index.

use serde::Deserialize;

use super::BlobDescriptor;
use crate::image::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` list sent for manifests.
pub const ACCEPT: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// A parsed manifest.
#[derive(Debug)]
pub(crate) enum Manifest {
    Index(Vec<IndexEntry>),
    Image {
        config: BlobDescriptor,
        layers: Vec<BlobDescriptor>,
    },
}

#[derive(Debug)]
pub(crate) struct IndexEntry {
    pub(crate) digest: Digest,
    pub(crate) platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a manifest was refused.
#[derive(Debug)]
pub(crate) enum ParseError {
    Schema1,
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<Vec<RawEntry>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    digest: String,
    platform: Option<Platform>,
}

fn digest(s: &str) -> Result<Digest, ParseError> {
    s.parse()
        .map_err(|e| ParseError::Invalid(format!("descriptor digest: {e}")))
}

impl RawDescriptor {
    fn into_blob(self) -> Result<BlobDescriptor, ParseError> {
        Ok(BlobDescriptor {
            digest: digest(&self.digest)?,
            media_type: self.media_type,
            size: self.size,
        })
    }
}

/// Parses manifest `bytes`. The kind comes from the `mediaType` field, or, for an OCI
/// manifest that leaves it out, from which fields are there.
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, ParseError> {
    // Look at the version before the shape: a schema1 manifest has neither `config` nor
    // `manifests`, and deserves its own message.
    let versioned: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Invalid(e.to_string()))?;
    let media_type = versioned.get("mediaType").and_then(|v| v.as_str());
    if versioned.get("schemaVersion").and_then(|v| v.as_i64()) == Some(1)
        || matches!(media_type, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED))
    {
        return Err(ParseError::Schema1);
    }
    let raw: Raw =
        serde_json::from_value(versioned).map_err(|e| ParseError::Invalid(e.to_string()))?;
    match raw.schema_version {
        Some(2) => {}
        Some(v) => return Err(ParseError::Invalid(format!("schemaVersion {v}"))),
        None => return Err(ParseError::Invalid("no schemaVersion".into())),
    }
    let is_index = match raw.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(ParseError::Invalid(format!(
                "unsupported media type `{other}`"
            )));
        }
        None => raw.manifests.is_some() && raw.config.is_none(),
    };
    if is_index {
        let entries = raw
            .manifests
            .ok_or_else(|| ParseError::Invalid("index without `manifests`".into()))?;
        let entries = entries
            .into_iter()
            .map(|e| {
                Ok(IndexEntry {
                    digest: digest(&e.digest)?,
                    platform: e.platform,
                })
            })
            .collect::<Result<Vec<_>, ParseError>>()?;
        return Ok(Manifest::Index(entries));
    }
    let config = raw
        .config
        .ok_or_else(|| ParseError::Invalid("image manifest without `config`".into()))?
        .into_blob()?;
    let layers = raw
        .layers
        .unwrap_or_default()
        .into_iter()
        .map(RawDescriptor::into_blob)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Manifest::Image { config, layers })
}

/// This machine's architecture as OCI platforms (and Go) name it.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The variant an entry without one means for `arch` (arm64 images are `v8`).
fn default_variant(arch: &str) -> &'static str {
    match arch {
        "amd64" => "v1",
        "arm64" => "v8",
        _ => "",
    }
}

/// The linux entry of an index for this machine's architecture ([`native_arch`]); see
/// [`pick_linux`].
pub(crate) fn pick_native(entries: &[IndexEntry]) -> Option<&IndexEntry> {
    pick_linux(entries, native_arch())
}

/// The linux/`arch` entry of an index: one without variant (or the architecture's default
/// variant) first, then the lowest numbered variant (`v2` before `v3`: the most portable);
/// `None` if there is none.
pub(crate) fn pick_linux<'a>(entries: &'a [IndexEntry], arch: &str) -> Option<&'a IndexEntry> {
    let default = default_variant(arch);
    entries
        .iter()
        .filter_map(|e| {
            let p = e.platform.as_ref()?;
            if p.os != "linux" || p.architecture != arch {
                return None;
            }
            let rank = match p.variant.as_deref().unwrap_or("") {
                "" => 0,
                v if v == default => 0,
                v => v
                    .strip_prefix('v')
                    .and_then(|n| n.parse::<u32>().ok())
                    .map_or(u32::MAX, |n| n.saturating_add(1)),
            };
            Some((rank, e))
        })
        // min_by_key keeps the first of equal ranks: index order breaks ties.
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, e)| e)
}

/// `linux/arm64, linux/arm/v7, ...` for messages.
pub(crate) fn platforms(entries: &[IndexEntry]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|e| match &e.platform {
            Some(p) => p.to_string(),
            None => "(no platform)".to_owned(),
        })
        .collect();
    if list.is_empty() {
        "no entries".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::of(&[n]).to_string()
    }

    fn entry(arch: &str, variant: Option<&str>, n: u8) -> serde_json::Value {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d(n), "size": 1, "platform": p})
    }

    #[test]
    fn picks_amd64_without_variant_first() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                entry("arm64", Some("v8"), 1),
                entry("amd64", Some("v3"), 2),
                entry("amd64", None, 3),
                entry("amd64", Some("v2"), 4),
            ]
        });
        let Manifest::Index(entries) = parse(index.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            pick_linux(&entries, "amd64").unwrap().digest.to_string(),
            d(3)
        );
        assert_eq!(
            pick_linux(&entries[..2], "amd64")
                .unwrap()
                .digest
                .to_string(),
            d(2)
        );
        assert!(pick_linux(&entries[..1], "amd64").is_none());
        assert_eq!(platforms(&entries[..1]), "linux/arm64/v8");
        // arm64's default variant is v8, on an arm64 machine.
        assert_eq!(
            pick_linux(&entries, "arm64").unwrap().digest.to_string(),
            d(1)
        );
        // This machine's own architecture picks its entry.
        if native_arch() == "amd64" {
            assert_eq!(pick_native(&entries).unwrap().digest.to_string(), d(3));
        }
    }

    #[test]
    fn kinds() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 3},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d(2), "size": 5}]
        });
        let Manifest::Image { config, layers } = parse(m.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(config.size, 3);
        assert_eq!(
            layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let s1 = r#"{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}"#;
        assert!(matches!(parse(s1.as_bytes()), Err(ParseError::Schema1)));
        assert!(matches!(parse(b"{"), Err(ParseError::Invalid(_))));
        let bad = serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"});
        assert!(matches!(
            parse(bad.to_string().as_bytes()),
            Err(ParseError::Invalid(_))
        ));
        let bad_digest = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "x", "digest": "sha256:xyz", "size": 1}, "layers": []
        });
        assert!(matches!(
            parse(bad_digest.to_string().as_bytes()),
            Err(ParseError::Invalid(_))
        ));
    }
}
