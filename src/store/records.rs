//! The records kept in the store, serialized as JSON: readable in a debugger, tolerant of added
//! optional fields (`#[serde(default)]`), and small.

use serde::{Deserialize, Serialize};

use crate::image::digest::Digest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest: the image id CRI reports.
    pub id: Digest,
    /// `domain/repo:tag` names pointing here.
    #[serde(default)]
    pub repo_tags: Vec<String>,
    /// `domain/repo@sha256:..` names pointing here (the manifest or index digest).
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Bytes of the image as distributed (config + compressed layers), as other runtimes report.
    pub size: u64,
    /// Chain ids of the layers, bottom first.
    pub layers: Vec<Digest>,
    /// The raw image config JSON.
    pub config: String,
    #[serde(default)]
    pub created_unix_nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// Numeric directory name under `<root>/layers/`.
    pub dir: u64,
    /// Bytes of regular file content in the unpacked layer.
    pub unpacked_bytes: u64,
    /// Filesystem entries in the unpacked layer.
    pub entries: u64,
}
