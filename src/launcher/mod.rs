//! The runc-style launcher: runs an OCI runtime spec as a container, with our own code.
//!
//! [`create`] clones the container init from the calling **single-threaded** process (the
//! monitor, or a test child): the init joins/creates its namespaces, is put in its cgroups by
//! the parent, mounts its rootfs (overlay) and the spec's mounts, pivots, drops to its user,
//! capabilities and seccomp filter, and waits. [`CreatedInit::start`] lets it execve.
//! [`exec_main`] is the `strata exec` helper that runs an extra process in a running container.
//!
//! Modules: `clone` (clone3 + pidfd), `channel` (the parent/child sync protocol), `init` (plan,
//! child sequence and the namespace ordering rules), `mount_plan` (spec -> filesystem plan), `mounts` (its execution),
//! `rootfs_path` (resolving targets inside the rootfs), `process` (user, caps, rlimits,
//! no_new_privs, exec lookup), `seccomp` (OCI profile -> BPF; why our own compiler is written
//! there), `exec` (the exec helper), `template` (the small mount namespace inits are cloned
//! from), `sys` (the `Syscall` seam: a real and a recording
//! implementation, so the setup order is unit-tested without root), `tests` (root tests and the
//! re-exec + fork trick that gives them a single-threaded process).
//!
//! Sequence of [`create`] (parent side):
//! 1. check single-threaded; build and validate the whole plan (bad spec -> `Spec` error, nothing
//!    cloned), compile seccomp, open the namespace files to join;
//! 2. join the spec's pid namespace if it has a path (affects children only);
//! 3. socketpair (CLOEXEC); with `clone_mntns`, setns into the template mount namespace (its
//!    bind sources were opened as detached mounts in step 1; `template` says why);
//!    clone3(CLONE_PIDFD [| CLONE_NEWPID] [| CLONE_NEWUSER] | CLONE_INTO_CGROUP of the v2
//!    directory); setns back to our own;
//! 4. write uid/gid maps (new user ns), write the child's pid into the `cgroup.procs` files the
//!    child cannot join itself (v1 ones under a new user ns), send `Go`;
//! 5. wait for `Ready` (or an `Error { step, message }`, then reap and return `Init`).
//!
//! [`CreatedInit::start`] sends `Start`; EOF on the channel means execve succeeded (the
//! close-on-exec end closed); an `Error` (e.g. executable not found) is returned and the child
//! reaped. Dropping a `CreatedInit` that was never started kills and reaps the init.

mod channel;
mod clone;
mod exec;
mod init;
mod mount_plan;
mod mounts;
mod process;
pub(crate) use process::restore_ignored_signals;
mod rootfs_path;
mod seccomp;
mod sys;
mod template;

#[cfg(test)]
mod tests;

use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorKind};
use channel::{Channel, Msg};

pub use exec::{EXEC_SETUP_FAILED, ExecConfig, KILL_REQUEST, exec_main};
pub use template::{is_pinned as mntns_template_pinned, template_main as mntns_template_main};

/// The container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rootfs {
    /// An overlay mounted at `spec.root.path` inside the container's mount namespace.
    Overlay {
        /// Read-only layer directories, bottom first.
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
    /// `spec.root.path` already holds the root filesystem (bind-mounted onto itself).
    Existing,
}

/// What [`create`] runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: Rootfs,
    /// Every `cgroup.procs` file the init's pid is written into before it starts its setup.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// A pinned template mount namespace to clone the init from (see `template.rs`): the init's
    /// own mount namespace is then a copy of a few mounts instead of all the host's.
    #[serde(default)]
    pub clone_mntns: Option<PathBuf>,
}

