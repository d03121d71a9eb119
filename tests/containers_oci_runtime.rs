//! External OCI runtime handlers: a daemon configured with a `runc` handler
//! (`[runtime.handlers.runc] runtime_path = "/usr/sbin/runc"`, Debian's runc 1.1) runs the same
//! busybox containers through the built-in launcher and through runc, and what they see from
//! inside must be the same (so strata's specs are correct OCI). Also: exit codes, logs, stop
//! with SIGKILL after the timeout, exec, and removal leaving no mount, no runc state and no
//! cgroup, even when the monitor died. Needs root and runc (`tests/deps.sh`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, Ran, cgroup_dirs, status_field, tail, with_security};

const RUNC: &str = "/usr/sbin/runc";
const HANDLER: &str = "runc";

static SHARED: Mutex<Option<Arc<Env>>> = Mutex::new(None);

extern "C" fn drop_shared() {
    let env = SHARED
        .lock()
        .map(|mut s| s.take())
        .unwrap_or_else(|p| p.into_inner().take());
    drop(env);
}

/// One registry + daemon (with the `runc` handler) for every test of this binary.
fn env() -> Arc<Env> {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = &*shared {
        return env.clone();
    }
    assert!(
        Path::new(RUNC).exists(),
        "{RUNC} is missing: apt-get install runc (tests/deps.sh)"
    );
    let env = Arc::new(Env::new(&format!(
        "[runtime.handlers.{HANDLER}]\nruntime_path = \"{RUNC}\"\n"
    )));
    // SAFETY: registers a plain `extern "C" fn()` to run at exit.
    unsafe { libc::atexit(drop_shared) };
    *shared = Some(env.clone());
    env
}

/// runc's `--root` for the handler: the default, `<state>/oci/runc`.
fn runc_root(env: &Env) -> PathBuf {
    env.daemon.dir().join("state/oci").join(HANDLER)
}

