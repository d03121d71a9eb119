//! Containers the daemon did not live to record.
//!
//! CreateContainer makes the container's directories, its cgroup and its monitor (with the
//! init waiting for StartContainer) before it writes the container's record. A daemon killed in
//! between leaves all of that behind, for a container kubelet never got an id for and would
//! create again. On start, before serving, the daemon discards every container directory no
//! record names: its init (through the monitor, which then exits), the rest of its cgroup, the
//! image volumes mounted for it, and the files.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::container::{ContainerError, send_stop_signal};
use super::{Runtime, unknown_subdirs};
use crate::cgroups::Cgroup;

impl Runtime {
    pub(super) async fn discard_unrecorded_containers(&self) -> Result<(), ContainerError> {
        let read = self.store.read()?;
        let known: HashSet<String> = read.containers()?.into_iter().map(|c| c.id).collect();
        let pods = read.pods()?;
        drop(read);
        let mut unknown = BTreeSet::new();
        for dir in [self.state_dir.join("c"), self.containers_dir()] {
            unknown.extend(unknown_subdirs(&dir, &known));
        }
        for id in unknown {
            // Its cgroup lies under the parent of one of the pods (the pod is not recorded
            // either when the daemon died building both; then no cgroup was made).
            let cgroup_path = pods
                .iter()
                .map(|pod| format!("{}/{id}", self.pod_cgroup_parent(pod).trim_end_matches('/')))
                .find(|path| {
                    Cgroup::open(path).is_ok_and(|cg| cg.dirs().iter().any(|d| d.exists()))
                })
                .unwrap_or_default();
            let paths = self.paths(&id);
            stop_monitor(&paths.socket()).await;
            self.discard(&paths, &cgroup_path);
            tracing::warn!(
                container = %id,
                cgroup = %cgroup_path,
                "discarded a container the daemon did not live to record (CreateContainer was cut short)"
            );
        }
        Ok(())
    }
}

/// Kills the container's init through its monitor, then waits for the monitor to have written
/// its exit file and gone: it writes into the directory about to be removed. (`discard` kills
/// whatever else is left in the cgroup.)
async fn stop_monitor(socket: &Path) {
    // A stale socket (its monitor died too) refuses the signal: then there is nothing to wait for.
    let monitor_alive = socket.exists() && send_stop_signal(socket, libc::SIGKILL).await.is_ok();
    // The monitor unlinks its socket once the exit file is written.
    let deadline = std::time::Instant::now() + MONITOR_EXIT_WAIT;
    while monitor_alive && socket.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// How long a monitor may take to record its container's exit.
const MONITOR_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
