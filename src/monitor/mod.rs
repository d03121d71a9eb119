//! The per-container monitor: `strata-monitor --config <state>/containers/<id>/monitor.json`
//! (its own executable, src/bin/strata-monitor.rs, for its memory footprint).
//!
//! A small single-threaded process (no tokio) that is the parent and child subreaper of one
//! container's init. It detaches from the daemon (double fork, `setsid`), opens the container's
//! stdio (pipes or a pty), has the launcher clone the init, reports `{"created":{"pid":N}}` on its
//! stdout, then runs a `poll(2)` loop over the init's pidfd, a SIGCHLD signalfd, the container's
//! output, and a control socket ([`protocol`]). It writes the CRI log ([`crilog`]), and when the
//! init exits it records the [`ExitStatus`] in `exit.json` ([`exit`]), answers waiters and exits.
//!
//! # Why one monitor per container (not one per pod)
//! - **Isolation of failures.** A monitor that crashes, leaks or wedges (a full disk under the
//!   log, a stuck client) takes down the bookkeeping of one container, never of its siblings.
//! - **Exit status ownership.** Only a process's parent can `wait` for it. One monitor is the
//!   parent of exactly one init, so the status has one owner and one file, written once; there is
//!   no shared table to keep consistent across restarts of a pod-wide process.
//! - **Simple kill semantics.** Stopping or removing a container never has to reason about other
//!   containers' processes: the monitor exits by itself when its init is gone, and a stale monitor
//!   can be killed without collateral damage. Pod-level state lives in `strata pod-init`.
//! - **Cost.** One process per container. Its private memory is what counts: the binary's text
//!   is shared by every monitor and the daemon. Measured (release build, 20 monitors, host-process
//!   launcher; the real launcher gives the same figures), from `/proc/<pid>/smaps_rollup`:
//!   - PIE `strata` (the default link): RSS 5.5 MB, PSS 1.1 MB, of which 850 KB private
//!     anonymous: 630 KB are the relocated `.data.rel.ro` of the whole binary (every PIE process
//!     dirties it at load), the rest heap, stack and libc data;
//!   - the same binary linked `-no-pie`: RSS 4.5 MB, PSS 0.44 MB (245 KB private anonymous);
//!   - RSS is mostly text mapped in page-cache-folio-sized pieces, shared with the daemon and the
//!     other monitors; a smaller RSS needs a smaller binary (a monitor-only executable without
//!     tokio, tonic and the registry client measured 2.4 MB RSS).
//!
//!   `tests/monitor.rs` (`monitor_memory`) prints the figures of the binary under test. The
//!   monitor keeps a 16 KiB read buffer, one partial line per stream (≤ 16 KiB), at most 64 KiB
//!   of pending stdin and 256 KiB of backlog per attached client, and drops the spec after the
//!   create and trims its heap and stack (`footprint.rs`).
//!
//! The daemon side (tokio) is [`client`].

pub mod client;
mod conn;
pub mod crilog;
pub(crate) mod detach;
mod event_loop;
pub mod exit;
pub(crate) mod footprint;
pub mod launch;
pub mod oci_runtime;
pub mod protocol;
mod stdio;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorKind};

pub use client::{Created, MonitorClient, read_exit_file, spawn_monitor};
pub use exit::{ExitStatus, oom_kill_count};

/// Everything the monitor needs, written by the daemon as JSON to `monitor.json`. Paths must be
/// absolute (the monitor changes its directory to `/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// The container id (diagnostics only).
    pub id: String,
    /// How the launcher creates the container init.
    pub init: crate::launcher::InitConfig,
    /// The CRI log file (`ContainerConfig.log_path` under the pod's log directory); `None`
    /// discards the output (it is still copied to attached clients).
    pub log_path: Option<PathBuf>,
    /// Give the container a pty instead of pipes.
    #[serde(default)]
    pub tty: bool,
    /// Keep a stdin for the container (a pipe, or the pty); otherwise it reads `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin when the first attached client with stdin detaches (or
    /// closes its stdin). Meaningless without `stdin`.
    #[serde(default)]
    pub stdin_once: bool,
    /// The control socket ([`protocol`]).
    pub socket_path: PathBuf,
    /// Where the [`ExitStatus`] is written, atomically, when the init has exited.
    pub exit_file: PathBuf,
    /// The container cgroup's memory directories (one for v2, the memory hierarchy's for v1):
    /// their OOM kill counters decide `oom_killed`.
    #[serde(default)]
    pub memory_cgroup_dirs: Vec<PathBuf>,
    /// What creates the init: the built-in launcher (the default, also for configs written
    /// before this field existed) or an external OCI runtime.
    #[serde(default)]
    pub launcher: LaunchWith,
}

