//! `ExecSync`: runs a command in a running container through the `strata-monitor exec` helper
//! (which joins the container's namespaces and cgroup and applies its user, capabilities,
//! no_new_privs and seccomp), with a timeout that kills the process, and output capped as
//! kubelet expects.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{ContainerError, Runtime};
use crate::store::ContainerState;

/// kubelet's cap per stream (maxExecSyncOutputBytes... 16 MiB).
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("command timed out after {0:?} and was killed")]
    Timeout(Duration),
    #[error("exec in container {id}: {message}")]
    Failed { id: String, message: String },
}

impl crate::error::Classify for ExecError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            ExecError::Timeout(_) => crate::error::ErrorKind::DeadlineExceeded,
            ExecError::Failed { .. } => crate::error::ErrorKind::Internal,
        }
    }
}

impl Runtime {
    /// Prepares the helper's config for `cmd` in a running container; returns its path.
    pub(crate) fn exec_config(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
    ) -> Result<std::path::PathBuf, ContainerError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: record.id,
                state: record.state,
                wanted: "exec needs a running container",
            });
        }
        if cmd.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "exec needs a command".into(),
            ));
        }
        let state = self.container_state_dir(&record.id);
        let failed = |message: String| ContainerError::Build(message);
        let bytes = std::fs::read(state.join("monitor.json"))
            .map_err(|e| failed(format!("reading the container's config: {e}")))?;
        let monitor: crate::monitor::MonitorConfig = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("parsing the container's config: {e}")))?;
        let spec = &monitor.init.spec;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| failed("the container's spec has no process".into()))?;
        process.set_args(Some(cmd));
        process.set_terminal(Some(tty));
        let config = crate::launcher::ExecConfig {
            target_pid: record.pid,
            process,
            cgroup_procs: monitor.init.cgroup_procs.clone(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        };
        let path = state.join(format!("exec-{:016x}.json", rand::random::<u64>()));
        let json = serde_json::to_vec(&config).map_err(|e| failed(e.to_string()))?;
        std::fs::write(&path, json)
            .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let config = self.exec_config(id, cmd, false)?;
        let result = self.run_exec(id, &config, timeout).await;
        let _ = std::fs::remove_file(&config);
        result
    }

    async fn run_exec(
        &self,
        id: &str,
        config: &std::path::Path,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let failed = |message: String| {
            ContainerError::Exec(ExecError::Failed {
                id: id.to_owned(),
                message,
            })
        };
        let mut child = tokio::process::Command::new(&self.monitor_binary)
            .arg("exec")
            .arg("--config")
            .arg(config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("starting the exec helper: {e}")))?;
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(failed("exec helper without pipes".into()));
        };
        let run = async {
            let (stdout, stderr, status) =
                tokio::join!(read_capped(out), read_capped(err), child.wait());
            (stdout, stderr, status)
        };
        let (stdout, stderr, status) = match timeout {
            Some(t) => match tokio::time::timeout(t, run).await {
                Ok(done) => done,
                Err(_) => {
                    kill_and_reap(&mut child).await;
                    return Err(ContainerError::Exec(ExecError::Timeout(t)));
                }
            },
            None => run.await,
        };
        let status = status.map_err(|e| failed(format!("waiting for the exec helper: {e}")))?;
        use std::os::unix::process::ExitStatusExt;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255);
        Ok(ExecOutput {
            stdout: stdout.map_err(|e| failed(e.to_string()))?,
            stderr: stderr.map_err(|e| failed(e.to_string()))?,
            exit_code,
        })
    }
}

/// Ends a timed-out exec: the helper SIGKILLs and reaps the process (so no zombie is left in
/// the container, see [`crate::launcher::KILL_REQUEST`]); a helper that does not exit within
/// a second is SIGKILLed, and the process dies with it (PR_SET_PDEATHSIG).
async fn kill_and_reap(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            crate::launcher::KILL_REQUEST,
        );
        if tokio::time::timeout(Duration::from_secs(1), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Reads a stream to its end, keeping at most [`MAX_OUTPUT`] bytes (the rest is drained so the
/// process never blocks on a full pipe).
async fn read_capped(mut r: impl tokio::io::AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        let room = MAX_OUTPUT.saturating_sub(out.len());
        out.extend_from_slice(&buf[..n.min(room)]);
    }
}
