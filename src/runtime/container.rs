//! Containers: create (everything up to exec, no user code runs), start (the monitor releases
//! the init), stop (stop signal, then SIGKILL to every process of the container's cgroup after
//! the timeout), remove (idempotent), status and list, and the exit watcher that records how a
//! container ended.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::events::EventKind;
use super::{Runtime, labels_match, names, new_id, now_nanos};
use crate::cgroups::Cgroup;
use crate::cri::v1 as cri;
use crate::error::{Classify, ErrorKind};
use crate::monitor::MonitorError;
use crate::monitor::client::{ExitStatus, MonitorClient};
use crate::store::{ContainerRecord, ContainerState, ExitInfo, PodState, ProcessUser, StoreError};

/// How long a stop waits for the monitor to report the exit after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFoundDependency(String),
    #[error("container name {name} is already used by container {id}")]
    NameTaken { name: String, id: String },
    #[error("container {id} is {state:?}; {wanted}")]
    WrongState {
        id: String,
        state: ContainerState,
        wanted: &'static str,
    },
    #[error("creating container: {0}")]
    Build(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
    #[error(transparent)]
    Image(#[from] crate::image::catalog::CatalogError),
    #[error(transparent)]
    Layer(#[from] crate::image::layers::LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pod(#[from] Box<super::PodError>),
    #[error(transparent)]
    Exec(#[from] super::exec::ExecError),
}

impl Classify for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound(_) | ContainerError::NotFoundDependency(_) => {
                ErrorKind::NotFound
            }
            ContainerError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            ContainerError::NameTaken { .. } => ErrorKind::AlreadyExists,
            ContainerError::WrongState { .. } => ErrorKind::FailedPrecondition,
            ContainerError::Spec(e) => e.kind(),
            ContainerError::Cgroup(e) => e.kind(),
            ContainerError::Monitor(e) => e.kind(),
            ContainerError::Image(e) => e.kind(),
            ContainerError::Pod(e) => e.kind(),
            ContainerError::Exec(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

fn io_context(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let context = context.into();
    move |source| ContainerError::Io { context, source }
}

fn container_name_key(pod_id: &str, meta: &cri::ContainerMetadata) -> String {
    format!("{pod_id}_{}_{}", meta.name, meta.attempt)
}

/// Where a container's processes and files live.
pub(super) struct Paths {
    state: PathBuf,
    data: PathBuf,
}

impl Paths {
    pub(super) fn socket(&self) -> PathBuf {
        self.state.join("m.sock")
    }
    fn exit_file(&self) -> PathBuf {
        self.state.join("exit.json")
    }
    fn rootfs(&self) -> PathBuf {
        self.state.join("rootfs")
    }
    fn upper(&self) -> PathBuf {
        self.data.join("upper")
    }
    fn work(&self) -> PathBuf {
        self.data.join("work")
    }
}

impl Runtime {
    pub(super) fn paths(&self, id: &str) -> Paths {
        Paths {
            state: self.container_state_dir(id),
            data: self.container_data_dir(id),
        }
    }

    pub async fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String, ContainerError> {
        let pod = self.pod(pod_id).map_err(Box::new)?;
        if pod.state != PodState::Ready {
            return Err(ContainerError::Pod(Box::new(super::PodError::NotReady {
                id: pod.id.clone(),
            })));
        }
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| {
                ContainerError::InvalidArgument("container metadata.name is required".into())
            })?;
        let key = container_name_key(&pod.id, &meta);
        let existing = || -> Result<Option<String>, ContainerError> {
            Ok(self
                .store
                .read()?
                .containers()?
                .into_iter()
                .find(|c| {
                    c.pod_id == pod.id
                        && c.container_config()
                            .metadata
                            .as_ref()
                            .map(|m| container_name_key(&pod.id, m))
                            .as_ref()
                            == Some(&key)
                })
                .map(|c| c.id))
        };
        let sandbox_config = sandbox_config.unwrap_or_else(|| pod.sandbox_config());
        self.container_names
            .build_once(
                &key,
                existing,
                || self.build_container(&pod, config, &sandbox_config),
                |refused| match refused {
                    names::Refused::Taken { id } => ContainerError::NameTaken {
                        name: key.clone(),
                        id,
                    },
                    names::Refused::Failed(message) => ContainerError::Build(message),
                },
            )
            .await
    }

    async fn build_container(
        &self,
        pod: &crate::store::PodRecord,
        config: cri::ContainerConfig,
        sandbox_config: &cri::PodSandboxConfig,
    ) -> Result<String, ContainerError> {
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ContainerError::InvalidArgument("container image is required".into()))?;
        let image = self.images.find(&image_name)?.ok_or_else(|| {
            ContainerError::NotFoundDependency(format!("image {image_name} not found"))
        })?;
        // Held until the record names the layers, so image removal cannot take them meanwhile.
        let _lease = self.images.layer_cache().lease(&image.layers);
        let read = self.store.read()?;
        let mut lower = Vec::with_capacity(image.layers.len());
        for chain_id in &image.layers {
            let layer = read.layer(&chain_id.to_string())?.ok_or_else(|| {
                ContainerError::NotFoundDependency(format!(
                    "layer {chain_id} of image {image_name} is missing; pull the image again"
                ))
            })?;
            lower.push(self.images.layer_cache().dir_of(&layer));
        }
        drop(read);

        let id = new_id();
        let paths = self.paths(&id);
        let log_path = match (&sandbox_config.log_directory, &config.log_path) {
            (dir, path) if !dir.is_empty() && !path.is_empty() => {
                Path::new(dir).join(path).to_string_lossy().into_owned()
            }
            _ => String::new(),
        };
        let cgroup_parent = self.pod_cgroup_parent(pod);
        let cgroup_path = format!("{}/{}", cgroup_parent.trim_end_matches('/'), id);
        let result = self
            .launch(
                &id,
                pod,
                &config,
                sandbox_config,
                &image,
                lower,
                &paths,
                &log_path,
                &cgroup_path,
            )
            .await;
        let (pid, volume_layers, user) = match result {
            Ok(launched) => launched,
            Err(e) => {
                self.discard(&paths, &cgroup_path);
                return Err(e);
            }
        };
        let record = ContainerRecord {
            id: id.clone(),
            pod_id: pod.id.clone(),
            config: config.encode_to_vec(),
            image_id: image.id.to_string(),
            image_ref: image_name,
            layers: image.layers.iter().chain(&volume_layers).cloned().collect(),
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            pid,
            exit: None,
            log_path,
            cgroup_path,
            user: Some(user),
        };
        self.store.write(|t| t.put_container(&record))?;
        self.emit(EventKind::ContainerCreatedEvent, &id, &pod.id);
        tracing::info!(container = %id, pod = %pod.id, "container created");
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn launch(
        &self,
        id: &str,
        pod: &crate::store::PodRecord,
        config: &cri::ContainerConfig,
        sandbox_config: &cri::PodSandboxConfig,
        image: &crate::store::ImageRecord,
        lower: Vec<PathBuf>,
        paths: &Paths,
        log_path: &str,
        cgroup_path: &str,
    ) -> Result<(i32, Vec<crate::image::digest::Digest>, ProcessUser), ContainerError> {
        let handler = self.handler_of(pod)?;
        if let Some(h) = handler
            && config.tty
        {
            return Err(ContainerError::InvalidArgument(format!(
                "tty is not supported for containers of runtime handler `{}` (an external OCI \
                 runtime); use the default handler",
                h.name
            )));
        }
        for dir in [paths.upper(), paths.work(), paths.rootfs()] {
            std::fs::create_dir_all(&dir)
                .map_err(io_context(format!("creating {}", dir.display())))?;
        }
        let image_config: oci_spec::image::ImageConfiguration = serde_json::from_str(&image.config)
            .map_err(|e| {
                ContainerError::InvalidArgument(format!("image {} config: {e}", image.id))
            })?;
        let pod_files = super::pod_files::PodFiles::new(self.pod_dir(&pod.id));
        let ns_path = |ns: &str| Runtime::pod_namespace_path(pod, ns).map(PathBuf::from);
        let pod_ns = super::pod::PodNamespaces::of(sandbox_config);
        let pod_paths = crate::spec::PodPaths {
            net_ns: (!pod_ns.host_network).then(|| ns_path("net")).flatten(),
            ipc_ns: (!pod_ns.host_ipc).then(|| ns_path("ipc")).flatten(),
            uts_ns: (!pod_ns.host_network).then(|| ns_path("uts")).flatten(),
            pid_ns: (!pod_ns.host_pid).then(|| ns_path("pid")).flatten(),
            // pod-init created the pod's user namespace (hostUsers: false) before the others.
            user_ns: crate::spec::pod_userns_maps(sandbox_config)
                .ok()
                .flatten()
                .and_then(|_| ns_path("user")),
            hostname_file: Some(pod_files.hostname()),
            hosts_file: Some(pod_files.hosts()),
            resolv_conf_file: Some(pod_files.resolv_conf()),
            shm_dir: Some(if pod_ns.host_ipc {
                PathBuf::from("/dev/shm")
            } else {
                pod_files.shm()
            }),
        };
        let layout = crate::cgroups::CgroupLayout::detect();
        let image_volumes = self.mount_image_volumes(config, &paths.state)?;
        let rootfs = paths.rootfs();
        let spec_input = crate::spec::SpecInput {
            container: config,
            pod: sandbox_config,
            image: &image_config,
            layers: &lower,
            pod_paths: &pod_paths,
            rootfs: &rootfs,
            target_pid: self.target_pid(config)?,
            seccomp_root: &self.seccomp_root,
            cgroups_path: cgroup_path,
            host_allows_negative_oom_score_adj: self.host_allows_negative_oom_score_adj,
            swap_controller_available: layout.swap_available(),
            image_volumes: &image_volumes.paths,
        };
        let mut spec = crate::spec::container_spec(&spec_input)?;
        if let Some(h) = handler {
            for warning in super::handlers::adapt_spec(&mut spec, h) {
                tracing::warn!(container = %id, handler = %h.name, "{warning}");
            }
        }
        let user = spec
            .process()
            .as_ref()
            .map(|p| ProcessUser {
                uid: p.user().uid(),
                gid: p.user().gid(),
                additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            })
            .unwrap_or_default();
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        let cgroup = Cgroup::create(cgroup_path, &resources)?;
        let monitor_config = crate::monitor::MonitorConfig {
            id: id.to_owned(),
            init: crate::launcher::InitConfig {
                spec,
                rootfs: crate::launcher::Rootfs::Overlay {
                    lower,
                    upper: paths.upper(),
                    work: paths.work(),
                },
                cgroup_procs: cgroup.procs_files(),
                // The built-in launcher clones from the template mount namespace.
                clone_mntns: match handler {
                    None => self.clone_mntns().await,
                    Some(_) => None,
                },
            },
            log_path: (!log_path.is_empty()).then(|| PathBuf::from(log_path)),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            socket_path: paths.socket(),
            exit_file: paths.exit_file(),
            memory_cgroup_dirs: cgroup
                .dirs()
                .iter()
                .filter(|d| {
                    d.join("memory.events").exists() || d.join("memory.oom_control").exists()
                })
                .cloned()
                .collect(),
            launcher: handler.map_or_else(Default::default, |h| {
                crate::monitor::LaunchWith::OciRuntime(h.monitor_config(paths.state.clone()))
            }),
        };
        let config_path = paths.state.join("monitor.json");
        let created = crate::monitor::client::spawn_monitor(
            &self.monitor_binary,
            &monitor_config,
            &config_path,
        )
        .await?;
        Ok((created.pid, image_volumes.layers, user))
    }

    /// The OCI runtime handler of the pod's containers; `None` for the built-in launcher.
    fn handler_of(
        &self,
        pod: &crate::store::PodRecord,
    ) -> Result<Option<&super::handlers::OciHandler>, ContainerError> {
        if super::handlers::is_default(&pod.runtime_handler) {
            return Ok(None);
        }
        self.handlers
            .get(&pod.runtime_handler)
            .map(Some)
            .ok_or_else(|| {
                ContainerError::InvalidArgument(format!(
                    "runtime handler `{}` of pod {} is no longer configured",
                    pod.runtime_handler, pod.id
                ))
            })
    }

    /// For a container run by an OCI runtime whose monitor may have died before cleaning up:
    /// the runtime's state (`delete --force`, which also kills what still runs) and the rootfs
    /// mounted on the host. The launcher is read from the container's `monitor.json`.
    fn release_oci_runtime(&self, paths: &Paths) {
        #[derive(serde::Deserialize)]
        struct Launcher {
            id: String,
            #[serde(default)]
            launcher: crate::monitor::LaunchWith,
        }
        let Ok(bytes) = std::fs::read(paths.state.join("monitor.json")) else {
            return;
        };
        let Ok(Launcher {
            id,
            launcher: crate::monitor::LaunchWith::OciRuntime(oci),
        }) = serde_json::from_slice::<Launcher>(&bytes)
        else {
            return;
        };
        if let Err(e) = crate::monitor::oci_runtime::cleanup_leftovers(&oci, &id, &paths.rootfs()) {
            tracing::warn!(container = %id, error = %e, "releasing the OCI runtime's container");
        }
    }

    /// The init pid of the container named by `NamespaceOption.target_id` when the pid mode is
    /// TARGET (the container then shares that container's pid namespace).
    fn target_pid(&self, config: &cri::ContainerConfig) -> Result<Option<i32>, ContainerError> {
        let options = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let Some(options) = options else {
            return Ok(None);
        };
        if options.pid != cri::NamespaceMode::Target as i32 {
            return Ok(None);
        }
        let target = self.container(&options.target_id).map_err(|_| {
            ContainerError::NotFoundDependency(format!(
                "target container {} of pid mode TARGET not found",
                options.target_id
            ))
        })?;
        if target.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: target.id,
                state: target.state,
                wanted: "pid mode TARGET needs a running target container",
            });
        }
        Ok(Some(target.pid))
    }

    /// Best-effort removal of whatever a failed or removed container left.
    pub(super) fn discard(&self, paths: &Paths, cgroup_path: &str) {
        super::image_volumes::unmount_image_volumes(&paths.state);
        self.release_oci_runtime(paths);
        if let Ok(cg) = Cgroup::open(cgroup_path) {
            let _ = cg.kill_all();
            if let Err(e) = cg.delete() {
                tracing::warn!(cgroup = cgroup_path, error = %e, "deleting cgroup");
            }
        }
        for dir in [&paths.state, &paths.data] {
            if let Err(e) = std::fs::remove_dir_all(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "removing container files");
            }
        }
    }

    pub fn container(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "container id is required".into(),
            ));
        }
        let read = self.store.read()?;
        if let Some(c) = read.container(id)? {
            return Ok(c);
        }
        let mut matches = read
            .containers()?
            .into_iter()
            .filter(|c| c.id.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(ContainerError::NotFound(id.to_owned())),
        }
    }

    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), ContainerError> {
        let guard = self.transitions.lock().await;
        let record = self.container(id)?;
        if record.state != ContainerState::Created {
            return Err(ContainerError::WrongState {
                id: record.id,
                state: record.state,
                wanted: "only a created container can be started",
            });
        }
        let paths = self.paths(&record.id);
        let mut client = MonitorClient::connect(&paths.socket()).await?;
        if let Err(e) = client.start().await {
            let exit = ExitInfo {
                exit_code: 128,
                finished_at: now_nanos(),
                reason: "StartError".into(),
                message: e.to_string(),
            };
            self.store.write(|t| {
                let mut r = record.clone();
                r.state = ContainerState::Exited;
                r.exit = Some(exit);
                t.put_container(&r)
            })?;
            self.emit(EventKind::ContainerStoppedEvent, &record.id, &record.pod_id);
            return Err(e.into());
        }
        self.store.write(|t| {
            let mut r = record.clone();
            r.state = ContainerState::Running;
            r.started_at = now_nanos();
            t.put_container(&r)
        })?;
        // Under the transition lock, so the exit watcher's STOPPED cannot come first.
        self.emit(EventKind::ContainerStartedEvent, &record.id, &record.pod_id);
        drop(guard);
        self.watch_exit(record.id.clone());
        tracing::info!(container = %record.id, "container started");
        Ok(())
    }

    /// Records the container's exit when its monitor reports it.
    fn watch_exit(self: &Arc<Self>, id: String) {
        let runtime = self.clone();
        tokio::spawn(async move {
            let paths = runtime.paths(&id);
            let status = match MonitorClient::connect(&paths.socket()).await {
                Ok(mut client) => client.wait().await.ok(),
                Err(_) => None,
            };
            let status =
                status.or_else(|| crate::monitor::client::read_exit_file(&paths.exit_file()));
            if let Err(e) = runtime.record_exit(&id, status).await {
                tracing::error!(container = %id, error = %e, "recording container exit");
            }
        });
    }

    async fn record_exit(
        &self,
        id: &str,
        status: Option<ExitStatus>,
    ) -> Result<(), ContainerError> {
        let _guard = self.transitions.lock().await;
        let Some(mut record) = self.store.read()?.container(id)? else {
            return Ok(()); // removed meanwhile
        };
        if record.state == ContainerState::Exited {
            return Ok(());
        }
        let paths = self.paths(&record.id);
        let mut exit = match status {
            Some(s) => ExitInfo {
                exit_code: s.exit_code,
                finished_at: s.exited_at,
                reason: if s.oom_killed {
                    "OOMKilled".into()
                } else if s.exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                message: String::new(),
            },
            None => ExitInfo {
                exit_code: 255,
                finished_at: now_nanos(),
                reason: "Unknown".into(),
                message: "the container's monitor is gone and left no exit status".into(),
            },
        };
        tracing::info!(container = %id, exit_code = exit.exit_code, reason = %exit.reason, "container exited");
        // The init is gone; its processes must not outlive it. In its own pid namespace the
        // kernel has killed them already, but in the pod's (or the host's) they were reparented
        // and still run (containerd's shim kills them too: `ShouldKillAllOnExit`).
        let cgroup_path = record.cgroup_path.clone();
        let killed = tokio::task::spawn_blocking(move || match Cgroup::open(&cgroup_path) {
            Ok(cg) => cg.kill_all(),
            Err(_) => Ok(()),
        })
        .await;
        if let Ok(Err(e)) = killed {
            tracing::warn!(container = %id, error = %e, "killing what the init left");
        }
        if let Some(t) = super::termination::read(&record.container_config(), &paths.upper())
            && t.source == super::termination::Source::Container
            && !t.message.is_empty()
        {
            // As kubelet joins them for the termination messages it reads itself.
            if !exit.message.is_empty() {
                exit.message.push_str(": ");
            }
            exit.message.push_str(&t.message);
        }
        record.state = ContainerState::Exited;
        record.exit = Some(exit);
        self.store.write(|t| t.put_container(&record))?;
        self.emit(EventKind::ContainerStoppedEvent, &record.id, &record.pod_id);
        Ok(())
    }

    /// Stops a container; one that does not exist (any more) is stopped already, as CRI asks
    /// of this call ("must not return an error if the container has already been stopped").
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<(), ContainerError> {
        let record = match self.container(id) {
            Ok(r) => r,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !matches!(
            record.state,
            ContainerState::Running | ContainerState::Created
        ) {
            return Ok(());
        }
        let paths = self.paths(&record.id);
        if record.state == ContainerState::Running && timeout_secs > 0 {
            let signal = self.stop_signal(&record);
            match send_stop_signal(&paths.socket(), signal).await {
                Ok(()) | Err(MonitorError::Exited) => {}
                // Gone: it exited meanwhile, the wait below reads its exit file.
                Err(e) => tracing::warn!(
                    container = %record.id,
                    signal,
                    error = %e,
                    "stop signal not delivered; the container is killed after the timeout"
                ),
            }
            if self
                .wait_exited(&record.id, Duration::from_secs(timeout_secs as u64))
                .await?
            {
                return Ok(());
            }
        }
        // Every process of the container, not only its init (shared pid namespaces, daemons
        // that escaped the init's process group).
        if let Ok(cg) = Cgroup::open(&record.cgroup_path) {
            cg.kill_all()?;
        }
        if let Ok(mut client) = MonitorClient::connect(&paths.socket()).await {
            let _ = client.signal(libc::SIGKILL).await;
        }
        if !self.wait_exited(&record.id, KILL_GRACE).await? {
            // The monitor is gone: take what it left.
            let status = crate::monitor::client::read_exit_file(&paths.exit_file());
            self.record_exit(&record.id, status).await?;
        }
        tracing::info!(container = %record.id, "container stopped");
        Ok(())
    }

    /// Polls until the exit watcher has recorded the exit; false on timeout.
    async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<bool, ContainerError> {
        let paths = self.paths(id);
        let deadline = tokio::time::Instant::now() + timeout;
        let status = tokio::time::timeout_at(deadline, async {
            match MonitorClient::connect(&paths.socket()).await {
                Ok(mut client) => client.wait().await.ok(),
                Err(_) => None,
            }
        })
        .await;
        match status {
            Ok(Some(status)) => {
                self.record_exit(id, Some(status)).await?;
                Ok(true)
            }
            Ok(None) => {
                let status = crate::monitor::client::read_exit_file(&paths.exit_file());
                let found = status.is_some();
                if found {
                    self.record_exit(id, status).await?;
                }
                Ok(found)
            }
            Err(_) => Ok(false),
        }
    }

    fn stop_signal(&self, record: &ContainerRecord) -> i32 {
        let config = record.container_config();
        let cri_signal =
            cri::Signal::try_from(config.stop_signal).unwrap_or(cri::Signal::RuntimeDefault);
        if cri_signal != cri::Signal::RuntimeDefault
            && let Some(sig) = signal_number(cri_signal.as_str_name())
        {
            return sig;
        }
        let image_signal = self
            .images
            .find(&record.image_id)
            .ok()
            .flatten()
            .and_then(|i| {
                serde_json::from_str::<serde_json::Value>(&i.config)
                    .ok()?
                    .pointer("/config/StopSignal")?
                    .as_str()
                    .map(str::to_owned)
            });
        image_signal
            .and_then(|s| signal_number(&s))
            .unwrap_or(libc::SIGTERM)
    }

    /// `ReopenContainerLog`: the monitor reopens the log file (after kubelet rotated it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: record.id,
                state: record.state,
                wanted: "only a running container's log can be reopened",
            });
        }
        let mut client = MonitorClient::connect(&self.paths(&record.id).socket()).await?;
        client.reopen_log().await?;
        Ok(())
    }

    /// `UpdateContainerResources`: applied to the live cgroup and kept in the record, so that
    /// `ContainerStatus` reports what is in force.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: cri::LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        let _guard = self.transitions.lock().await;
        let mut record = self.container(id)?;
        if !matches!(
            record.state,
            ContainerState::Created | ContainerState::Running
        ) {
            return Err(ContainerError::WrongState {
                id: record.id,
                state: record.state,
                wanted: "resources can only be updated while the container exists and runs",
            });
        }
        let oci = crate::spec::linux_resources(
            &resources,
            crate::cgroups::CgroupLayout::detect().swap_available(),
        )?;
        Cgroup::open(&record.cgroup_path)?.update(&oci)?;
        let mut config = record.container_config();
        config.linux.get_or_insert_with(Default::default).resources = Some(resources);
        record.config = config.encode_to_vec();
        self.store.write(|t| t.put_container(&record))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), ContainerError> {
        let record = match self.container(id) {
            Ok(r) => r,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if matches!(
            record.state,
            ContainerState::Running | ContainerState::Created
        ) {
            self.stop_container(&record.id, 0).await?;
        }
        let paths = self.paths(&record.id);
        self.discard(&paths, &record.cgroup_path);
        self.store.write(|t| t.delete_container(&record.id))?;
        self.emit(EventKind::ContainerDeletedEvent, &record.id, &record.pod_id);
        self.images.layer_cache().collect_garbage(&record.layers)?;
        tracing::info!(container = %record.id, "container removed");
        Ok(())
    }

    pub fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, ContainerError> {
        let record = self.container(id)?;
        let info = if verbose {
            self.container_info(&record)
        } else {
            HashMap::new()
        };
        Ok(cri::ContainerStatusResponse {
            status: Some(self.status_of(&record)),
            info,
        })
    }

    /// Everything of `ContainerStatus` kubelet reads.
    pub(super) fn status_of(&self, record: &ContainerRecord) -> cri::ContainerStatus {
        let config = record.container_config();
        let exit = record.exit.as_ref();
        let (image, image_ref) = self.image_names(record, &config);
        cri::ContainerStatus {
            id: record.id.clone(),
            metadata: config.metadata.clone(),
            state: cri_state(record.state) as i32,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: exit.map(|e| e.finished_at).unwrap_or_default(),
            exit_code: exit.map(|e| e.exit_code).unwrap_or_default(),
            image: Some(image),
            image_ref,
            reason: exit.map(|e| e.reason.clone()).unwrap_or_default(),
            message: exit.map(|e| e.message.clone()).unwrap_or_default(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: self.mounts_with_image_refs(&config.mounts),
            log_path: record.log_path.clone(),
            resources: config.linux.as_ref().and_then(|l| {
                l.resources.clone().map(|r| cri::ContainerResources {
                    linux: Some(r),
                    ..Default::default()
                })
            }),
            image_id: record.image_id.clone(),
            user: record.user.as_ref().map(|u| cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: u.uid.into(),
                    gid: u.gid.into(),
                    supplemental_groups: u.additional_gids.iter().map(|&g| g.into()).collect(),
                }),
            }),
            stop_signal: config.stop_signal,
        }
    }

    /// The verbose `info` document, like containerd's: pid, sandbox, the CRI config, the OCI
    /// runtime spec in force, and where the container's files are.
    fn container_info(&self, record: &ContainerRecord) -> HashMap<String, String> {
        let paths = self.paths(&record.id);
        let runtime_spec = std::fs::read(paths.state.join("monitor.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.pointer("/init/spec").cloned())
            .unwrap_or_default();
        let config = record.container_config();
        let termination = super::termination::read(&config, &paths.upper());
        let doc = serde_json::json!({
            "pid": record.pid,
            "sandboxID": record.pod_id,
            "config": serde_json::to_value(&config).unwrap_or_default(),
            "runtimeSpec": runtime_spec,
            "cgroupPath": record.cgroup_path,
            "upperDir": paths.upper(),
            "monitorSocket": paths.socket(),
            "terminationMessage": termination.map(|t| t.message),
        });
        HashMap::from([("info".to_owned(), doc.to_string())])
    }

    /// `ImageSpec` and `image_ref` as containerd reports them: the name the request used when
    /// it is one of the image's references (else the image's first tag), with the request's
    /// annotations and `user_specified_image`; the image's repo digest (what kubelet shows as
    /// `imageID`), else its id.
    /// The container's mounts as requested, each image volume with the id of the image it
    /// shows in `image.image_ref` (what PullImage returned for it), as kubelet reads it back.
    fn mounts_with_image_refs(&self, mounts: &[cri::Mount]) -> Vec<cri::Mount> {
        let mut mounts = mounts.to_vec();
        for spec in mounts.iter_mut().filter_map(|m| m.image.as_mut()) {
            if spec.image.is_empty() {
                continue;
            }
            if let Ok(Some(image)) = self.images.find(&spec.image) {
                spec.image_ref = image.id.to_string();
            }
        }
        mounts
    }

    fn image_names(
        &self,
        record: &ContainerRecord,
        config: &cri::ContainerConfig,
    ) -> (cri::ImageSpec, String) {
        let image = self.images.find(&record.image_id).ok().flatten();
        let mut spec = config.image.clone().unwrap_or_default();
        spec.image = match &image {
            Some(i)
                if !i.repo_tags.contains(&record.image_ref)
                    && !i.repo_digests.contains(&record.image_ref) =>
            {
                i.repo_tags
                    .first()
                    .cloned()
                    .unwrap_or_else(|| record.image_ref.clone())
            }
            _ => record.image_ref.clone(),
        };
        let image_ref = image
            .and_then(|i| i.repo_digests.first().cloned())
            .unwrap_or_else(|| record.image_id.clone());
        (spec, image_ref)
    }

    /// A container id from a full id or a unique prefix: `None` when nothing or several match
    /// (as containerd's and CRI-O's id indexes resolve list filters).
    pub(super) fn resolve_id<'a>(
        ids: impl Iterator<Item = &'a str>,
        wanted: &str,
    ) -> Option<String> {
        let mut found = None;
        for id in ids {
            if id == wanted {
                return Some(id.to_owned());
            }
            if id.starts_with(wanted) {
                if found.is_some() {
                    return None;
                }
                found = Some(id.to_owned());
            }
        }
        found
    }

    pub fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, ContainerError> {
        let filter = filter.unwrap_or_default();
        let read = self.store.read()?;
        let records = read.containers()?;
        let id = if filter.id.is_empty() {
            None
        } else {
            match Self::resolve_id(records.iter().map(|r| r.id.as_str()), &filter.id) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            }
        };
        let pod_id = if filter.pod_sandbox_id.is_empty() {
            None
        } else {
            let pods = read.pods()?;
            match Self::resolve_id(pods.iter().map(|p| p.id.as_str()), &filter.pod_sandbox_id) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            }
        };
        drop(read);
        let mut out = Vec::new();
        for record in records {
            if id.as_ref().is_some_and(|id| *id != record.id)
                || pod_id.as_ref().is_some_and(|p| *p != record.pod_id)
            {
                continue;
            }
            let state = cri_state(record.state);
            if let Some(s) = &filter.state
                && s.state != state as i32
            {
                continue;
            }
            let config = record.container_config();
            if !labels_match(&config.labels, &filter.label_selector) {
                continue;
            }
            let (image, image_ref) = self.image_names(&record, &config);
            out.push(cri::Container {
                id: record.id.clone(),
                pod_sandbox_id: record.pod_id.clone(),
                metadata: config.metadata.clone(),
                image: Some(image),
                image_ref,
                state: state as i32,
                created_at: record.created_at,
                labels: config.labels,
                annotations: config.annotations,
                image_id: record.image_id.clone(),
            });
        }
        Ok(out)
    }

    /// After a daemon restart: reattach to live monitors, and take the exit status of
    /// containers that ended while the daemon was down.
    pub(super) async fn recover_containers(self: &Arc<Self>) -> Result<(), ContainerError> {
        for record in self.store.read()?.containers()? {
            let paths = self.paths(&record.id);
            match record.state {
                ContainerState::Running => self.watch_exit(record.id.clone()),
                ContainerState::Created => {
                    if MonitorClient::connect(&paths.socket()).await.is_err() {
                        let status = crate::monitor::client::read_exit_file(&paths.exit_file());
                        self.record_exit(&record.id, status).await?;
                    }
                }
                ContainerState::Exited | ContainerState::Unknown => {}
            }
        }
        Ok(())
    }
}

