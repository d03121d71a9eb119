//! `bench containers` and `bench containers-cleanup`.
//!
//! With the image present and one pod running on each endpoint: `runs` cycles of
//! CreateContainer+StartContainer, then StopContainer(timeout 0)+RemoveContainer of a
//! container running `sleep 3600` (endpoints interleaved, after one untimed warm-up cycle
//! each), reported as p50/p90. Then the memory of each runtime's daemon and of its per-pod
//! and per-container helper processes with growing numbers of running pods (one container
//! each), from `/proc/PID/smaps_rollup`.
//!
//! Pods use the host network (`NamespaceMode::Node`), so no runtime needs CNI. Each pod gets
//! an explicit cgroup parent, `<--cgroup-parent>/<runtime>/pod<N>`, as kubelet gives each
//! pod its own, so that the caller can clean up every cgroup the run made.
//!
//! Which processes are whose is found through the CRI and `/proc` only, the same way for any
//! runtime: the daemon is the process that listens on the endpoint's socket (`SO_PEERCRED`);
//! the verbose `PodSandboxStatus`/`ContainerStatus` info documents carry the `pid` of the
//! pod's sandbox process (strata's `pod-init`, containerd's `pause`) and of the container's
//! init; the container init's parent is its per-container helper (strata's `monitor`,
//! containerd's `containerd-shim-runc-v2`), and the sandbox process's parent counts too when
//! it is the same program (containerd's shim serves the whole pod).
//!
//! Every pod the bench made is stopped and removed at the end, also after a failure; pods
//! carry the label `strata-bench=containers`, and `bench containers-cleanup` removes every
//! pod with it (for a run that was interrupted).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageStatusRequest, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxFilter,
    PodSandboxMetadata, PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest,
};
use tonic::Code;

use super::Target;
use crate::client::{Cri, socket_path};
use crate::specs::image_spec;

/// The label on every pod this bench makes.
const LABEL_KEY: &str = "strata-bench";
const LABEL_VALUE: &str = "containers";

#[derive(Args, Debug)]
pub struct ContainersArgs {
    /// The container image (pulled first, untimed, where absent).
    #[arg(long)]
    image: String,
    /// Numbers of running pods (one container each) at which memory is read; the largest is
    /// how many pods are made.
    #[arg(long, value_delimiter = ',', default_value = "1,10,20")]
    pods: Vec<usize>,
    /// The container's command.
    #[arg(long, num_args = 1.., default_values = ["sleep", "3600"])]
    command: Vec<String>,
    /// cgroup parent below which each runtime's pods get `<runtime>/pod<N>`.
    #[arg(long, default_value = "/strata-bench")]
    cgroup_parent: String,
    /// Pods' log directories go below this directory (`<runtime>/pod<N>`); without it the
    /// pods have none and containers have no log file.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Time to let processes settle before memory is read.
    #[arg(long, default_value = "1000")]
    settle_ms: u64,
}

/// A pod the bench made, with its long-running containers.
struct Pod {
    id: String,
    config: PodSandboxConfig,
    containers: Vec<String>,
}

/// Per endpoint: what it is running and what was measured.
struct Run<'a> {
    target: &'a Target,
    daemon_pid: Option<i32>,
    pods: Vec<Pod>,
    create: Vec<Duration>,
    start: Vec<Duration>,
    stop: Vec<Duration>,
    remove: Vec<Duration>,
    run_pod: Vec<Duration>,
    teardown_pod: Vec<Duration>,
}

impl<'a> Run<'a> {
    fn new(target: &'a Target) -> Self {
        Self {
            target,
            daemon_pid: None,
            pods: Vec::new(),
            create: Vec::new(),
            start: Vec::new(),
            stop: Vec::new(),
            remove: Vec::new(),
            run_pod: Vec::new(),
            teardown_pod: Vec::new(),
        }
    }
}

