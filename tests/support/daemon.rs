//! A real `strata serve` process for integration tests: its own root, state dir, socket and
//! cgroup parent, killed and cleaned up on drop, even when the test panics: the daemon itself, the
//! monitors and pod-init processes it started (found by an environment marker they inherit),
//! every process in its cgroups, the cgroups, and every mount under its directory.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::cri::v1::image_service_client::ImageServiceClient;
use strata::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Environment variable marking the processes of one test daemon (value: its directory).
const MARKER_ENV: &str = "STRATA_TEST_INSTANCE";

pub struct Daemon {
    child: Option<Child>,
    /// cgroupfs parent of this daemon's pods (`runtime.cgroup_parent`).
    pub cgroup_parent: String,
    dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub log_path: PathBuf,
}

impl Daemon {
    /// Starts a daemon whose config is the test's own paths plus `extra_toml` (sections such as
    /// `[registry]` or `[images]`).
    pub fn start(extra_toml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let socket = state.join("strata.sock");
        let config_path = dir.path().join("config.toml");
        let cgroup_parent = format!(
            "/strata-test-{}",
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().replace("strata-test-", ""))
                .unwrap_or_default()
        );
        let runtime_section = if extra_toml.contains("[runtime]") {
            String::new()
        } else {
            format!("[runtime]\ncgroup_parent = \"{cgroup_parent}\"\n")
        };
        // Pods need a CNI network: unless the test brings its own, a loopback-only one (the
        // real `loopback` plugin; no host interfaces, addresses or iptables rules to clean up).
        let network_section = if extra_toml.contains("[network]") {
            String::new()
        } else {
            let conf_dir = dir.path().join("cni");
            std::fs::create_dir_all(&conf_dir).expect("CNI conf dir");
            std::fs::write(
                conf_dir.join("10-loopback.conflist"),
                r#"{"cniVersion":"1.0.0","name":"test-loopback","plugins":[{"type":"loopback"}]}"#,
            )
            .expect("write CNI config");
            format!("[network]\ncni_conf_dir = \"{}\"\n", conf_dir.display())
        };
        let config = format!(
            "root = \"{}\"\nstate = \"{}\"\nsocket = \"{}\"\n[log]\nlevel = \"info\"\n{runtime_section}{network_section}{extra_toml}\n",
            root.display(),
            state.display(),
            socket.display()
        );
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("daemon.log");
        let mut daemon = Self {
            child: None,
            cgroup_parent,
            dir,
            config_path,
            socket,
            log_path,
        };
        daemon.spawn();
        daemon
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("daemon log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        // As under `nohup`: strata must not pass an ignored SIGHUP on to containers (a shell
        // there could not even trap it).
        // SAFETY: signal(2) is async-signal-safe; it runs in the forked child before the exec.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                Ok(())
            })
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env(MARKER_ENV, self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn strata serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("strata exited with {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "strata did not listen on {} in time; log:\n{}",
            self.socket.display(),
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the daemon again on the same root and state.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub async fn channel(&self) -> Channel {
        strata::server::admin::connect_unix(&self.socket)
            .await
            .expect("connect to strata")
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- strata log ---\n{}", self.log());
        }
        kill_marked(self.dir.path());
        remove_cgroups(&self.cgroup_parent);
        unmount_below(self.dir.path());
    }
}

/// SIGKILLs every process whose environment carries this daemon's marker (monitors, pod-init).
fn kill_marked(dir: &Path) {
    let needle = format!("{MARKER_ENV}={}", dir.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            // SAFETY: kill(2) has no memory-safety implications.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Kills every process in the cgroups below `parent` in every hierarchy, then removes them.
fn remove_cgroups(parent: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let rel = parent.trim_start_matches('/');
    for hierarchy in hierarchies.flatten() {
        let top = hierarchy.path().join(rel);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            for _ in 0..100 {
                if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill(2) has no memory-safety implications.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Unmounts everything mounted below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut targets: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        if let Ok(c) = std::ffi::CString::new(target) {
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
