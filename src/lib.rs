//! strata: a Kubernetes CRI runtime. The `strata` binary is a thin CLI over this library.
//!
//! Module map (one concern a module):
//! - [`config`]: the TOML configuration.
//! - [`cri`]: the CRI v1 API generated from `proto/`.
//! - [`server`]: the daemon: socket, lock, signals, the tower layer every RPC passes through, and
//!   the one place where domain errors become gRPC statuses.
//! - [`store`]: the embedded transactional metadata store.
//! - [`image`]: references, the registry client, layer unpacking, the layer cache and pulls.
//! - [`launcher`]: the runc-style container launcher (clone, mounts, pivot_root, user, caps,
//!   seccomp) and the exec helper (`strata-monitor exec`).
//! - [`image_service`] / [`runtime_service`]: the CRI services, one file per verb.
//! - [`spec`]: CRI container config -> OCI runtime spec.
//! - [`stats`]: container and pod resource usage for the CRI stats and metrics calls.
//! - [`cgroups`]: cgroupfs management (v1, hybrid, v2).
//! - [`monitor`]: the per-container monitor process (`strata-monitor`) and its daemon-side client.
//! - [`podinit`]: the process holding a pod's namespaces (`strata-monitor pod-init`).
//! - [`network`]: pod networking through CNI plugins.
//! - [`runtime`]: pods and containers: their records, names, events, exec and attach.
//! - [`streaming`]: the streaming server behind the Exec, Attach and PortForward URLs and its
//!   protocols (SPDY/3.1, Kubernetes WebSocket channels).

pub mod cgroups;
pub mod config;
pub mod cri;
pub mod error;
pub mod image;
pub mod image_service;
pub mod launcher;
pub mod monitor;
pub mod network;
pub mod podinit;
pub mod runtime;
pub mod runtime_service;
pub mod server;
pub mod spec;
pub mod stats;
pub mod store;
pub mod streaming;

/// The name and version reported by `Version` and `strata version`.
pub const RUNTIME_NAME: &str = "strata";
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The CRI API version this runtime serves.
pub const CRI_API_VERSION: &str = "v1";