/// Mounts the overlay of `lower` (bottom first), `upper` and `work` at `target` in the calling
/// process's mount namespace, made private (an external OCI runtime gets a ready rootfs). Long
/// lower lists go through fsopen/fsconfig, as in the container init.
pub fn mount_overlay(
    target: &std::path::Path,
    lower: &[PathBuf],
    upper: &std::path::Path,
    work: &std::path::Path,
) -> std::io::Result<()> {
    use sys::Syscall as _;
    if lower.is_empty() {
        return Err(std::io::Error::other(
            "an overlay rootfs needs at least one lower layer",
        ));
    }
    let lower_top_first: Vec<PathBuf> = lower.iter().rev().cloned().collect();
    let page_size = mount_plan::HostFacts::probe(false, false).page_size;
    let sys = sys::RealSys;
    match mount_plan::overlay_options(&lower_top_first, upper, work, page_size) {
        Some(options) => sys.mount(
            Some(std::path::Path::new("overlay")),
            target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(&options),
        )?,
        None => sys.mount_overlay_fsconfig(target, &lower_top_first, upper, work)?,
    }
    sys.mount(None, target, None, nix::mount::MsFlags::MS_PRIVATE, None)
}

/// The init's stdin, stdout and stderr (the pty slave thrice for a terminal).
#[derive(Debug)]
pub struct InitStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Launcher failures.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the launcher must run in a single-threaded process ({threads} threads)")]
    NotSingleThreaded { threads: usize },
    /// The spec cannot be run as given.
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The container init failed at `step` (e.g. `mount /proc`, `exec`).
    #[error("{step}: {message}")]
    Init { step: String, message: String },
}

impl LaunchError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LaunchError {
        LaunchError::Io {
            context: context.into(),
            source,
        }
    }
}

impl Classify for LaunchError {
    fn kind(&self) -> ErrorKind {
        match self {
            LaunchError::Spec(_) => ErrorKind::InvalidArgument,
            LaunchError::Init { step, .. } if step == "exec" => ErrorKind::FailedPrecondition,
            LaunchError::Init { step, .. } if step == "rlimits" => ErrorKind::InvalidArgument,
            LaunchError::NotSingleThreaded { .. }
            | LaunchError::Io { .. }
            | LaunchError::Init { .. } => ErrorKind::Internal,
        }
    }
}

/// A step of the child's setup that failed (sent back as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub step: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Started,
    Reaped,
}

/// A container init waiting to be started.
#[derive(Debug)]
pub struct CreatedInit {
    pid: i32,
    pidfd: OwnedFd,
    channel: Channel,
    state: State,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.raw_fd())
    }
}

