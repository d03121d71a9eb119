//! The monitor process: setup, the `poll(2)` loop, and the exit sequence.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::MonitorConfig;
use super::conn::{Conn, Effect};
use super::crilog::{CriLog, Stream};
use super::detach;
use super::exit::{ExitStatus, now_ns, oom_kill_total, write_exit_file};
use super::launch::{self, Init};
use super::protocol::{self, Reply, Request};
use super::stdio::Io;

/// How long output is still collected after the init exited, while it keeps coming (processes
/// outside the container's pid namespace may hold the pipes).
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// ... and how long the drain waits for more output once the pipes went quiet.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// How long the monitor tries to deliver the last replies before it exits.
const FLUSH_MAX: Duration = Duration::from_secs(1);
/// Output read per wakeup, and the size of the read buffer.
const READ_CHUNK: usize = 16 * 1024;
/// Input waiting for the container's stdin; attached clients are not read beyond this.
const STDIN_BACKLOG: usize = 64 * 1024;
/// Idle time after some work before the monitor gives back the memory that work faulted in
/// (see `footprint`): the kernel maps code in 64 KiB windows around each fault, so even a
/// short burst (a request, a log line) leaves a few hundred KiB mapped that an idle loop never
/// uses. Re-faulting them costs microseconds when work comes again.
const SHED_AFTER_IDLE: Duration = Duration::from_millis(500);

/// A line in the monitor's diagnostics (`monitor.log`); never fails (unlike `eprintln!`).
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{} {}",
            $crate::monitor::crilog::timestamp_now(),
            format_args!($($arg)*)
        );
    }};
}
pub(super) use diag;

pub(super) fn main(config_path: &Path) -> ! {
    detach::close_inherited_fds();
    let config = match MonitorConfig::load(config_path) {
        Ok(config) => config,
        Err(e) => fail(&e.to_string()),
    };
    if let Err(e) = detach::detach() {
        fail(&format!("detaching: {e}"));
    }
    let mut monitor = match Monitor::setup(config) {
        Ok(monitor) => monitor,
        Err(e) => fail(&e),
    };
    let created = serde_json::json!({ "created": { "pid": monitor.init.pid() } });
    detach::report(&created.to_string());
    super::footprint::shed_memory();
    monitor.run();
    monitor.finish()
}

/// Reports an error on stdout and exits non-zero.
fn fail(message: &str) -> ! {
    diag!("{message}");
    detach::report(&serde_json::json!({ "error": message }).to_string());
    std::process::exit(1)
}

/// What the monitor keeps of its config once the init exists.
struct Settings {
    id: String,
    stdin_once: bool,
    socket_path: PathBuf,
    exit_file: PathBuf,
    memory_cgroup_dirs: Vec<PathBuf>,
}

struct Monitor {
    config: Settings,
    init: Box<dyn Init>,
    io: Io,
    log: CriLog,
    listener: Option<UnixListener>,
    conns: Vec<Conn>,
    sigfd: SignalFd,
    started_at: i64,
    start_failed: bool,
    oom_before: u64,
    exit: Option<ExitStatus>,
    /// Set once the exit file is written: requests are answered at once, then closed.
    final_status: Option<ExitStatus>,
    drain_deadline: Option<Instant>,
    stdin_buf: Vec<u8>,
    stdin_close_pending: bool,
    buf: Box<[u8]>,
    /// Work was done since memory was last shed.
    shed_pending: bool,
}

#[derive(Clone, Copy)]
enum Tag {
    Signal,
    Pidfd,
    Output(Stream),
    Stdin,
    Listener,
    Conn(usize),
}

