//! The container's stdio as the monitor holds it: pipes, or a pty master.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

use nix::fcntl::OFlag;

use super::crilog::Stream;
use super::detach::set_nonblocking;
use crate::launcher::InitStdio as Stdio;

/// The monitor's ends. Every descriptor is non-blocking and close-on-exec.
pub(super) enum Io {
    Pipes {
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
        stdin: Option<OwnedFd>,
    },
    Tty {
        master: OwnedFd,
        /// The slave side is gone (EIO) or the master failed.
        eof: bool,
        stdin_open: bool,
    },
}

impl Io {
    /// Creates the container's stdio: pipes (with `/dev/null` as stdin when the container gets
    /// none) or a pty.
    pub(super) fn create(tty: bool, stdin: bool) -> io::Result<(Self, Stdio)> {
        if tty {
            let (master, slave) = open_pty()?;
            set_nonblocking(master.as_fd())?;
            // The slave is stdin too even without `stdin`: the launcher makes stdin the
            // controlling terminal (as runc does). Nothing is ever written to the master then.
            let stdio = Stdio {
                stdin: slave.try_clone()?,
                stdout: slave.try_clone()?,
                stderr: slave,
            };
            let io = Io::Tty {
                master,
                eof: false,
                stdin_open: stdin,
            };
            return Ok((io, stdio));
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin_ours, init_stdin) = if stdin {
            let (r, w) = pipe()?;
            set_nonblocking(w.as_fd())?;
            (Some(w), r)
        } else {
            (None, dev_null()?)
        };
        set_nonblocking(out_r.as_fd())?;
        set_nonblocking(err_r.as_fd())?;
        let io = Io::Pipes {
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: stdin_ours,
        };
        let stdio = Stdio {
            stdin: init_stdin,
            stdout: out_w,
            stderr: err_w,
        };
        Ok((io, stdio))
    }

    /// The output descriptors still open, with the stream each carries.
    pub(super) fn outputs(&self) -> Vec<(BorrowedFd<'_>, Stream)> {
        match self {
            Io::Pipes { stdout, stderr, .. } => {
                let mut v = Vec::with_capacity(2);
                if let Some(fd) = stdout {
                    v.push((fd.as_fd(), Stream::Stdout));
                }
                if let Some(fd) = stderr {
                    v.push((fd.as_fd(), Stream::Stderr));
                }
                v
            }
            Io::Tty { master, eof, .. } if !eof => vec![(master.as_fd(), Stream::Stdout)],
            Io::Tty { .. } => Vec::new(),
        }
    }

    /// The stream ended (EOF, or EIO on a pty master whose slave is closed).
    pub(super) fn close_output(&mut self, stream: Stream) {
        match self {
            Io::Pipes { stdout, stderr, .. } => match stream {
                Stream::Stdout => *stdout = None,
                Stream::Stderr => *stderr = None,
            },
            Io::Tty { eof, .. } => *eof = true,
        }
    }

    /// Where input for the container goes, while it is open.
    pub(super) fn stdin(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Io::Pipes { stdin, .. } => stdin.as_ref().map(|fd| fd.as_fd()),
            Io::Tty {
                master,
                stdin_open,
                eof,
            } => (*stdin_open && !*eof).then(|| master.as_fd()),
        }
    }

    /// Closes the container's stdin: the pipe's write end, or for a pty, an end-of-file
    /// character (^D) for a reader in canonical mode.
    pub(super) fn close_stdin(&mut self) {
        match self {
            Io::Pipes { stdin, .. } => *stdin = None,
            Io::Tty {
                master, stdin_open, ..
            } => {
                if *stdin_open {
                    let _ = nix::unistd::write(master.as_fd(), &[4u8]);
                }
                *stdin_open = false;
            }
        }
    }

    /// Sets the pty's window size.
    pub(super) fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let Io::Tty { master, .. } = self else {
            return Err(io::Error::other("the container has no tty"));
        };
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn dev_null() -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().read(true).open("/dev/null")?.into())
}

/// A pty pair, both ends close-on-exec. The slave is opened through the master (TIOCGPTPEER), so
/// no path under /dev/pts is involved.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(io::Error::from)?;
    nix::pty::grantpt(&master).map_err(io::Error::from)?;
    nix::pty::unlockpt(&master).map_err(io::Error::from)?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor for the slave.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `slave` was just returned by the kernel and is owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok((master.into(), slave))
}
