//! Backends of the streaming server: an exec with live stdio (pipes or a pty), an attach to a
//! container's stdio through its monitor, and a pod's network namespace for port-forwarding.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::exec::ExecError;
use super::{ContainerError, PodError, Runtime};
use crate::monitor::client::{AttachInput, MonitorClient};
use crate::store::{ContainerState, PodState};

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A running exec process with its stdio. Dropping it kills the process (if still running).
pub struct Interactive {
    /// The process's stdin (the pty master with a tty), when asked for.
    pub stdin: Option<BoxWrite>,
    /// Its stdout (the pty master with a tty: stdout and stderr merged).
    pub stdout: Option<BoxRead>,
    /// Its stderr (never with a tty).
    pub stderr: Option<BoxRead>,
    pty: Option<Pty>,
    child: tokio::process::Child,
    config: PathBuf,
}

impl Interactive {
    /// Sets the terminal's window size (no-op without a tty).
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let Some(pty) = &self.pty else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(pty.0.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the process; its exit code, 128+signal when killed.
    pub async fn wait(&mut self) -> io::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255))
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A pty master, non-blocking, shared by the reader and writer halves.
#[derive(Clone)]
struct Pty(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Every slave descriptor is closed: the process (and its children) are gone.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref().as_fd(), buf).map_err(io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A pty has no half-close; closing the master would hang up the session.
        Poll::Ready(Ok(()))
    }
}

