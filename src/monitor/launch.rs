//! How the monitor creates the container init: the [`Launch`] seam, with the built-in launcher,
//! external OCI runtimes ([`super::oci_runtime`]) and a host-process launcher for tests.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use nix::unistd::{ForkResult, Pid};

use super::detach::pidfd_open;
use super::oci_runtime::OciRuntime;
use super::{LaunchWith, LauncherKind};
use crate::launcher::{CreatedInit, InitConfig, InitStdio};

/// A created init, waiting to be released.
pub trait Init {
    fn pid(&self) -> i32;
    /// A pidfd of the init: readable once it has exited.
    fn pidfd(&self) -> BorrowedFd<'_>;
    /// Lets the init exec; `Err` when it could not (the init then exits).
    fn start(&mut self) -> Result<(), String>;
    /// Called once the init has exited and its output is drained, before the exit file is
    /// written: releases what the launcher holds outside the container (an OCI runtime's state,
    /// the rootfs mounted on the host).
    fn cleanup(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Creates inits. Called once, from the single-threaded monitor.
pub trait Launch {
    fn create(&self, params: &InitConfig, stdio: InitStdio) -> Result<Box<dyn Init>, String>;
}

/// The launcher named by the environment (the test-only host launcher, or the built-in one).
pub fn launcher(kind: LauncherKind) -> &'static dyn Launch {
    match kind {
        LauncherKind::Builtin => &Builtin,
        LauncherKind::Host => &HostLauncher,
    }
}

/// The launcher of a monitor config: an OCI runtime when it names one, else [`launcher`].
pub fn for_config(id: &str, with: &LaunchWith, kind: LauncherKind) -> Box<dyn Launch> {
    match with {
        LaunchWith::OciRuntime(config) => Box::new(OciRuntime {
            id: id.to_owned(),
            config: config.clone(),
        }),
        LaunchWith::Builtin => Box::new(launcher(kind)),
    }
}

impl<T: Launch + ?Sized> Launch for &T {
    fn create(&self, params: &InitConfig, stdio: InitStdio) -> Result<Box<dyn Init>, String> {
        (**self).create(params, stdio)
    }
}

/// `crate::launcher::create`.
pub struct Builtin;

impl Launch for Builtin {
    fn create(&self, params: &InitConfig, stdio: InitStdio) -> Result<Box<dyn Init>, String> {
        match crate::launcher::create(params, stdio) {
            Ok(init) => Ok(Box::new(init)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Init for CreatedInit {
    fn pid(&self) -> i32 {
        CreatedInit::pid(self)
    }

    fn pidfd(&self) -> BorrowedFd<'_> {
        CreatedInit::pidfd(self)
    }

    fn start(&mut self) -> Result<(), String> {
        CreatedInit::start(self).map_err(|e| e.to_string())
    }
}

/// Runs `spec.process.args` (with its env and cwd) as a plain host process in a new session,
/// with the pty as controlling terminal when `process.terminal`; joins `cgroup_procs`. For tests
/// of the monitor: no namespaces, no rootfs, no user switch.
pub struct HostLauncher;

struct Prepared {
    args: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    terminal: bool,
    cgroup_procs: Vec<PathBuf>,
}

fn cstring(s: impl AsRef<[u8]>) -> Result<CString, String> {
    CString::new(s.as_ref()).map_err(|e| e.to_string())
}

fn prepare(params: &InitConfig) -> Result<Prepared, String> {
    let process = params
        .spec
        .process()
        .as_ref()
        .ok_or("the spec has no process")?;
    let args = process
        .args()
        .as_ref()
        .filter(|a| !a.is_empty())
        .ok_or("the process has no args")?
        .iter()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
    let env = process
        .env()
        .iter()
        .flatten()
        .map(cstring)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        args,
        env,
        cwd: cstring(process.cwd().as_os_str().as_bytes())?,
        terminal: process.terminal().unwrap_or(false),
        cgroup_procs: params.cgroup_procs.clone(),
    })
}

impl Launch for HostLauncher {
    fn create(&self, params: &InitConfig, stdio: InitStdio) -> Result<Box<dyn Init>, String> {
        let prepared = prepare(params)?;
        let (start_r, start_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        // SAFETY: the monitor is single-threaded; the child only runs `child` and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                drop(start_w);
                drop(status_r);
                child(&prepared, stdio, start_r, status_w)
            }
            ForkResult::Parent { child } => {
                drop(start_r);
                drop(status_w);
                drop(stdio);
                let pidfd = pidfd_open(child).map_err(|e| format!("pidfd_open: {e}"))?;
                let mut init = HostInit {
                    pid: child,
                    pidfd,
                    start: Some(File::from(start_w)),
                    status: File::from(status_r),
                };
                match init.read_status() {
                    Some(b'R') => Ok(Box::new(init)),
                    other => {
                        let _ = nix::sys::wait::waitpid(child, None);
                        Err(init.describe(other, "setting up"))
                    }
                }
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

struct HostInit {
    pid: Pid,
    pidfd: OwnedFd,
    start: Option<File>,
    status: File,
}

impl HostInit {
    /// The next status byte from the child: `R` ready, `E` + errno failed, `None` at EOF.
    fn read_status(&mut self) -> Option<u8> {
        let mut b = [0u8];
        match self.status.read(&mut b) {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }

    fn describe(&mut self, status: Option<u8>, what: &str) -> String {
        let mut errno = [0u8; 4];
        match status {
            Some(b'E') if self.status.read_exact(&mut errno).is_ok() => {
                let e = std::io::Error::from_raw_os_error(i32::from_le_bytes(errno));
                format!("{what}: {e}")
            }
            _ => format!("{what}: the process ended"),
        }
    }
}

impl Init for HostInit {
    fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn start(&mut self) -> Result<(), String> {
        let mut start = self.start.take().ok_or("already started")?;
        start
            .write_all(b"S")
            .map_err(|e| format!("releasing: {e}"))?;
        drop(start);
        match self.read_status() {
            None => Ok(()),
            other => Err(self.describe(other, "exec")),
        }
    }
}

/// The forked child: stdio, session, cgroups, cwd, wait for start, exec. Never returns.
fn child(p: &Prepared, stdio: InitStdio, start: OwnedFd, status: OwnedFd) -> ! {
    let mut status = File::from(status);
    let fail = |status: &mut File, tag: u8, errno: i32| -> ! {
        let mut msg = [tag, 0, 0, 0, 0];
        msg[1..].copy_from_slice(&errno.to_le_bytes());
        let _ = status.write_all(&msg);
        // SAFETY: leave without running the parent's atexit handlers.
        unsafe { libc::_exit(127) }
    };
    let last = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    if let Err(e) = super::detach::reset_signals() {
        fail(&mut status, b'E', e.raw_os_error().unwrap_or(0));
    }
    if nix::unistd::setsid().is_err() {
        fail(&mut status, b'E', last());
    }
    for (fd, target) in [(&stdio.stdin, 0), (&stdio.stdout, 1), (&stdio.stderr, 2)] {
        // SAFETY: dup2 onto a standard descriptor of this child; the source stays open.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
            fail(&mut status, b'E', last());
        }
    }
    drop(stdio);
    // SAFETY: TIOCSCTTY on our stdin (the pty slave) in a new session without a terminal.
    if p.terminal && unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        fail(&mut status, b'E', last());
    }
    for procs in &p.cgroup_procs {
        if let Err(e) = std::fs::write(procs, b"0") {
            fail(&mut status, b'E', e.raw_os_error().unwrap_or(0));
        }
    }
    if let Err(e) = nix::unistd::chdir(p.cwd.as_c_str()) {
        fail(&mut status, b'E', e as i32);
    }
    if status.write_all(b"R").is_err() {
        // SAFETY: the monitor is gone; leave quietly.
        unsafe { libc::_exit(1) }
    }
    let mut b = [0u8];
    if !matches!(File::from(start).read(&mut b), Ok(1)) {
        // SAFETY: the monitor dropped us without starting.
        unsafe { libc::_exit(1) }
    }
    let errno = if p.args[0].as_bytes().contains(&b'/') {
        nix::unistd::execve(&p.args[0], &p.args, &p.env).err()
    } else {
        exec_search(p)
    };
    fail(&mut status, b'E', errno.map(|e| e as i32).unwrap_or(0))
}

/// `execvpe` over a fixed PATH (tests give absolute paths or standard commands).
fn exec_search(p: &Prepared) -> Option<nix::errno::Errno> {
    let mut last = nix::errno::Errno::ENOENT;
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let mut path = dir.as_bytes().to_vec();
        path.push(b'/');
        path.extend_from_slice(p.args[0].as_bytes());
        let Ok(path) = CString::new(path) else {
            break;
        };
        let Err(e) = nix::unistd::execve(&path, &p.args, &p.env);
        last = e;
    }
    Some(last)
}
