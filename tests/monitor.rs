//! The per-container monitor, for real (root): spawned through `spawn_monitor` from the `strata`
//! binary, with the host-process test launcher (`sh -c ...` on the host) and with the real
//! launcher on a busybox rootfs. Every test kills what it started (the monitors are not our
//! children: their pids are tracked) and removes its files, also when it fails.

#[path = "support/rootfs.rs"]
#[allow(dead_code)]
mod rootfs;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::json;
use strata::monitor::client::{ExitStatus, MonitorClient, read_exit_file, spawn_monitor};
use strata::monitor::protocol::{STDERR, STDOUT};
use strata::monitor::{HOST_LAUNCHER_ENV, MonitorConfig, MonitorError};
use tokio::io::AsyncWriteExt as _;

const STRATA: &str = env!("CARGO_BIN_EXE_strata-monitor");

/// A test directory and the processes started in it, killed and removed on drop.
struct Fixture {
    dir: tempfile::TempDir,
    pids: Vec<i32>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-monitor-")
            .tempdir()
            .expect("temp dir");
        // The monitor binary, with the host launcher selected through its environment.
        let wrapper = dir.path().join("strata-host");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\n{HOST_LAUNCHER_ENV}=host exec {STRATA} \"$@\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Self {
            dir,
            pids: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> PathBuf {
        self.path("logs/container.log")
    }

    /// A config running `script` with `/bin/sh -c` through the host launcher.
    fn config(&self, script: &str, tty: bool, stdin: bool, stdin_once: bool) -> MonitorConfig {
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": tty,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/usr/bin:/bin"],
                "cwd": "/"
            },
            "root": {"path": "/"}
        });
        self.config_for(spec, tty, stdin, stdin_once)
    }

    fn config_for(
        &self,
        spec: serde_json::Value,
        tty: bool,
        stdin: bool,
        stdin_once: bool,
    ) -> MonitorConfig {
        serde_json::from_value(json!({
            "id": "test",
            "init": {"spec": spec, "rootfs": "existing"},
            "log_path": self.log(),
            "tty": tty,
            "stdin": stdin,
            "stdin_once": stdin_once,
            "socket_path": self.path("monitor.sock"),
            "exit_file": self.path("exit.json"),
            "memory_cgroup_dirs": []
        }))
        .expect("config")
    }

    /// Spawns a monitor with the host launcher; returns the init's pid.
    async fn spawn(&mut self, config: &MonitorConfig) -> Result<i32, MonitorError> {
        self.spawn_with(&self.path("strata-host"), config).await
    }

    async fn spawn_with(
        &mut self,
        binary: &Path,
        config: &MonitorConfig,
    ) -> Result<i32, MonitorError> {
        let created = spawn_monitor(binary, config, &self.path("monitor.json")).await?;
        self.pids.push(created.pid);
        if let Some(monitor) = ppid(created.pid) {
            self.pids.push(monitor);
        }
        Ok(created.pid)
    }

    async fn client(&self) -> MonitorClient {
        MonitorClient::connect(&self.path("monitor.sock"))
            .await
            .expect("connecting to the monitor")
    }

    /// The CRI log, parsed: (stream, tag, content) per record; checks every timestamp.
    fn records(&self) -> Vec<(String, String, String)> {
        parse_log(&std::fs::read_to_string(self.log()).unwrap_or_default())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: kill(2) on pids this test started (an exited one may be gone: ESRCH).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn parse_log(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts:?}: {e}"));
            assert_eq!(ts.len(), 30, "fixed-width nanosecond timestamp: {ts}");
            assert!(ts.ends_with('Z'), "UTC: {ts}");
            let stream = parts.next().unwrap().to_owned();
            let tag = parts.next().unwrap().to_owned();
            let content = parts.next().unwrap_or_default().to_owned();
            assert!(stream == "stdout" || stream == "stderr", "{line}");
            assert!(tag == "F" || tag == "P", "{line}");
            (stream, tag, content)
        })
        .collect()
}

fn rec(stream: &str, tag: &str, content: &str) -> (String, String, String) {
    (stream.to_owned(), tag.to_owned(), content.to_owned())
}