fn set_flags(fd: &OwnedFd, nonblocking: bool) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    if nonblocking {
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

struct PtyPair {
    master: OwnedFd,
    slave: OwnedFd,
}

/// A new pty of the container's own devpts instance (its `/dev/pts`, mounted `newinstance`), so
/// that the process sees its terminal there (`tty`, `/dev/pts/N`). `pts/ptmx` is resolved
/// inside the container's root (openat2 RESOLVE_IN_ROOT: its symlinks cannot lead out) and must
/// be the ptmx device; the slave comes from TIOCGPTPEER, without a path lookup.
fn container_pty(init_pid: i32) -> io::Result<PtyPair> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use std::os::fd::FromRawFd as _;
    if init_pid <= 0 {
        return Err(io::Error::other("the container has no init pid"));
    }
    let root = std::fs::File::open(format!("/proc/{init_pid}/root"))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let master = openat2(&root, "dev/pts/ptmx", how)?;
    let stat = nix::sys::stat::fstat(&master)?;
    let is_ptmx = (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR
        && libc::major(stat.st_rdev) == 5
        && libc::minor(stat.st_rdev) == 2;
    if !is_ptmx {
        return Err(io::Error::other("dev/pts/ptmx is not the ptmx device"));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int through the pointer, valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags by value and returns a new descriptor.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok(PtyPair { master, slave })
}

impl Runtime {
    /// Starts `cmd` in a running container with live stdio through the `strata-monitor exec` helper.
    /// With `tty` the process gets a new pty of the container's `/dev/pts` (as stdin, stdout and
    /// stderr; one of the host's if the container has no usable devpts) and `stderr` must be
    /// false.
    pub async fn exec_interactive(
        &self,
        id: &str,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Interactive, ContainerError> {
        let failed = |message: String| {
            ContainerError::Exec(ExecError::Failed {
                id: id.to_owned(),
                message,
            })
        };
        let record = self.running(id, "exec needs a running container")?;
        let mut command = tokio::process::Command::new(&self.monitor_binary);
        command.kill_on_drop(true);
        let mut pty = None;
        if tty {
            let pair = match container_pty(record.pid) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(container = %record.id, error = %e,
                        "no pty in the container's /dev/pts; using one of the host");
                    let pair = nix::pty::openpty(None, None)
                        .map_err(|e| failed(format!("opening a pty: {e}")))?;
                    PtyPair {
                        master: pair.master,
                        slave: pair.slave,
                    }
                }
            };
            set_flags(&pair.master, true).map_err(|e| failed(format!("pty: {e}")))?;
            set_flags(&pair.slave, false).map_err(|e| failed(format!("pty: {e}")))?;
            let dup = || {
                pair.slave
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| failed(format!("pty: {e}")))
            };
            command.stdin(dup()?).stdout(dup()?).stderr(dup()?);
            // SAFETY: the OwnedFd is the only owner of the master descriptor, which no other
            // reactor registration uses; the AsyncFd keeps it open while registered.
            let master = unsafe { AsyncFd::register(pair.master) }
                .map_err(|e| failed(format!("pty: {e}")))?;
            pty = Some(Pty(Arc::new(master)));
            // `pair.slave` is dropped here: the helper holds the only slave descriptors, so the
            // master reads EOF (EIO) once the process and its children are gone.
        } else {
            let piped = |yes: bool| if yes { Stdio::piped() } else { Stdio::null() };
            command
                .stdin(piped(stdin))
                .stdout(piped(stdout))
                .stderr(piped(stderr));
        }
        // Written last, so that no failure above leaves it behind.
        let config = self.exec_config(id, cmd, tty)?;
        let spawned = command.arg("exec").arg("--config").arg(&config).spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_file(&config);
                return Err(failed(format!("starting the exec helper: {e}")));
            }
        };
        let (stdin_io, stdout_io, stderr_io): (Option<BoxWrite>, Option<BoxRead>, Option<BoxRead>) =
            match &pty {
                Some(pty) => (
                    stdin.then(|| Box::new(pty.clone()) as BoxWrite),
                    stdout.then(|| Box::new(pty.clone()) as BoxRead),
                    None,
                ),
                None => (
                    child.stdin.take().map(|s| Box::new(s) as BoxWrite),
                    child.stdout.take().map(|s| Box::new(s) as BoxRead),
                    child.stderr.take().map(|s| Box::new(s) as BoxRead),
                ),
            };
        Ok(Interactive {
            stdin: stdin_io,
            stdout: stdout_io,
            stderr: stderr_io,
            pty,
            child,
            config,
        })
    }

    /// Attaches to a running container's stdio through its monitor. The output stream ends when
    /// the container has exited (its monitor is gone).
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(AttachInput, BoxStream<'static, io::Result<(u8, Bytes)>>), ContainerError> {
        let record = self.running(id, "attach needs a running container")?;
        let client = MonitorClient::connect(&self.monitor_socket(&record.id)).await?;
        Ok(client.attach(stdin, stdout, stderr).await?)
    }

    /// Sets the window size of a container's tty.
    pub async fn resize_tty(
        &self,
        id: &str,
        width: u16,
        height: u16,
    ) -> Result<(), ContainerError> {
        let record = self.container(id)?;
        let mut client = MonitorClient::connect(&self.monitor_socket(&record.id)).await?;
        Ok(client.resize(width, height).await?)
    }

    /// The container, if it is running.
    pub fn running(
        &self,
        id: &str,
        wanted: &'static str,
    ) -> Result<crate::store::ContainerRecord, ContainerError> {
        let record = self.container(id)?;
        if record.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: record.id,
                state: record.state,
                wanted,
            });
        }
        Ok(record)
    }

    /// A ready pod's network namespace, opened; `None` for a host-network pod.
    pub fn pod_netns(&self, pod_id: &str) -> Result<Option<OwnedFd>, PodError> {
        let pod = self.pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(PodError::NotReady { id: pod.id });
        }
        if pod.netns_path.is_empty() {
            return Ok(None);
        }
        // Gone with the pod's init: the pod is not ready anymore, whatever the record says.
        let file =
            std::fs::File::open(&pod.netns_path).map_err(|_| PodError::NotReady { id: pod.id })?;
        Ok(Some(file.into()))
    }

    /// The monitor's control socket (see `container.rs`'s `Paths::socket`).
    fn monitor_socket(&self, id: &str) -> PathBuf {
        self.container_state_dir(id).join("m.sock")
    }
}
