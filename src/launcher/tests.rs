//! Root tests: real containers from a tiny busybox rootfs, checked from inside.
//!
//! The trick: cargo's test harness is multi-threaded, and [`super::create`] refuses a process
//! with more than one thread (cloning a multi-threaded process copies locks held by other
//! threads). Each test writes a [`Scenario`] and re-runs this test binary
//! (`std::env::current_exe()`) filtered to [`scenario_child`] with `STRATA_LAUNCHER_SCENARIO`
//! set. In that process only libtest's idle main thread and the test thread exist; the test
//! thread `fork()`s, and the forked child, single-threaded, runs the scenario (create, start,
//! optionally `strata exec` in a grandchild, collect output, reap) and writes an [`Outcome`].
//! Without the variable `scenario_child` does nothing, so a normal `cargo test` passes it.
//!
//! Cleanup: the containers' mounts live in their own mount namespaces and vanish with them; a
//! [`TestCgroup`] guard kills every process left in the test's cgroups and removes them; temp
//! dirs are `TempDir`s. These tests need root (CI runs as root) and are not skipped.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};
use serde::{Deserialize, Serialize};

use super::{CreatedInit, ExecConfig, InitConfig, InitStdio, Rootfs, clone, create};

const SCENARIO_ENV: &str = "STRATA_LAUNCHER_SCENARIO";

#[derive(Serialize, Deserialize)]
struct Scenario {
    config: InitConfig,
    /// After start, run this process with `strata exec` (exec_main) in the container, then
    /// kill the container.
    exec: Option<Process>,
    exec_config: PathBuf,
    result: PathBuf,
    /// Extra create+start+wait rounds before the checked one, timed.
    #[serde(default)]
    repeat: usize,
    /// Run in a private mount namespace holding this many extra tmpfs mounts.
    #[serde(default)]
    extra_mounts: usize,
    /// Clone from a template mount namespace (`template.rs`) built in that namespace.
    #[serde(default)]
    template: bool,
}

#[derive(Serialize, Deserialize, Default, Debug)]
struct Outcome {
    create_error: Option<String>,
    start_error: Option<String>,
    output: String,
    exit_code: Option<i32>,
    exec_output: String,
    exec_code: Option<i32>,
    create_start_ms: f64,
    /// (create, start) milliseconds of the repeated rounds.
    rounds: Vec<(f64, f64)>,
    /// CPU time (user + system) the reaped inits of the repeated rounds used, per round: the
    /// kernel's work for them (mount namespace copy and teardown...) without the machine's load.
    #[serde(default)]
    init_cpu_ms: f64,
}

