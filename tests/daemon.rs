//! The `strata serve` process: its socket, its lock, signals, configuration errors, the printed
//! default configuration, and the RuntimeService calls that answer today.

mod daemon_helpers;
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use support::daemon::Daemon;
use tonic::Code;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// A child process killed on drop (for daemons a test starts by hand).
struct Reaped(Option<Child>);

impl Reaped {
    /// Waits up to `timeout` for the exit; kills the process and panics if it does not come.
    /// Async, so that the test's own gRPC connections keep being served meanwhile: a graceful
    /// shutdown waits for its clients to acknowledge it.
    async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.0.as_mut().expect("process");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.0 = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process {} did not exit within {timeout:?}", child.id());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.0.as_ref().expect("process").id();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid as i32, signal) };
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `strata serve --config <config>` with stdout/stderr going to `log`.
fn serve(config: &Path, log: &Path) -> Reaped {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(STRATA)
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning strata serve");
    Reaped(Some(child))
}

/// Runs `strata serve --config <config>` expecting it to give up: returns its exit status and
/// what it printed.
async fn serve_fails(config: &Path) -> (ExitStatus, String) {
    let log = config.with_extension("log");
    let status = serve(config, &log).wait(Duration::from_secs(20)).await;
    (status, std::fs::read_to_string(&log).unwrap())
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

async fn version(daemon: &Daemon) -> cri::VersionResponse {
    daemon
        .runtime()
        .await
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner()
}

#[tokio::test]
async fn socket_is_0660_and_a_stale_one_is_replaced() {
    let mut daemon = Daemon::start("");
    let meta = std::fs::symlink_metadata(&daemon.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&daemon.socket), 0o660);

    daemon.kill();
    assert!(
        std::fs::symlink_metadata(&daemon.socket)
            .unwrap()
            .file_type()
            .is_socket(),
        "SIGKILL leaves the socket behind"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&daemon.socket).is_err(),
        "nobody listens on it"
    );
    daemon.restart();
    assert_eq!(version(&daemon).await.runtime_name, "strata");
    assert_eq!(mode(&daemon.socket), 0o660);
}

#[tokio::test]
async fn second_daemon_on_the_same_state_dir_refuses_to_start() {
    let daemon = Daemon::start("");
    let (status, log) = serve_fails(&daemon.config_path).await;
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("already running"), "{log}");
    assert!(
        log.contains(&daemon.pid().unwrap().to_string()),
        "names the pid: {log}"
    );
    // The first one is undisturbed, socket included.
    assert_eq!(version(&daemon).await.runtime_name, "strata");
    assert_eq!(mode(&daemon.socket), 0o660);
}

#[tokio::test]
async fn second_daemon_on_the_same_root_refuses_to_start() {
    let daemon = Daemon::start("");
    let other = tempfile::tempdir().unwrap();
    let config = other.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "root = \"{}\"\nstate = \"{}/state\"\nsocket = \"{}/state/s.sock\"\n",
            daemon.root().display(),
            other.path().display(),
            other.path().display()
        ),
    )
    .unwrap();
    let (status, log) = serve_fails(&config).await;
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("already running"), "{log}");
    assert_eq!(version(&daemon).await.runtime_name, "strata");
}

#[tokio::test]
async fn sigterm_exits_zero_and_removes_the_socket() {
    let mut daemon = Daemon::start("");
    assert!(daemon.terminate(), "exit status 0 on SIGTERM");
    assert!(!daemon.socket.exists(), "socket removed on a clean exit");
    assert!(daemon.log().contains("SIGTERM"), "{}", daemon.log());
}

#[tokio::test]
async fn bad_configs_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let paths = format!(
        "root = \"{0}/root\"\nstate = \"{0}/state\"\nsocket = \"{0}/state/s.sock\"\n",
        dir.path().display()
    );
    for (name, extra, key) in [
        ("unknown", "[images]\nmax_downloads = 3\n", "max_downloads"),
        ("toplevel", "rootdir = \"/x\"\n", "rootdir"),
        (
            "zero",
            "[images]\nmax_concurrent_downloads = 0\n",
            "images.max_concurrent_downloads",
        ),
        (
            "mirror",
            "[registry.hosts.\"docker.io\"]\nmirrors = [\"ftp://x\"]\n",
            "registry.hosts.\"docker.io\".mirrors",
        ),
    ] {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, format!("{paths}{extra}")).unwrap();
        let (status, log) = serve_fails(&config).await;
        assert!(!status.success(), "{name}: {status}: {log}");
        assert!(
            log.contains(key),
            "{name}: the message names `{key}`: {log}"
        );
        assert!(
            !dir.path().join("state/s.sock").exists(),
            "{name}: served anyway"
        );
    }
}

#[tokio::test]
async fn printed_default_config_is_a_working_config() {
    let out: Output = Command::new(STRATA)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&text).expect("valid TOML");
    assert_eq!(parsed["root"].as_str(), Some("/var/lib/strata"));
    assert_eq!(
        strata::config::Config::parse(&text).unwrap(),
        strata::config::Config::default()
    );

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("state/strata.sock");
    let mut replaced = 0;
    let text: String = text
        .lines()
        .map(|line| {
            let value = match line.split(" = ").next() {
                Some("root") => dir.path().join("root"),
                Some("state") => dir.path().join("state"),
                Some("socket") => socket.clone(),
                _ => return format!("{line}\n"),
            };
            replaced += 1;
            let key = line.split(" = ").next().unwrap();
            format!("{key} = \"{}\"\n", value.display())
        })
        .collect();
    assert_eq!(
        replaced, 3,
        "root, state and socket are in the default config"
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &text).unwrap();

    let mut daemon = serve(&config, &dir.path().join("log"));
    daemon_helpers::wait_until("the socket", Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
    .await;
    let channel = strata::server::admin::connect_unix(&socket).await.unwrap();
    let reply = cri::runtime_service_client::RuntimeServiceClient::new(channel)
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.runtime_name, "strata");
    assert!(dir.path().join("root/meta.db").is_file());
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn version_and_unimplemented_calls() {
    let daemon = Daemon::start("");
    let reply = version(&daemon).await;
    assert_eq!(reply.runtime_name, "strata");
    assert_eq!(reply.runtime_api_version, "v1");
    assert_eq!(reply.version, "0.1.0");
    assert!(!reply.runtime_version.is_empty());

    // CheckpointContainer needs CRIU, which strata does not drive: an honest UNIMPLEMENTED.
    let mut runtime = daemon.runtime().await;
    let err = runtime
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    // The streaming calls are implemented: a request without a pod is refused, not unimplemented.
    let err = runtime
        .port_forward(cri::PortForwardRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Status answers: the runtime is ready, and so is the network (the test daemon's loopback
    // CNI config; tests/network.rs covers NetworkReady=false).
    let status = runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let ready = |t: &str| conditions.iter().find(|c| c.r#type == t).map(|c| c.status);
    assert_eq!(ready("RuntimeReady"), Some(true));
    assert_eq!(ready("NetworkReady"), Some(true));
}

/// A client that connected and never speaks (or a wedged one that stopped reading) must not
/// keep the daemon from stopping: kubelet's, systemd's and an operator's SIGTERM must win.
#[tokio::test]
async fn sigterm_exits_despite_a_silent_client() {
    let mut daemon = Daemon::start("");
    let _silent = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    // Connections are accepted in order: once this call is answered, the silent one is too.
    version(&daemon).await;
    assert!(daemon.terminate(), "no exit within 10 s of SIGTERM");
}
