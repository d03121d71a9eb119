//! External OCI runtimes (runc) behind the monitor's [`Launch`] seam.
//!
//! The daemon generates the same spec as for the built-in launcher (adapted to what the
//! runtime supports, see `crate::runtime::handlers`), and the monitor, which lives in the host
//! mount namespace:
//! 1. mounts the overlay rootfs at `spec.root.path` (inside the bundle directory) on the host,
//!    made private; the runtime pivots into it in the container's own mount namespace;
//! 2. writes the spec to `<bundle>/config.json`;
//! 3. runs `RUNTIME --root R --log <bundle>/runtime.log --log-format json create --bundle B
//!    --pid-file <bundle>/init.pid ID` with the container's stdio as the runtime's own stdio
//!    (runc's pass-through mode: the container process inherits them). `runc create` leaves
//!    the init waiting on its exec fifo and exits; the init is re-parented to the monitor, a
//!    child subreaper, so the monitor reaps it and reads its exit status as usual;
//! 4. reads the pid file and opens a pidfd of the init;
//! 5. [`Init::start`] runs `RUNTIME start ID` (the init execs the container's process);
//! 6. once the init has exited, [`Init::cleanup`] runs `RUNTIME delete --force ID` (the
//!    runtime's state and the cgroup it joined) and unmounts the rootfs, before the monitor
//!    writes the exit file. The daemon repeats both when it removes a container whose monitor
//!    died ([`cleanup_leftovers`]).
//!
//! The runtime creates (or joins: strata creates it first, with the resources) the cgroup at
//! `linux.cgroupsPath` itself, so `cgroup_procs` is not used. No terminal support: the daemon
//! refuses `tty` containers for OCI runtime handlers (runc would need a console socket).
//! Runtime errors come from its JSON log (`--log`): the last `error` entry.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::detach::pidfd_open;
use super::launch::{Init, Launch};
use crate::launcher::{InitConfig, InitStdio, Rootfs};

/// How the monitor reaches the runtime (part of the `MonitorConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciRuntimeConfig {
    /// The runtime binary (absolute).
    pub runtime_path: PathBuf,
    /// The runtime's state directory (`--root`).
    pub runtime_root: PathBuf,
    /// The bundle directory: `config.json`, the pid file and the runtime's log go here.
    pub bundle: PathBuf,
}

impl OciRuntimeConfig {
    fn config_json(&self) -> PathBuf {
        self.bundle.join("config.json")
    }

    fn pid_file(&self) -> PathBuf {
        self.bundle.join("init.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.bundle.join("runtime.log")
    }

    /// `RUNTIME --root R --log L --log-format json`.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime_path);
        cmd.arg("--root")
            .arg(&self.runtime_root)
            .arg("--log")
            .arg(self.log_file())
            .arg("--log-format")
            .arg("json")
            .current_dir(&self.bundle);
        cmd
    }

    /// Runs `RUNTIME ... <args>` with the given stdio (`/dev/null` when `None`); `Err` with the
    /// runtime's last logged error when it fails.
    fn run(&self, args: &[&std::ffi::OsStr], stdio: Option<InitStdio>) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.args(args);
        match stdio {
            Some(s) => cmd
                .stdin(Stdio::from(s.stdin))
                .stdout(Stdio::from(s.stdout))
                .stderr(Stdio::from(s.stderr)),
            None => cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        };
        let log_start = std::fs::metadata(self.log_file()).map_or(0, |m| m.len());
        let verb = args
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let status = cmd
            .status()
            .map_err(|e| format!("running {}: {e}", self.runtime_path.display()))?;
        // `cmd` holds our copies of the container's stdio: close them now.
        drop(cmd);
        if status.success() {
            return Ok(());
        }
        let detail = last_error(&self.log_file(), log_start).unwrap_or_else(|| status.to_string());
        Err(format!("{} {verb}: {detail}", self.runtime_path.display()))
    }

    /// `RUNTIME delete --force ID`: the runtime's state and cgroup; idempotent.
    pub fn delete(&self, id: &str) -> Result<(), String> {
        if !self.runtime_root.join(id).exists() {
            return Ok(()); // never created, or deleted already
        }
        self.run(&["delete".as_ref(), "--force".as_ref(), id.as_ref()], None)
    }
}

/// The last `error` message of a runtime's JSON log (`{"level":"error","msg":"..."}` lines)
/// written past `offset`.
fn last_error(log: &Path, offset: u64) -> Option<String> {
    let mut file = File::open(log).ok()?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).ok()?;
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .last()
}

/// Unmounts the rootfs mounted on the host (lazily: nothing may keep it busy after the
/// container is gone); not mounted is fine.
pub fn unmount_rootfs(rootfs: &Path) -> Result<(), String> {
    match nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(format!("unmounting {}: {e}", rootfs.display())),
    }
}