impl Outcome {
    fn kv(&self) -> HashMap<String, String> {
        self.output
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Entry point of the re-executed test binary (see the module doc).
#[test]
fn scenario_child() {
    let Some(path) = std::env::var_os(SCENARIO_ENV) else {
        return;
    };
    let raw = std::fs::read(&path).expect("reading the scenario");
    let scenario: Scenario = serde_json::from_slice(&raw).expect("parsing the scenario");
    // SAFETY: the only other thread (libtest's main thread) is blocked waiting for this test and
    // holds no lock; the child only runs the scenario and _exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let outcome =
                std::panic::catch_unwind(|| run_scenario(&scenario)).unwrap_or_else(|_| Outcome {
                    create_error: Some("the scenario panicked".into()),
                    ..Outcome::default()
                });
            let code = match serde_json::to_vec(&outcome)
                .ok()
                .and_then(|v| std::fs::write(&scenario.result, v).ok())
            {
                Some(()) => 0,
                None => 1,
            };
            // SAFETY: leave without running the test harness's exit path in this copy.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    let _ = std::fs::File::from(fd).read_to_string(&mut s);
    s
}

/// The scenario's environment: extra host mounts in a private mount namespace of this
/// (single-threaded, forked) process, and the template to clone from. Returns the config to run.
fn prepare(s: &Scenario) -> InitConfig {
    let mut config = s.config.clone();
    if s.extra_mounts == 0 && !s.template {
        return config;
    }
    let dir = s.result.parent().expect("scenario dir").to_path_buf();
    if s.template {
        // Made from the host's mount namespace (the test unmounts the pin), before the extra
        // mounts, which it must not hold.
        let pin = dir.join("mntns");
        super::template::run(&pin, std::slice::from_ref(&dir)).expect("template");
        // A copied mount namespace leaves pinned mount namespaces out (no loops): keep it open
        // and name it through /proc/self/fd.
        let fd = std::os::fd::IntoRawFd::into_raw_fd(std::fs::File::open(&pin).expect("pin"));
        config.clone_mntns = Some(format!("/proc/self/fd/{fd}").into());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("private /");
    let many = dir.join("many");
    std::fs::create_dir_all(&many).expect("mkdir many");
    for i in 0..s.extra_mounts {
        let m = many.join(i.to_string());
        std::fs::create_dir_all(&m).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &m,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("mount tmpfs");
    }
    config
}

/// Runs in the single-threaded forked child.
fn run_scenario(s: &Scenario) -> Outcome {
    let config = prepare(s);
    let mut out = Outcome::default();
    let children_cpu = || {
        // SAFETY: rusage is plain old data; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: u is a valid rusage to fill.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) }, 0);
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        ms(u.ru_utime) + ms(u.ru_stime)
    };
    let cpu0 = children_cpu();
    for _ in 0..s.repeat {
        let (rd, wr) = pipe();
        let stdio = InitStdio {
            stdin: std::fs::File::open("/dev/null").expect("/dev/null").into(),
            stdout: wr.try_clone().expect("dup"),
            stderr: wr,
        };
        let t0 = Instant::now();
        let Ok(mut init) = create(&config, stdio) else {
            break;
        };
        let t1 = Instant::now();
        if init.start().is_err() {
            break;
        }
        let t2 = Instant::now();
        out.rounds.push((
            (t1 - t0).as_secs_f64() * 1000.0,
            (t2 - t1).as_secs_f64() * 1000.0,
        ));
        drop(rd);
        let _ = clone::pidfd_wait(&init.pidfd);
    }
    if s.repeat > 0 {
        out.init_cpu_ms = (children_cpu() - cpu0) / s.repeat as f64;
    }
    let (rd, wr) = pipe();
    let stdio = InitStdio {
        stdin: std::fs::File::open("/dev/null").expect("/dev/null").into(),
        stdout: wr.try_clone().expect("dup"),
        stderr: wr,
    };
    let t0 = Instant::now();
    let mut init: CreatedInit = match create(&config, stdio) {
        Ok(i) => i,
        Err(e) => {
            out.create_error = Some(e.to_string());
            return out;
        }
    };
    if let Err(e) = init.start() {
        out.start_error = Some(e.to_string());
        return out;
    }
    out.create_start_ms = t0.elapsed().as_secs_f64() * 1000.0;

    if let Some(process) = &s.exec {
        let config = ExecConfig {
            target_pid: init.pid(),
            process: process.clone(),
            cgroup_procs: s.config.cgroup_procs.clone(),
            seccomp: None,
        };
        std::fs::write(&s.exec_config, serde_json::to_vec(&config).expect("json"))
            .expect("writing the exec config");
        let (erd, ewr) = pipe();
        // SAFETY: this process is single-threaded.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                // SAFETY: plain dup2 onto our stdout/stderr.
                unsafe {
                    libc::dup2(ewr.as_raw_fd(), 1);
                    libc::dup2(ewr.as_raw_fd(), 2);
                }
                drop(ewr);
                super::exec_main(&s.exec_config)
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(ewr);
                out.exec_output = read_all(erd);
                if let Ok(nix::sys::wait::WaitStatus::Exited(_, code)) =
                    nix::sys::wait::waitpid(child, None)
                {
                    out.exec_code = Some(code);
                }
            }
        }
        let _ = clone::pidfd_kill(&init.pidfd, libc::SIGKILL);
    }
    out.output = read_all(rd);
    out.exit_code = clone::pidfd_wait(&init.pidfd).ok().map(|e| e.code);
    out
}

/// Runs `scenario` through a re-executed, forked, single-threaded copy of this test binary.
fn launch(dir: &Path, config: InitConfig, exec: Option<Process>) -> Outcome {
    launch_repeated(dir, config, exec, 0)
}

fn launch_repeated(
    dir: &Path,
    config: InitConfig,
    exec: Option<Process>,
    repeat: usize,
) -> Outcome {
    let scenario = Scenario {
        config,
        exec,
        exec_config: dir.join("exec.json"),
        result: dir.join("outcome.json"),
        repeat,
        extra_mounts: 0,
        template: false,
    };
    let path = dir.join("scenario.json");
    std::fs::write(&path, serde_json::to_vec(&scenario).unwrap()).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launcher::tests::scenario_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO_ENV, &path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scenario process failed: {status}");
    serde_json::from_slice(&std::fs::read(&scenario.result).unwrap()).unwrap()
}

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "id", "true", "false", "env", "mkdir", "touch", "grep",
    "hostname", "head", "wc", "stat", "pwd", "readlink", "tr", "mount",
];

