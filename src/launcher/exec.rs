//! `strata-monitor exec --config FILE` (also `strata exec`): runs an extra process inside a
//! running container.
//!
//! The daemon spawns this helper with the stdio the process should get (pipes or a pty). It
//! runs before any tokio runtime, single-threaded:
//! 1. reads [`ExecConfig`], validates the process and compiles seccomp (errors: exit 255);
//! 2. becomes non-dumpable (until exec), opens `/proc/<target_pid>/ns/*` (all of them before
//!    joining any: joining the mount namespace changes what /proc shows), skipping namespaces
//!    identical to ours;
//! 3. joins the container's v1 cgroups (host paths, so before the mount namespace) and opens
//!    its v2 directory, which the process is cloned into in step 5;
//! 4. joins the namespaces ipc, uts, net and pid; the child joins cgroup, then user, and mnt
//!    last. Host root may join any namespace; inside a pod's user namespace it could no longer
//!    join those the host's user namespace owns (a container's own pid and cgroup namespaces,
//!    see init.rs), so the user namespace comes after them; the container's mount namespace is
//!    owned by the pod's user namespace and is joined after it;
//! 5. forks into the container's v2 cgroup (a joined pid namespace applies to children only);
//!    the child joins the remaining namespaces, applies the same process setup as the init
//!    ([`super::process::apply`]: rlimits, cwd, user, capabilities, no_new_privs, seccomp
//!    last) and execs;
//! 6. the helper forwards SIGTERM/SIGINT/SIGHUP/SIGWINCH to the child and exits with its status
//!    (128+signal when killed); [`KILL_REQUEST`] makes it SIGKILL the child and reap it before
//!    exiting (an ExecSync timeout: a process orphaned inside the container would be reparented
//!    to the container's PID 1, which need not reap, and linger as a zombie that `pgrep` still
//!    finds); if the helper itself is SIGKILLed the child gets SIGKILL too (PR_SET_PDEATHSIG).
//!
//! Setup failures print `strata exec: <step>: <message>` on stderr and exit with
//! [`EXEC_SETUP_FAILED`]; a missing executable prints runc's text
//! (`exec: "foo": executable file not found in $PATH`) and exits 127, a refused exec 126.

use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use oci_spec::runtime::{LinuxSeccomp, Process};
use serde::{Deserialize, Serialize};

use super::clone;
use super::init::open_ns;
use super::process::{self, ProcessPlan};
use super::seccomp;
use super::sys::RealSys;
use super::{Failure, LaunchError};

/// Sent to the helper to have the process SIGKILLed and reaped (the helper then exits with
/// 128+9). Before the helper blocks it (during setup) it simply ends the helper, which has
/// not started anything yet.
pub const KILL_REQUEST: Signal = Signal::SIGUSR1;

/// Exit status of the helper when it could not start the process.
pub const EXEC_SETUP_FAILED: i32 = 255;

/// The `strata exec` configuration file (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The container's init pid, whose namespaces are joined.
    pub target_pid: i32,
    /// The container's process (user, capabilities, AppArmor profile...) with the exec's args.
    pub process: Process,
    /// Every `cgroup.procs` of the container's cgroup (one per v1 hierarchy).
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    #[serde(default)]
    pub seccomp: Option<LinuxSeccomp>,
}

/// The namespaces joined, in order.
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGWINCH,
];

/// The `strata exec` helper: never returns (see the module doc).
pub fn exec_main(config_path: &Path) -> ! {
    let code = match run(config_path) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata exec: {e}");
            EXEC_SETUP_FAILED
        }
    };
    std::process::exit(code)
}

