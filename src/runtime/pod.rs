//! Pod sandboxes without an infra image: `strata-monitor pod-init` holds the pod's namespaces
//! (and is PID 1 of a shared pid namespace), so starting a pod never pulls anything.

use std::collections::HashMap;

use prost::Message;

use super::events::EventKind;
use super::pod_files::{PodFiles, PodFilesError};
use super::{Runtime, labels_match, names, new_id, now_nanos};
use crate::cri::v1 as cri;
use crate::error::{Classify, ErrorKind};
use crate::store::{PodBuild, PodRecord, PodState, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("pod sandbox name {name} is already used by pod {id}")]
    NameTaken { name: String, id: String },
    #[error("pod sandbox {id} is not ready")]
    NotReady { id: String },
    #[error("creating pod sandbox: {0}")]
    Build(String),
    #[error(transparent)]
    Files(#[from] PodFilesError),
    #[error("pod sandbox namespaces: {0}")]
    PodInit(#[from] crate::podinit::PodInitError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Container(#[from] Box<super::ContainerError>),
    #[error("pod sandbox {id} network: {source}")]
    Network {
        id: String,
        source: crate::network::NetworkError,
    },
    #[error("pinning the pod's network namespace at {path}: {source}")]
    Netns {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Classify for PodError {
    fn kind(&self) -> ErrorKind {
        match self {
            PodError::NotFound(_) => ErrorKind::NotFound,
            PodError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            PodError::NameTaken { .. } => ErrorKind::AlreadyExists,
            PodError::NotReady { .. } => ErrorKind::FailedPrecondition,
            PodError::Container(e) => e.kind(),
            PodError::Network { source, .. } => source.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

/// How the pod uses each namespace, from its security context.
pub struct PodNamespaces {
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// Containers share one pid namespace (held by pod-init).
    pub shared_pid: bool,
}

impl PodNamespaces {
    pub fn of(config: &cri::PodSandboxConfig) -> Self {
        let opts = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let mode = |m: Option<i32>| m.and_then(|m| cri::NamespaceMode::try_from(m).ok());
        let network = mode(opts.map(|o| o.network));
        let ipc = mode(opts.map(|o| o.ipc));
        let pid = mode(opts.map(|o| o.pid));
        Self {
            host_network: network == Some(cri::NamespaceMode::Node),
            host_ipc: ipc == Some(cri::NamespaceMode::Node),
            host_pid: pid == Some(cri::NamespaceMode::Node),
            // Absent options mean the proto's default, POD: containers without options of
            // their own join the pod's pid namespace (as containerd does too).
            shared_pid: pid.unwrap_or(cri::NamespaceMode::Pod) == cri::NamespaceMode::Pod,
        }
    }
}

/// Refuses sysctls that are not namespaced or not in a namespace the pod owns, before anything
/// of the pod exists (containers check them again when their spec is built).
fn validate_sysctls(config: &cri::PodSandboxConfig) -> Result<(), PodError> {
    let Some(linux) = config.linux.as_ref().filter(|l| !l.sysctls.is_empty()) else {
        return Ok(());
    };
    let ns = PodNamespaces::of(config);
    let own = crate::spec::sysctl::OwnNamespaces {
        net: !ns.host_network,
        ipc: !ns.host_ipc,
        uts: !ns.host_network,
    };
    crate::spec::sysctl::validate(&linux.sysctls, own)
        .map(drop)
        .map_err(|e| PodError::InvalidArgument(e.to_string()))
}

/// The key that makes a pod name unique, as kubelet builds it.
fn pod_name_key(meta: &cri::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}",
        meta.name, meta.namespace, meta.uid, meta.attempt
    )
}

impl Runtime {
    pub async fn run_pod(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, PodError> {
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| PodError::InvalidArgument("pod sandbox metadata is required".into()))?;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(PodError::InvalidArgument(
                "pod sandbox metadata needs name, namespace and uid".into(),
            ));
        }
        if !super::handlers::is_default(&runtime_handler)
            && !self.handlers.contains_key(&runtime_handler)
        {
            let mut known = vec!["\"\"".to_owned(), "strata".to_owned()];
            known.extend(self.handlers.keys().cloned());
            return Err(PodError::InvalidArgument(format!(
                "unknown runtime handler `{runtime_handler}` (configured: {})",
                known.join(", ")
            )));
        }
        validate_sysctls(&config)?;
        let key = pod_name_key(&meta);
        let existing = || -> Result<Option<String>, PodError> {
            Ok(self
                .store
                .read()?
                .pods()?
                .into_iter()
                .find(|p| {
                    p.sandbox_config()
                        .metadata
                        .as_ref()
                        .map(pod_name_key)
                        .as_ref()
                        == Some(&key)
                })
                .map(|p| p.id))
        };
        self.pod_names
            .build_once(
                &key,
                existing,
                || self.build_pod(config, runtime_handler),
                |refused| match refused {
                    names::Refused::Taken { id } => PodError::NameTaken {
                        name: key.clone(),
                        id,
                    },
                    names::Refused::Failed(message) => PodError::Build(message),
                },
            )
            .await
    }

    async fn build_pod(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, PodError> {
        let id = new_id();
        let ns = PodNamespaces::of(&config);
        let files = PodFiles::new(self.pod_dir(&id));
        // What exists so far, for the cleanup of a failed build.
        let mut init: Option<(i32, u64)> = None;
        let mut attachment: Option<crate::network::Attachment> = None;
        // What ADD runs with, and whether the PodBuild record naming it is written.
        let mut planned: Option<crate::network::Attachment> = None;
        let mut build_recorded = false;
        let result = async {
            let userns = crate::spec::pod_userns_maps(&config)
                .map_err(|e| PodError::InvalidArgument(e.to_string()))?;
            if userns.is_some() && (ns.host_network || ns.host_ipc || ns.host_pid) {
                // Kubernetes refuses hostUsers: false with host namespaces, as we do: those
                // namespaces are owned by the host's user namespace.
                return Err(PodError::InvalidArgument(
                    "a pod with its own user namespace cannot share the host's network, IPC or \
                     pid namespace"
                        .into(),
                ));
            }
            if userns.is_some() && !super::handlers::is_default(&runtime_handler) {
                // Status does not claim user namespaces for OCI runtime handlers: the rootfs
                // strata prepares for them is not id-mapped.
                return Err(PodError::InvalidArgument(format!(
                    "runtime handler `{runtime_handler}` does not support pod user namespaces; \
                     use the default handler"
                )));
            }
            files.create(&config, ns.host_ipc)?;
            let hostname =
                (!ns.host_network && !config.hostname.is_empty()).then(|| config.hostname.clone());
            let init_config = crate::podinit::PodInitConfig {
                new_net: !ns.host_network,
                new_ipc: !ns.host_ipc,
                new_uts: !ns.host_network,
                // Like a pause container, pod-init always gets its own pid namespace (unless
                // hostPID); containers with pid mode POD join it, CONTAINER ones get their own.
                new_pid: !ns.host_pid,
                hostname,
                userns: userns.map(|(uids, gids)| crate::podinit::UsernsMaps { uids, gids }),
            };
            let pid = crate::podinit::spawn(&self.monitor_binary, &init_config, &files.dir).await?;
            let start_time = process_start_time(pid).unwrap_or_default();
            init = Some((pid, start_time));
            let mut netns_path = String::new();
            let mut ips = Vec::new();
            if !ns.host_network {
                let pin = files.netns();
                crate::network::netns::pin(pid, &pin).map_err(|source| PodError::Netns {
                    path: pin.clone(),
                    source,
                })?;
                netns_path = pin.display().to_string();
                planned = Some(
                    self.network
                        .attachment(&id, &pin, &config)
                        .map_err(|source| PodError::Network {
                            id: id.clone(),
                            source,
                        })?,
                );
            }
            // From here on a crash leaves something only a record can undo (an address taken
            // by CNI ADD above all): the restarted daemon finds this and undoes the build.
            self.store.write(|t| {
                t.put_pod_build(&PodBuild {
                    id: id.clone(),
                    network: planned.clone(),
                })
            })?;
            build_recorded = true;
            if let Some(planned) = planned.clone() {
                let added =
                    self.network
                        .add(planned)
                        .await
                        .map_err(|source| PodError::Network {
                            id: id.clone(),
                            source,
                        })?;
                ips = added.ips();
                attachment = Some(added);
                if let Some(ip) = ips.first() {
                    files.add_pod_ip(ip)?;
                }
            }
            let cgroup_parent = config
                .linux
                .as_ref()
                .map(|l| l.cgroup_parent.clone())
                .unwrap_or_default();
            let record = PodRecord {
                id: id.clone(),
                config: config.encode_to_vec(),
                state: PodState::Ready,
                created_at: now_nanos(),
                runtime_handler,
                init_pid: pid,
                init_start_time: start_time,
                netns_path,
                ips,
                cgroup_parent,
                network: attachment.clone(),
            };
            self.store.write(|t| {
                t.put_pod(&record)?;
                t.delete_pod_build(&record.id)
            })?;
            Ok::<_, PodError>(())
        }
        .await;
        if let Err(e) = result {
            // Leave nothing behind: the network, pod-init (and with it the namespaces), files.
            // DEL also undoes a failed ADD; if DEL fails, the PodBuild record stays and the
            // next start tries again.
            let mut network_left = false;
            let added_or_planned = attachment.as_ref().or(planned.as_ref());
            if build_recorded
                && let Some(a) = added_or_planned
                && let Err(del) = self.network.del(a).await
            {
                tracing::warn!(pod = %id, error = %del, "CNI DEL after a failed RunPodSandbox; retried at the next start");
                network_left = true;
            }
            if let Some((pid, start_time)) = init {
                kill_init(pid, start_time).await;
            }
            let _ = crate::network::netns::unpin(&files.netns());
            let _ = files.remove();
            if build_recorded
                && !network_left
                && let Err(forget) = self.store.write(|t| t.delete_pod_build(&id))
            {
                tracing::warn!(pod = %id, error = %forget, "forgetting a failed RunPodSandbox; the next start undoes it again");
            }
            return Err(e);
        }
        tracing::info!(pod = %id, "pod sandbox ready");
        // A pod's events name the pod itself, as containerd's do.
        self.emit(EventKind::ContainerCreatedEvent, &id, &id);
        self.emit(EventKind::ContainerStartedEvent, &id, &id);
        Ok(id)
    }

    pub fn pod(&self, id: &str) -> Result<PodRecord, PodError> {
        self.find_pod(id)?
            .ok_or_else(|| PodError::NotFound(id.to_owned()))
    }

    /// A pod by full id or unique id prefix.
    pub fn find_pod(&self, id: &str) -> Result<Option<PodRecord>, PodError> {
        if id.is_empty() {
            return Err(PodError::InvalidArgument(
                "pod sandbox id is required".into(),
            ));
        }
        let read = self.store.read()?;
        if let Some(pod) = read.pod(id)? {
            return Ok(Some(pod));
        }
        let matches: Vec<_> = read
            .pods()?
            .into_iter()
            .filter(|p| p.id.starts_with(id))
            .collect();
        Ok(if matches.len() == 1 {
            matches.into_iter().next()
        } else {
            None
        })
    }

    /// The cgroup under which the pod's containers live: kubelet's `cgroup_parent`, or a
    /// per-pod cgroup under the configured default (which the pod's removal deletes).
    pub fn pod_cgroup_parent(&self, pod: &PodRecord) -> String {
        if pod.cgroup_parent.is_empty() {
            format!(
                "{}/{}",
                self.default_cgroup_parent.trim_end_matches('/'),
                pod.id
            )
        } else {
            pod.cgroup_parent.clone()
        }
    }

    /// Paths of the pod's namespaces for its containers to join (None: the host's).
    pub fn pod_namespace_path(pod: &PodRecord, ns: &str) -> Option<String> {
        (pod.init_pid > 0).then(|| format!("/proc/{}/ns/{ns}", pod.init_pid))
    }

    /// Stops a pod; an unknown one is stopped already (CRI: idempotent, and kubelet retries
    /// StopPodSandbox for pods the runtime has forgotten).
    pub async fn stop_pod(&self, id: &str) -> Result<(), PodError> {
        let Some(pod) = self.find_pod(id)? else {
            return Ok(());
        };
        for container in self.store.read()?.containers()? {
            if container.pod_id == pod.id {
                self.stop_container(&container.id, 0)
                    .await
                    .map_err(|e| PodError::Container(Box::new(e)))?;
            }
        }
        // The network goes before the namespace: a failed DEL is returned with pod-init still
        // holding the namespace, so kubelet's retry can delete what is in it.
        if let Some(attachment) = &pod.network {
            self.network
                .del(attachment)
                .await
                .map_err(|source| PodError::Network {
                    id: pod.id.clone(),
                    source,
                })?;
        }
        kill_pod_init(&pod).await;
        let files = PodFiles::new(self.pod_dir(&pod.id));
        unpin_netns(&pod, &files);
        files.release()?;
        self.store.write(|t| {
            if let Some(mut p) = t.pod(&pod.id)? {
                p.state = PodState::NotReady;
                p.init_pid = 0;
                t.put_pod(&p)?;
            }
            Ok::<_, StoreError>(())
        })?;
        if pod.state == PodState::Ready {
            self.emit(EventKind::ContainerStoppedEvent, &pod.id, &pod.id);
        }
        tracing::info!(pod = %pod.id, "pod sandbox stopped");
        Ok(())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<(), PodError> {
        let Some(pod) = self.find_pod(id)? else {
            return Ok(()); // already removed
        };
        for container in self.store.read()?.containers()? {
            if container.pod_id == pod.id {
                self.remove_container(&container.id)
                    .await
                    .map_err(|e| PodError::Container(Box::new(e)))?;
            }
        }
        // DEL again (plugins make it idempotent): StopPodSandbox may have failed or never run.
        // A pod is removed even when its plugins fail: the failure is logged for the operator.
        if let Some(attachment) = &pod.network
            && let Err(e) = self.network.del(attachment).await
        {
            tracing::error!(pod = %pod.id, error = %e, "CNI DEL failed; removing the pod anyway");
        }
        kill_pod_init(&pod).await;
        let files = PodFiles::new(self.pod_dir(&pod.id));
        unpin_netns(&pod, &files);
        files.remove()?;
        if pod.cgroup_parent.is_empty()
            && let Ok(cg) = crate::cgroups::Cgroup::open(&self.pod_cgroup_parent(&pod))
            && let Err(e) = cg.delete()
        {
            tracing::warn!(pod = %pod.id, error = %e, "deleting the pod's cgroup");
        }
        let last_status = self.pod_status_for_event(&pod.id);
        self.store.write(|t| t.delete_pod(&pod.id))?;
        self.emit_with(
            EventKind::ContainerDeletedEvent,
            &pod.id,
            &pod.id,
            last_status,
        );
        tracing::info!(pod = %pod.id, "pod sandbox removed");
        Ok(())
    }

    pub fn pod_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, PodError> {
        let pod = self.pod(id)?;
        let config = pod.sandbox_config();
        let ns = PodNamespaces::of(&config);
        let mode = |host: bool, pod_mode: cri::NamespaceMode| {
            if host {
                cri::NamespaceMode::Node as i32
            } else {
                pod_mode as i32
            }
        };
        let pid_mode = if ns.host_pid {
            cri::NamespaceMode::Node
        } else if ns.shared_pid {
            cri::NamespaceMode::Pod
        } else {
            cri::NamespaceMode::Container
        };
        let status = cri::PodSandboxStatus {
            id: pod.id.clone(),
            metadata: config.metadata.clone(),
            state: pod_state(&pod) as i32,
            created_at: pod.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: pod.ips.first().cloned().unwrap_or_default(),
                additional_ips: pod
                    .ips
                    .iter()
                    .skip(1)
                    .map(|ip| cri::PodIp { ip: ip.clone() })
                    .collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(cri::NamespaceOption {
                        network: mode(ns.host_network, cri::NamespaceMode::Pod),
                        pid: pid_mode as i32,
                        ipc: mode(ns.host_ipc, cri::NamespaceMode::Pod),
                        ..Default::default()
                    }),
                }),
            }),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: pod.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if verbose {
            let doc = serde_json::json!({
                "pid": pod.init_pid,
                "config": serde_json::to_value(&config).unwrap_or_default(),
                "runtimeHandler": pod.runtime_handler,
                "netnsPath": pod.netns_path,
                "cgroupParent": pod.cgroup_parent,
                "podDir": self.pod_dir(&pod.id),
                "cni": pod.network.as_ref().map(|a| serde_json::json!({
                    "network": a.network,
                    "result": a.result,
                })),
            });
            info.insert("info".to_owned(), doc.to_string());
        }
        // kubelet's evented PLEG takes the containers' statuses from here when `timestamp` is
        // set, and asks each container's status itself when not. Only evented-PLEG kubelets
        // subscribe to events, so the statuses are only gathered for them (CRI-O likewise
        // fills them only with its pod events on).
        let (containers_statuses, timestamp) = if self.has_event_subscribers() {
            (self.pod_container_statuses(&pod.id), now_nanos())
        } else {
            (Vec::new(), 0)
        };
        Ok(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses,
            timestamp,
        })
    }

    pub fn list_pods(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, PodError> {
        let filter = filter.unwrap_or_default();
        let pods = self.store.read()?.pods()?;
        let id = if filter.id.is_empty() {
            None
        } else {
            // A full id or a unique prefix; an ambiguous one matches nothing.
            match Self::resolve_id(pods.iter().map(|p| p.id.as_str()), &filter.id) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            }
        };
        let mut out = Vec::new();
        for pod in pods {
            if id.as_ref().is_some_and(|id| *id != pod.id) {
                continue;
            }
            let config = pod.sandbox_config();
            let state = pod_state(&pod);
            if let Some(s) = &filter.state
                && s.state != state as i32
            {
                continue;
            }
            if !labels_match(&config.labels, &filter.label_selector) {
                continue;
            }
            out.push(cri::PodSandbox {
                id: pod.id.clone(),
                metadata: config.metadata.clone(),
                state: state as i32,
                created_at: pod.created_at,
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                runtime_handler: pod.runtime_handler.clone(),
            });
        }
        Ok(out)
    }

    /// After a daemon restart: a Ready pod whose pod-init died is NotReady.
    pub(super) fn recover_pods(&self) -> Result<(), PodError> {
        for pod in self.store.read()?.pods()? {
            if pod.state == PodState::Ready && !pod_init_alive(&pod) {
                tracing::warn!(pod = %pod.id, "pod-init is gone; pod is not ready");
                self.store.write(|t| {
                    let mut p = pod.clone();
                    p.state = PodState::NotReady;
                    p.init_pid = 0;
                    t.put_pod(&p)
                })?;
                self.emit(EventKind::ContainerStoppedEvent, &pod.id, &pod.id);
            }
        }
        Ok(())
    }
}

impl Runtime {
    /// After a daemon restart: CNI CHECK of every ready pod's network, in the background (a
    /// node with many pods must not wait for it to serve). A pod whose network is no longer
    /// as ADD left it is logged for the operator; kubelet's own probes decide what to do.
    pub(super) fn check_pod_networks(self: &std::sync::Arc<Self>) {
        let runtime = self.clone();
        tokio::spawn(async move {
            let pods = match runtime.store.read().and_then(|r| r.pods()) {
                Ok(pods) => pods,
                Err(e) => {
                    tracing::warn!(error = %e, "listing pods for CNI CHECK");
                    return;
                }
            };
            for pod in pods {
                if pod.state != PodState::Ready {
                    continue;
                }
                if let Some(attachment) = &pod.network
                    && let Err(e) = runtime.network.check(attachment).await
                {
                    tracing::warn!(pod = %pod.id, error = %e, "CNI CHECK failed: the pod's network is not as it was set up");
                }
            }
        });
    }
}

fn pod_state(pod: &PodRecord) -> cri::PodSandboxState {
    match pod.state {
        PodState::Ready => cri::PodSandboxState::SandboxReady,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
pub(super) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the pod's pod-init still runs: same pid, same start time (not a recycled pid), and
/// not a zombie (it is not our child; its parent may reap it late, but a zombie holds no
/// namespaces any more).
fn pod_init_alive(pod: &PodRecord) -> bool {
    pod.init_pid > 0
        && process_start_time(pod.init_pid) == Some(pod.init_start_time)
        && !is_zombie(pod.init_pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.split(' ')
                .next()
                .map(|state| state == "Z" || state == "X")
        })
        .unwrap_or(true)
}

async fn kill_pod_init(pod: &PodRecord) {
    kill_init(pod.init_pid, pod.init_start_time).await;
}

/// SIGKILLs pod-init `pid` (if it is still the process started at `start_time`) and waits
/// (up to about 2 s) for it to be gone.
pub(super) async fn kill_init(pid: i32, start_time: u64) {
    let alive = || pid > 0 && process_start_time(pid) == Some(start_time) && !is_zombie(pid);
    if alive() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let mut pause = std::time::Duration::from_micros(200);
        for _ in 0..200 {
            if !alive() {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }
}

/// Releases the pinned network namespace (it dies with pod-init); idempotent.
fn unpin_netns(pod: &PodRecord, files: &PodFiles) {
    if pod.network.is_some()
        && let Err(e) = crate::network::netns::unpin(&files.netns())
    {
        tracing::warn!(pod = %pod.id, error = %e, "unpinning the pod's network namespace");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_is_readable() {
        assert!(process_start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn pid_mode_defaults_to_pod_like_the_proto() {
        let with_pid = |pid: Option<cri::NamespaceMode>| cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: pid.map(|pid| cri::NamespaceOption {
                        pid: pid as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let of = |pid| {
            let ns = PodNamespaces::of(&with_pid(pid));
            (ns.shared_pid, ns.host_pid)
        };
        assert_eq!(of(None), (true, false));
        assert!(PodNamespaces::of(&Default::default()).shared_pid);
        assert_eq!(of(Some(cri::NamespaceMode::Pod)), (true, false));
        assert_eq!(of(Some(cri::NamespaceMode::Container)), (false, false));
        assert_eq!(of(Some(cri::NamespaceMode::Node)), (false, true));
    }
}