/// Debian's dynamic busybox with its libraries (the logic of tests/support/rootfs.rs).
fn busybox_rootfs(dir: &Path) {
    for (d, mode) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
    ] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let busybox = dir.join("bin/busybox");
    std::fs::copy("/bin/busybox", &busybox).expect("/bin/busybox missing: apt-get install busybox");
    for applet in APPLETS {
        std::fs::hard_link(&busybox, dir.join("bin").join(applet)).unwrap();
    }
    let out = std::process::Command::new("ldd")
        .arg("/bin/busybox")
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim().split(' ').next(),
            None => line.split(' ').next(),
        };
        if let Some(lib) = path.filter(|p| p.starts_with('/')) {
            let dest = dir.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, &dest).unwrap();
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
}

/// Cgroups (pids and cpu hierarchies) the test's containers join; on drop every process left
/// in them is killed and they are removed.
struct TestCgroup {
    dirs: Vec<PathBuf>,
}

impl TestCgroup {
    fn new(name: &str) -> TestCgroup {
        let dirs: Vec<PathBuf> = ["pids", "cpu"]
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(name))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        TestCgroup { dirs }
    }

    fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..200 {
                let pids = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::SIGKILL,
                    );
                }
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// The spec generator's defaults for an unprivileged container with its own sysfs, plus a /tmp.
fn default_mounts() -> Vec<Mount> {
    let mut mounts = crate::spec::default_mounts(false, false);
    mounts.push(mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev"]));
    mounts
}

fn namespaces(netns: bool) -> Vec<oci_spec::runtime::LinuxNamespace> {
    let mut types = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if netns {
        types.push(LinuxNamespaceType::Network);
    }
    types
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().unwrap())
        .collect()
}

fn caps(list: &[Capability]) -> oci_spec::runtime::LinuxCapabilities {
    let set: oci_spec::runtime::Capabilities = list.iter().copied().collect();
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set.clone())
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .unwrap()
}

fn process(script: &str, uid: u32, gid: u32, groups: Vec<u32>, cwd: &str) -> Process {
    ProcessBuilder::default()
        .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
        .env(vec![
            "PATH=/usr/bin:/bin".to_string(),
            "FOO=bar baz".to_string(),
        ])
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .additional_gids(groups)
                .build()
                .unwrap(),
        )
        .capabilities(caps(&[
            Capability::Chown,
            Capability::NetBindService,
            Capability::Kill,
        ]))
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1000u64)
                .hard(2000u64)
                .build()
                .unwrap(),
        ])
        .no_new_privileges(true)
        .oom_score_adj(300)
        .build()
        .unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    layer: PathBuf,
    cgroup: TestCgroup,
}

fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    std::fs::create_dir(&layer).unwrap();
    busybox_rootfs(&layer);
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for d in ["upper", "work", "data"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let cgroup = TestCgroup::new(&format!("strata-launcher-{name}-{}", std::process::id()));
    Fixture {
        dir,
        rootfs,
        layer,
        cgroup,
    }
}

impl Fixture {
    fn overlay(&self) -> Rootfs {
        Rootfs::Overlay {
            lower: vec![self.layer.clone()],
            upper: self.dir.path().join("upper"),
            work: self.dir.path().join("work"),
        }
    }

    fn spec(&self, process: Process, netns: bool, seccomp: bool, extra: Vec<Mount>) -> Spec {
        let mut mounts = default_mounts();
        mounts.extend(extra);
        let mut linux = LinuxBuilder::default()
            .namespaces(namespaces(netns))
            .masked_paths(
                [
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/timer_list",
                    "/proc/acpi",
                    "/sys/firmware",
                ]
                .map(String::from)
                .to_vec(),
            )
            .readonly_paths(["/proc/sys", "/proc/bus"].map(String::from).to_vec());
        if seccomp {
            linux = linux.seccomp(
                LinuxSeccompBuilder::default()
                    .default_action(LinuxSeccompAction::ScmpActAllow)
                    .syscalls(vec![
                        LinuxSyscallBuilder::default()
                            .names(vec!["mkdir".into(), "mkdirat".into()])
                            .action(LinuxSeccompAction::ScmpActErrno)
                            .errno_ret(libc::EOPNOTSUPP as u32)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            );
        }
        SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path(self.rootfs.clone())
                    .readonly(true)
                    .build()
                    .unwrap(),
            )
            .hostname("strata-box")
            .process(process)
            .mounts(mounts)
            .linux(linux.build().unwrap())
            .build()
            .unwrap()
    }

    fn config(&self, spec: Spec, rootfs: Rootfs) -> InitConfig {
        InitConfig {
            spec,
            rootfs,
            cgroup_procs: self.cgroup.procs(),
            clone_mntns: None,
        }
    }
}

const CHECKS: &str = r#"
echo "capeff=$(grep CapEff /proc/self/status | tr -d '\t' | tr -d 'CapEf:')"
echo "seccomp=$(grep '^Seccomp:' /proc/self/status | tr -d '\t' | tr -d 'Secomp:')"
echo "nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\t' | tr -d 'NoNewPrivs:')"
echo "id=$(id)"
echo "hostname=$(hostname)"
echo "pid=$$"
echo "cwd=$(pwd)"
echo "cwdowner=$(stat -c %u:%g .)"
echo "foo=$FOO"
echo "nofile=$(ulimit -n)"
echo "oom=$(cat /proc/self/oom_score_adj)"
echo "rootwrite=$(touch /newfile 2>&1)"
echo "tmpwrite=$(touch /tmp/f 2>&1 && echo ok)"
echo "mkdir=$(mkdir /tmp/d 2>&1)"
echo "datawrite=$(touch /data/f 2>&1)"
echo "timer_list=$(wc -c < /proc/timer_list)"
echo "acpi=$(ls /proc/acpi | wc -l)"
echo "procsys=$( (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1)"
echo "devnull=$(echo x > /dev/null && echo ok)"
echo "ptmx=$(readlink /dev/ptmx)"
echo "cgroups=$(ls /sys/fs/cgroup | tr '\n' ' ')"
echo "cgroupns=$(grep pids /proc/self/cgroup)"
echo "mounts=$(grep -c . /proc/self/mounts)"
"#;

#[test]
fn container_runs_with_its_mounts_user_caps_and_seccomp() {
    let f = fixture("main");
    let host_data = f.dir.path().join("data");
    let spec = f.spec(
        process(CHECKS, 0, 0, vec![], "/"),
        true,
        true,
        vec![mount(
            "/data",
            "bind",
            host_data.to_str().unwrap(),
            &["rbind", "ro"],
        )],
    );
    let out = launch(f.dir.path(), f.config(spec, f.overlay()), None);
    assert_eq!(out.create_error, None);
    assert_eq!(out.start_error, None);
    let kv = out.kv();
    let get = |k: &str| {
        kv.get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {k} in {}", out.output))
    };
    // CHOWN(0) KILL(5) NET_BIND_SERVICE(10) = 0x421.
    assert_eq!(get("capeff"), "0000000000000421", "{}", out.output);
    assert_eq!(get("seccomp"), "2");
    assert_eq!(get("nnp"), "1");
    assert_eq!(get("id"), "uid=0(root) gid=0(root)"); // setgroups([]): no supplementary groups
    assert_eq!(get("hostname"), "strata-box");
    assert_eq!(get("pid"), "1");
    assert_eq!(get("cwd"), "/");
    assert_eq!(get("foo"), "bar baz");
    assert_eq!(get("nofile"), "1000");
    assert_eq!(get("oom"), "300");
    assert!(
        get("rootwrite").contains("Read-only file system"),
        "{}",
        out.output
    );
    assert_eq!(get("tmpwrite"), "ok");
    assert!(
        get("mkdir").contains("not supported"),
        "seccomp errnoRet: {}",
        out.output
    );
    assert!(
        get("datawrite").contains("Read-only file system"),
        "{}",
        out.output
    );
    assert_eq!(get("timer_list"), "0");
    assert_eq!(get("acpi"), "0");
    assert!(
        get("procsys").contains("Read-only file system"),
        "{}",
        out.output
    );
    assert_eq!(get("devnull"), "ok");
    assert_eq!(get("ptmx"), "pts/ptmx");
    assert_eq!(get("cgroups").trim(), "cpu pids");
    assert!(get("cgroupns").ends_with(":/"), "{}", out.output);
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    // The upper dir got nothing from a read-only root; the layer is untouched.
    assert!(!f.layer.join("newfile").exists());
    eprintln!(
        "create+start: {:.2} ms\n{}",
        out.create_start_ms, out.output
    );
}

#[test]
fn non_root_user_with_created_cwd_in_host_netns() {
    let f = fixture("user");
    let mut p = process(CHECKS, 1000, 1000, vec![5, 6], "/home/app/work");
    p.set_capabilities(Some(caps(&[])));
    let mut spec = f.spec(p, false, false, vec![]);
    // Existing rootfs: the layer directory itself is the root.
    spec.set_root(Some(
        RootBuilder::default()
            .path(f.layer.clone())
            .readonly(true)
            .build()
            .unwrap(),
    ));
    let out = launch(f.dir.path(), f.config(spec, Rootfs::Existing), None);
    assert_eq!(out.create_error, None, "{out:?}");
    let kv = out.kv();
    let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
    assert_eq!(get("capeff"), "0000000000000000", "{}", out.output);
    assert_eq!(get("seccomp"), "0");
    assert_eq!(
        get("id"),
        "uid=1000(app) gid=1000(app) groups=5,6",
        "{}",
        out.output
    );
    assert_eq!(get("cwd"), "/home/app/work");
    assert_eq!(get("cwdowner"), "1000:1000");
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
}

#[test]
fn missing_executable_fails_at_start_with_runc_text() {
    let f = fixture("noexe");
    let mut p = process("", 0, 0, vec![], "/");
    p.set_args(Some(vec!["no-such-binary".to_string()]));
    let spec = f.spec(p, true, false, vec![]);
    let out = launch(f.dir.path(), f.config(spec, f.overlay()), None);
    assert_eq!(out.create_error, None);
    assert_eq!(
        out.start_error.as_deref(),
        Some("exec: \"no-such-binary\": executable file not found in $PATH")
    );
}

#[test]
fn setup_failures_name_their_step() {
    let f = fixture("fail");
    let spec = f.spec(
        process("true", 0, 0, vec![], "/"),
        true,
        false,
        vec![mount("/bogus", "no-such-fs", "x", &[])],
    );
    let out = launch(f.dir.path(), f.config(spec, f.overlay()), None);
    let err = out.create_error.unwrap_or_default();
    assert!(err.starts_with("mount /bogus: "), "{err}");

    // This host does not grant CAP_SYS_RESOURCE: a hard limit above ours is refused clearly.
    let mut p = process("true", 0, 0, vec![], "/");
    let hard = rlimit_nofile_hard() + 1;
    p.set_rlimits(Some(vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(1024u64)
            .hard(hard)
            .build()
            .unwrap(),
    ]));
    let spec = f.spec(p, true, false, vec![]);
    let out = launch(f.dir.path(), f.config(spec, f.overlay()), None);
    let err = out.create_error.unwrap_or_default();
    if has_sys_resource() {
        assert_eq!(err, "", "raising works where CAP_SYS_RESOURCE is granted");
    } else {
        assert!(
            err.starts_with("rlimits: cannot raise the hard limit of RLIMIT_NOFILE"),
            "{err}"
        );
    }
}

