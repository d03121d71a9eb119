//! StopContainer and RemoveContainer through CRI with busybox containers: processes start with
//! default signal actions (also when the daemon ignores SIGHUP), the stop signal (the
//! CRI's, the image's STOPSIGNAL, SIGTERM), SIGKILL after the timeout, every process of the
//! container ended (own and shared pid namespaces), idempotent removal. Needs root.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, cgroup_dirs, with_security};
use support::fixtures::busybox_image;

const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

/// Waits until the container's stdout log has a line `ready` (its traps are set).
async fn wait_ready(pod: &Pod, name: &str) {
    for _ in 0..200 {
        if support::cri::stream(&pod.log(name), "stdout")
            .lines()
            .any(|l| l == "ready")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{name} never printed ready: {:?}", pod.log(name));
}

/// `SigIgn` and `SigBlk` of the shell, printed by a script.
const SIGNAL_STATE: &str = "grep -E '^Sig(Ign|Blk)' /proc/$$/status";

fn assert_default_signal_state(text: &str, who: &str) {
    let field = |key| {
        let value = support::cri::status_field(text, key)
            .unwrap_or_else(|| panic!("{who}: no {key} in {text:?}"));
        u64::from_str_radix(value, 16).unwrap_or_else(|e| panic!("{who}: {key}: {e}"))
    };
    assert_eq!(field("SigBlk"), 0, "{who}: {text}");
    // Like bash, ash ignores SIGQUIT itself; nothing else may be ignored.
    let sigquit = 1u64 << (libc::SIGQUIT - 1);
    assert_eq!(field("SigIgn") & !sigquit, 0, "{who}: {text}");
}

/// The test daemon runs with SIGHUP ignored (as under `nohup`); neither a container nor an exec
/// may inherit that, nor any blocked signal: the stop signal must reach the shell's trap.
#[tokio::test(flavor = "multi_thread")]
async fn container_and_exec_processes_start_with_default_signal_actions() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let id = pod
        .launch(pod.sh(
            "sigstate",
            &image,
            &format!("{SIGNAL_STATE}; echo ready; while true; do sleep 0.1; done"),
        ))
        .await;
    wait_ready(&pod, "sigstate").await;
    assert_default_signal_state(
        &support::cri::stream(&pod.log("sigstate"), "stdout"),
        "container",
    );
    let ran = env
        .daemon
        .runtime()
        .await
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), SIGNAL_STATE.into()],
            timeout: 10,
        })
        .await
        .expect("exec_sync")
        .into_inner();
    assert_eq!(ran.exit_code, 0, "{ran:?}");
    assert_default_signal_state(&String::from_utf8_lossy(&ran.stdout), "exec");
    pod.stop(&id, 0).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_uses_the_stop_signal_then_sigkill() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let stopsig_image = env.image("strata-test/stopsignal:1");
    busybox_image([])
        .config_field("StopSignal", serde_json::json!("SIGUSR2"))
        .push(&env.registry, "strata-test/stopsignal:1")
        .await;
    env.pull(&stopsig_image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let looping = |traps: &str| format!("{traps}; echo ready; while true; do sleep 0.1; done");

    // The default signal is SIGTERM; the container handles it and exits 0 at once.
    let graceful = pod
        .launch(pod.sh("graceful", &image, &looping("trap 'exit 0' TERM")))
        .await;
    // SIGTERM ignored: killed after the timeout (128 + SIGKILL).
    let stubborn = pod
        .launch(pod.sh("stubborn", &image, &looping("trap '' TERM")))
        .await;
    // The CRI stop_signal wins over SIGTERM.
    let mut c = pod.sh(
        "cri-signal",
        &image,
        &looping("trap 'exit 7' USR1; trap 'exit 9' TERM"),
    );
    c.stop_signal = cri::Signal::Sigusr1 as i32;
    let cri_signal = pod.launch(c).await;
    // The image's STOPSIGNAL is used when the CRI names none...
    let image_signal = pod
        .launch(pod.sh(
            "image-signal",
            &stopsig_image,
            &looping("trap 'exit 8' USR2; trap 'exit 9' TERM"),
        ))
        .await;
    // ...and the CRI's wins over the image's.
    let mut c = pod.sh(
        "both-signals",
        &stopsig_image,
        &looping("trap 'exit 10' HUP; trap 'exit 8' USR2; trap 'exit 9' TERM"),
    );
    c.stop_signal = cri::Signal::Sighup as i32;
    let both = pod.launch(c).await;
    for name in [
        "graceful",
        "stubborn",
        "cri-signal",
        "image-signal",
        "both-signals",
    ] {
        wait_ready(&pod, name).await;
    }

    let t = Instant::now();
    pod.stop(&graceful, 10).await.expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let s = pod.status(&graceful).await;
    assert_eq!(
        (s.state, s.exit_code, s.reason.as_str()),
        (EXITED, 0, "Completed"),
        "{s:?}"
    );

    for (name, id, code) in [
        ("cri-signal", &cri_signal, 7),
        ("image-signal", &image_signal, 8),
        ("both-signals", &both, 10),
    ] {
        let t = Instant::now();
        pod.stop(id, 10).await.expect("stop");
        let took = t.elapsed();
        let s = pod.status(id).await;
        assert!(
            took < Duration::from_secs(3),
            "{name} took {took:?}: {s:?}\nlog: {:?}",
            pod.log(name)
        );
        assert_eq!((s.state, s.exit_code), (EXITED, code), "{name}: {s:?}");
    }

    let t = Instant::now();
    pod.stop(&stubborn, 2).await.expect("stop");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    let s = pod.status(&stubborn).await;
    assert_eq!(
        (s.state, s.exit_code, s.reason.as_str()),
        (EXITED, 137, "Error"),
        "{s:?}"
    );
    // Stopping an exited container is a no-op.
    pod.stop(&stubborn, 2).await.expect("stop again");
    assert_eq!(pod.status(&stubborn).await.finished_at, s.finished_at);
}