pub async fn containers(
    targets: &[Target],
    args: &ContainersArgs,
    runs: usize,
) -> anyhow::Result<()> {
    if args.pods.is_empty() || args.pods.contains(&0) {
        bail!("--pods wants positive numbers");
    }
    if runs == 0 {
        bail!("--runs wants a positive number");
    }
    let mut state: Vec<Run> = targets.iter().map(Run::new).collect();
    let result = measure(&mut state, args, runs).await;
    // Every pod goes, whatever happened; teardown errors come after the bench's own.
    let mut teardown_errors = Vec::new();
    for r in &mut state {
        for pod in std::mem::take(&mut r.pods) {
            let start = Instant::now();
            match remove_pod(&r.target.cri, &pod.id).await {
                Ok(()) => r.teardown_pod.push(start.elapsed()),
                Err(e) => teardown_errors.push(format!("{e:#}")),
            }
        }
    }
    result?;
    if !teardown_errors.is_empty() {
        bail!("removing pods: {}", teardown_errors.join("; "));
    }
    for r in &state {
        let run_pod = match r.run_pod.len() {
            0 => "-".to_owned(),
            n => format!(
                "{} ({n} pods after the first)",
                ms(percentile(&r.run_pod, 50))
            ),
        };
        println!(
            "pods {}: RunPodSandbox p50 {run_pod}, StopPodSandbox+RemovePodSandbox p50 {} ({} pods)",
            r.target.label,
            ms(percentile(&r.teardown_pod, 50)),
            r.teardown_pod.len(),
        );
    }
    Ok(())
}