fn rlimit_nofile_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max
}

fn has_sys_resource() -> bool {
    caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false)
}

#[test]
fn many_layers_go_through_fsconfig_lowerdir_plus() {
    let f = fixture("layers");
    // 40 long-named layers above busybox: the option string is > 4 KiB.
    let mut lower = vec![f.layer.clone()];
    for i in 0..40 {
        let l = f.dir.path().join(format!("{}{i:03}", "l".repeat(100)));
        std::fs::create_dir(&l).unwrap();
        std::fs::write(l.join("marker"), format!("{i}\n")).unwrap();
        lower.push(l);
    }
    let rootfs = Rootfs::Overlay {
        lower,
        upper: f.dir.path().join("upper"),
        work: f.dir.path().join("work"),
    };
    let mut p = process("cat /marker", 0, 0, vec![], "/");
    p.set_oom_score_adj(None);
    let spec = f.spec(p, true, false, vec![]);
    let out = launch(f.dir.path(), f.config(spec, rootfs), None);
    assert_eq!(out.create_error, None);
    assert_eq!(out.output, "39\n", "the topmost layer wins");
}

#[test]
fn exec_joins_a_running_container() {
    let f = fixture("exec");
    let spec = f.spec(process("sleep 30", 0, 0, vec![], "/"), true, true, vec![]);
    let mut extra = process(
        "echo \"pid=$$ hostname=$(hostname) id=$(id -u) seccomp=$(grep -c '^Seccomp:.2' /proc/self/status) cwd=$(pwd)\"; exit 7",
        1000,
        1000,
        vec![],
        "/tmp",
    );
    extra.set_capabilities(Some(caps(&[])));
    let out = launch(f.dir.path(), f.config(spec, f.overlay()), Some(extra));
    assert_eq!(out.create_error, None);
    assert_eq!(out.exec_code, Some(7), "{out:?}");
    let line = out.exec_output.trim();
    assert!(line.starts_with("pid="), "{line}");
    assert_ne!(line, "pid=1");
    assert!(line.contains("hostname=strata-box"), "{line}");
    assert!(line.contains("id=1000"), "{line}");
    assert!(line.contains("cwd=/tmp"), "{line}");
    // The init was killed once the exec finished.
    assert_eq!(out.exit_code, Some(128 + libc::SIGKILL));
}

