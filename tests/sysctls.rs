//! Pod sysctls: namespaced ones are applied in the pod's namespaces (visible in `/proc/sys`
//! inside, unchanged on the host); global ones, and namespaced ones the pod shares with the host,
//! are refused with InvalidArgument by RunPodSandbox and CreateContainer, leaving nothing
//! behind. Needs root.

mod support;

use std::collections::HashMap;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, unique};

fn pod_config(sysctls: &[(&str, &str)], namespaces: cri::NamespaceOption) -> cri::PodSandboxConfig {
    let name = unique("sysctl-pod");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            uid: format!("uid-{name}-{}", std::process::id()),
            name,
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn host(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaced_sysctls_are_applied_inside_only() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let port_start = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let rmid = "/proc/sys/kernel/shm_rmid_forced";
    let (host_port_start, host_rmid) = (host(port_start), host(rmid));
    let want_port = if host_port_start == "1000" {
        "999"
    } else {
        "1000"
    };
    let want_rmid = if host_rmid == "1" { "0" } else { "1" };
    let config = pod_config(
        &[
            ("net.ipv4.ip_unprivileged_port_start", want_port),
            // The slash form, as a pod spec may have it.
            ("kernel/shm_rmid_forced", want_rmid),
        ],
        pod_namespaces(),
    );
    let pod = Pod::start(&env.daemon, config).await;
    let ran = pod
        .run_ok(pod.sh("show", &image, &format!("cat {port_start} {rmid}")))
        .await;
    assert_eq!(ran.stdout, format!("{want_port}\n{want_rmid}\n"));
    assert_eq!(host(port_start), host_port_start, "the host's is untouched");
    assert_eq!(host(rmid), host_rmid, "the host's is untouched");
}

async fn pods_named(env: &Env, name: &str) -> usize {
    env.daemon
        .runtime()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .iter()
        .filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == name))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_pod_sandbox_refuses_global_and_host_namespace_sysctls() {
    let env = Env::shared();
    let host_network = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        ..pod_namespaces()
    };
    let host_ipc = cri::NamespaceOption {
        ipc: cri::NamespaceMode::Node as i32,
        ..pod_namespaces()
    };
    let cases = [
        ("kernel.panic", pod_namespaces()),
        ("vm.swappiness", pod_namespaces()),
        ("kernel.hostname", pod_namespaces()),
        ("net.ipv4.ip_forward", host_network.clone()),
        ("kernel.domainname", host_network),
        ("kernel.shmmax", host_ipc.clone()),
        ("fs.mqueue.msg_max", host_ipc),
    ];
    let panic_before = host("/proc/sys/kernel/panic");
    let mut rt = env.daemon.runtime().await;
    for (sysctl, namespaces) in cases {
        let config = pod_config(&[(sysctl, "1")], namespaces);
        let name = config.metadata.as_ref().unwrap().name.clone();
        let err = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(sysctl);
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{sysctl}: {err:?}"
        );
        assert!(err.message().contains(sysctl), "{sysctl}: {err:?}");
        assert_eq!(pods_named(&env, &name).await, 0, "{sysctl}: a pod was left");
    }
    assert_eq!(host("/proc/sys/kernel/panic"), panic_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_container_refuses_a_global_sysctl_and_leaves_nothing() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, pod_config(&[], pod_namespaces())).await;
    // The pod config CreateContainer gets names a sysctl the pod was never allowed.
    let mut sandbox_config = pod.config.clone();
    sandbox_config.linux.as_mut().unwrap().sysctls =
        HashMap::from([("kernel.panic".to_owned(), "1".to_owned())]);
    let err = pod
        .rt
        .clone()
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(pod.sh("c", &image, "true")),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .expect_err("kernel.panic");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let left = pod
        .rt
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
        .containers;
    assert!(left.is_empty(), "{left:?}");
    let ran = pod.run_ok(pod.sh("c", &image, "echo ok")).await;
    assert_eq!(ran.stdout, "ok\n", "the name was released");
}
