//! Pods and containers: the state behind `RuntimeService`. Records live in the store (so they
//! survive a daemon restart); processes are the pod-init holding each pod's namespaces and one
//! monitor per container, neither of them a child of the daemon, so both outlive it. On start
//! the daemon reconciles records with what still runs ([`Runtime::recover`]).

mod clone_mntns;
mod container;
mod container_orphans;
pub mod events;
pub mod exec;
pub mod handlers;
mod image_volumes;
mod interactive;
mod names;
mod pod;
mod pod_builds;
pub mod pod_files;
mod termination;

use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;

pub use container::ContainerError;
pub use interactive::Interactive;
pub use pod::PodError;

use crate::config::Config;
use crate::cri::v1 as cri;
use crate::image::Images;
use crate::store::{ContainerRecord, PodRecord, Store};

pub struct Runtime {
    store: Arc<Store>,
    images: Arc<Images>,
    /// Our own binary, re-executed as pod-init and exec helper.
    binary: PathBuf,
    /// The `strata-monitor` executable installed next to it.
    monitor_binary: PathBuf,
    state_dir: PathBuf,
    root_dir: PathBuf,
    pod_names: names::Reservations,
    container_names: names::Reservations,
    /// cgroup parent of pods that name none.
    default_cgroup_parent: String,
    /// Relative `Localhost` seccomp profiles are looked up here.
    seccomp_root: PathBuf,
    /// Whether this host lets us lower `oom_score_adj` (needs CAP_SYS_RESOURCE).
    host_allows_negative_oom_score_adj: bool,
    /// Serialises state transitions of containers (start/stop/remove/exit).
    transitions: tokio::sync::Mutex<()>,
    /// The configured OCI runtime handlers, by name (the default handler is not here).
    handlers: std::collections::BTreeMap<String, handlers::OciHandler>,
    /// Lifecycle events for `GetContainerEvents`.
    events: events::Events,
    /// Pod networking (CNI).
    network: crate::network::Network,
    /// The template mount namespace containers are cloned from (`clone_mntns.rs`).
    clone_mntns: tokio::sync::OnceCell<Option<PathBuf>>,
}

impl Runtime {
    pub fn new(config: &Config, store: Arc<Store>, images: Arc<Images>) -> std::io::Result<Self> {
        let binary = std::env::current_exe()?;
        let monitor_binary = binary.with_file_name("strata-monitor");
        if !monitor_binary.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} is missing: strata-monitor must be installed next to strata",
                    monitor_binary.display()
                ),
            ));
        }
        Ok(Self {
            monitor_binary,
            store,
            images,
            binary,
            state_dir: config.state.clone(),
            root_dir: config.root.clone(),
            pod_names: names::Reservations::default(),
            container_names: names::Reservations::default(),
            seccomp_root: config.root.join("seccomp"),
            default_cgroup_parent: config.runtime.cgroup_parent.clone(),
            host_allows_negative_oom_score_adj: has_cap_sys_resource(),
            transitions: tokio::sync::Mutex::new(()),
            handlers: handlers::probe(config),
            events: events::Events::new(),
            network: crate::network::Network::new(config),
            clone_mntns: tokio::sync::OnceCell::new(),
        })
    }

    /// The configured OCI runtime handlers (the default, built-in one is not listed).
    pub fn oci_handlers(&self) -> impl Iterator<Item = &handlers::OciHandler> {
        self.handlers.values()
    }

    pub fn network(&self) -> &crate::network::Network {
        &self.network
    }

    fn pod_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("pods").join(id)
    }

    /// Short (`c/`) because the monitor's socket lives here and unix socket paths are limited
    /// to 108 bytes.
    fn container_state_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("c").join(id)
    }

    fn container_data_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// Where containers' writable layers live (the container filesystem of `ImageFsInfo`).
    pub fn containers_dir(&self) -> PathBuf {
        self.root_dir.join("containers")
    }

    /// A container's writable layer (its overlay upperdir).
    pub fn container_upper_dir(&self, id: &str) -> PathBuf {
        self.container_data_dir(id).join("upper")
    }
}

/// A fresh 64-hex-digit id, like other runtimes use.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

impl PodRecord {
    pub fn sandbox_config(&self) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig::decode(self.config.as_slice()).unwrap_or_default()
    }
}

impl ContainerRecord {
    pub fn container_config(&self) -> cri::ContainerConfig {
        cri::ContainerConfig::decode(self.config.as_slice()).unwrap_or_default()
    }
}

/// Matches a CRI label selector: every selector pair must be present with the same value.
pub fn labels_match(
    labels: &std::collections::HashMap<String, String>,
    selector: &std::collections::HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl crate::error::Classify for RecoverError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Internal
    }
}

impl Runtime {
    /// Reconciles stored pods and containers with the processes that still run. Each object is
    /// handled on its own; one that cannot be reconciled is logged, not fatal.
    pub async fn recover(self: &Arc<Self>) -> Result<(), RecoverError> {
        self.recover_pods()?;
        self.undo_interrupted_pod_builds()?;
        self.recover_containers().await?;
        self.discard_unrecorded_containers().await?;
        self.check_pod_networks();
        Ok(())
    }
}

/// The subdirectories of `dir` whose names are not in `known`: at start, what a daemon that
/// died mid-call made and never recorded.
fn unknown_subdirs(
    dir: &std::path::Path,
    known: &std::collections::HashSet<String>,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !known.contains(name))
        .collect()
}

/// capability(7) number of CAP_SYS_RESOURCE.
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether we hold CAP_SYS_RESOURCE (needed to lower oom_score_adj below our own).
fn has_cap_sys_resource() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_no_record_names_are_unknown() {
        let root = tempfile::tempdir().unwrap();
        for name in ["recorded", "orphan"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
        }
        std::fs::write(root.path().join("stray-file"), b"").unwrap();
        let known: std::collections::HashSet<String> = ["recorded"].map(String::from).into();
        assert_eq!(
            unknown_subdirs(root.path(), &known),
            vec!["orphan".to_owned()]
        );
        assert!(unknown_subdirs(&root.path().join("missing"), &known).is_empty());
    }
}