/// The host pids of every process in the container's cgroup.
fn cgroup_pids(cgroup_path: &str) -> BTreeSet<i32> {
    cgroup_dirs(cgroup_path)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `pid: cmdline (NSpid ...)` for messages.
fn describe(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let nspid = support::cri::status_field(&status, "NSpid").unwrap_or_default();
    format!("{pid}: {} (NSpid {nspid})", cmdline.trim())
}

fn alive(pid: i32) -> bool {
    // A zombie has not "ended" for our purpose either, but it holds no resources; count only
    // processes that still run.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_every_process_of_the_container() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    // Two pods: one where each container has its own pid namespace (the init's exit takes the
    // rest along), one sharing the pod's (nothing but the runtime kills the others). CRI's
    // default pid mode (0) is POD; kubelet always names one.
    let pid_mode = |mode: cri::NamespaceMode| cri::NamespaceOption {
        pid: mode as i32,
        ..Default::default()
    };
    let pod_config = |mode| cri::PodSandboxConfig {
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(pid_mode(mode)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let private = Pod::start(&env.daemon, pod_config(cri::NamespaceMode::Container)).await;
    let shared = Pod::start(&env.daemon, pod_config(cri::NamespaceMode::Pod)).await;
    let script = "(trap '' TERM; while true; do sleep 0.1; done) & \
                  sleep 1000 & \
                  trap 'exit 0' TERM; echo pid=$$; echo ready; \
                  while true; do sleep 0.1; done";
    let mut failures = Vec::new();
    for (pod, mode, what) in [
        (&private, cri::NamespaceMode::Container, "own pid namespace"),
        (&shared, cri::NamespaceMode::Pod, "pod pid namespace"),
    ] {
        let c = with_security(pod.sh("family", &image, script), |sc| {
            sc.namespace_options = Some(pid_mode(mode));
        });
        let id = pod.launch(c).await;
        wait_ready(pod, "family").await;
        let out = support::cri::stream(&pod.log("family"), "stdout");
        assert_eq!(
            out.lines().any(|l| l == "pid=1"),
            mode == cri::NamespaceMode::Container,
            "{what}: the init is PID 1 exactly in its own pid namespace: {out}"
        );
        let (_, info) = pod.status_verbose(&id).await;
        let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
        // sh, the subshell, sleep 1000 and the loops' sleeps.
        let mut pids = cgroup_pids(&cgroup_path);
        for _ in 0..40 {
            if pids.len() >= 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            pids = cgroup_pids(&cgroup_path);
        }
        assert!(pids.len() >= 4, "{what}: {pids:?}");
        pod.stop(&id, 5).await.expect("stop");
        let s = pod.status(&id).await;
        if (s.state, s.exit_code) != (EXITED, 0) {
            failures.push(format!("{what}: {s:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let left: Vec<String> = pids
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .map(describe)
            .collect();
        if !left.is_empty() {
            failures.push(format!(
                "{what}: processes still alive after StopContainer: {left:?} (cgroup now {:?})",
                cgroup_pids(&cgroup_path)
            ));
        }
        let in_cgroup = cgroup_pids(&cgroup_path);
        if !in_cgroup.is_empty() {
            failures.push(format!("{what}: cgroup still has {in_cgroup:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_is_idempotent() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let id = pod.launch(pod.sh("doomed", &image, "sleep 1000")).await;
    let (_, info) = pod.status_verbose(&id).await;
    let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
    let pid = info["pid"].as_i64().unwrap() as i32;
    // A running container is stopped by its removal.
    pod.remove(&id).await.expect("remove running");
    assert!(!alive(pid), "init {pid} still alive");
    assert!(cgroup_dirs(&cgroup_path).is_empty(), "cgroup left");
    pod.remove(&id).await.expect("remove again");
    pod.remove(&"f".repeat(64)).await.expect("remove unknown");
    // Stopping is idempotent too, for a removed and for a never-known container or pod (CRI,
    // and critest's Idempotence specs).
    pod.stop(&id, 0).await.expect("stop removed");
    pod.stop(&"f".repeat(64), 0).await.expect("stop unknown");
    pod.rt
        .clone()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: "e".repeat(64),
        })
        .await
        .expect("stop unknown pod");
    let err = pod
        .rt
        .clone()
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of a removed container");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    // A created (never started) container can be removed too.
    let id = pod.create(pod.sh("never", &image, "true")).await.unwrap();
    pod.remove(&id).await.expect("remove created");
    assert!(!env.daemon.root().join("containers").join(&id).exists());
}