impl Monitor {
    fn setup(config: MonitorConfig) -> Result<Self, String> {
        let _ = detach::redirect(0, Path::new("/dev/null"), false);
        let diag_path = config.diag_log_path();
        if detach::redirect(2, &diag_path, true).is_err() {
            let _ = detach::redirect(2, Path::new("/dev/null"), true);
        }
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("subreaper: {e}"))?;
        detach::reset_signals().map_err(|e| format!("signals: {e}"))?;
        let MonitorConfig {
            id,
            init,
            log_path,
            tty,
            stdin,
            stdin_once,
            socket_path,
            exit_file,
            memory_cgroup_dirs,
            launcher,
        } = config;
        let log = CriLog::open(log_path.as_deref()).map_err(|e| {
            let path = log_path.as_deref().unwrap_or(Path::new(""));
            format!("log file {}: {e}", path.display())
        })?;
        let (io, stdio) = Io::create(tty, stdin).map_err(|e| format!("stdio: {e}"))?;
        let listener = bind(&socket_path)
            .map_err(|e| format!("control socket {}: {e}", socket_path.display()))?;
        let oom_before = oom_kill_total(&memory_cgroup_dirs);
        let created = launch::for_config(&id, &launcher, super::LauncherKind::from_env())
            .create(&init, stdio);
        drop(init);
        let init = match created {
            Ok(init) => init,
            Err(e) => {
                let _ = std::fs::remove_file(&socket_path);
                return Err(e);
            }
        };
        let config = Settings {
            id,
            stdin_once,
            socket_path,
            exit_file,
            memory_cgroup_dirs,
        };
        // Only now: the init inherited a clean signal state.
        detach::ignore_sigpipe().map_err(|e| format!("signals: {e}"))?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| format!("blocking SIGCHLD: {e}"))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        diag!("{}: created init {}", config.id, init.pid());
        Ok(Self {
            config,
            init,
            io,
            log,
            listener: Some(listener),
            conns: Vec::new(),
            sigfd,
            started_at: 0,
            start_failed: false,
            oom_before,
            exit: None,
            final_status: None,
            drain_deadline: None,
            stdin_buf: Vec::new(),
            stdin_close_pending: false,
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            shed_pending: false,
        })
    }

    /// Runs until the init has exited and its output is drained.
    fn run(&mut self) {
        // An exit between the clone and the signalfd left a zombie: reap it now.
        self.reap();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tags: Vec<Tag> = Vec::new();
        loop {
            let timeout = match (self.exit.is_some(), self.drain_deadline) {
                (false, _) if self.shed_pending => SHED_AFTER_IDLE.as_millis() as i32,
                (false, _) => -1,
                (true, deadline) => {
                    let now = Instant::now();
                    let left =
                        deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                    if self.io.outputs().is_empty() || left.is_zero() {
                        return;
                    }
                    left.min(DRAIN_IDLE).as_millis() as i32
                }
            };
            self.poll_set(&mut fds, &mut tags);
            // SAFETY: `fds` is a valid array of pollfd of the given length, alive for the call.
            let mut n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n == 0 && self.exit.is_none() {
                // Idle after some work (the only timeout while the init runs): nothing changed
                // since `fds` was built, so shed and wait on the same set.
                self.shed_pending = false;
                n = super::footprint::shed_memory_then_poll(&mut fds);
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    diag!("poll: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            if n == 0 && self.exit.is_some() {
                return; // drained: the pipes went quiet
            }
            self.shed_pending = true;
            self.dispatch(&fds, &tags);
        }
    }

    fn poll_set(&self, fds: &mut Vec<libc::pollfd>, tags: &mut Vec<Tag>) {
        fds.clear();
        tags.clear();
        let mut add = |fd: RawFd, events: i16, tag: Tag| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        };
        add(self.sigfd.as_fd().as_raw_fd(), libc::POLLIN, Tag::Signal);
        if self.exit.is_none() {
            add(self.init.pidfd().as_raw_fd(), libc::POLLIN, Tag::Pidfd);
        }
        for (fd, stream) in self.io.outputs() {
            add(fd.as_raw_fd(), libc::POLLIN, Tag::Output(stream));
        }
        if let Some(fd) = self.io.stdin().filter(|_| !self.stdin_buf.is_empty()) {
            add(fd.as_raw_fd(), libc::POLLOUT, Tag::Stdin);
        }
        if let Some(l) = &self.listener {
            add(l.as_raw_fd(), libc::POLLIN, Tag::Listener);
        }
        let stdin_room = self.stdin_buf.len() < STDIN_BACKLOG;
        for (i, c) in self.conns.iter().enumerate() {
            let mut events = 0;
            if c.wants_read(stdin_room) {
                events |= libc::POLLIN;
            }
            if c.wants_write() {
                events |= libc::POLLOUT;
            }
            add(c.raw_fd(), events, Tag::Conn(i));
        }
    }

    fn dispatch(&mut self, fds: &[libc::pollfd], tags: &[Tag]) {
        let mut conns = std::mem::take(&mut self.conns);
        for (pfd, tag) in fds.iter().zip(tags) {
            if pfd.revents == 0 {
                continue;
            }
            match *tag {
                Tag::Signal => {
                    while let Ok(Some(_)) = self.sigfd.read_signal() {}
                    self.reap();
                }
                Tag::Pidfd => self.pidfd_ready(),
                Tag::Output(stream) => self.read_output(stream, &mut conns),
                Tag::Stdin => self.write_stdin(),
                Tag::Listener => self.accept(&mut conns),
                Tag::Conn(i) => {
                    if let Some(conn) = conns.get_mut(i) {
                        self.serve(conn, pfd.revents);
                    }
                }
            }
        }
        if conns.iter().any(Conn::releases_stdin) {
            self.close_stdin();
        }
        conns.retain(|c| !c.is_dead());
        conns.append(&mut self.conns);
        self.conns = conns;
    }

    /// Reaps every exited child (the monitor is a subreaper), recording the init's status.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    diag!("waitpid: {e}");
                    return;
                }
                Ok(status) => {
                    let is_init = status.pid().map(|p| p.as_raw()) == Some(self.init.pid());
                    if let Some((code, signal)) = detach::decode_wait(status)
                        && is_init
                    {
                        self.record_exit(code, signal);
                    }
                }
            }
        }
    }

    fn pidfd_ready(&mut self) {
        self.reap();
        if self.exit.is_none() {
            // Exited but not ours to reap: the launcher collected it after a failed start.
            let code = if self.start_failed { 128 } else { 255 };
            diag!("init {} was reaped elsewhere", self.init.pid());
            self.record_exit(code, None);
        }
    }

    fn record_exit(&mut self, exit_code: i32, signal: Option<i32>) {
        let oom_killed = oom_kill_total(&self.config.memory_cgroup_dirs) > self.oom_before;
        let status = ExitStatus {
            pid: self.init.pid(),
            started_at: self.started_at,
            exited_at: now_ns(),
            exit_code,
            signal,
            oom_killed,
        };
        diag!("{}: init exited: {status:?}", self.config.id);
        self.exit = Some(status);
        self.drain_deadline = Some(Instant::now() + DRAIN_MAX);
    }

    fn read_output(&mut self, stream: Stream, conns: &mut [Conn]) {
        let Some(fd) = self
            .io
            .outputs()
            .into_iter()
            .find(|(_, s)| *s == stream)
            .map(|(fd, _)| fd.as_raw_fd())
        else {
            return;
        };
        // A few reads per wakeup, so one busy stream cannot starve the others.
        for _ in 0..4 {
            // SAFETY: `fd` stays open for the call (owned by self.io, not closed in between).
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            match nix::unistd::read(fd, &mut self.buf) {
                Ok(0) | Err(Errno::EIO) => {
                    self.log.finish(stream);
                    self.io.close_output(stream);
                    return;
                }
                Ok(n) => {
                    let data = &self.buf[..n];
                    self.log.write(stream, data);
                    let id = match stream {
                        Stream::Stdout => protocol::STDOUT,
                        Stream::Stderr => protocol::STDERR,
                    };
                    for conn in conns.iter_mut() {
                        conn.send_output(id, data);
                    }
                    if n < self.buf.len() {
                        return;
                    }
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    diag!("reading {}: {e}", stream.as_str());
                    self.log.finish(stream);
                    self.io.close_output(stream);
                    return;
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = self.io.stdin() else {
            self.stdin_buf.clear();
            return;
        };
        match nix::unistd::write(fd, &self.stdin_buf) {
            Ok(n) => {
                self.stdin_buf.drain(..n);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(e) => {
                // EPIPE: the container closed its stdin.
                if e != Errno::EPIPE {
                    diag!("writing stdin: {e}");
                }
                self.stdin_buf = Vec::new();
                self.io.close_stdin();
            }
        }
        if self.stdin_buf.is_empty() {
            self.stdin_buf.shrink_to(4096);
            if self.stdin_close_pending {
                self.io.close_stdin();
            }
        }
    }

    fn accept(&mut self, conns: &mut Vec<Conn>) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => match Conn::new(stream) {
                    Ok(conn) => conns.push(conn),
                    Err(e) => diag!("control connection: {e}"),
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        diag!("accept: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn serve(&mut self, conn: &mut Conn, revents: i16) {
        conn.on_ready(revents, self.stdin_buf.len() < STDIN_BACKLOG);
        while let Some(effect) = conn.next_effect(self.stdin_buf.len() < STDIN_BACKLOG) {
            match effect {
                Effect::Request(request) => self.request(conn, request),
                Effect::Stdin(data) => {
                    if self.io.stdin().is_some() && !self.stdin_close_pending {
                        self.stdin_buf.extend_from_slice(&data);
                    }
                }
                Effect::CloseStdin => self.close_stdin(),
                Effect::Resize { width, height } => {
                    if let Err(e) = self.io.resize(width, height) {
                        diag!("resize: {e}");
                    }
                }
            }
        }
        // Requests may have queued replies; frames may have queued stdin.
        conn.flush();
        if !self.stdin_buf.is_empty() {
            self.write_stdin();
        }
    }

    /// The first client with stdin of a `stdin_once` container is done with it.
    fn close_stdin(&mut self) {
        if !self.config.stdin_once {
            return;
        }
        if self.stdin_buf.is_empty() {
            self.io.close_stdin();
        } else {
            self.stdin_close_pending = true;
        }
    }

    fn request(&mut self, conn: &mut Conn, request: Request) {
        if let Some(status) = self.final_status {
            if request == Request::Wait {
                conn.park_wait();
                conn.finish(&status);
            } else {
                conn.reply(&Reply::exited());
            }
            return;
        }
        let reply = match request {
            Request::Wait => {
                conn.park_wait();
                return;
            }
            _ if self.exit.is_some() => Reply::exited(),
            Request::Start if self.started_at != 0 => Reply::error("already started"),
            Request::Start => match self.init.start() {
                Ok(()) => {
                    self.started_at = now_ns();
                    diag!("{}: started", self.config.id);
                    // Releasing the init ran the last of the launcher's code.
                    super::footprint::shed_memory();
                    Reply::ok()
                }
                Err(e) => {
                    self.start_failed = true;
                    Reply::error(e)
                }
            },
            Request::Signal { signal } if !(1..=64).contains(&signal) => {
                Reply::error(format!("invalid signal {signal}"))
            }
            Request::Signal { signal } => {
                match detach::pidfd_send_signal(self.init.pidfd(), signal) {
                    Ok(()) => Reply::ok(),
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Reply::exited(),
                    Err(e) => Reply::error(format!("signal {signal}: {e}")),
                }
            }
            Request::ReopenLog => match self.log.reopen() {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(format!("reopening the log: {e}")),
            },
            Request::Resize { width, height } => match self.io.resize(width, height) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(format!("resize: {e}")),
            },
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                conn.reply(&Reply::ok());
                conn.start_attach(stdin, stdout, stderr);
                return;
            }
        };
        conn.reply(&reply);
    }

    /// Records the exit, answers waiters, delivers what is left, and exits.
    fn finish(mut self) -> ! {
        // Before the exit file: once the daemon sees the exit it may remove the container's
        // directories, which must not hold a mounted rootfs any more.
        if let Err(e) = self.init.cleanup() {
            diag!("{}: cleanup after the exit: {e}", self.config.id);
        }
        for (_, stream) in self.io.outputs() {
            self.log.finish(stream);
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.io.close_output(stream);
        }
        let status = self.exit.unwrap_or(ExitStatus {
            pid: self.init.pid(),
            started_at: self.started_at,
            exited_at: now_ns(),
            exit_code: 255,
            signal: None,
            oom_killed: false,
        });
        if let Err(e) = write_exit_file(&self.config.exit_file, &status) {
            diag!("writing {}: {e}", self.config.exit_file.display());
        }
        // From here on a client that cannot connect reads the exit file.
        let _ = std::fs::remove_file(&self.config.socket_path);
        self.final_status = Some(status);
        for conn in &mut self.conns {
            conn.finish(&status);
        }
        // Linger a moment: answer clients that connected before the unlink, deliver replies.
        let deadline = Instant::now() + FLUSH_MAX;
        let mut fds = Vec::new();
        let mut tags = Vec::new();
        while Instant::now() < deadline {
            self.poll_set(&mut fds, &mut tags);
            // SAFETY: `fds` is a valid pollfd array of the given length, alive for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            if n == 0 {
                break;
            }
            if n > 0 {
                self.dispatch(&fds, &tags);
            }
        }
        diag!("{}: monitor exits", self.config.id);
        std::process::exit(0)
    }
}

/// Binds the control socket with mode 0600, replacing a stale one.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
