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

/// Protobuf bytes of a CRI message, stored as base64 inside the JSON record: the CRI config is
/// kept exactly as kubelet sent it, so status calls can echo labels, annotations and metadata.
pub mod pb_base64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    /// `PodSandboxConfig` as kubelet sent it (protobuf).
    #[serde(with = "pb_base64")]
    pub config: Vec<u8>,
    pub state: PodState,
    pub created_at: i64,
    #[serde(default)]
    pub runtime_handler: String,
    /// The pod-init process holding the pod's namespaces (0 when none runs).
    #[serde(default)]
    pub init_pid: i32,
    /// Its start time (clock ticks since boot), so a recycled pid is never mistaken for it.
    #[serde(default)]
    pub init_start_time: u64,
    /// Pinned network namespace path (empty for host networking).
    #[serde(default)]
    pub netns_path: String,
    #[serde(default)]
    pub ips: Vec<String>,
    /// cgroup parent of the pod's containers (cgroupfs path).
    #[serde(default)]
    pub cgroup_parent: String,
    /// The pod's CNI attachment (what DEL needs), until the pod is removed.
    #[serde(default)]
    pub network: Option<crate::network::Attachment>,
}

/// A RunPodSandbox still in progress, written before CNI ADD: after a crash it says what to
/// undo of a pod kubelet never heard of. pod-init needs no pid here: it names the pod's
/// directory on its command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodBuild {
    pub id: String,
    /// The attachment ADD is about to make (no result yet): enough for DEL.
    #[serde(default)]
    pub network: Option<crate::network::Attachment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub exit_code: i32,
    pub finished_at: i64,
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_id: String,
    /// `ContainerConfig` as kubelet sent it (protobuf).
    #[serde(with = "pb_base64")]
    pub config: Vec<u8>,
    /// The image id (config digest) the container was created from.
    pub image_id: String,
    /// The image as the request named it.
    pub image_ref: String,
    /// Chain ids of the image layers the rootfs uses: they are never deleted while it exists.
    pub layers: Vec<Digest>,
    pub state: ContainerState,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    pub log_path: String,
    pub cgroup_path: String,
    /// Who the container's process runs as (inside the container), for `ContainerStatus.user`.
    #[serde(default)]
    pub user: Option<ProcessUser>,
}

/// uid, gid and supplemental groups of a container's process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}