/// Removes every pod labelled `strata-bench=containers` (or `=streaming`) on each endpoint.
pub async fn containers_cleanup(targets: &[Target]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for t in targets {
        let mut pods = Vec::new();
        // `bench exec-stream` / `bench portforward` label theirs `strata-bench=streaming`.
        for value in [LABEL_VALUE, "streaming"] {
            pods.extend(
                t.cri
                    .runtime
                    .clone()
                    .list_pod_sandbox(ListPodSandboxRequest {
                        filter: Some(PodSandboxFilter {
                            label_selector: HashMap::from([(LABEL_KEY.into(), value.into())]),
                            ..Default::default()
                        }),
                    })
                    .await
                    .with_context(|| format!("{}: ListPodSandbox", t.cri.endpoint))?
                    .into_inner()
                    .items,
            );
        }
        for pod in &pods {
            if let Err(e) = remove_pod(&t.cri, &pod.id).await {
                errors.push(format!("{e:#}"));
            }
        }
        eprintln!("{}: removed {} bench pods", t.label, pods.len());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

async fn measure(state: &mut [Run<'_>], args: &ContainersArgs, runs: usize) -> anyhow::Result<()> {
    for r in state.iter_mut() {
        ensure_image(&r.target.cri, &args.image).await?;
        r.daemon_pid = daemon_pid(&r.target.cri.endpoint).await;
        match r.daemon_pid {
            Some(pid) => eprintln!("{}: daemon pid {pid}", r.target.label),
            None => eprintln!(
                "{}: cannot tell the daemon's pid from its socket: no daemon memory",
                r.target.label
            ),
        }
    }
    for r in state.iter() {
        if let Some(pid) = r.daemon_pid {
            let m = read_mem(pid).with_context(|| format!("{}: daemon", r.target.label))?;
            println!("memory {} pods=0: daemon {m}", r.target.label);
        }
    }

    // The pod the timed containers run in (its RunPodSandbox may pull a sandbox image: not
    // counted in the RunPodSandbox figures).
    for r in state.iter_mut() {
        let pod = run_pod(&r.target.cri, args, &r.target.label, 1).await?;
        r.pods.push(pod);
    }

    eprintln!(
        "bench containers: 1 warm-up + {runs} create+start / stop+remove cycles per runtime{}",
        if state.len() > 1 { ", interleaved" } else { "" }
    );
    for run in 0..=runs {
        for r in state.iter_mut() {
            let pod = &r.pods[0];
            let name = format!("c{run}");
            let [create, start, stop, remove] = cycle(&r.target.cri, pod, args, &name).await?;
            if run == 0 {
                continue; // warm-up
            }
            r.create.push(create);
            r.start.push(start);
            r.stop.push(stop);
            r.remove.push(remove);
        }
        if run > 0 && (run % 10 == 0 || run == runs) {
            let progress: Vec<String> = state
                .iter()
                .map(|r| {
                    let cs = sums(&r.create, &r.start);
                    format!(
                        "{} create+start p50 {}",
                        r.target.label,
                        ms(percentile(&cs, 50))
                    )
                })
                .collect();
            eprintln!("  {run}/{runs}: {}", progress.join(", "));
        }
    }
    let mut p50s = Vec::new();
    for r in state.iter() {
        let cs = sums(&r.create, &r.start);
        let sr = sums(&r.stop, &r.remove);
        println!(
            "containers {}: create+start p50 {} p90 {} (create p50 {}, start p50 {}, max {}; {runs} runs)",
            r.target.label,
            ms(percentile(&cs, 50)),
            ms(percentile(&cs, 90)),
            ms(percentile(&r.create, 50)),
            ms(percentile(&r.start, 50)),
            ms(percentile(&cs, 100)),
        );
        println!(
            "containers {}: stop+remove p50 {} p90 {} (stop p50 {}, remove p50 {}, max {}; {runs} runs)",
            r.target.label,
            ms(percentile(&sr, 50)),
            ms(percentile(&sr, 90)),
            ms(percentile(&r.stop, 50)),
            ms(percentile(&r.remove, 50)),
            ms(percentile(&sr, 100)),
        );
        p50s.push(percentile(&cs, 50));
    }
    if let [a, b] = p50s[..] {
        println!(
            "ratio {}/{} create+start p50: {:.3}",
            state[0].target.label,
            state[1].target.label,
            a.as_secs_f64() / b.as_secs_f64().max(1e-9)
        );
    }

    // The first pod gets its long-running container; then pods are added up to each count.
    for r in state.iter_mut() {
        let id = create_and_start(&r.target.cri, &r.pods[0], args, "sleeper")
            .await?
            .0;
        r.pods[0].containers.push(id);
    }
    let mut counts = args.pods.clone();
    counts.sort_unstable();
    counts.dedup();
    for &count in &counts {
        for n in 2..=count {
            for r in state.iter_mut() {
                if r.pods.len() >= n {
                    continue;
                }
                let start = Instant::now();
                let mut pod = run_pod(&r.target.cri, args, &r.target.label, n).await?;
                r.run_pod.push(start.elapsed());
                let id = create_and_start(&r.target.cri, &pod, args, "sleeper")
                    .await?
                    .0;
                pod.containers.push(id);
                r.pods.push(pod);
            }
        }
        tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
        for r in state.iter() {
            report_memory(r, count).await?;
        }
    }
    Ok(())
}

/// Pulls `image` (untimed) unless the endpoint has it.
pub(super) async fn ensure_image(cri: &Cri, image: &str) -> anyhow::Result<()> {
    let present = cri
        .images
        .clone()
        .image_status(ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        })
        .await
        .with_context(|| format!("{}: ImageStatus {image}", cri.endpoint))?
        .into_inner()
        .image
        .is_some();
    if !present {
        cri.images
            .clone()
            .pull_image(PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await
            .with_context(|| format!("{}: PullImage {image}", cri.endpoint))?;
    }
    Ok(())
}

/// The pid of the process listening on the endpoint's socket.
async fn daemon_pid(endpoint: &str) -> Option<i32> {
    let path = socket_path(endpoint).ok()?;
    let stream = tokio::net::UnixStream::connect(path).await.ok()?;
    stream.peer_cred().ok()?.pid().filter(|p| *p > 0)
}

/// Host-network namespaces, the pod's IPC namespace, a pid namespace per container (what
/// kubelet asks for a `hostNetwork: true` pod).
fn namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A runtime label as one cgroup / directory name component.
pub(super) fn path_component(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "runtime".into() } else { s }
}

async fn run_pod(cri: &Cri, args: &ContainersArgs, label: &str, n: usize) -> anyhow::Result<Pod> {
    let runtime = path_component(label);
    let log_directory = match &args.log_dir {
        Some(dir) => {
            let d = dir.join(&runtime).join(format!("pod{n}"));
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            d.to_string_lossy().into_owned()
        }
        None => String::new(),
    };
    let nonce = std::process::id();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-pod{n}"),
            uid: format!("bench-{nonce}-pod{n}"),
            namespace: "strata-bench".into(),
            attempt: 0,
        }),
        log_directory,
        labels: HashMap::from([(LABEL_KEY.into(), LABEL_VALUE.into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!(
                "{}/{runtime}/pod{n}",
                args.cgroup_parent.trim_end_matches('/')
            ),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri
        .runtime
        .clone()
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| format!("{}: RunPodSandbox pod{n}", cri.endpoint))?
        .into_inner()
        .pod_sandbox_id;
    Ok(Pod {
        id,
        config,
        containers: Vec::new(),
    })
}

/// CreateContainer + StartContainer, each timed; then (untimed) checks that the container is
/// running. Returns the id and the two times.
async fn create_and_start(
    cri: &Cri,
    pod: &Pod,
    args: &ContainersArgs,
    name: &str,
) -> anyhow::Result<(String, Duration, Duration)> {
    let mut rt = cri.runtime.clone();
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(&args.image)),
        command: args.command.clone(),
        log_path: if pod.config.log_directory.is_empty() {
            String::new()
        } else {
            format!("{name}.log")
        },
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t0 = Instant::now();
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .with_context(|| format!("{}: CreateContainer {name}", cri.endpoint))?
        .into_inner()
        .container_id;
    let t1 = Instant::now();
    let started = rt
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    let t2 = Instant::now();
    if let Err(s) = started {
        let _ = remove_container(cri, &id).await;
        bail!("{}: StartContainer {name} ({id}): {s}", cri.endpoint);
    }
    let status = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .with_context(|| format!("{}: ContainerStatus {name} ({id})", cri.endpoint))?
        .into_inner()
        .status
        .with_context(|| format!("{}: ContainerStatus {name} ({id}): no status", cri.endpoint))?;
    if status.state != ContainerState::ContainerRunning as i32 {
        let _ = remove_container(cri, &id).await;
        bail!(
            "{}: container {name} ({id}) is not running after StartContainer: state {}, exit code {}, reason {:?}, message {:?}",
            cri.endpoint,
            status.state,
            status.exit_code,
            status.reason,
            status.message
        );
    }
    Ok((id, t1 - t0, t2 - t1))
}

/// StopContainer(timeout 0) + RemoveContainer.
async fn remove_container(cri: &Cri, id: &str) -> anyhow::Result<(Duration, Duration)> {
    let mut rt = cri.runtime.clone();
    let t0 = Instant::now();
    rt.stop_container(StopContainerRequest {
        container_id: id.into(),
        timeout: 0,
    })
    .await
    .with_context(|| format!("{}: StopContainer {id}", cri.endpoint))?;
    let t1 = Instant::now();
    rt.remove_container(RemoveContainerRequest {
        container_id: id.into(),
    })
    .await
    .with_context(|| format!("{}: RemoveContainer {id}", cri.endpoint))?;
    Ok((t1 - t0, t1.elapsed()))
}

/// One timed cycle: [create, start, stop, remove].
async fn cycle(
    cri: &Cri,
    pod: &Pod,
    args: &ContainersArgs,
    name: &str,
) -> anyhow::Result<[Duration; 4]> {
    let (id, create, start) = create_and_start(cri, pod, args, name).await?;
    let (stop, remove) = remove_container(cri, &id).await?;
    Ok([create, start, stop, remove])
}

/// StopPodSandbox + RemovePodSandbox (a pod already gone is fine).
pub(super) async fn remove_pod(cri: &Cri, id: &str) -> anyhow::Result<()> {
    let mut rt = cri.runtime.clone();
    match rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound => return Ok(()),
        Err(s) => bail!("{}: StopPodSandbox {id}: {s}", cri.endpoint),
    }
    match rt
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => bail!("{}: RemovePodSandbox {id}: {s}", cri.endpoint),
    }
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// A process's memory from `/proc/PID/smaps_rollup`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mem {
    rss: u64,
    pss: u64,
    /// Private_Clean + Private_Dirty: what the process alone costs.
    uss: u64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem {
            rss: self.rss + o.rss,
            pss: self.pss + o.pss,
            uss: self.uss + o.uss,
        }
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rss {} pss {} uss {}",
            mb(self.rss),
            mb(self.pss),
            mb(self.uss)
        )
    }
}

