//! `strata-monitor pod-init` (also `strata pod-init`): the process that holds a pod's
//! namespaces (what the pause container does, without an image).
//!
//! It detaches from the daemon (double fork, `setsid`), unshares the namespaces the pod asks for
//! (with `userns`: a new user namespace first, whose uid/gid maps a short-lived child still in
//! the host's user namespace writes, so the net/ipc/uts/pid namespaces unshared next are owned
//! by it; see [`userns`]),
//! brings `lo` up in a new network namespace, sets the hostname in a new UTS namespace, and
//! reports `{"ready":{"pid":N}}` on stdout. With a new pid namespace it forks after the
//! `unshare`: the child is the pod's PID 1 and is the process that stays (N is its host pid).
//! Then it reaps zombies (as PID 1 of a shared pid namespace it inherits every orphan) and exits
//! on SIGTERM or SIGINT. Both signals are blocked and read from a signalfd, so they work for a
//! PID 1 too (the kernel drops default-action signals sent to a namespace's init).

mod loopback;
mod userns;

use std::io::{self, Read as _};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorKind};
use crate::monitor::client::{parse_report, run_helper};
use crate::monitor::detach;

/// What pod-init sets up. A `false` namespace is shared with the host (hostNetwork, hostIPC,
/// hostPID).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInitConfig {
    pub new_net: bool,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// Set in the new UTS namespace; ignored without one.
    pub hostname: Option<String>,
    /// A new user namespace with these maps (Kubernetes `hostUsers: false`), created before
    /// the other namespaces so that it owns them.
    #[serde(default)]
    pub userns: Option<UsernsMaps>,
}

/// `uid_map` / `gid_map` lines: (id inside, id outside, length).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernsMaps {
    pub uids: Vec<(u32, u32, u32)>,
    pub gids: Vec<(u32, u32, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodInitError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("pod-init failed: {0}")]
    Failed(String),
}

impl Classify for PodInitError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// Runs `<binary> pod-init --config -` with the config on its stdin (`binary` is
/// `strata-monitor`: pod-init lives as long as its pod, so it runs from the small executable,
/// see src/bin/strata-monitor.rs); returns the host pid of the
/// process holding the namespaces once they are ready. That process is not our child.
///
/// `pod_dir` goes on the command line only to name the pod: a daemon that dies before it has
/// recorded the pid finds its pod-init there on restart ([`find_by_pod_dir`]).
pub async fn spawn(
    binary: &Path,
    config: &PodInitConfig,
    pod_dir: &Path,
) -> Result<i32, PodInitError> {
    let json = serde_json::to_vec(config).map_err(|e| PodInitError::Failed(e.to_string()))?;
    let args = [
        "pod-init".as_ref(),
        "--config".as_ref(),
        "-".as_ref(),
        "--pod-dir".as_ref(),
        pod_dir.as_os_str(),
    ];
    let line = run_helper(binary, &args, Some(&json))
        .await
        .map_err(|source| PodInitError::Io {
            context: format!("running {} pod-init", binary.display()),
            source,
        })?;
    #[derive(Deserialize)]
    struct Pid {
        pid: i32,
    }
    parse_report::<Pid>(&line, "ready")
        .map(|p| p.pid)
        .map_err(PodInitError::Failed)
}

/// The pod-init processes spawned for `pod_dir` that still run (a pod-init that forked for a
/// new pid namespace leaves its child, which keeps the command line).
pub fn find_by_pod_dir(pod_dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = pod_dir.as_os_str().as_encoded_bytes();
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.get(1) == Some(&b"pod-init".as_slice())
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--pod-dir" && w[1] == wanted)
            })
        })
        .collect()
}

/// The `strata pod-init --config FILE|-` entry point. Must run before any other thread exists.
pub fn pod_init_main(config_path: &Path) -> ! {
    detach::close_inherited_fds();
    let config = match load(config_path) {
        Ok(config) => config,
        Err(e) => fail(&e),
    };
    if let Err(e) = detach::detach() {
        fail(&format!("detaching: {e}"));
    }
    let _ = detach::redirect(0, Path::new("/dev/null"), false);
    let _ = detach::redirect(2, Path::new("/dev/null"), true);
    let sigfd = match setup(&config) {
        Ok(sigfd) => sigfd,
        Err(e) => fail(&e),
    };
    if config.new_pid {
        // SAFETY: single-threaded; the child only runs the reaper loop below.
        match unsafe { nix::unistd::fork() } {
            Err(e) => fail(&format!("fork: {e}")),
            Ok(ForkResult::Parent { child }) => {
                report_ready(child.as_raw());
                std::process::exit(0)
            }
            Ok(ForkResult::Child) => {
                // PID 1 of the pod: keep nothing of the daemon's.
                let _ = detach::redirect(1, Path::new("/dev/null"), true);
                reaper(&sigfd)
            }
        }
    }
    report_ready(std::process::id() as i32);
    reaper(&sigfd)
}

fn load(path: &Path) -> Result<PodInitConfig, String> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        io::stdin().lock().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("pod-init config: {e}"))
}

fn fail(message: &str) -> ! {
    detach::report(&serde_json::json!({ "error": message }).to_string());
    std::process::exit(1)
}

fn report_ready(pid: i32) {
    detach::report(&serde_json::json!({ "ready": { "pid": pid } }).to_string());
}

/// Blocks the signals the reaper handles (before any fork, so no early SIGTERM is lost),
/// unshares the namespaces and configures them.
fn setup(config: &PodInitConfig) -> Result<SignalFd, String> {
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)
        .map_err(|e| format!("sigprocmask: {e}"))?;
    let sigfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    if let Some(maps) = &config.userns {
        userns::enter_new(maps)?;
    }
    let mut flags = CloneFlags::empty();
    for (wanted, flag) in [
        (config.new_net, CloneFlags::CLONE_NEWNET),
        (config.new_ipc, CloneFlags::CLONE_NEWIPC),
        (config.new_uts, CloneFlags::CLONE_NEWUTS),
        (config.new_pid, CloneFlags::CLONE_NEWPID),
    ] {
        if wanted {
            flags |= flag;
        }
    }
    if !flags.is_empty() {
        nix::sched::unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    }
    if config.new_net {
        loopback::up().map_err(|e| format!("bringing lo up: {e}"))?;
    }
    if let Some(hostname) = config.hostname.as_deref().filter(|_| config.new_uts) {
        nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname: {e}"))?;
    }
    Ok(sigfd)
}

/// Reaps children until SIGTERM or SIGINT.
fn reaper(sigfd: &SignalFd) -> ! {
    // Lives as long as the pod and only waits from here on: give back what set-up faulted in.
    crate::monitor::footprint::shed_memory();
    loop {
        match sigfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGTERM || signo == libc::SIGINT {
                    std::process::exit(0);
                }
                reap_all();
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

fn reap_all() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
