//! Container and pod stats, metrics and pod-level resource updates through CRI, on the host's
//! real cgroups. Needs root (and `ip`/`nsenter` for the network counters).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, cgroup_file, labels};
use tonic::Code;

const MB: u64 = 1 << 20;

async fn container_stats(pod: &Pod, id: &str) -> cri::ContainerStats {
    pod.rt
        .clone()
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats {id}: {e:?}"))
        .into_inner()
        .stats
        .expect("stats")
}

async fn pod_stats(pod: &Pod) -> cri::PodSandboxStats {
    pod.rt
        .clone()
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStats: {e:?}"))
        .into_inner()
        .stats
        .expect("stats")
}

fn v(x: &Option<cri::UInt64Value>) -> u64 {
    x.as_ref().expect("value").value
}

fn working_set(s: &cri::ContainerStats) -> u64 {
    v(&s.memory.as_ref().expect("memory").working_set_bytes)
}

fn cpu_ns(s: &cri::ContainerStats) -> u64 {
    v(&s.cpu.as_ref().expect("cpu").usage_core_nano_seconds)
}

/// Polls ContainerStats until `ok` holds; panics with the last stats after `timeout`.
async fn wait_stats(
    pod: &Pod,
    id: &str,
    timeout: Duration,
    ok: impl Fn(&cri::ContainerStats) -> bool,
) -> cri::ContainerStats {
    let deadline = Instant::now() + timeout;
    loop {
        let s = container_stats(pod, id).await;
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "condition not met: {s:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_cpu_layer_and_pod_aggregate() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let idle = pod.launch(pod.sh("idle", &image, "sleep 600")).await;
    // 48 MiB in the pod's /dev/shm (tmpfs: charged to the writer, never inactive file).
    let hog = pod
        .launch(pod.sh(
            "hog",
            &image,
            "dd if=/dev/zero of=/dev/shm/x bs=1M count=48 2>/dev/null; sleep 600",
        ))
        .await;
    let busy = pod
        .launch(pod.sh("busy", &image, "while :; do :; done"))
        .await;

    let hog_stats = wait_stats(&pod, &hog, Duration::from_secs(20), |s| {
        working_set(s) >= 48 * MB
    })
    .await;
    let idle_stats = container_stats(&pod, &idle).await;
    let (hog_ws, idle_ws) = (working_set(&hog_stats), working_set(&idle_stats));
    assert!(
        hog_ws > idle_ws + 40 * MB,
        "working set: hog {hog_ws}, idle {idle_ws}"
    );
    let hog_mem = hog_stats.memory.as_ref().unwrap();
    assert!(v(&hog_mem.usage_bytes) >= hog_ws);
    assert!(hog_mem.timestamp > 0);
    // Page faults happened (the shell and dd ran); no limit, so nothing available to compute.
    assert!(v(&hog_mem.page_faults) > 0);
    assert!(hog_mem.available_bytes.is_none());
    let attrs = hog_stats.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, hog);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "hog");

    // CPU: the busy loop's cumulative usage grows, and the second sample gives a rate.
    let first = container_stats(&pod, &busy).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = container_stats(&pod, &busy).await;
    let idle_second = container_stats(&pod, &idle).await;
    let (c1, c2) = (cpu_ns(&first), cpu_ns(&second));
    assert!(c2 > c1 + 100_000_000, "busy loop cpu {c1} -> {c2}");
    let rate = v(&second.cpu.as_ref().unwrap().usage_nano_cores);
    assert!(rate > 100_000_000, "busy loop at {rate} nano-cores");
    assert!(cpu_ns(&idle_second) < c2 / 4, "idle {idle_second:?}");

    // The writable layer grows by what is written into the rootfs.
    let before = container_stats(&pod, &idle).await;
    let layer = before.writable_layer.as_ref().expect("writable layer");
    let (b0, i0) = (v(&layer.used_bytes), v(&layer.inodes_used));
    assert_eq!(
        layer.fs_id.as_ref().unwrap().mountpoint,
        env.daemon.root().join("containers").to_string_lossy()
    );
    let out = pod
        .rt
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: idle.clone(),
            cmd: ["sh", "-c", "dd if=/dev/urandom of=/big bs=1M count=8 2>&1"]
                .map(String::from)
                .to_vec(),
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
    // Walks are cached for a short while.
    let after = wait_stats(&pod, &idle, Duration::from_secs(10), |s| {
        s.writable_layer
            .as_ref()
            .is_some_and(|l| v(&l.used_bytes) >= b0 + 8 * MB)
    })
    .await;
    let layer = after.writable_layer.unwrap();
    assert!(v(&layer.inodes_used) > i0, "{i0} -> {layer:?}");

    // The pod: its cgroup holds every container.
    let ps = pod_stats(&pod).await;
    let linux = ps.linux.as_ref().unwrap();
    assert_eq!(ps.attributes.as_ref().unwrap().id, pod.id);
    let mut names: Vec<_> = linux
        .containers
        .iter()
        .map(|c| {
            c.attributes
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .name
                .clone()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["busy", "hog", "idle"]);
    let pod_ws = v(&linux.memory.as_ref().unwrap().working_set_bytes);
    assert!(pod_ws >= 48 * MB, "pod working set {pod_ws}");
    let pod_cpu = v(&linux.cpu.as_ref().unwrap().usage_core_nano_seconds);
    assert!(pod_cpu >= c2, "pod cpu {pod_cpu} < busy container's {c2}");
    // 3 shells (sleep/dd are exec'd by sh in place or children): at least one per container.
    let procs = v(&linux.process.as_ref().unwrap().process_count);
    assert!(procs >= 3, "process count {procs}");
    // A pod with its own network namespace reports it (no interface but loopback here unless
    // a CNI network is configured; loopback is left out).
    let net = linux.network.as_ref().expect("network");
    assert!(net.timestamp > 0);
    assert!(
        net.default_interface
            .iter()
            .chain(&net.interfaces)
            .all(|i| i.name != "lo"),
        "{net:?}"
    );

    // PSI: on v2 and on the hybrid layout's v2 hierarchy when the kernel has it.
    let psi_expected = [
        "/sys/fs/cgroup/cpu.pressure",
        "/sys/fs/cgroup/unified/cpu.pressure",
    ]
    .iter()
    .any(|f| Path::new(f).exists());
    let busy_cpu = second.cpu.as_ref().unwrap();
    assert_eq!(busy_cpu.psi.is_some(), psi_expected, "{busy_cpu:?}");
    if psi_expected {
        assert!(second.io.is_some());
        assert!(linux.memory.as_ref().unwrap().psi.is_some());
    }
}