#[test]
fn create_refuses_a_multi_threaded_caller() {
    // The test harness itself is multi-threaded: no clone must happen.
    let dir = tempfile::tempdir().unwrap();
    let spec = SpecBuilder::default()
        .root(RootBuilder::default().path(dir.path()).build().unwrap())
        .build()
        .unwrap();
    let (r, w) = pipe();
    let _keep = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
    let err = create(
        &InitConfig {
            spec,
            rootfs: Rootfs::Existing,
            cgroup_procs: vec![],
            clone_mntns: None,
        },
        InitStdio {
            stdin: r,
            stdout: w.try_clone().unwrap(),
            stderr: w,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, super::LaunchError::NotSingleThreaded { .. }),
        "{err}"
    );
}

/// Prints create and start latencies (not a timed assertion: the machine is small and shared).
#[test]
fn create_start_latency_figures() {
    let f = fixture("latency");
    let mut p = process("true", 0, 0, vec![], "/");
    p.set_oom_score_adj(None);
    // Like a pod container: the network namespace is not created here (host's, for the test).
    let spec = f.spec(p, false, true, vec![]);
    let out = launch_repeated(f.dir.path(), f.config(spec, f.overlay()), None, 30);
    assert_eq!(out.create_error, None);
    assert_eq!(out.rounds.len(), 30, "{out:?}");
    let mut create: Vec<f64> = out.rounds.iter().map(|r| r.0).collect();
    let mut total: Vec<f64> = out.rounds.iter().map(|r| r.0 + r.1).collect();
    create.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    eprintln!(
        "launcher latency over 30 runs: create p50 {:.2} ms, create+start p50 {:.2} ms, p90 {:.2} ms",
        create[15], total[15], total[27]
    );
}

