//! `ContainerStatus` and `PodSandboxStatus` carry every field kubelet reads, and termination
//! messages: read from the container when kubelet cannot read them itself, left to kubelet when
//! the termination path is a mount of its own, never read through a symlink out of the
//! container. Needs root.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, labels, with_resources, with_security};

const TERMINATION_PATH: &str = "io.kubernetes.container.terminationMessagePath";
const MIB: i64 = 1024 * 1024;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn container_status_has_every_field_kubelet_reads() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("pod-label", "p")]),
            annotations: labels(&[("pod-annotation", "q")]),
            ..Default::default()
        },
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let mut c = pod.sh(
        "fields",
        &image,
        "sleep 1; printf 'all done' > /tmp/term; exit 0",
    );
    c.image.as_mut().unwrap().user_specified_image = "busybox-as-typed".into();
    c.labels = labels(&[("l", "1")]);
    c.annotations = labels(&[("a", "2"), (TERMINATION_PATH, "/tmp/term")]);
    c.mounts = vec![cri::Mount {
        container_path: "/out".into(),
        host_path: out.path().to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let c = with_resources(
        c,
        cri::LinuxContainerResources {
            cpu_shares: 256,
            memory_limit_in_bytes: 64 * MIB,
            ..Default::default()
        },
    );
    let c = with_security(c, |sc| {
        sc.run_as_user = Some(cri::Int64Value { value: 1234 });
        sc.run_as_group = Some(cri::Int64Value { value: 5678 });
        sc.supplemental_groups = vec![4242];
    });
    let before = now();
    let id = pod.launch(c.clone()).await;
    pod.rt
        .clone()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(cri::LinuxContainerResources {
                cpu_shares: 512,
                memory_limit_in_bytes: 128 * MIB,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("update resources");
    let (running, info) = pod.status_verbose(&id).await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32);
    assert!(info["pid"].as_i64().unwrap() > 0, "{info}");
    assert_eq!(info["sandboxID"], pod.id.as_str());
    assert_eq!(info["config"]["metadata"]["name"], "fields", "{info}");
    assert_eq!(
        info["runtimeSpec"]["process"]["user"]["uid"], 1234,
        "{info}"
    );

    let s = pod.wait_exited(&id, Duration::from_secs(30)).await;
    assert_eq!(s.id, id);
    assert_eq!(s.metadata, c.metadata);
    assert!(s.created_at >= before, "{s:?}");
    assert!(
        s.started_at >= s.created_at && s.finished_at > s.started_at,
        "{s:?}"
    );
    assert!(s.finished_at <= now());
    assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"));
    assert_eq!(
        s.message, "all done",
        "termination message from the container"
    );
    let spec = s.image.as_ref().unwrap();
    assert_eq!(spec.image, image);
    assert_eq!(spec.user_specified_image, "busybox-as-typed");
    assert!(s.image_ref.contains("@sha256:"), "{}", s.image_ref);
    assert!(s.image_id.starts_with("sha256:"), "{}", s.image_id);
    assert_eq!(
        s.log_path,
        pod.logs.path().join("fields.log").to_string_lossy()
    );
    assert_eq!(s.labels, c.labels);
    assert_eq!(s.annotations, c.annotations);
    assert_eq!(s.mounts, c.mounts);
    let resources = s.resources.as_ref().unwrap().linux.as_ref().unwrap();
    assert_eq!(
        (resources.cpu_shares, resources.memory_limit_in_bytes),
        (512, 128 * MIB),
        "the resources in force"
    );
    let user = s.user.as_ref().unwrap().linux.as_ref().unwrap();
    assert_eq!((user.uid, user.gid), (1234, 5678));
    assert!(user.supplemental_groups.contains(&4242), "{user:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_message_kubelet_reads_itself_is_not_repeated() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    std::fs::write(&log, "").unwrap();
    let mut c = pod.sh(
        "mounted",
        &image,
        "printf 'from mount' > /dev/termination-log; exit 1",
    );
    c.annotations = labels(&[(TERMINATION_PATH, "/dev/termination-log")]);
    c.mounts = vec![cri::Mount {
        container_path: "/dev/termination-log".into(),
        host_path: log.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let ran = pod.run(c).await;
    assert_eq!(
        (ran.status.exit_code, ran.status.reason.as_str()),
        (1, "Error")
    );
    // kubelet appends what it reads from the mount to `message`: it must not be there twice.
    assert_eq!(ran.status.message, "", "{:?}", ran.status);
    let (_, info) = pod.status_verbose(&ran.id).await;
    assert_eq!(info["terminationMessage"], "from mount", "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn termination_message_never_follows_a_symlink_out_of_the_container() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let script = format!(
        "ln -s {} /tmp/evil; ln -s ../../../../../../{} /tmp/evil2; exit 2",
        secret.path().display(),
        secret.path().display()
    );
    for path in ["/tmp/evil", "/tmp/evil2"] {
        let name = format!("symlink{}", path.len());
        let mut c = pod.sh(&name, &image, &script);
        c.annotations = labels(&[(TERMINATION_PATH, path)]);
        let ran = pod.run(c).await;
        assert_eq!(ran.status.exit_code, 2);
        assert!(!ran.status.message.contains("secret"), "{:?}", ran.status);
        let (_, info) = pod.status_verbose(&ran.id).await;
        assert!(info["terminationMessage"].is_null(), "{info}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_sandbox_status_has_every_field_kubelet_reads() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let before = now();
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("pod-label", "p")]),
            annotations: labels(&[("pod-annotation", "q")]),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Pod as i32,
                        ipc: cri::NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let id = pod.launch(pod.sh("inside", &image, "sleep 1000")).await;
    let status = || {
        let mut rt = pod.rt.clone();
        let pod_sandbox_id = pod.id[..12].to_owned();
        async move {
            rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id,
                verbose: true,
            })
            .await
            .expect("status")
            .into_inner()
        }
    };
    // A kubelet with the evented PLEG holds an event stream open; it then reads the
    // containers' statuses from PodSandboxStatus.
    let events = pod
        .rt
        .clone()
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let resp = status().await;
    let s = resp.status.as_ref().unwrap();
    assert_eq!(s.id, pod.id);
    assert_eq!(s.metadata, pod.config.metadata);
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert!(s.created_at >= before && s.created_at <= now(), "{s:?}");
    assert!(s.network.is_some());
    let options = s
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .unwrap();
    assert_eq!(
        (options.network, options.pid, options.ipc),
        (
            cri::NamespaceMode::Pod as i32,
            cri::NamespaceMode::Pod as i32,
            cri::NamespaceMode::Node as i32
        )
    );
    assert_eq!(s.labels, pod.config.labels);
    assert_eq!(s.annotations, pod.config.annotations);
    assert_eq!(s.runtime_handler, "");
    // What kubelet's evented PLEG reads instead of one ContainerStatus call per container.
    assert!(resp.timestamp >= s.created_at);
    let ids: Vec<&str> = resp
        .containers_statuses
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(
        resp.containers_statuses[0].state,
        cri::ContainerState::ContainerRunning as i32
    );
    // Without one, kubelet asks each container's status itself.
    drop(events);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = status().await;
        if resp.timestamp == 0 {
            assert!(resp.containers_statuses.is_empty());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still subscribed?");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    assert!(info["pid"].as_i64().unwrap() > 0, "{info}");
    assert_eq!(
        info["config"]["metadata"]["name"],
        pod.config.metadata.as_ref().unwrap().name.as_str(),
        "{info}"
    );
}
