//! End-to-end: a pod and a busybox container through CRI, with a real registry and daemon.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use strata::cri::v1 as cri;
use support::daemon::Daemon;
use support::fixtures::push_cri_test_images;
use support::registry::{Registry, RegistryOptions};

/// A registry with the test images, a daemon, and the busybox image pulled into it.
async fn daemon_with_busybox() -> (Registry, Daemon, String) {
    let registry = Registry::start(RegistryOptions::default());
    push_cri_test_images(&registry);
    let daemon = Daemon::start("");
    let image = format!("{}/e2e-test-images/busybox:1.29-2", registry.addr());
    daemon
        .images()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull");
    (registry, daemon, image)
}

fn pod_metadata(name: &str) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: name.into(),
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        attempt: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn busybox_container_runs_logs_and_exits() {
    let (_registry, daemon, image) = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let logs = tempfile::tempdir().unwrap();
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(pod_metadata("smoke")),
        hostname: "smokepod".into(),
        log_directory: logs.path().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    let created = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "c1".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello; cat /proc/sys/kernel/hostname; id; exit 3".into(),
                ],
                log_path: "c1.log".into(),
                labels: HashMap::from([("app".into(), "smoke".into())]),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config.clone()),
        })
        .await;
    let id = match created {
        Ok(r) => r.into_inner().container_id,
        Err(e) => panic!("create: {e:?}\n{}", daemon.log()),
    };
    if let Err(e) = rt
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        panic!("start: {e:?}\n{}", daemon.log());
    }
    let mut status = None;
    for _ in 0..100 {
        let s = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == cri::ContainerState::ContainerExited as i32 {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("container exits");
    assert_eq!(status.exit_code, 3, "{status:?}");
    assert_eq!(status.reason, "Error");
    let log = std::fs::read_to_string(logs.path().join("c1.log")).unwrap();
    println!("{log}");
    assert!(log.contains(" stdout F hello"), "{log}");
    assert!(log.contains(" stdout F smokepod"), "{log}");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_runs_in_the_container_and_times_out() {
    let (_registry, daemon, image) = daemon_with_busybox().await;
    let mut rt = daemon.runtime().await;
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(pod_metadata("exec")),
        hostname: "execpod".into(),
        ..Default::default()
    };
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "sleeper".into(),
                    attempt: 0,
                }),
                // Its own pid namespace, which the TARGET container below joins.
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            pid: cri::NamespaceMode::Container as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "300".into()],
                ..Default::default()
            }),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect("create")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("start");
    let out = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/sys/kernel/hostname; echo err >&2; exit 7".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "execpod\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 7);
    let started = std::time::Instant::now();
    let err = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["sleep".into(), "60".into()],
            timeout: 1,
        })
        .await
        .expect_err("timeout");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // ... and the process was killed at the timeout, not left running: no `sleep 60` in the
    // container's pid namespace (seen from the host; the listing does show its `sleep 300`).
    let info = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .expect("status")
        .into_inner()
        .info;
    let doc: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info");
    let init = doc["pid"].as_i64().expect("pid");
    assert!(commands_in_pid_ns_of(init).contains(&"sleep 300".to_owned()));
    // Gone when the call returns, not a moment later: critest runs `pgrep sleep` right after.
    let left = commands_in_pid_ns_of(init);
    assert!(
        !left.iter().any(|c| c == "sleep 60" || c == "zombie sleep"),
        "the timed-out exec is still there: {left:?}"
    );
    // pid mode TARGET: a second container shares the first one's pid namespace.
    let sharer = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "sharer".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "300".into()],
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(cri::NamespaceOption {
                            pid: cri::NamespaceMode::Target as i32,
                            target_id: id.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect("create with pid TARGET")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: sharer.clone(),
    })
    .await
    .expect("start sharer");
    let out = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: sharer.clone(),
            cmd: vec!["cat".into(), "/proc/1/cmdline".into()],
            timeout: 10,
        })
        .await
        .expect("exec in sharer")
        .into_inner();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sleep\u{0}300\u{0}",
        "pid 1 is the target's"
    );
    // UpdateContainerResources reaches the live cgroup.
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 * 1024 * 1024,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update resources");
    let info = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let cgroup = info["cgroupPath"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let limit = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes"
    ))
    .unwrap();
    assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());
    let shares =
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{cgroup}/cpu.shares")).unwrap();
    assert_eq!(shares.trim(), "512");
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("stop");
    // Reopening the log of a stopped container is refused.
    let err = rt
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .expect_err("reopen on an exited container");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove pod");
}

/// The command lines (arguments joined by spaces) of the processes in the pid namespace of
/// host pid `pid`.
fn commands_in_pid_ns_of(pid: i64) -> Vec<String> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let theirs = ns(&pid.to_string());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || ns(&name) != theirs {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(format!("/proc/{name}/cmdline")) {
            let args: Vec<_> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(String::from_utf8_lossy)
                .collect();
            if args.is_empty() {
                // A zombie has no command line; `pgrep` (critest's check) still finds it by
                // its name.
                if let Ok(comm) = std::fs::read_to_string(format!("/proc/{name}/comm")) {
                    found.push(format!("zombie {}", comm.trim_end()));
                }
            } else {
                found.push(args.join(" "));
            }
        }
    }
    found
}
