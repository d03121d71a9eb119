//! Process plumbing shared by the monitor and pod-init: detaching from the daemon, stdio
//! redirection, the one-line report on stdout, pidfds.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{ForkResult, Pid};

/// Closes every fd above stderr that the process inherited. Call first thing in a helper mode.
pub(crate) fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing in this fresh process owns one above 2
    // yet (std opens none before main).
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

/// Forks; the parent `_exit(0)`s at once (its parent, the daemon, waits for it), and the child
/// returns in a new session, re-parented to init or the nearest subreaper, so it survives the
/// daemon. The calling process must be single-threaded.
pub(crate) fn detach() -> io::Result<()> {
    // SAFETY: called while the process has a single thread (helper modes start before any thread
    // or runtime exists), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { .. } => {
            // SAFETY: _exit skips atexit handlers and stdio flushing; nothing is buffered.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        }
    }
}

/// Points `target` (0, 1 or 2) at `path`, opened with `append` for writing or read-only.
pub(crate) fn redirect(target: i32, path: &Path, write: bool) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(!write)
        .append(write)
        .create(write)
        .mode(0o600)
        .open(path)?;
    dup_onto(file.as_fd(), target)
}

fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    // SAFETY: dup2 onto one of the standard descriptors, which this process does not otherwise
    // own as an OwnedFd; the source stays open until the end of the call.
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `line` and a newline to stdout, then replaces stdout with `/dev/null` so the reader
/// sees EOF once every other copy is gone.
pub(crate) fn report(line: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    drop(out);
    let _ = redirect(1, Path::new("/dev/null"), true);
}

/// Unblocks every signal and restores the default action of every ignored one (SIGPIPE, which
/// the Rust runtime ignores; SIGHUP under `nohup`): dispositions set to "ignore" and the mask
/// survive `execve` into the container.
pub(crate) fn reset_signals() -> io::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from)?;
    crate::launcher::restore_ignored_signals();
    Ok(())
}

/// Ignores SIGPIPE (writes to a closed socket or pipe return EPIPE instead).
pub(crate) fn ignore_sigpipe() -> io::Result<()> {
    // SAFETY: sets the "ignore" disposition; no handler code is involved.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .map(drop)
        .map_err(io::Error::from)
}

/// `pidfd_open(2)`.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process of `pidfd`, never a recycled pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we borrow for its duration; null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Decodes a `waitpid` status into `(exit_code, signal)`, with `exit_code` = 128 + signal for
/// a signal death.
pub(crate) fn decode_wait(status: nix::sys::wait::WaitStatus) -> Option<(i32, Option<i32>)> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some((code, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}