fn cri_state(state: ContainerState) -> cri::ContainerState {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// A signal by name (`SIGTERM`, `TERM`, `SIGRTMIN+3`, `SIGRTMINPLUS3`) or number.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (n > 0 && n < 65).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(offset) = name
        .strip_prefix("SIGRTMINPLUS")
        .or_else(|| name.strip_prefix("SIGRTMIN+"))
    {
        return offset.parse::<i32>().ok().map(|o| libc::SIGRTMIN() + o);
    }
    if name == "SIGRTMIN" {
        return Some(libc::SIGRTMIN());
    }
    match name.as_str() {
        "SIGCLD" => return Some(libc::SIGCHLD),
        "SIGPOLL" => return Some(libc::SIGIO),
        "SIGIOT" => return Some(libc::SIGABRT),
        _ => {}
    }
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// Sends the stop signal through the monitor. A connection refused under load is retried a
/// few times: a lost stop signal would cost the container its whole grace period.
pub(super) async fn send_stop_signal(socket: &Path, signal: i32) -> Result<(), MonitorError> {
    let mut attempt = 0;
    loop {
        let result = match MonitorClient::connect(socket).await {
            Ok(mut client) => client.signal(signal).await,
            Err(e) => Err(e),
        };
        match result {
            Err(MonitorError::Gone { ref source, .. })
                if attempt < 3 && source.kind() != std::io::ErrorKind::NotFound =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("QUIT"), Some(libc::SIGQUIT));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGRTMINPLUS2"), Some(libc::SIGRTMIN() + 2));
        assert_eq!(signal_number("SIGRTMIN+1"), Some(libc::SIGRTMIN() + 1));
        assert_eq!(signal_number("SIGBOGUS"), None);
    }
}
