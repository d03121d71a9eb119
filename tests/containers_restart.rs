//! The daemon is SIGKILLed while 20 containers run, and started again: the containers keep
//! running (their monitors outlive the daemon), the ones that exited meanwhile report their exit
//! code and time, all stop normally, and their CRI logs have no gap and no duplicated line.
//! Needs root.

mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata::cri::v1 as cri;
use support::cri::{Env, LogLine, Pod, cgroup_dirs, eventually, stream};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn nanos(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {rfc3339:?}: {e}"))
        .timestamp_nanos_opt()
        .unwrap()
}

const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;

/// Checks that a looper's log is `line 0`, `line 1`, ... without a gap or a repeat, with
/// timestamps in order; returns the last number and the timestamps.
fn check_sequence(name: &str, log: &[LogLine]) -> Result<(u64, Vec<i64>), String> {
    let mut next = 0u64;
    let mut stamps = Vec::new();
    for l in log {
        if l.stream != "stdout" || l.tag != "F" {
            return Err(format!("{name}: unexpected record {l:?}"));
        }
        let n: u64 = l
            .content
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{name}: unexpected line {l:?}"))?;
        if n != next {
            return Err(format!("{name}: line {n} where {next} was due"));
        }
        next += 1;
        let t = nanos(&l.timestamp);
        if stamps.last().is_some_and(|last| *last > t) {
            return Err(format!("{name}: timestamps go back at line {n}"));
        }
        stamps.push(t);
    }
    Ok((next, stamps))
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_survive_a_daemon_kill() {
    let mut env = Env::new("");
    let image = env.busybox();
    env.pull(&image).await;
    let mut pods = Vec::new();
    for _ in 0..4 {
        pods.push(Pod::start(&env.daemon, Default::default()).await);
    }
    let looper = "trap 'exit 0' TERM; i=0; \
                  while true; do echo line $i; i=$((i+1)); sleep 0.1; done";
    // (pod index, name) -> id; 16 loopers, then 4 that exit by themselves with 21..24.
    let mut loopers = Vec::new();
    for (p, pod) in pods.iter().enumerate() {
        for n in 0..4 {
            let name = format!("loop-{p}-{n}");
            let id = pod.launch(pod.sh(&name, &image, looper)).await;
            loopers.push((p, name, id));
        }
    }
    let mut exiters = Vec::new();
    for (p, pod) in pods.iter().enumerate() {
        let code = 21 + p as i32;
        let name = format!("exit-{code}");
        let id = pod
            .launch(pod.sh(&name, &image, &format!("sleep 2; exit {code}")))
            .await;
        exiters.push((p, id, code));
    }
    // And one created but not started.
    let created = pods[0]
        .create(pods[0].sh("created", &image, "echo started-later"))
        .await
        .unwrap();
    assert_eq!(loopers.len() + exiters.len(), 20);

    let killed_at = now();
    env.daemon.kill();
    // Long enough for the exiters to finish and the loopers to log ~40 lines unobserved.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted_at = now();
    env.daemon.restart();
    let back_at = now();
    for pod in &mut pods {
        pod.rt = env.daemon.runtime().await;
    }

    let mut failures = Vec::new();
    let pod = |p: usize| &pods[p];
    for (p, name, id) in &loopers {
        let s = pod(*p).status(id).await;
        if s.state != RUNNING {
            failures.push(format!("{name}: not running after the restart: {s:?}"));
        }
    }
    for (p, id, code) in &exiters {
        let s = pod(*p).status(id).await;
        if s.state != EXITED || s.exit_code != *code || s.reason != "Error" {
            failures.push(format!("exit-{code}: {s:?}"));
        }
        if s.finished_at < killed_at || s.finished_at > restarted_at {
            failures.push(format!(
                "exit-{code}: finished_at {} not while the daemon was down ({killed_at}..{restarted_at})",
                s.finished_at
            ));
        }
        if s.started_at <= 0 || s.started_at > killed_at {
            failures.push(format!("exit-{code}: started_at {}", s.started_at));
        }
    }
    let s = pods[0].status(&created).await;
    if s.state != CREATED {
        failures.push(format!("created: {s:?}"));
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}",
        support::cri::tail(&env.daemon.log())
    );

    // Business as usual: the created one starts, the loopers stop on SIGTERM with 0.
    pods[0]
        .start_container(&created)
        .await
        .expect("start after restart");
    let s = pods[0].wait_exited(&created, Duration::from_secs(20)).await;
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert_eq!(stream(&pods[0].log("created"), "stdout"), "started-later\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop_started = std::time::Instant::now();
    let stops = loopers.iter().map(|(p, _, id)| pod(*p).stop(id, 10));
    for r in futures::future::join_all(stops).await {
        r.expect("StopContainer after the restart");
    }
    assert!(
        stop_started.elapsed() < Duration::from_secs(8),
        "stopping took {:?}",
        stop_started.elapsed()
    );
    let mut lines_while_down = HashMap::new();
    for (p, name, id) in &loopers {
        let s = pod(*p).status(id).await;
        if (s.state, s.exit_code, s.reason.as_str()) != (EXITED, 0, "Completed") {
            failures.push(format!("{name}: after stop {s:?}"));
        }
        if s.finished_at < back_at {
            failures.push(format!(
                "{name}: finished_at {} before the restart",
                s.finished_at
            ));
        }
        match check_sequence(name, &pod(*p).log(name)) {
            Ok((count, stamps)) => {
                let down = stamps
                    .iter()
                    .filter(|t| **t >= killed_at && **t <= restarted_at)
                    .count();
                lines_while_down.insert(name.clone(), down);
                // ~10 lines a second for well over 5 s.
                if count < 40 || down < 20 {
                    failures.push(format!(
                        "{name}: only {count} lines, {down} of them while the daemon was down"
                    ));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    println!("lines logged while the daemon was down: {lines_while_down:?}");
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}",
        support::cri::tail(&env.daemon.log())
    );
}

/// Processes whose command line mentions `needle`.
fn processes_naming(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_the_daemon_did_not_record_is_discarded_on_restart() {
    let mut env = Env::new("");
    let image = env.busybox();
    env.pull(&image).await;
    let pod = Pod::start(&env.daemon, Default::default()).await;
    let config = pod.sh("unrecorded", &image, "sleep 3600");
    let id = pod.create(config.clone()).await.unwrap();
    let state = env.daemon.dir().join("state/c").join(&id);
    let data = env.daemon.root().join("containers").join(&id);
    let monitor_config = state.join("monitor.json").display().to_string();
    assert!(state.is_dir() && data.is_dir());
    assert!(!processes_naming(&monitor_config).is_empty(), "no monitor");
    // Under the pod's cgroup, itself under the daemon's parent (the pod config names none).
    let cgroup_path = format!("{}/{}/{id}", env.daemon.cgroup_parent, pod.id);
    assert!(!cgroup_dirs(&cgroup_path).is_empty());

    // As if the daemon had died after launching the monitor, before writing the record.
    env.daemon.kill();
    {
        let store = strata::store::Store::open(&env.daemon.root().join("meta.db")).unwrap();
        store.write(|t| t.delete_container(&id)).unwrap();
    }
    env.daemon.restart();

    let log = env.daemon.log();
    assert!(
        !state.exists() && !data.exists(),
        "files left\n{}",
        support::cri::tail(&log)
    );
    assert!(
        log.contains("discarded a container"),
        "{}",
        support::cri::tail(&log)
    );
    let cgroups = cgroup_dirs(&cgroup_path);
    assert!(cgroups.is_empty(), "{cgroups:?}");
    assert!(
        eventually(Duration::from_secs(10), || processes_naming(
            &monitor_config
        )
        .is_empty())
        .await,
        "monitor still runs"
    );
    // kubelet creates the container again, under the same name, and it runs.
    let again = pod.launch(config).await;
    assert_eq!(pod.status(&again).await.state, RUNNING);
}