/// Deletes a veth pair (its host end) on drop.
struct Veth(String);

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

async fn pod_init_pid(pod: &Pod) -> i64 {
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
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    info["pid"].as_i64().expect("pid")
}

/// An interface the test moves into the pod's network namespace (a veth whose other end stays
/// on the host) carries traffic to the pod's address: its counters show up in the pod's stats
/// and metrics. A hostNetwork pod has no network stats of its own.
#[tokio::test(flavor = "multi_thread")]
async fn pod_network_counters_and_metrics() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("stats", "net")]),
            ..Default::default()
        },
    )
    .await;
    let c = pod
        .launch(pod.sh("app", &image, "echo started > /tmp/x; sleep 600"))
        .await;
    let pid = pod_init_pid(&pod).await.to_string();
    let host_end = format!("stv{}", std::process::id() % 1_000_000);
    run(Command::new("ip").args([
        "link", "add", &host_end, "type", "veth", "peer", "name", "stpod0", "netns", &pid,
    ]));
    let _veth = Veth(host_end.clone());
    // A /30 from the benchmark range (198.18.0.0/15), only on this pair.
    let n = std::process::id() % 16000;
    let net = format!("198.18.{}.{}", n / 64, (n % 64) * 4);
    let base: Vec<u32> = net.split('.').map(|p| p.parse().unwrap()).collect();
    let host_ip = format!("198.18.{}.{}", base[2], base[3] + 1);
    let pod_ip = format!("198.18.{}.{}", base[2], base[3] + 2);
    run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_end]));
    run(Command::new("ip").args(["link", "set", &host_end, "up"]));
    let in_pod = |args: &[&str]| {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid, "-n", "ip"]).args(args);
        run(&mut cmd);
    };
    in_pod(&["addr", "add", &format!("{pod_ip}/30"), "dev", "stpod0"]);
    in_pod(&["link", "set", "stpod0", "up"]);

    let iface_stats = |s: &cri::PodSandboxStats| -> Option<(u64, u64)> {
        let net = s.linux.as_ref()?.network.as_ref()?;
        net.default_interface
            .iter()
            .chain(&net.interfaces)
            .find(|i| i.name == "stpod0")
            .map(|i| (v(&i.rx_bytes), v(&i.tx_bytes)))
    };
    let (rx0, _) = iface_stats(&pod_stats(&pod).await).expect("stpod0 in the pod's stats");
    // UDP datagrams to the pod's address: received by the pod's end (and answered with ICMP
    // port unreachable, which it transmits).
    let sock = std::net::UdpSocket::bind(format!("{host_ip}:0")).unwrap();
    for _ in 0..20 {
        let _ = sock.send_to(&[7u8; 1000], format!("{pod_ip}:9"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rx, tx) = iface_stats(&pod_stats(&pod).await).unwrap();
        if rx >= rx0 + 20_000 && tx > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "rx {rx0} -> {rx}, tx {tx}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Metrics: descriptors, then this pod's values.
    let descriptors = pod
        .rt
        .clone()
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let keys = |name: &str| -> Vec<String> {
        descriptors
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no descriptor {name}"))
            .label_keys
            .clone()
    };
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_spec_memory_limit_bytes",
        "container_processes",
        "container_fs_usage_bytes",
    ] {
        assert_eq!(keys(name)[..3], ["id", "name", "image"], "{name}");
    }
    assert_eq!(
        keys("container_network_receive_bytes_total"),
        ["id", "name", "image", "interface"]
    );
    let all = pod
        .rt
        .clone()
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let mine = all
        .iter()
        .find(|m| m.pod_sandbox_id == pod.id)
        .expect("this pod's metrics");
    for m in mine
        .metrics
        .iter()
        .chain(mine.container_metrics.iter().flat_map(|c| &c.metrics))
    {
        assert_eq!(m.label_values.len(), keys(&m.name).len(), "{m:?}");
    }
    // critest's check: every advertised metric is present for the pod.
    for d in &descriptors {
        assert!(
            mine.metrics
                .iter()
                .chain(mine.container_metrics.iter().flat_map(|c| &c.metrics))
                .any(|m| m.name == d.name),
            "{} advertised but not emitted",
            d.name
        );
    }
    let rx = mine
        .metrics
        .iter()
        .find(|m| {
            m.name == "container_network_receive_bytes_total" && m.label_values[3] == "stpod0"
        })
        .expect("rx metric for stpod0");
    assert_eq!(rx.label_values[..3], [pod.id.as_str(), "POD", ""]);
    assert!(rx.value.as_ref().unwrap().value >= rx0 + 20_000);
    let cm = mine
        .container_metrics
        .iter()
        .find(|m| m.container_id == c)
        .expect("container metrics");
    let metric = |name: &str| {
        cm.metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {cm:?}"))
    };
    let ws = metric("container_memory_working_set_bytes");
    assert_eq!(ws.label_values, [c.as_str(), "app", &image]);
    assert!(ws.value.as_ref().unwrap().value > 0);
    assert_eq!(ws.timestamp, 0, "gathered live");
    assert!(metric("container_processes").value.as_ref().unwrap().value >= 1);
    assert_eq!(
        metric("container_spec_memory_limit_bytes")
            .value
            .as_ref()
            .unwrap()
            .value,
        0
    );
    assert_eq!(
        metric("container_cpu_usage_seconds_total").label_values[3],
        "total"
    );
    let fs = metric("container_fs_usage_bytes");
    assert!(
        fs.value.as_ref().unwrap().value > 0 && fs.timestamp > 0,
        "{fs:?}"
    );
    // The layer's filesystem, labelled with the same device as its usage.
    let inodes = metric("container_fs_inodes_total");
    assert!(inodes.value.as_ref().unwrap().value > 0, "{inodes:?}");
    assert_eq!(inodes.label_values[3], fs.label_values[3]);
    assert!(
        metric("container_fs_limit_bytes")
            .value
            .as_ref()
            .unwrap()
            .value
            > 0
    );
    // sleep holds at least its standard descriptors.
    assert!(
        metric("container_file_descriptors")
            .value
            .as_ref()
            .unwrap()
            .value
            >= 1
    );
    let started = metric("container_start_time_seconds")
        .value
        .as_ref()
        .unwrap()
        .value;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started > 0 && started <= now, "{started}");

    // hostNetwork: no network stats of the pod's own.
    let host = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
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
    let hs = pod_stats(&host).await;
    assert!(hs.linux.unwrap().network.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_errors() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let tag = support::cri::unique("flt");
    let pod_a = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("flt", &tag), ("side", "a")]),
            ..Default::default()
        },
    )
    .await;
    let pod_b = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            labels: labels(&[("flt", &tag), ("side", "b")]),
            ..Default::default()
        },
    )
    .await;
    let with_labels = |mut c: cri::ContainerConfig, side: &str| {
        c.labels = labels(&[("flt", &tag), ("side", side)]);
        c
    };
    let a1 = pod_a
        .launch(with_labels(pod_a.sh("a1", &image, "sleep 600"), "a"))
        .await;
    let a2 = pod_a
        .launch(with_labels(pod_a.sh("a2", &image, "sleep 600"), "x"))
        .await;
    let b1 = pod_b
        .launch(with_labels(pod_b.sh("b1", &image, "sleep 600"), "b"))
        .await;
    let done = pod_a
        .run(with_labels(pod_a.sh("done", &image, "true"), "a"))
        .await
        .id;
    let mut rt = pod_a.rt.clone();
    let rt0 = pod_a.rt.clone();

    let list = |filter: cri::ContainerStatsFilter| {
        let mut rt = rt0.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_container_stats(cri::ListContainerStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mine = labels(&[("flt", &tag)]);
    // Running containers only: the exited one is left out.
    assert_eq!(
        list(cri::ContainerStatsFilter {
            label_selector: mine.clone(),
            ..Default::default()
        })
        .await,
        sorted(vec![a1.clone(), a2.clone(), b1.clone()])
    );
    assert!(!list(Default::default()).await.contains(&done));
    assert_eq!(
        list(cri::ContainerStatsFilter {
            id: a1[..12].into(),
            ..Default::default()
        })
        .await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(cri::ContainerStatsFilter {
            pod_sandbox_id: pod_a.id[..12].into(),
            ..Default::default()
        })
        .await,
        sorted(vec![a1.clone(), a2.clone()])
    );
    assert_eq!(
        list(cri::ContainerStatsFilter {
            pod_sandbox_id: pod_a.id.clone(),
            label_selector: labels(&[("flt", &tag), ("side", "x")]),
            ..Default::default()
        })
        .await,
        vec![a2.clone()]
    );
    assert!(
        list(cri::ContainerStatsFilter {
            id: b1.clone(),
            pod_sandbox_id: pod_a.id.clone(),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    let list_pods = |filter: cri::PodSandboxStatsFilter| {
        let mut rt = rt0.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        list_pods(cri::PodSandboxStatsFilter {
            label_selector: mine.clone(),
            ..Default::default()
        })
        .await,
        sorted(vec![pod_a.id.clone(), pod_b.id.clone()])
    );
    assert_eq!(
        list_pods(cri::PodSandboxStatsFilter {
            id: pod_b.id[..12].into(),
            ..Default::default()
        })
        .await,
        vec![pod_b.id.clone()]
    );
    assert_eq!(
        list_pods(cri::PodSandboxStatsFilter {
            label_selector: labels(&[("flt", &tag), ("side", "a")]),
            ..Default::default()
        })
        .await,
        vec![pod_a.id.clone()]
    );
    // The listed pod carries its running containers.
    let stats = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                id: pod_a.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(stats[0].linux.as_ref().unwrap().containers.len(), 2);

    // ContainerStats by unique prefix; of an exited container: no cgroup counters.
    let s = container_stats(&pod_a, &a1[..10]).await;
    assert_eq!(s.attributes.unwrap().id, a1);
    let s = container_stats(&pod_a, &done).await;
    assert!(s.cpu.is_none() && s.memory.is_none() && s.writable_layer.is_some());

    // Errors.
    let e = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: "0123456789abcdef-nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: "0123456789abcdef-nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // A stopped pod: no stats, and left out of the list.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_b.id.clone(),
    })
    .await
    .unwrap();
    let e = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod_b.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        list_pods(cri::PodSandboxStatsFilter {
            label_selector: mine,
            ..Default::default()
        })
        .await,
        vec![pod_a.id.clone()]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_pod_sandbox_resources_sets_the_pod_cgroup() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let read = |cg: &str, controller: &str, file: &str| {
        std::fs::read_to_string(cgroup_file(cg, controller, file))
            .unwrap_or_else(|e| panic!("{cg} {file}: {e}"))
            .trim()
            .to_owned()
    };
    let update = |pod: &Pod, resources: Option<cri::LinuxContainerResources>| {
        let mut rt = pod.rt.clone();
        let id = pod.id.clone();
        async move {
            rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
                pod_sandbox_id: id,
                overhead: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 32 << 20,
                    cpu_quota: 10_000,
                    cpu_period: 100_000,
                    cpu_shares: 100,
                    ..Default::default()
                }),
                resources,
            })
            .await
        }
    };
    let resources = cri::LinuxContainerResources {
        memory_limit_in_bytes: 256 << 20,
        cpu_quota: 150_000,
        cpu_period: 100_000,
        cpu_shares: 1024,
        ..Default::default()
    };

    // A pod with a running container (the pod cgroup exists), and one without (it is made).
    let pod = Pod::start(&env.daemon, Default::default()).await;
    pod.launch(pod.sh("app", &image, "sleep 600")).await;
    let empty = Pod::start(&env.daemon, Default::default()).await;
    for p in [&pod, &empty] {
        update(p, Some(resources.clone())).await.unwrap();
        let cg = format!("{}/{}", env.daemon.cgroup_parent, p.id);
        if v2 {
            assert_eq!(read(&cg, "", "memory.max"), (288u64 << 20).to_string());
            assert_eq!(read(&cg, "", "cpu.max"), "160000 100000");
        } else {
            assert_eq!(
                read(&cg, "memory", "memory.limit_in_bytes"),
                (288u64 << 20).to_string()
            );
            assert_eq!(read(&cg, "cpu", "cpu.cfs_quota_us"), "160000");
            assert_eq!(read(&cg, "cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(read(&cg, "cpu", "cpu.shares"), "1124");
        }
    }
    // An overhead alone changes no limit (it is not one by itself).
    update(&pod, None).await.unwrap();
    let cg = format!("{}/{}", env.daemon.cgroup_parent, pod.id);
    let mem_file = if v2 {
        ("", "memory.max")
    } else {
        ("memory", "memory.limit_in_bytes")
    };
    assert_eq!(
        read(&cg, mem_file.0, mem_file.1),
        (288u64 << 20).to_string()
    );

    // Errors: unknown pod, negative values, nothing to update.
    let mut rt = pod.rt.clone();
    let e = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "0123456789abcdef-nope".into(),
            resources: Some(resources.clone()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.id.clone(),
            resources: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: -1,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}
