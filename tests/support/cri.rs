//! CRI boilerplate for container tests: a registry with critest's images and a daemon shared by
//! the tests of one test binary ([`Env::shared`]), pods that remove themselves on drop
//! ([`Pod`]), container configs running a shell script, and the CRI log reader.
//!
//! ```ignore
//! let env = Env::shared();
//! let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
//! let ran = pod.run(pod.sh("c1", &env.busybox(), "id -u")).await;
//! assert_eq!(ran.status.exit_code, 0);
//! assert_eq!(ran.stdout, "0\n");
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use strata::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use super::daemon::Daemon;
use super::fixtures::{E2E_REPO, push_cri_test_images};
use super::image::block_on;
use super::registry::{Registry, RegistryOptions};

/// A registry holding critest's images and a daemon using it.
pub struct Env {
    pub daemon: Daemon,
    pub registry: Registry,
}

static SHARED: Mutex<Option<Arc<Env>>> = Mutex::new(None);

extern "C" fn drop_shared() {
    let env = SHARED
        .lock()
        .map(|mut s| s.take())
        .unwrap_or_else(|p| p.into_inner().take());
    drop(env);
}

impl Env {
    /// A fresh registry (with [`push_cri_test_images`]) and daemon.
    pub fn new(extra_toml: &str) -> Self {
        let registry = Registry::start(RegistryOptions::default());
        push_cri_test_images(&registry);
        let daemon = Daemon::start(extra_toml);
        Env { daemon, registry }
    }

    /// One [`Env`] for every test of this test binary: made by the first caller, dropped (the
    /// daemon, its containers and the registry cleaned up) when the process exits.
    pub fn shared() -> Arc<Env> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(env) = &*shared {
            return env.clone();
        }
        let env = Arc::new(Env::new(""));
        if shared.is_none() {
            // SAFETY: registers a plain `extern "C" fn()` to run at exit.
            unsafe { libc::atexit(drop_shared) };
        }
        *shared = Some(env.clone());
        env
    }

    /// `<registry>/e2e-test-images/busybox:1.29-2`.
    pub fn busybox(&self) -> String {
        self.image(&format!("{E2E_REPO}/busybox:1.29-2"))
    }

    /// `<registry>/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.addr())
    }

    /// Pulls `image` (a full reference) through CRI; returns the image id.
    pub async fn pull(&self, image: &str) -> String {
        let mut images = self.daemon.images().await;
        images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pulling {image}: {e:?}"))
            .into_inner()
            .image_ref
    }
}

/// A per-process unique suffix for pod and container names.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// What a container that ran to its end left: its final status and its CRI log.
#[derive(Debug)]
pub struct Ran {
    pub id: String,
    pub status: cri::ContainerStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A pod sandbox, stopped and removed (with its containers) on drop.
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// The pod's `log_directory`.
    pub logs: tempfile::TempDir,
    pub rt: RuntimeServiceClient<Channel>,
    socket: PathBuf,
}

impl Pod {
    /// Runs a pod with `config`, filling in unique metadata (unless set) and a fresh log
    /// directory.
    pub async fn start(daemon: &Daemon, config: cri::PodSandboxConfig) -> Pod {
        Self::start_with_handler(daemon, config, "").await
    }

    /// [`Pod::start`] with a `runtime_handler` (a configured OCI runtime handler's name).
    pub async fn start_with_handler(
        daemon: &Daemon,
        mut config: cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Pod {
        let logs = tempfile::Builder::new()
            .prefix("strata-pod-logs-")
            .tempdir()
            .unwrap();
        if config.metadata.is_none() {
            let name = unique("pod");
            config.metadata = Some(cri::PodSandboxMetadata {
                uid: format!("uid-{name}-{}", std::process::id()),
                name,
                namespace: "default".into(),
                attempt: 0,
            });
        }
        config.log_directory = logs.path().to_string_lossy().into_owned();
        let mut rt = daemon.runtime().await;
        let id = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: runtime_handler.to_owned(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", tail(&daemon.log())))
            .into_inner()
            .pod_sandbox_id;
        Pod {
            id,
            config,
            logs,
            rt,
            socket: daemon.socket.clone(),
        }
    }

    /// A container config: `name`, `image`, `command`, log file `<name>.log`.
    pub fn container(&self, name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    /// A container running `sh -c script`.
    pub fn sh(&self, name: &str, image: &str, script: &str) -> cri::ContainerConfig {
        self.container(name, image, &["sh", "-c", script])
    }

    pub async fn create(&self, config: cri::ContainerConfig) -> Result<String, tonic::Status> {
        self.rt
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    /// Create and start; panics on failure.
    pub async fn launch(&self, config: cri::ContainerConfig) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone());
        let id = self
            .create(config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name:?}: {e:?}"));
        self.start_container(&id)
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name:?}: {e:?}"));
        id
    }

    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map(|_| ())
    }