/// Megabytes (10^6 bytes), two decimals.
fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn parse_smaps_rollup(text: &str) -> Mem {
    let mut m = Mem::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(kb)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
        else {
            continue;
        };
        let bytes = kb * 1024;
        match key {
            "Rss:" => m.rss = bytes,
            "Pss:" => m.pss = bytes,
            "Private_Clean:" | "Private_Dirty:" => m.uss += bytes,
            _ => {}
        }
    }
    m
}

fn read_mem(pid: i32) -> anyhow::Result<Mem> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_smaps_rollup(&text))
}

/// The parent pid from the text of `/proc/PID/stat` (the command name, in parentheses, may
/// hold spaces and parentheses: fields resume after the last `)`).
fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn ppid(pid: i32) -> anyhow::Result<i32> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_ppid(&stat).with_context(|| format!("{path}: no ppid in {stat:?}"))
}

/// What a helper is, from its command line: the program's file name, and its first argument
/// when that is a subcommand (`strata monitor`, `strata pod-init`).
fn kind_of(cmdline: &[u8]) -> String {
    let mut args = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let prog = args.next().unwrap_or_default();
    let prog = Path::new(&prog)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(prog);
    match args.next() {
        Some(sub) if !sub.is_empty() && !sub.starts_with('-') && !sub.contains('/') => {
            format!("{prog} {sub}")
        }
        _ => prog,
    }
}