/// Clones the container init from the calling (single-threaded) process and returns once the
/// init has done everything up to exec and waits to be started; setup errors are returned (the
/// child is reaped).
pub fn create(config: &InitConfig, stdio: InitStdio) -> Result<CreatedInit, LaunchError> {
    clone::ensure_single_threaded()?;
    let plan = init::InitPlan::build(config)?;
    if let Some(fd) = &plan.pid_join {
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| LaunchError::io("joining the pid namespace", e.into()))?;
    }
    let (parent_end, child_end) =
        Channel::pair().map_err(|e| LaunchError::io("creating the sync socketpair", e))?;
    let parent_raw = parent_end.raw_fd();
    let stdio_raw = [
        stdio.stdin.as_raw_fd(),
        stdio.stdout.as_raw_fd(),
        stdio.stderr.as_raw_fd(),
    ];
    // Into the template mount namespace for the clone only (setns copies nothing), keeping
    // where we were to come back to.
    let cwd = match &plan.clone_ns {
        Some((template, _)) => {
            let cwd = std::fs::File::open(".")
                .map_err(|e| LaunchError::io("opening the working directory", e))?;
            nix::sched::setns(template.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| LaunchError::io("joining the template mount namespace", e.into()))?;
            Some(cwd)
        }
        None => None,
    };
    let spawned = clone::spawn(
        plan.clone_flags,
        plan.clone_cgroup.as_ref().map(|(dir, _)| dir.as_fd()),
        |_| init::child_main(&plan, &child_end, parent_raw, stdio_raw),
    );
    let back = match (&plan.clone_ns, &cwd) {
        (Some((_, ours)), Some(cwd)) => {
            nix::sched::setns(ours.as_fd(), nix::sched::CloneFlags::CLONE_NEWNS)
                .and_then(|()| nix::unistd::fchdir(cwd))
        }
        _ => Ok(()),
    };
    let spawned = spawned.map_err(|e| LaunchError::io("cloning the container init", e))?;
    let (pid, pidfd) = (spawned.pid, spawned.pidfd);
    drop(child_end);
    drop(stdio);
    // From here on, dropping `created` (any error) kills and reaps the init.
    let mut created = CreatedInit {
        pid,
        pidfd,
        channel: parent_end,
        state: State::Created,
    };
    if let Err(e) = back {
        created.reap();
        return Err(LaunchError::io(
            "returning to our mount namespace after the clone",
            e.into(),
        ));
    }
    if let Some((uid_map, gid_map)) = &plan.id_maps {
        for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, map)
                .map_err(|e| LaunchError::io(format!("writing {path}"), e))?;
        }
    }
    let pid_text = pid.to_string();
    let unborn_v2 = plan
        .clone_cgroup
        .as_ref()
        .filter(|_| !spawned.in_cgroup)
        .map(|(_, procs)| procs);
    for procs in plan.cgroup_procs.iter().chain(unborn_v2) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| std::io::Write::write_all(&mut f, pid_text.as_bytes()))
            .map_err(|e| LaunchError::io(format!("joining cgroup {}", procs.display()), e))?;
    }
    if let Err(e) = created.channel.send(&Msg::Go) {
        return Err(created.died(e));
    }
    match created.channel.recv() {
        Ok(Some(Msg::Ready)) => Ok(created),
        Ok(Some(Msg::Error { step, message })) => {
            created.reap();
            Err(LaunchError::Init { step, message })
        }
        Ok(other) => Err(created.died(std::io::Error::other(format!(
            "unexpected message {other:?}"
        )))),
        Err(e) => Err(created.died(e)),
    }
}

impl CreatedInit {
    /// The init's pid (in the caller's pid namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd of the init: poll it for exit, `waitid(P_PIDFD)` to reap it.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Lets the init exec. `Err` if execve failed (e.g. `exec: "foo": executable file not found
    /// in $PATH`); the init is then reaped.
    pub fn start(&mut self) -> Result<(), LaunchError> {
        if self.state != State::Created {
            return Err(LaunchError::Init {
                step: "start".into(),
                message: "the container init was already started or has exited".into(),
            });
        }
        if let Err(e) = self.channel.send(&Msg::Start) {
            return Err(self.died(e));
        }
        match self.channel.recv() {
            Ok(None) => {
                self.state = State::Started;
                Ok(())
            }
            Ok(Some(Msg::Error { step, message })) => {
                self.reap();
                Err(LaunchError::Init { step, message })
            }
            Ok(Some(other)) => Err(self.died(std::io::Error::other(format!(
                "unexpected message {other:?}"
            )))),
            Err(e) => Err(self.died(e)),
        }
    }

    /// Kills (if still running) and reaps the init; describes how it ended.
    fn reap(&mut self) -> String {
        if self.state == State::Reaped {
            return "already reaped".into();
        }
        self.state = State::Reaped;
        let _ = clone::pidfd_kill(&self.pidfd, libc::SIGKILL);
        match clone::pidfd_wait(&self.pidfd) {
            Ok(exit) => exit.to_string(),
            Err(e) => format!("wait failed: {e}"),
        }
    }

    /// The channel broke or said something unexpected: the init is gone or unusable.
    fn died(&mut self, e: std::io::Error) -> LaunchError {
        let how = self.reap();
        LaunchError::Init {
            step: "init".into(),
            message: format!("the container init exited during setup ({how}; channel: {e})"),
        }
    }
}

impl Drop for CreatedInit {
    fn drop(&mut self) {
        if self.state == State::Created {
            self.reap();
        }
    }
}
