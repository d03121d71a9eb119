//! cgroup limits of containers through CRI, checked inside the container (its cgroup namespace
//! shows its own cgroup as the root) and on the host; the pod's `cgroup_parent`. Needs root.

mod support;

use std::path::Path;
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, cgroup_dirs, cgroup_file, with_resources};

#[tokio::test(flavor = "multi_thread")]
async fn cgroup_limits() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let script = if v2 {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max; sleep 30"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
         /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares; sleep 30"
    };
    let c = with_resources(
        pod.sh("limits", &image, script),
        cri::LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            cpu_shares: 512,
            ..Default::default()
        },
    );
    let id = pod.launch(c).await;
    let (_, info) = pod.status_verbose(&id).await;
    let cgroup_path = info["cgroupPath"].as_str().expect("cgroupPath").to_owned();
    let want_inside: &[&str] = if v2 {
        &["67108864", "50000 100000"]
    } else {
        &["67108864", "50000", "100000", "512"]
    };
    let mut out = String::new();
    for _ in 0..100 {
        out = support::cri::stream(&pod.log("limits"), "stdout");
        if out.lines().count() >= want_inside.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        want_inside,
        "inside: {out}"
    );

    // The same from the host, in the container's own cgroup.
    let read = |controller: &str, file: &str| {
        std::fs::read_to_string(cgroup_file(&cgroup_path, controller, file))
            .unwrap_or_else(|e| panic!("{cgroup_path} {file}: {e}"))
            .trim()
            .to_owned()
    };
    if v2 {
        assert_eq!(read("", "memory.max"), "67108864");
        assert_eq!(read("", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(read("cpu", "cpu.shares"), "512");
    }
    // The init is in it.
    let pid = info["pid"].as_i64().expect("pid");
    let procs = read("pids", "cgroup.procs");
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{pid} not in {procs}"
    );
    pod.stop(&id, 0).await.unwrap();
    pod.remove(&id).await.unwrap();
    assert!(
        cgroup_dirs(&cgroup_path).is_empty(),
        "cgroup {cgroup_path} left after RemoveContainer: {:?}",
        cgroup_dirs(&cgroup_path)
    );
}

/// CRI has no per-container pids limit: kubelet limits the pod's cgroup (`cgroup_parent`).
/// Containers must live below it, so the limit holds for them.
#[tokio::test(flavor = "multi_thread")]
async fn pod_cgroup_parent_pids_limit() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    // What kubelet does: the pod cgroup exists, with its limits, before RunPodSandbox.
    let parent = format!(
        "{}/{}",
        env.daemon.cgroup_parent,
        support::cri::unique("kubepod")
    );
    let pids_max = cgroup_file(&parent, "pids", "pids.max");
    std::fs::create_dir_all(pids_max.parent().unwrap()).unwrap();
    std::fs::write(&pids_max, "6").unwrap();
    let pod = Pod::start(
        &env.daemon,
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let c = pod.sh(
        "forks",
        &image,
        "i=0; while [ $i -lt 12 ]; do sleep 2 & i=$((i+1)); done; echo done",
    );
    let id = pod.launch(c).await;
    let (_, info) = pod.status_verbose(&id).await;
    let cgroup_path = info["cgroupPath"].as_str().unwrap().to_owned();
    assert!(
        cgroup_path.starts_with(&format!("{parent}/")),
        "{cgroup_path} not below {parent}"
    );
    let status = pod.wait_exited(&id, Duration::from_secs(20)).await;
    let log = pod.log("forks");
    let stderr = support::cri::stream(&log, "stderr");
    assert!(
        stderr.contains("can't fork"),
        "12 children under pids.max=6: {status:?} {log:?}"
    );
}