/// The launcher a [`MonitorConfig`] names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LaunchWith {
    /// `crate::launcher::create` (or the test-only [`LauncherKind::Host`] chosen by the
    /// environment).
    #[default]
    Builtin,
    /// An OCI runtime binary (runc) driven through a bundle: [`oci_runtime`].
    OciRuntime(oci_runtime::OciRuntimeConfig),
}

/// Which [`launch::Launch`] implementation creates the init.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LauncherKind {
    /// `crate::launcher::create`: the real container init.
    #[default]
    Builtin,
    /// Tests only: runs `spec.process.args` as a plain host process (no namespaces, no rootfs,
    /// no user switch), joining `cgroup_procs`. Chosen by [`HOST_LAUNCHER_ENV`]` = host` in the
    /// monitor's environment; the daemon never sets it.
    Host,
}

/// The environment variable that selects [`LauncherKind::Host`] (value `host`), for tests.
pub const HOST_LAUNCHER_ENV: &str = "STRATA_TEST_MONITOR_LAUNCHER";

impl LauncherKind {
    /// The launcher selected by the environment.
    pub fn from_env() -> Self {
        match std::env::var_os(HOST_LAUNCHER_ENV) {
            Some(v) if v == "host" => Self::Host,
            _ => Self::Builtin,
        }
    }
}

/// Errors of the monitor and of its client.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("monitor config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid monitor config: {0}")]
    InvalidConfig(String),
    #[error("creating the container: {0}")]
    Create(String),
    #[error("starting the container: {0}")]
    Start(String),
    #[error("the container has exited")]
    Exited,
    #[error("monitor at {path} is gone: {source}")]
    Gone {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("monitor replied: {0}")]
    Remote(String),
    #[error("monitor protocol: {0}")]
    Protocol(String),
}

impl MonitorError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl Classify for MonitorError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidConfig(_) => ErrorKind::InvalidArgument,
            Self::Exited => ErrorKind::FailedPrecondition,
            Self::Start(_) => ErrorKind::FailedPrecondition,
            Self::Gone { .. } => ErrorKind::Unavailable,
            Self::Io { .. }
            | Self::Config { .. }
            | Self::Create(_)
            | Self::Remote(_)
            | Self::Protocol(_) => ErrorKind::Internal,
        }
    }
}

impl MonitorConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, MonitorError> {
        let bytes = std::fs::read(path)
            .map_err(|e| MonitorError::io(format!("reading {}", path.display()), e))?;
        let config: Self =
            serde_json::from_slice(&bytes).map_err(|source| MonitorError::Config {
                path: path.to_owned(),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), MonitorError> {
        let mut paths = vec![&self.socket_path, &self.exit_file];
        paths.extend(self.log_path.as_ref());
        paths.extend(self.memory_cgroup_dirs.iter());
        if let LaunchWith::OciRuntime(oci) = &self.launcher {
            paths.extend([&oci.runtime_path, &oci.runtime_root, &oci.bundle]);
        }
        if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
            return Err(MonitorError::InvalidConfig(format!(
                "path {} is not absolute",
                p.display()
            )));
        }
        Ok(())
    }

    /// The monitor's own diagnostics: `monitor.log` next to the socket.
    pub fn diag_log_path(&self) -> PathBuf {
        self.socket_path
            .parent()
            .unwrap_or(Path::new("/"))
            .join("monitor.log")
    }
}

/// The `strata-monitor --config FILE` entry point. Must run before any other thread exists.
pub fn monitor_main(config_path: &Path) -> ! {
    event_loop::main(config_path)
}
