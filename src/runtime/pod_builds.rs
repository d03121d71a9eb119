//! Undoing RunPodSandbox calls the daemon did not live to finish.
//!
//! A build makes things in this order: the pod's directory, pod-init (which outlives the
//! daemon), the pinned network namespace, a [`PodBuild`] record, CNI ADD, and at last the pod's
//! record. A daemon killed before the end leaves a pod kubelet never heard of: an address taken
//! in host-local, a veth, a process and a mount, none of which anything would free again.
//! On start the daemon undoes each such build: from its `PodBuild` record (CNI DEL with what ADD
//! ran with, then pod-init and the files), or, for a crash before that record was written, from
//! the pod directory no record names. Either way pod-init is found by the directory it names on
//! its command line.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pod::{PodError, kill_init, process_start_time};
use super::pod_files::PodFiles;
use super::{Runtime, unknown_subdirs};
use crate::store::PodBuild;

impl Runtime {
    /// Finds the interrupted builds (before anything is served, so no new build is mistaken for
    /// one) and undoes them in the background: CNI DEL may take a while per pod.
    pub(super) fn undo_interrupted_pod_builds(self: &Arc<Self>) -> Result<(), PodError> {
        let read = self.store.read()?;
        let builds = read.pod_builds()?;
        let known: HashSet<String> = read
            .pods()?
            .into_iter()
            .map(|p| p.id)
            .chain(builds.iter().map(|b| b.id.clone()))
            .collect();
        let pods_dir = self.state_dir.join("pods");
        let orphans: Vec<PathBuf> = unknown_subdirs(&pods_dir, &known)
            .into_iter()
            .map(|name| pods_dir.join(name))
            .collect();
        if builds.is_empty() && orphans.is_empty() {
            return Ok(());
        }
        let runtime = self.clone();
        tokio::spawn(async move {
            for build in builds {
                runtime.undo_pod_build(build).await;
            }
            for dir in orphans {
                undo_unrecorded_build(&dir).await;
            }
        });
        Ok(())
    }

    async fn undo_pod_build(&self, build: PodBuild) {
        let id = build.id.as_str();
        // DEL first, while pod-init still holds the namespace the plugins clean up in.
        let deleted = match &build.network {
            Some(attachment) => match self.network.del(attachment).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(pod = id, error = %e, "CNI DEL of an interrupted RunPodSandbox failed; retried at the next start");
                    false
                }
            },
            None => true,
        };
        remove_pod_dir(&self.pod_dir(id)).await;
        if !deleted {
            return;
        }
        match self.store.write(|t| t.delete_pod_build(id)) {
            Ok(()) => tracing::warn!(
                pod = id,
                "undid a RunPodSandbox the daemon did not finish (network, pod-init, files)"
            ),
            Err(e) => tracing::warn!(pod = id, error = %e, "forgetting an undone RunPodSandbox"),
        }
    }
}

/// A build that died before its record: nothing reached CNI yet, so pod-init and the files are
/// all there is.
async fn undo_unrecorded_build(dir: &Path) {
    remove_pod_dir(dir).await;
    tracing::warn!(
        dir = %dir.display(),
        "removed a pod directory the daemon did not finish building"
    );
}

/// Ends the pod-init processes spawned for `dir`, then unpins the netns and removes the files.
async fn remove_pod_dir(dir: &Path) {
    for pid in crate::podinit::find_by_pod_dir(dir) {
        if let Some(start_time) = process_start_time(pid) {
            kill_init(pid, start_time).await;
        }
    }
    let files = PodFiles::new(dir.to_owned());
    if let Err(e) = crate::network::netns::unpin(&files.netns()) {
        tracing::warn!(dir = %dir.display(), error = %e, "unpinning an unfinished pod's netns");
    }
    if let Err(e) = files.remove() {
        tracing::warn!(dir = %dir.display(), error = %e, "removing an unfinished pod's files");
    }
}