/// What the daemon does for a container whose monitor may have died before its cleanup: the
/// runtime's state (`delete --force` also kills what still runs) and the rootfs mount.
pub fn cleanup_leftovers(config: &OciRuntimeConfig, id: &str, rootfs: &Path) -> Result<(), String> {
    let deleted = config.delete(id);
    let unmounted = unmount_rootfs(rootfs);
    deleted.and(unmounted)
}

/// The [`Launch`] implementation for an OCI runtime.
pub struct OciRuntime {
    pub id: String,
    pub config: OciRuntimeConfig,
}

impl Launch for OciRuntime {
    fn create(&self, params: &InitConfig, stdio: InitStdio) -> Result<Box<dyn Init>, String> {
        let rootfs = params
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .filter(|p| p.is_absolute())
            .ok_or("the spec has no absolute root.path")?;
        if params
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
        {
            return Err("a terminal is not supported with an OCI runtime".into());
        }
        let mut init = OciInit {
            id: self.id.clone(),
            config: self.config.clone(),
            rootfs: rootfs.clone(),
            pid: 0,
            pidfd: None,
            cleaned: false,
        };
        // From here on, dropping `init` (any error) deletes what was made.
        if let Rootfs::Overlay { lower, upper, work } = &params.rootfs {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| format!("creating {}: {e}", rootfs.display()))?;
            crate::launcher::mount_overlay(&rootfs, lower, upper, work)
                .map_err(|e| format!("mounting the overlay rootfs at {}: {e}", rootfs.display()))?;
        }
        let json = serde_json::to_vec(&params.spec).map_err(|e| format!("the spec: {e}"))?;
        let config_json = self.config.config_json();
        std::fs::write(&config_json, json)
            .map_err(|e| format!("writing {}: {e}", config_json.display()))?;
        let pid_file = self.config.pid_file();
        self.config.run(
            &[
                "create".as_ref(),
                "--bundle".as_ref(),
                self.config.bundle.as_os_str(),
                "--pid-file".as_ref(),
                pid_file.as_os_str(),
                self.id.as_ref(),
            ],
            Some(stdio),
        )?;
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("reading {}: {e}", pid_file.display()))?
            .trim()
            .parse::<i32>()
            .map_err(|e| format!("{}: {e}", pid_file.display()))?;
        init.pid = pid;
        // The init is our child now (runc create exited; we are a subreaper): it stays a zombie
        // until we reap it, so the pid cannot have been reused.
        init.pidfd =
            Some(pidfd_open(Pid::from_raw(pid)).map_err(|e| format!("pidfd_open {pid}: {e}"))?);
        Ok(Box::new(init))
    }
}

struct OciInit {
    id: String,
    config: OciRuntimeConfig,
    rootfs: PathBuf,
    pid: i32,
    pidfd: Option<OwnedFd>,
    cleaned: bool,
}

impl Init for OciInit {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd
            .as_ref()
            .expect("an OciInit is only handed out with its pidfd")
            .as_fd()
    }

    fn start(&mut self) -> Result<(), String> {
        self.config.run(&["start".as_ref(), self.id.as_ref()], None)
    }

    fn cleanup(&mut self) -> Result<(), String> {
        if std::mem::replace(&mut self.cleaned, true) {
            return Ok(());
        }
        cleanup_leftovers(&self.config, &self.id, &self.rootfs)
    }
}

impl Drop for OciInit {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            super::event_loop::diag!("{}: cleanup: {e}", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_of_a_json_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runtime.log");
        assert_eq!(last_error(&log, 0), None);
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\",\"time\":\"t\"}\n\
             {\"level\":\"error\",\"msg\":\"first\",\"time\":\"t\"}\n\
             not json\n\
             {\"level\":\"error\",\"msg\":\"runc create failed: no such file\",\"time\":\"t\"}\n\
             {\"level\":\"info\",\"msg\":\"i\",\"time\":\"t\"}\n",
        )
        .unwrap();
        assert_eq!(
            last_error(&log, 0).as_deref(),
            Some("runc create failed: no such file")
        );
        let len = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_error(&log, len), None);
    }

    #[test]
    fn config_defaults_to_the_builtin_launcher() {
        let config: super::super::LaunchWith =
            serde_json::from_str("{\"kind\":\"builtin\"}").unwrap();
        assert_eq!(config, super::super::LaunchWith::Builtin);
        let oci = super::super::LaunchWith::OciRuntime(OciRuntimeConfig {
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/strata/oci/runc".into(),
            bundle: "/run/strata/c/x".into(),
        });
        let json = serde_json::to_string(&oci).unwrap();
        assert!(json.contains("\"kind\":\"oci_runtime\""), "{json}");
        assert_eq!(
            serde_json::from_str::<super::super::LaunchWith>(&json).unwrap(),
            oci
        );
    }
}
