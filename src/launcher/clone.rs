//! Cloning the container init: `clone3(CLONE_PIDFD | flags)` so the caller holds a pidfd from the
//! first instant (an exit can never be missed or confused with a recycled pid), falling back to
//! `clone(CLONE_PIDFD)` and then to `clone` + `pidfd_open` on kernels or sandboxes without it.
//! Without `CLONE_VM` these behave like fork: the child runs on a copy of the caller's memory,
//! which is only sound because the caller is single-threaded ([`ensure_single_threaded`]).

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;

use super::LaunchError;

/// Fails unless the calling process has exactly one thread (`/proc/self/task`).
pub(crate) fn ensure_single_threaded() -> Result<(), LaunchError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| LaunchError::io("reading /proc/self/task", e))?
        .count();
    if threads != 1 {
        return Err(LaunchError::NotSingleThreaded { threads });
    }
    Ok(())
}

/// `CLONE_INTO_CGROUP` (linux/sched.h; not in the libc crate for every target).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A cloned child.
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// Whether the child was born in the cgroup passed to [`spawn`].
    pub in_cgroup: bool,
}

/// Clones a child that runs `child` (which must not return) with the namespace `flags`
/// (`CLONE_NEWPID`, `CLONE_NEWUSER`...), born in the cgroup v2 directory `cgroup` when one is
/// given and the kernel takes it (`CLONE_INTO_CGROUP`; otherwise `in_cgroup` is false and the
/// caller moves the child itself). `child` is told whether it was born in that cgroup.
pub(crate) fn spawn(
    flags: CloneFlags,
    cgroup: Option<BorrowedFd<'_>>,
    child: impl FnOnce(bool) -> std::convert::Infallible,
) -> io::Result<Spawned> {
    let mut pidfd: RawFd = -1;
    let clone3 = |pidfd: &mut RawFd, cgroup: Option<BorrowedFd<'_>>| {
        let mut args = CloneArgs {
            flags: (flags.bits() as u64) | libc::CLONE_PIDFD as u64,
            pidfd: pidfd as *mut RawFd as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = cgroup {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
        }
        // SAFETY: no CLONE_VM: the child gets a private copy of this (single-threaded) process,
        // like fork; args is a valid clone_args of the size passed, and pidfd outlives the call.
        unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        }
    };
    let mut in_cgroup = cgroup.is_some();
    let mut rc = clone3(&mut pidfd, cgroup);
    if rc < 0 && in_cgroup {
        // An old kernel, or a cgroup the kernel refuses to be born in: clone plainly and let the
        // caller's own migration succeed or report why not.
        in_cgroup = false;
        rc = clone3(&mut pidfd, None);
    }
    if rc < 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Err(e);
        }
        // Only clone3 knows CLONE_INTO_CGROUP: the child stays in our cgroup.
        in_cgroup = false;
        // clone(2) returns the pidfd through the parent_tid argument (third on every arch).
        let legacy = (flags.bits() as libc::c_ulong)
            | libc::CLONE_PIDFD as libc::c_ulong
            | libc::SIGCHLD as libc::c_ulong;
        // SAFETY: as above (fork semantics, null stack = the child uses a copy of ours);
        // pidfd is a valid int to write to.
        rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                legacy,
                std::ptr::null_mut::<libc::c_void>(),
                &mut pidfd as *mut RawFd,
                std::ptr::null_mut::<libc::c_void>(),
                0,
            )
        };
        if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            pidfd = -1;
            let plain = (flags.bits() as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong;
            // SAFETY: as above, without CLONE_PIDFD.
            rc = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    plain,
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                    std::ptr::null_mut::<libc::c_void>(),
                    0,
                )
            };
        }
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if rc == 0 {
        // Infallible: the child never comes back here. `in_cgroup` is what it was for the
        // attempt that made this child.
        child(in_cgroup);
    }
    let pid = rc as i32;
    if pidfd < 0 {
        // Our unreaped child cannot be recycled, so pidfd_open is race-free here.
        // SAFETY: integer arguments only; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(e);
        }
        pidfd = fd as RawFd;
    }
    Ok(Spawned {
        pid,
        // SAFETY: the kernel gave us this pidfd; nothing else owns it.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        in_cgroup,
    })
}

/// Sends `signal` through the pidfd (never hits a recycled pid).
pub(crate) fn pidfd_kill(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: integer arguments and a null siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a reaped child ended, as a short text and a shell-style code (128+signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal {
            Some(s) => write!(f, "killed by signal {s}"),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

/// Waits for (and reaps) the child behind `pidfd`.
pub(crate) fn pidfd_wait(pidfd: &OwnedFd) -> io::Result<Exit> {
    loop {
        if let Some(exit) = waitid(pidfd, 0)? {
            return Ok(exit);
        }
    }
}

/// Reaps the child behind `pidfd` if it has exited.
pub(crate) fn pidfd_try_wait(pidfd: &OwnedFd) -> io::Result<Option<Exit>> {
    waitid(pidfd, libc::WNOHANG)
}

fn waitid(pidfd: &OwnedFd, extra: libc::c_int) -> io::Result<Option<Exit>> {
    loop {
        // SAFETY: siginfo_t is plain old data; zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: info is a valid siginfo_t to fill; P_PIDFD takes the descriptor as id.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | extra,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed with WNOHANG): si_pid and
        // si_status are the valid union members.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(if info.si_code == libc::CLD_EXITED {
            Exit {
                code: status,
                signal: None,
            }
        } else {
            Exit {
                code: 128 + status,
                signal: Some(status),
            }
        }));
    }
}