/// A container cloned from the template mount namespace works like one cloned from the host's
/// (a bind mount, given to it as a detached mount, included), with 1000 extra host mounts; prints
/// create+start figures of both. Wall-clock latency on this small shared machine is too noisy
/// to compare, so the check is on the CPU time the inits use (the kernel's copy and teardown
/// of their mount namespaces included): measured 8 ms without the template, 5 ms with it.
#[test]
fn clone_from_template_with_1000_host_mounts() {
    let f = fixture("template");
    std::fs::write(f.dir.path().join("data/x"), "from-the-host").unwrap();
    let mut p = process(
        "cat /data/x; echo; wc -l < /proc/self/mountinfo",
        0,
        0,
        vec![],
        "/",
    );
    p.set_oom_score_adj(None);
    let data = MountBuilder::default()
        .destination("/data")
        .typ("bind")
        .source(f.dir.path().join("data"))
        .options(vec!["rbind".to_string(), "ro".to_string()])
        .build()
        .unwrap();
    let spec = f.spec(p, false, false, vec![data]);
    /// Unmounts the template's pin (made in the host's mount namespace) at the end.
    struct Pinned(PathBuf);
    impl Drop for Pinned {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _pinned = Pinned(f.dir.path().join("mntns"));
    let mut cpu = Vec::new();
    for template in [false, true] {
        let scenario = Scenario {
            config: f.config(spec.clone(), f.overlay()),
            exec: None,
            exec_config: f.dir.path().join("exec.json"),
            result: f.dir.path().join("outcome.json"),
            repeat: 20,
            extra_mounts: 1000,
            template,
        };
        let path = f.dir.path().join("scenario.json");
        std::fs::write(&path, serde_json::to_vec(&scenario).unwrap()).unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "launcher::tests::scenario_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SCENARIO_ENV, &path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scenario process failed: {status}");
        let out: Outcome =
            serde_json::from_slice(&std::fs::read(&scenario.result).unwrap()).unwrap();
        assert_eq!(out.create_error, None, "template={template}");
        assert_eq!(out.rounds.len(), 20, "template={template}: {out:?}");
        assert!(
            out.output.starts_with("from-the-host\n"),
            "template={template}: {out:?}"
        );
        let mut total: Vec<f64> = out.rounds.iter().map(|r| r.0 + r.1).collect();
        total.sort_by(f64::total_cmp);
        eprintln!(
            "1000 extra host mounts, template={template}: create+start p50 {:.2} ms, p90 {:.2} \
             ms; CPU time of each init (incl. its mount namespace copy and teardown) {:.2} ms",
            total[10], total[18], out.init_cpu_ms
        );
        cpu.push(out.init_cpu_ms);
    }
    assert!(cpu[1] < cpu[0], "the template saves no CPU time: {cpu:?}");
}