    pub async fn remove(&self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn status(&self, id: &str) -> cri::ContainerStatus {
        self.status_verbose(id).await.0
    }

    /// The status and the parsed verbose `info` document (`pid`, `cgroupPath`, `upperDir`...).
    pub async fn status_verbose(&self, id: &str) -> (cri::ContainerStatus, serde_json::Value) {
        let resp = self
            .rt
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"))
            .into_inner();
        let info = resp
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        (resp.status.expect("status"), info)
    }

    /// Polls until the container is exited; panics after `timeout`.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> cri::ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(id).await;
            if s.state == cri::ContainerState::ContainerExited as i32 {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not exit within {timeout:?}: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates, starts and waits (up to 30 s) for the container's exit; returns its status and
    /// log.
    pub async fn run(&self, config: cri::ContainerConfig) -> Ran {
        let log_path = config.log_path.clone();
        let id = self.launch(config).await;
        let status = self.wait_exited(&id, Duration::from_secs(30)).await;
        let lines = read_log(&self.logs.path().join(&log_path));
        Ran {
            id,
            status,
            stdout: stream(&lines, "stdout"),
            stderr: stream(&lines, "stderr"),
        }
    }

    /// [`Pod::run`], asserting exit code 0.
    pub async fn run_ok(&self, config: cri::ContainerConfig) -> Ran {
        let ran = self.run(config).await;
        assert_eq!(ran.status.exit_code, 0, "{ran:#?}");
        ran
    }

    /// The parsed CRI log of the container whose `log_path` is `<name>.log`.
    pub fn log(&self, name: &str) -> Vec<LogLine> {
        read_log(&self.logs.path().join(format!("{name}.log")))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let socket = self.socket.clone();
        let id = self.id.clone();
        block_on(async move {
            let Ok(channel) = strata::server::admin::connect_unix(&socket).await else {
                return;
            };
            let mut rt = RuntimeServiceClient::new(channel);
            let _ = rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            if let Err(e) = rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
            {
                eprintln!("removing pod {id}: {e:?}");
            }
        });
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: String,
    pub stream: String,
    /// `F` (full line) or `P` (partial).
    pub tag: String,
    pub content: String,
}

/// Parses a CRI log file (`<RFC3339Nano> <stream> <P|F> <content>` per line); missing file:
/// no lines. Panics on a malformed line.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (Some(timestamp), Some(stream), Some(tag)) =
                (parts.next(), parts.next(), parts.next())
            else {
                panic!("malformed CRI log line {line:?} in {}", path.display());
            };
            LogLine {
                timestamp: timestamp.to_owned(),
                stream: stream.to_owned(),
                tag: tag.to_owned(),
                content: parts.next().unwrap_or_default().to_owned(),
            }
        })
        .collect()
}

/// The text of one stream (`stdout` / `stderr`), full lines ending in `\n`, partials joined.
pub fn stream(lines: &[LogLine], which: &str) -> String {
    let mut out = String::new();
    for l in lines.iter().filter(|l| l.stream == which) {
        out.push_str(&l.content);
        if l.tag == "F" {
            out.push('\n');
        }
    }
    out
}

/// The last 60 lines of `text` (daemon logs in panic messages).
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `key: value` lines of `/proc/<pid>/status`-like text.
pub fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Linux resources for a container config.
pub fn with_resources(
    mut config: cri::ContainerConfig,
    resources: cri::LinuxContainerResources,
) -> cri::ContainerConfig {
    config.linux.get_or_insert_with(Default::default).resources = Some(resources);
    config
}

/// Applies `f` to the container's security context (created if absent).
pub fn with_security(
    mut config: cri::ContainerConfig,
    f: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
) -> cri::ContainerConfig {
    f(config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default));
    config
}

/// Labels as a map.
pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Waits until `done` holds, for up to `timeout`; returns whether it did.
pub async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The cgroup directories of `cgroup_path` (relative to the hierarchy roots) that exist, in
/// every mounted hierarchy (v1 controllers and the v2 `unified` one).
pub fn cgroup_dirs(cgroup_path: &str) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    let mut out = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let d = root.join(rel);
        if d.is_dir() {
            out.push(d);
        }
        return out;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let d = e.path().join(rel);
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    out
}

/// The directory of `cgroup_path` in the v1 hierarchy of `controller` (or the v2 one).
pub fn cgroup_file(cgroup_path: &str, controller: &str, file: &str) -> PathBuf {
    let rel = cgroup_path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        root.join(rel).join(file)
    } else {
        root.join(controller).join(rel).join(file)
    }
}