fn kind(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| kind_of(&c))
        .unwrap_or_else(|_| format!("pid {pid}"))
}

fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The top-level integer `key` of a JSON document: strata's and containerd's verbose infos
/// both carry the process id there, while their nested configs have other `pid` keys.
fn json_int(doc: &str, key: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(doc)
        .ok()?
        .get(key)?
        .as_i64()
}

fn pid_from_info(info: &HashMap<String, String>, what: &str) -> anyhow::Result<i32> {
    let doc = info
        .get("info")
        .with_context(|| format!("{what}: the verbose status has no info document"))?;
    match json_int(doc, "pid") {
        Some(pid) if pid > 0 => Ok(pid as i32),
        _ => bail!("{what}: no pid in the verbose info {doc}"),
    }
}

/// The helper processes of one pod: (pid, kind).
async fn pod_helpers(r: &Run<'_>, pod: &Pod) -> anyhow::Result<Vec<(i32, String)>> {
    let mut rt = r.target.cri.runtime.clone();
    let endpoint = &r.target.cri.endpoint;
    let info = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: true,
        })
        .await
        .with_context(|| format!("{endpoint}: PodSandboxStatus {}", pod.id))?
        .into_inner()
        .info;
    let sandbox = pid_from_info(&info, &format!("{endpoint}: pod {}", pod.id))?;
    let mut pids = Vec::new();
    let mut helper_exes = Vec::new();
    for c in &pod.containers {
        let info = rt
            .container_status(ContainerStatusRequest {
                container_id: c.clone(),
                verbose: true,
            })
            .await
            .with_context(|| format!("{endpoint}: ContainerStatus {c}"))?
            .into_inner()
            .info;
        let init = pid_from_info(&info, &format!("{endpoint}: container {c}"))?;
        let parent = ppid(init)?;
        if parent > 1 && Some(parent) != r.daemon_pid && parent != sandbox {
            pids.push(parent);
            helper_exes.push(exe(parent));
        }
    }
    pids.push(sandbox);
    let sandbox_parent = ppid(sandbox)?;
    if sandbox_parent > 1
        && Some(sandbox_parent) != r.daemon_pid
        && helper_exes.contains(&exe(sandbox_parent))
    {
        pids.push(sandbox_parent);
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids.into_iter().map(|p| (p, kind(p))).collect())
}