fn same_ns(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn run(config_path: &Path) -> Result<i32, LaunchError> {
    clone::ensure_single_threaded()?;
    let raw = std::fs::read(config_path)
        .map_err(|e| LaunchError::io(format!("reading {}", config_path.display()), e))?;
    let config: ExecConfig = serde_json::from_slice(&raw)
        .map_err(|e| LaunchError::Spec(format!("{}: {e}", config_path.display())))?;
    let plan = ProcessPlan::from_spec(&config.process)?;
    let filter = config
        .seccomp
        .as_ref()
        .map(seccomp::compile)
        .transpose()
        .map_err(LaunchError::Spec)?;

    // SAFETY: integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(LaunchError::io(
            "PR_SET_DUMPABLE",
            std::io::Error::last_os_error(),
        ));
    }
    let mut joins = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = PathBuf::from(format!("/proc/{}/ns/{name}", config.target_pid));
        if same_ns(&theirs, Path::new(&format!("/proc/self/ns/{name}"))) {
            continue;
        }
        joins.push((name, open_ns(&theirs)?, flag));
    }
    // v1: this helper is single-threaded, so it takes the kernel's fast path for itself (`0`
    // to `tasks`) and its child inherits the cgroups. v2: the child is born in the cgroup
    // (CLONE_INTO_CGROUP), which costs no migration (see `cgroups::take_v2_dir`). If the kernel
    // refuses that, the child moves itself through a `cgroup.procs` opened here, while the
    // host's paths and credentials still apply.
    let mut procs = config.cgroup_procs.clone();
    let v2 = crate::cgroups::take_v2_dir(&mut procs);
    let v2_procs = v2
        .as_ref()
        .map(|(_, file)| std::fs::OpenOptions::new().write(true).open(file))
        .transpose()
        .map_err(|e| LaunchError::io("opening the container's cgroup v2 cgroup.procs", e))?;
    crate::cgroups::join_self(&procs)
        .map_err(|e| LaunchError::io("joining the container's cgroup", e))?;
    // The helper joins the namespaces before the cgroup one; the child, once born in the
    // container's cgroup, joins the rest. (Cloning into a cgroup from inside the container's
    // cgroup namespace is refused where the v2 hierarchy is mounted with nsdelegate.)
    let split = joins
        .iter()
        .position(|(_, _, flag)| *flag == CloneFlags::CLONE_NEWCGROUP)
        .unwrap_or(joins.len());
    let child_joins = joins.split_off(split);
    for (name, fd, flag) in &joins {
        nix::sched::setns(fd.as_fd(), *flag)
            .map_err(|e| LaunchError::io(format!("joining the {name} namespace"), e.into()))?;
    }
    drop(joins);

    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    let mut waited = forwarded;
    waited.add(Signal::SIGCHLD);
    waited.add(KILL_REQUEST);
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), Some(&mut old))
        .map_err(|e| LaunchError::io("blocking signals", e.into()))?;

    let pidfd = clone::spawn(
        CloneFlags::empty(),
        v2.as_ref().map(|(dir, _)| dir.as_fd()),
        |born_in_cgroup| {
            if !born_in_cgroup && let Some(procs) = &v2_procs {
                join_through(procs);
            }
            for (name, fd, flag) in &child_joins {
                if let Err(e) = nix::sched::setns(fd.as_fd(), *flag) {
                    fail(
                        Failure {
                            step: format!("joining the {name} namespace"),
                            message: e.to_string(),
                        },
                        EXEC_SETUP_FAILED,
                    );
                }
            }
            child(&plan, filter.as_ref(), &old)
        },
    )
    .map_err(|e| LaunchError::io("forking the exec process", e))?
    .pidfd;

    loop {
        if let Some(exit) = clone::pidfd_try_wait(&pidfd)
            .map_err(|e| LaunchError::io("waiting for the exec process", e))?
        {
            return Ok(exit.code);
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(KILL_REQUEST) => {
                let _ = clone::pidfd_kill(&pidfd, libc::SIGKILL);
            }
            Ok(sig) => {
                let _ = clone::pidfd_kill(&pidfd, sig as i32);
            }
        }
    }
}

/// Moves the calling (single-threaded) child into the cgroup of the open `cgroup.procs`.
fn join_through(mut procs: &std::fs::File) {
    if let Err(e) = std::io::Write::write_all(&mut procs, b"0") {
        fail(
            Failure {
                step: "joining the container's cgroup".into(),
                message: e.to_string(),
            },
            EXEC_SETUP_FAILED,
        );
    }
}

fn fail(f: Failure, code: i32) -> ! {
    eprintln!("strata exec: {}: {}", f.step, f.message);
    std::process::exit(code)
}

fn child(plan: &ProcessPlan, filter: Option<&seccomp::Filter>, old_mask: &SigSet) -> ! {
    // If the helper is SIGKILLed (an ExecSync timeout), the process goes with it. The setting
    // survives execve (except for set-id or file-capability binaries).
    // SAFETY: integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // The Rust runtime ignores SIGPIPE (and `nohup` SIGHUP); an ignored signal stays ignored
    // across execve: give the process the default actions, as a shell would.
    super::process::restore_ignored_signals();
    if sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None).is_err() {
        fail(
            Failure {
                step: "signals".into(),
                message: "cannot restore the signal mask".into(),
            },
            EXEC_SETUP_FAILED,
        );
    }
    if plan.terminal {
        let _ = nix::unistd::setsid();
        // SAFETY: integer arguments; stdin is the pty slave the daemon gave us.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            fail(
                Failure {
                    step: "terminal".into(),
                    message: std::io::Error::last_os_error().to_string(),
                },
                EXEC_SETUP_FAILED,
            );
        }
    }
    if let Err(f) = process::apply(&RealSys, plan, filter) {
        fail(f, EXEC_SETUP_FAILED);
    }
    let exe = match process::resolve_executable(plan) {
        Ok(exe) => exe,
        Err(message) => fail(
            Failure {
                step: "exec".into(),
                message,
            },
            127,
        ),
    };
    let message = process::execve(plan, &exe);
    let code = if message.ends_with("no such file or directory") {
        127
    } else {
        126
    };
    fail(
        Failure {
            step: "exec".into(),
            message,
        },
        code,
    )
}