/// The container ids `runc --root R list` knows.
fn runc_list(env: &Env) -> String {
    let out = std::process::Command::new(RUNC)
        .arg("--root")
        .arg(runc_root(env))
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines of `/proc/self/mountinfo` (the test runs in the host mount namespace, as the
/// monitors do) that mention `needle`.
fn host_mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Two pods with the same config (hostname included), one per handler.
async fn pods(env: &Env) -> (Pod, Pod) {
    // Privileged, so that privileged containers may run in it.
    let config = cri::PodSandboxConfig {
        hostname: "ocipod".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let builtin = Pod::start(&env.daemon, config.clone()).await;
    let runc = Pod::start_with_handler(&env.daemon, config, HANDLER).await;
    (builtin, runc)
}

/// Runs `config` in both pods; panics unless both exit 0. Pod and container ids in the
/// output (cgroup paths without a cgroup namespace) become `<pod>` and `<container>`.
async fn run_both(builtin: &Pod, runc: &Pod, config: cri::ContainerConfig) -> (Ran, Ran) {
    let run = |pod: &'static str| {
        let (pod, config) = (
            if pod == "builtin" { builtin } else { runc },
            config.clone(),
        );
        async move {
            let mut ran = pod.run(config).await;
            for (id, name) in [(&ran.id.clone(), "<container>"), (&pod.id, "<pod>")] {
                ran.stdout = ran.stdout.replace(id.as_str(), name);
            }
            ran
        }
    };
    let a = run("builtin").await;
    let b = run("runc").await;
    assert_eq!(a.status.exit_code, 0, "built-in: {a:#?}");
    assert_eq!(b.status.exit_code, 0, "runc: {b:#?}");
    (a, b)
}

/// What a process sees of itself and its container, one fact a line.
const PROBE: &str = r#"
for k in CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp Seccomp_filters; do
  grep "^$k:" /proc/self/status
done
echo "id: $(id)"
echo "hostname: $(hostname) $(cat /proc/sys/kernel/hostname)"
echo "cwd: $(pwd)"
echo "umask: $(umask)"
echo "oom_score_adj: $(cat /proc/self/oom_score_adj)"
echo "pid1: $(cat /proc/1/cmdline | busybox tr '\0' ' ')"
env | busybox sort | busybox sed 's/^/env: /'
echo "nofile: $(ulimit -n)"
echo "cgroup: $(busybox sed 's/^[0-9]*:/:/' /proc/self/cgroup | busybox sort | busybox tr '\n' ' ')"
for p in /proc/kcore /proc/keys /proc/timer_list /sys/firmware; do
  if cat $p >/dev/null 2>&1 || ls $p/* >/dev/null 2>&1; then echo "readable: $p"; else echo "masked: $p"; fi
done
for p in / /tmp /etc /dev/shm /proc/sys /sys; do
  if touch $p/.w 2>/dev/null; then echo "writable: $p"; rm -f $p/.w; else echo "read-only: $p"; fi
done
echo "dev: $(ls /dev | busybox sort | busybox tr '\n' ' ')"
"#;

/// `/proc/mounts` as (mount point, fs type, ro|rw) lines, sorted.
const MOUNTS: &str =
    r#"busybox awk '{ split($4, o, ","); print $2, $3, o[1] }' /proc/mounts | busybox sort"#;

/// Known, harmless differences between the launchers' mount tables (everything else must be
/// equal):
/// - masked files: the built-in launcher binds the host's `/dev/null` (devtmpfs), runc the
///   container's (on its `/dev` tmpfs);
/// - cgroup v1: runc 1.1 leaves the `/sys/fs/cgroup` tmpfs read-write (the hierarchies in it
///   are read-only in both), and mounts only the hierarchies the host has mounted, so no
///   `unified` cgroup2 when the host has none there; the built-in launcher mounts it.
fn normalize_mounts(table: &str) -> String {
    table
        .lines()
        .filter(|l| !l.starts_with("/sys/fs/cgroup/unified "))
        .map(|l| {
            if l.starts_with("/proc/") {
                l.replace(" devtmpfs ", " tmpfs ")
            } else if l.starts_with("/sys/fs/cgroup tmpfs ") {
                "/sys/fs/cgroup tmpfs".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

/// Asserts both outputs are the same, showing the lines that differ.
fn assert_same(what: &str, builtin: &str, runc: &str) {
    let (a, b) = (lines(builtin), lines(runc));
    let only_builtin: Vec<_> = a.difference(&b).collect();
    let only_runc: Vec<_> = b.difference(&a).collect();
    assert!(
        only_builtin.is_empty() && only_runc.is_empty(),
        "{what}: built-in and runc differ\n only built-in: {only_builtin:#?}\n only runc: \
         {only_runc:#?}\n--- built-in ---\n{builtin}\n--- runc ---\n{runc}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn same_spec_same_view_through_both_handlers() {
    let env = env();
    let image = env.busybox();
    env.pull(&image).await;
    let (builtin, runc) = pods(&env).await;

    // Defaults, with env and a working directory that the image lacks.
    let mut c = builtin.sh("defaults", &image, PROBE);
    c.envs = vec![cri::KeyValue {
        key: "GREETING".into(),
        value: "hello world".into(),
    }];
    c.working_dir = "/work/dir".into();
    let (a, b) = run_both(&builtin, &runc, c).await;
    assert_same("defaults", &a.stdout, &b.stdout);
    assert_eq!(
        status_field(&a.stdout, "Seccomp"),
        Some("0"),
        "{}",
        a.stdout
    );
    assert!(
        a.stdout.contains("env: GREETING=hello world"),
        "{}",
        a.stdout
    );
    assert!(a.stdout.contains("cwd: /work/dir"), "{}", a.stdout);
    assert!(a.stdout.contains("hostname: ocipod ocipod"), "{}", a.stdout);
    assert!(a.stdout.contains("masked: /proc/kcore"), "{}", a.stdout);
    assert_eq!(a.stderr, b.stderr);

    // A locked-down process: another user, RuntimeDefault seccomp, no_new_privs, capabilities
    // changed, read-only rootfs.
    let c = with_security(builtin.sh("locked", &image, PROBE), |sc| {
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.run_as_group = Some(cri::Int64Value { value: 2000 });
        sc.supplemental_groups = vec![3000, 4000];
        sc.no_new_privs = true;
        sc.readonly_rootfs = true;
        sc.seccomp = Some(cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        });
        sc.capabilities = Some(cri::Capability {
            add_capabilities: vec!["SYS_TIME".into()],
            drop_capabilities: vec!["NET_RAW".into(), "CHOWN".into()],
            ..Default::default()
        });
    });
    let (a, b) = run_both(&builtin, &runc, c).await;
    assert_same("locked down", &a.stdout, &b.stdout);
    assert_eq!(
        status_field(&a.stdout, "Seccomp"),
        Some("2"),
        "{}",
        a.stdout
    );
    assert_eq!(
        status_field(&a.stdout, "NoNewPrivs"),
        Some("1"),
        "{}",
        a.stdout
    );
    assert!(a.stdout.contains("uid=1000 gid=2000"), "{}", a.stdout);
    assert!(a.stdout.contains("read-only: /"), "{}", a.stdout);

    // Privileged: every capability, no seccomp, no masked paths, all devices.
    let c = with_security(builtin.sh("privileged", &image, PROBE), |sc| {
        sc.privileged = true;
    });
    let (a, b) = run_both(&builtin, &runc, c).await;
    assert_same("privileged", &a.stdout, &b.stdout);

    // The mount table: the same mount points, file systems and ro/rw flags, for a plain and
    // a privileged container with a read-only bind mount.
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("data"), "x").unwrap();
    for privileged in [false, true] {
        let mut c = with_security(builtin.sh("mounts", &image, MOUNTS), |sc| {
            sc.privileged = privileged;
        });
        c.metadata.as_mut().unwrap().attempt = privileged as u32;
        c.log_path = format!("mounts-{privileged}.log");
        c.mounts = vec![cri::Mount {
            container_path: "/data".into(),
            host_path: volume.path().to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        }];
        let (a, b) = run_both(&builtin, &runc, c).await;
        assert_same(
            &format!("mounts (privileged: {privileged})"),
            &normalize_mounts(&a.stdout),
            &normalize_mounts(&b.stdout),
        );
        assert!(
            a.stdout
                .lines()
                .any(|l| l.starts_with("/data ") && l.ends_with(" ro")),
            "{}",
            a.stdout
        );
        let n = a.stdout.lines().count();
        assert!(n > 10, "{}", a.stdout);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_logs_exec_stop_and_remove_with_runc() {
    let env = env();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start_with_handler(&env.daemon, Default::default(), HANDLER).await;

    // Exit code and both streams in the CRI log.
    let ran = pod
        .run(pod.sh("exits", &image, "echo out; echo err >&2; exit 3"))
        .await;
    assert_eq!(ran.status.exit_code, 3, "{ran:#?}");
    assert_eq!(ran.status.reason, "Error");
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");
    let ok = pod.run(pod.sh("zero", &image, "exit 0")).await;
    assert_eq!(ok.status.exit_code, 0);
    assert_eq!(ok.status.reason, "Completed");
    // Exited: the monitor already deleted runc's state and unmounted the rootfs.
    for id in [&ran.id, &ok.id] {
        assert!(
            !runc_list(&env).contains(id.as_str()),
            "{}",
            runc_list(&env)
        );
        assert!(
            host_mounts_with(id).is_empty(),
            "{:?}",
            host_mounts_with(id)
        );
    }

    // A container that ignores SIGTERM: SIGKILL after the timeout.
    let id = pod
        .launch(pod.sh(
            "stubborn",
            &image,
            "trap '' TERM; echo up; while true; do sleep 1; done",
        ))
        .await;
    wait_for_log(&pod, "stubborn", "up").await;
    let (status, info) = pod.status_verbose(&id).await;
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
    assert!(!cgroup_dirs(&cgroup_path).is_empty());
    assert!(runc_list(&env).contains(&id), "{}", runc_list(&env));
    assert_eq!(
        host_mounts_with(&id).len(),
        1,
        "{:?}",
        host_mounts_with(&id)
    );

    // Exec works in a runc container (the exec helper joins its namespaces).
    let out = pod
        .rt
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo exec $(id -u); exit 4".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exec 0\n");
    assert_eq!(out.exit_code, 4);

    let started = Instant::now();
    pod.stop(&id, 2).await.expect("stop");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "stopped after {took:?}");
    assert!(took < Duration::from_secs(12), "stopped after {took:?}");
    let status = pod.status(&id).await;
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137, "{status:?}");

    // A container that exits on SIGTERM stops before the timeout.
    let polite = pod
        .launch(pod.sh(
            "polite",
            &image,
            "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done",
        ))
        .await;
    wait_for_log(&pod, "polite", "up").await;
    let started = Instant::now();
    pod.stop(&polite, 20).await.expect("stop");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(pod.status(&polite).await.exit_code, 0);

    pod.remove(&id).await.expect("remove");
    assert_removed(&env, &id, &cgroup_path);
    pod.remove(&polite).await.expect("remove");
    pod.remove(&id).await.expect("remove is idempotent");
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_cleans_up_after_a_dead_monitor() {
    let env = env();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start_with_handler(&env.daemon, Default::default(), HANDLER).await;
    let id = pod
        .launch(pod.sh("orphan", &image, "echo up; sleep 300"))
        .await;
    wait_for_log(&pod, "orphan", "up").await;
    let (_, info) = pod.status_verbose(&id).await;
    let pid = info["pid"].as_i64().unwrap() as i32;
    let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
    let monitor = ppid(pid).expect("the init's parent");
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(comm.contains("monitor"), "parent of the init: {comm:?}");
    // SAFETY: kill(2) on a pid we just looked up; no memory-safety implications.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z") {
            break;
        }
        assert!(Instant::now() < deadline, "monitor {monitor} does not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody cleaned up: the rootfs is still mounted on the host and runc still has the
    // container (the daemon may have killed its processes when it saw the monitor go).
    assert_eq!(
        host_mounts_with(&id).len(),
        1,
        "{:?}",
        host_mounts_with(&id)
    );
    assert!(runc_list(&env).contains(&id));

    pod.remove(&id).await.expect("remove");
    assert_removed(&env, &id, &cgroup_path);
}

#[tokio::test(flavor = "multi_thread")]
async fn handlers_are_validated_and_listed() {
    // A daemon of its own: the checks that nothing is left behind count everything.
    let env = Env::new(&format!(
        "[runtime.handlers.{HANDLER}]\nruntime_path = \"{RUNC}\"\n"
    ));
    let image = env.busybox();
    env.pull(&image).await;
    let mut rt = env.daemon.runtime().await;

    // Status lists the default handler and runc, with runc's real rro support.
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["", HANDLER], "{status:?}");
    let features = std::process::Command::new(RUNC)
        .arg("features")
        .output()
        .expect("runc features");
    let runc_rro = String::from_utf8_lossy(&features.stdout).contains("\"rro\"");
    let runc_features = status.runtime_handlers[1].features.unwrap();
    assert_eq!(runc_features.recursive_read_only_mounts, runc_rro);
    assert!(!runc_features.user_namespaces);

    // An unknown handler is refused, by name.
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "bad-handler".into(),
                    uid: "uid-bad-handler".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            runtime_handler: "kata".into(),
        })
        .await
        .expect_err("unknown handler");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("kata"), "{err:?}");

    // The pod keeps its handler.
    let pod = Pod::start_with_handler(&env.daemon, Default::default(), HANDLER).await;
    let ps = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(ps.runtime_handler, HANDLER);

    // No terminal with an OCI runtime: a clear error at create.
    let mut c = pod.sh("tty", &image, "true");
    c.tty = true;
    let err = pod.create(c).await.expect_err("tty");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("tty"), "{err:?}");

    // runc refuses a command that does not exist at create: its message.
    let err = pod
        .create(pod.container("missing", &image, &["/no/such/binary"]))
        .await
        .expect_err("missing executable");
    assert!(
        err.message().contains("/no/such/binary"),
        "{err:?}\n{}",
        tail(&env.daemon.log())
    );

    // Neither failure left a container, a directory, a mount, runc state or a cgroup.
    assert!(pod_containers(&pod).await.is_empty());
    let dirs: Vec<_> = std::fs::read_dir(env.daemon.dir().join("state/c"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(dirs.is_empty(), "{dirs:?}");
    let state = env
        .daemon
        .dir()
        .join("state")
        .to_string_lossy()
        .into_owned();
    let mounts: Vec<_> = host_mounts_with(&state)
        .into_iter()
        .filter(|l| l.contains("/rootfs "))
        .collect();
    assert!(mounts.is_empty(), "{mounts:?}");
    assert_eq!(runc_list(&env).trim(), "");
    let (_, pod_info) = pod_status_info(&pod).await;
    let parent = pod_info["cgroupParent"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let parent = if parent.is_empty() {
        format!("{}/{}", env.daemon.cgroup_parent, pod.id)
    } else {
        parent
    };
    for dir in cgroup_dirs(&parent) {
        let children: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect();
        assert!(children.is_empty(), "{children:?}");
    }
}

/// The pod's status and verbose info.
async fn pod_status_info(pod: &Pod) -> (cri::PodSandboxStatus, serde_json::Value) {
    let resp = pod
        .rt
        .clone()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = resp
        .info
        .get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    (resp.status.unwrap(), info)
}

/// Ids of the pod's containers.
async fn pod_containers(pod: &Pod) -> Vec<String> {
    pod.rt
        .clone()
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// No mount, no runc state, no cgroup, no state directory of container `id`.
fn assert_removed(env: &Env, id: &str, cgroup_path: &str) {
    assert!(
        host_mounts_with(id).is_empty(),
        "{:?}",
        host_mounts_with(id)
    );
    assert!(
        !runc_list(env).contains(id),
        "runc still lists {id}: {}",
        runc_list(env)
    );
    assert!(!runc_root(env).join(id).exists());
    assert!(
        cgroup_dirs(cgroup_path).is_empty(),
        "{:?}",
        cgroup_dirs(cgroup_path)
    );
    assert!(!env.daemon.dir().join("state/c").join(id).exists());
}

/// Waits (up to 10 s) until the container's log has the stdout line `line`.
async fn wait_for_log(pod: &Pod, name: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if pod
            .log(name)
            .iter()
            .any(|l| l.stream == "stdout" && l.content == line)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never logged {line:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}