/// The parent pid of `pid`.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat[stat.rfind(')').unwrap_or(0) + 2..].starts_with(['Z', 'X']),
        Err(_) => false,
    }
}

async fn gone_within(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn wait(f: &Fixture) -> ExitStatus {
    let mut client = f.client().await;
    tokio::time::timeout(Duration::from_secs(20), client.wait())
        .await
        .expect("wait timed out")
        .expect("wait")
}

#[tokio::test]
async fn logs_exit_code_and_exit_file() {
    let mut f = Fixture::new();
    let script = "echo out; echo err >&2; printf 'crlf\\r\\n'; echo; \
                  head -c 40960 /dev/zero | tr '\\0' a; echo; printf tail; exit 3";
    let pid = f
        .spawn(&f.config(script, false, false, false))
        .await
        .unwrap();
    let monitor = ppid(pid).unwrap();
    assert_ne!(monitor, std::process::id() as i32, "the monitor detached");
    assert_ne!(
        ppid(monitor),
        Some(std::process::id() as i32),
        "not our child"
    );
    // Created, not started: no user code ran.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(f.records().is_empty());
    f.client().await.start().await.unwrap();
    let status = wait(&f).await;
    assert_eq!(status.pid, pid);
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.signal, None);
    assert!(!status.oom_killed);
    assert!(status.started_at > 0 && status.exited_at >= status.started_at);
    assert_eq!(status.reason(), "Error");
    assert_eq!(read_exit_file(&f.path("exit.json")), Some(status));
    assert!(
        gone_within(monitor, Duration::from_secs(5)).await,
        "monitor exits"
    );
    assert!(!f.path("monitor.sock").exists(), "socket removed");

    let records = f.records();
    let mut stdout: Vec<_> = records
        .iter()
        .filter(|r| r.0 == "stdout")
        .cloned()
        .collect();
    let stderr: Vec<_> = records
        .iter()
        .filter(|r| r.0 == "stderr")
        .cloned()
        .collect();
    assert_eq!(stderr, vec![rec("stderr", "F", "err")]);
    assert_eq!(stdout.remove(0), rec("stdout", "F", "out"));
    assert_eq!(stdout.remove(0), rec("stdout", "F", "crlf"));
    assert_eq!(stdout.remove(0), rec("stdout", "F", ""));
    let a = "a".repeat(16 * 1024);
    assert_eq!(stdout.remove(0), rec("stdout", "P", &a));
    assert_eq!(stdout.remove(0), rec("stdout", "P", &a));
    assert_eq!(stdout.remove(0), rec("stdout", "F", &"a".repeat(8 * 1024)));
    // Unterminated output at the end of the stream: a partial record, as containerd writes it.
    assert_eq!(stdout, vec![rec("stdout", "P", "tail")]);
    let mode = std::fs::metadata(f.log()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
}

#[tokio::test]
async fn signal_gives_128_plus_signal() {
    let mut f = Fixture::new();
    let pid = f
        .spawn(&f.config("exec sleep 100", false, false, false))
        .await
        .unwrap();
    let mut client = f.client().await;
    client.start().await.unwrap();
    assert!(matches!(client.start().await, Err(MonitorError::Start(_))));
    client.signal(libc::SIGTERM).await.unwrap();
    let status = wait(&f).await;
    assert_eq!((status.exit_code, status.signal), (143, Some(15)));
    assert_eq!(status.pid, pid);
    // The monitor is gone now: the daemon reads the file.
    assert!(matches!(
        MonitorClient::connect(&f.path("monitor.sock")).await,
        Err(MonitorError::Gone { .. })
    ));
    assert_eq!(read_exit_file(&f.path("exit.json")), Some(status));
}

#[tokio::test]
async fn signal_before_start_and_many_waiters() {
    let mut f = Fixture::new();
    f.spawn(&f.config("exec sleep 100", false, false, false))
        .await
        .unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let socket = f.path("monitor.sock");
            tokio::spawn(async move {
                let mut c = MonitorClient::connect(&socket).await.unwrap();
                c.wait().await.unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.client().await.signal(libc::SIGKILL).await.unwrap();
    for w in waiters {
        let status = w.await.unwrap();
        assert_eq!(
            (status.exit_code, status.signal, status.started_at),
            (137, Some(9), 0)
        );
    }
}

#[tokio::test]
async fn start_error_is_reported() {
    let mut f = Fixture::new();
    let mut config = f.config("", false, false, false);
    if let Some(process) = config.init.spec.process_mut() {
        process.set_args(Some(vec!["/nonexistent/binary".to_owned()]));
    }
    f.spawn(&config).await.unwrap();
    let err = f.client().await.start().await.unwrap_err();
    assert!(
        matches!(&err, MonitorError::Start(m) if m.contains("No such file")),
        "{err}"
    );
    let status = wait(&f).await;
    assert_ne!(status.exit_code, 0);
}

#[tokio::test]
async fn create_error_is_reported() {
    let mut f = Fixture::new();
    let mut config = f.config("true", false, false, false);
    config.init.cgroup_procs = vec![f.path("no/such/cgroup.procs")];
    let err = f.spawn(&config).await.unwrap_err();
    assert!(
        matches!(&err, MonitorError::Create(m) if m.contains("setting up")),
        "{err}"
    );
    assert!(!f.path("monitor.sock").exists());
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    let mut f = Fixture::new();
    let config = f.config("echo one; read x; echo two", false, true, false);
    f.spawn(&config).await.unwrap();
    let mut client = f.client().await;
    client.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.records().is_empty() {
        assert!(Instant::now() < deadline, "no output");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rotated = f.path("logs/container.log.1");
    std::fs::rename(f.log(), &rotated).unwrap();
    client.reopen_log().await.unwrap();
    let (mut input, _output) = f.client().await.attach(true, false, false).await.unwrap();
    input.write_all(b"go\n").await.unwrap();
    input.flush().await.unwrap();
    let status = wait(&f).await;
    assert_eq!(status.exit_code, 0);
    let old = parse_log(&std::fs::read_to_string(&rotated).unwrap());
    assert_eq!(old, vec![rec("stdout", "F", "one")]);
    assert_eq!(f.records(), vec![rec("stdout", "F", "two")]);
}

/// Reads attach output until `want` was seen on `stream`.
async fn read_until(
    output: &mut futures::stream::BoxStream<'static, std::io::Result<(u8, bytes::Bytes)>>,
    stream: u8,
    want: &str,
) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        let frame = tokio::time::timeout_at(deadline, output.next())
            .await
            .unwrap_or_else(|_| panic!("waiting for {want:?}, got {seen:?}"));
        let (id, data) = frame.expect("output ended").expect("frame");
        if id == stream {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[tokio::test]
async fn attach_stdin_once() {
    let mut f = Fixture::new();
    let script = "echo ready; while read line; do echo \"got $line\"; echo \"err $line\" >&2; done; echo bye";
    f.spawn(&f.config(script, false, true, true)).await.unwrap();
    let (mut input, mut output) = f.client().await.attach(true, true, true).await.unwrap();
    // A second client that only watches stdout.
    let (_watch_in, mut watch) = f.client().await.attach(false, true, false).await.unwrap();
    f.client().await.start().await.unwrap();
    read_until(&mut output, STDOUT, "ready").await;
    input.write_all(b"hello\n").await.unwrap();
    input.flush().await.unwrap();
    read_until(&mut output, STDOUT, "got hello").await;
    read_until(&mut output, STDERR, "err hello").await;
    read_until(&mut watch, STDOUT, "got hello").await;
    // stdin_once: closing the first client's stdin closes the container's.
    input.shutdown().await.unwrap();
    read_until(&mut output, STDOUT, "bye").await;
    let status = wait(&f).await;
    assert_eq!(status.exit_code, 0);
    // The attach streams end when the monitor exits.
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(5), output.collect::<Vec<_>>())
        .await
        .expect("stream ends");
    assert!(rest.iter().all(|r| r.is_ok()));
    let records = f.records();
    assert!(
        records.contains(&rec("stdout", "F", "got hello")),
        "{records:?}"
    );
    assert!(
        records.contains(&rec("stderr", "F", "err hello")),
        "{records:?}"
    );
}

#[tokio::test]
async fn stdin_stays_open_without_stdin_once() {
    let mut f = Fixture::new();
    f.spawn(&f.config("cat", false, true, false)).await.unwrap();
    f.client().await.start().await.unwrap();
    for word in ["first", "second"] {
        let (mut input, mut output) = f.client().await.attach(true, true, false).await.unwrap();
        input
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        input.flush().await.unwrap();
        read_until(&mut output, STDOUT, word).await;
        input.shutdown().await.unwrap();
        drop(output);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // cat still runs: its stdin was not closed by the detaches.
    let mut client = f.client().await;
    client.signal(libc::SIGKILL).await.unwrap();
    assert_eq!(wait(&f).await.signal, Some(9));
    let records = f.records();
    assert_eq!(
        records,
        vec![rec("stdout", "F", "first"), rec("stdout", "F", "second")]
    );
}

#[tokio::test]
async fn slow_attach_client_does_not_block_the_container() {
    let mut f = Fixture::new();
    // 5 MB of output, far more than a client's backlog and the socket buffers.
    let script = "yes 0123456789012345678901234567890123456789012345678901234567890123456789\
                  012345678901234567890123456789 | head -n 50000; echo done";
    f.spawn(&f.config(script, false, false, false))
        .await
        .unwrap();
    let (_input, output) = f.client().await.attach(false, true, true).await.unwrap();
    f.client().await.start().await.unwrap();
    // Never read `output`: the container must still finish and the log be complete.
    let status = wait(&f).await;
    assert_eq!(status.exit_code, 0);
    let records = f.records();
    assert_eq!(records.len(), 50_001, "every line logged");
    assert_eq!(records.last().unwrap(), &rec("stdout", "F", "done"));
    drop(output);
}

#[tokio::test]
async fn tty_resize_and_input() {
    let mut f = Fixture::new();
    let script = "read x; stty size; echo \"got $x\"";
    f.spawn(&f.config(script, true, true, true)).await.unwrap();
    let mut client = f.client().await;
    client.resize(100, 40).await.unwrap();
    let (mut input, mut output) = f.client().await.attach(true, true, true).await.unwrap();
    client.start().await.unwrap();
    input.write_all(b"abc\n").await.unwrap();
    input.flush().await.unwrap();
    let seen = read_until(&mut output, STDOUT, "got abc").await;
    assert!(seen.contains("40 100"), "{seen:?}");
    let status = wait(&f).await;
    assert_eq!(status.exit_code, 0);
    let records = f.records();
    assert!(
        records.iter().all(|r| r.0 == "stdout"),
        "a tty has one stream"
    );
    assert!(
        records.contains(&rec("stdout", "F", "40 100")),
        "{records:?}"
    );
    assert!(
        records.contains(&rec("stdout", "F", "got abc")),
        "{records:?}"
    );
}

#[tokio::test]
async fn tty_without_stdin() {
    let mut f = Fixture::new();
    f.spawn(&f.config("tty >/dev/null && echo is a tty", true, false, false))
        .await
        .unwrap();
    f.client().await.start().await.unwrap();
    assert_eq!(wait(&f).await.exit_code, 0);
    assert_eq!(f.records(), vec![rec("stdout", "F", "is a tty")]);
}

#[tokio::test]
async fn resize_without_tty_fails() {
    let mut f = Fixture::new();
    f.spawn(&f.config("exec sleep 100", false, false, false))
        .await
        .unwrap();
    let mut client = f.client().await;
    assert!(matches!(
        client.resize(80, 24).await,
        Err(MonitorError::Remote(_))
    ));
    client.signal(libc::SIGKILL).await.unwrap();
    wait(&f).await;
}

#[tokio::test]
async fn survives_the_daemon() {
    let mut f = Fixture::new();
    let config = f.config("exec sleep 100", false, false, false);
    std::fs::write(f.path("monitor.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    // A stand-in daemon that spawns the monitor, then is SIGKILLed with its process group.
    let script = format!(
        "{} --config {}; exec sleep 100",
        f.path("strata-host").display(),
        f.path("monitor.json").display()
    );
    let mut daemon = tokio::process::Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = daemon.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stdout), &mut line)
        .await
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&line).unwrap();
    let pid = created["created"]["pid"].as_i64().unwrap() as i32;
    f.pids.push(pid);
    let monitor = ppid(pid).unwrap();
    f.pids.push(monitor);
    let daemon_pid = daemon.id().unwrap() as i32;
    // SAFETY: kill(2) on the process group of the stand-in daemon we started.
    unsafe { libc::kill(-daemon_pid, libc::SIGKILL) };
    daemon.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(alive(monitor), "the monitor outlived the daemon");
    let mut client = f.client().await;
    client.start().await.unwrap();
    client.signal(libc::SIGTERM).await.unwrap();
    assert_eq!(wait(&f).await.exit_code, 143);
}

#[tokio::test]
async fn oom_kill_is_detected() {
    // A real memory cgroup (v1 here, or v2), a 32 MiB limit, and a process that needs more.
    let name = format!("strata-monitor-test-{}", std::process::id());
    let (dir, limit_file) = if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        (
            Path::new("/sys/fs/cgroup/memory").join(&name),
            "memory.limit_in_bytes",
        )
    } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        (Path::new("/sys/fs/cgroup").join(&name), "memory.max")
    } else {
        eprintln!("no memory cgroup: skipped");
        return;
    };
    struct Cgroup(PathBuf);
    impl Drop for Cgroup {
        fn drop(&mut self) {
            if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: kill(2) on processes of the test's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            for _ in 0..100 {
                if std::fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    std::fs::create_dir(&dir).unwrap();
    let cgroup = Cgroup(dir.clone());
    std::fs::write(dir.join(limit_file), "33554432").unwrap();
    let mut f = Fixture::new();
    let mut config = f.config(
        "head -c 268435456 /dev/zero | tail; exit 0",
        false,
        false,
        false,
    );
    config.init.cgroup_procs = vec![dir.join("cgroup.procs")];
    config.memory_cgroup_dirs = vec![dir.clone()];
    f.spawn(&config).await.unwrap();
    f.client().await.start().await.unwrap();
    let status = wait(&f).await;
    assert!(status.oom_killed, "{status:?}");
    assert_eq!(status.reason(), "OOMKilled");
    drop(cgroup);
}

#[tokio::test]
async fn monitor_memory() {
    let mut f = Fixture::new();
    let pid = f
        .spawn(&f.config("exec sleep 100", false, false, false))
        .await
        .unwrap();
    let monitor = ppid(pid).unwrap();
    f.client().await.start().await.unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{monitor}/smaps_rollup")).unwrap();
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    println!(
        "monitor {monitor} ({}): RSS {} kB, PSS {} kB (anon {} kB, file {} kB), private dirty {} kB",
        STRATA,
        field("Rss:"),
        field("Pss:"),
        field("Pss_Anon:"),
        field("Pss_File:"),
        field("Private_Dirty:")
    );
    assert!(field("Rss:") > 0);
    f.client().await.signal(libc::SIGKILL).await.unwrap();
    wait(&f).await;
}

/// The real launcher: a busybox rootfs in new mount and pid namespaces.
#[tokio::test]
async fn real_launcher() {
    let mut f = Fixture::new();
    let root = f.path("rootfs");
    std::fs::create_dir(&root).unwrap();
    rootfs::busybox_rootfs(&root);
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", "echo pid $$; read line; echo \"got $line\"; echo oops >&2; exit 7"],
            "env": ["PATH=/bin"],
            "cwd": "/"
        },
        "root": {"path": root},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
    });
    let config = f.config_for(spec, false, true, true);
    let pid = f.spawn_with(Path::new(STRATA), &config).await.unwrap();
    let monitor = ppid(pid).unwrap();
    assert_ne!(monitor, std::process::id() as i32);
    let (mut input, mut output) = f.client().await.attach(true, true, false).await.unwrap();
    f.client().await.start().await.unwrap();
    read_until(&mut output, STDOUT, "pid 1").await;
    input.write_all(b"hi\n").await.unwrap();
    input.shutdown().await.unwrap();
    let status = wait(&f).await;
    assert_eq!((status.exit_code, status.pid), (7, pid));
    assert_eq!(
        f.records(),
        vec![
            rec("stdout", "F", "pid 1"),
            rec("stdout", "F", "got hi"),
            rec("stderr", "F", "oops")
        ]
    );
}