async fn report_memory(r: &Run<'_>, count: usize) -> anyhow::Result<()> {
    let label = &r.target.label;
    let pods = &r.pods[..count];
    // Find the processes first, then read all of them at once.
    let mut helpers = Vec::new();
    for pod in pods {
        helpers.push(pod_helpers(r, pod).await?);
    }
    if let Some(pid) = r.daemon_pid {
        let m = read_mem(pid).with_context(|| format!("{label}: daemon"))?;
        println!("memory {label} pods={count}: daemon {m}");
    }
    let mut by_kind: BTreeMap<String, Vec<Mem>> = BTreeMap::new();
    let mut total = Mem::default();
    for pod in &helpers {
        for (pid, kind) in pod {
            let m = read_mem(*pid).with_context(|| format!("{label}: {kind} (pid {pid})"))?;
            by_kind.entry(kind.clone()).or_default().push(m);
            total = total + m;
        }
    }
    for (kind, mems) in &by_kind {
        let field = |f: fn(&Mem) -> u64| {
            let mut v: Vec<u64> = mems.iter().map(f).collect();
            v.sort_unstable();
            (v[(v.len() - 1) / 2], v[v.len() - 1])
        };
        let (rss, rss_max) = field(|m| m.rss);
        let (pss, pss_max) = field(|m| m.pss);
        let (uss, uss_max) = field(|m| m.uss);
        println!(
            "memory {label} pods={count}: {kind} x{}: rss p50 {} max {}, pss p50 {} max {}, uss p50 {} max {}",
            mems.len(),
            mb(rss),
            mb(rss_max),
            mb(pss),
            mb(pss_max),
            mb(uss),
            mb(uss_max)
        );
    }
    let n = count as u64;
    let per_pod = Mem {
        rss: total.rss / n,
        pss: total.pss / n,
        uss: total.uss / n,
    };
    let kinds: Vec<&str> = by_kind.keys().map(String::as_str).collect();
    println!(
        "memory {label} pods={count}: helpers per pod ({}): {per_pod}",
        kinds.join(" + ")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

/// The nearest-rank percentile (`p` in 1..=100) of `samples`; zero when empty.
pub(super) fn percentile(samples: &[Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let rank = (p * s.len()).div_ceil(100).clamp(1, s.len());
    s[rank - 1]
}

fn sums(a: &[Duration], b: &[Duration]) -> Vec<Duration> {
    a.iter().zip(b).map(|(x, y)| *x + *y).collect()
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = Duration::from_millis;
        let s: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&s, 50), ms(50));
        assert_eq!(percentile(&s, 90), ms(90));
        assert_eq!(percentile(&s, 100), ms(100));
        assert_eq!(percentile(&[ms(7)], 90), ms(7));
        assert_eq!(percentile(&[ms(1), ms(2), ms(3)], 50), ms(2));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn reads_smaps_rollup() {
        let text = "55d0c0a00000-7ffd1a1fe000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:                1236 kB\n\
                    Pss:                 316 kB\n\
                    Pss_Anon:            120 kB\n\
                    Shared_Clean:        920 kB\n\
                    Private_Clean:        16 kB\n\
                    Private_Dirty:       300 kB\n";
        assert_eq!(
            parse_smaps_rollup(text),
            Mem {
                rss: 1236 * 1024,
                pss: 316 * 1024,
                uss: 316 * 1024
            }
        );
    }

    #[test]
    fn reads_ppid_past_odd_names() {
        assert_eq!(parse_ppid("42 (a) b) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn names_helper_kinds() {
        assert_eq!(
            kind_of(b"/work/target/release/strata\0monitor\0--config\0/x.json\0"),
            "strata monitor"
        );
        assert_eq!(
            kind_of(b"/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0"),
            "containerd-shim-runc-v2"
        );
        assert_eq!(kind_of(b"/pause\0"), "pause");
        assert_eq!(
            kind_of(b"/usr/local/bin/strata-monitor\0--config\0/x.json\0"),
            "strata-monitor"
        );
    }

    #[test]
    fn finds_the_pid_key() {
        let ctd = r#"{"sandboxID":"x","spec":{"namespaces":[{"type":"pid"}]},"pid":4242}"#;
        assert_eq!(json_int(ctd, "pid"), Some(4242));
        assert_eq!(json_int(r#"{"pid": 17, "x": 1}"#, "pid"), Some(17));
        assert_eq!(json_int(r#"{"pids":3}"#, "pid"), None);
        let strata = r#"{"config":{"linux":{"namespace_options":{"pid":1}}},"pid":99}"#;
        assert_eq!(json_int(strata, "pid"), Some(99));
    }

    #[test]
    fn sanitizes_labels() {
        assert_eq!(path_component("strata"), "strata");
        assert_eq!(
            path_component("containerd (unix:///a.sock)"),
            "containerd__unix____a_sock_"
        );
    }
}
