//! A real `strata serve` process for integration tests: its own root, state dir and socket in a
//! temporary directory, killed and cleaned up on drop, even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata::cri::v1::image_service_client::ImageServiceClient;
use strata::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub struct Daemon {
    child: Option<Child>,
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
        let config = format!(
            "root = \"{}\"\nstate = \"{}\"\nsocket = \"{}\"\n[log]\nlevel = \"debug\"\n{extra_toml}\n",
            root.display(),
            state.display(),
            socket.display()
        );
        std::fs::write(&config_path, config).expect("write config");
        let log_path = dir.path().join("daemon.log");
        let mut daemon = Self {
            child: None,
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
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
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
    }
}
