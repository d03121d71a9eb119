//! `bench pods` and `bench pods-cleanup`.
//!
//! Pods on the runtime's CNI network (not hostNetwork), endpoints interleaved, after one
//! untimed warm-up cycle each. One cycle per endpoint:
//! 1. RunPodSandbox (timed: "run-pod"), then CreateContainer + StartContainer of the image
//!    running `sleep 3600` (RunPodSandbox + both: "full-start");
//! 2. ExecSync of `true` in that container (timed: "exec-sync"; exit code 0 checked);
//! 3. StopPodSandbox + RemovePodSandbox of the pod with its running container ("teardown").
//!
//! Reported as nearest-rank p50/p90 per endpoint, and the p50 ratios of the first endpoint to
//! the second. Pods carry the label `strata-bench=pods`; `bench pods-cleanup` removes them after
//! an interrupted run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ExecSyncRequest,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata,
    PodSandboxStatusRequest, RunPodSandboxRequest, StartContainerRequest,
};

use super::Target;
use super::containers::{ensure_image, ms, path_component, percentile, remove_pod};
use crate::client::Cri;
use crate::specs::image_spec;

const LABEL_KEY: &str = "strata-bench";
const LABEL_VALUE: &str = "pods";

#[derive(Args, Debug)]
pub struct PodsArgs {
    /// The container image (pulled first, untimed, where absent).
    #[arg(long)]
    image: String,
    /// cgroup parent below which each runtime's pods get `<runtime>/pod<N>`.
    #[arg(long, default_value = "/strata-bench")]
    cgroup_parent: String,
    /// Pods' log directories go below this directory (`<runtime>/pod<N>`).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

#[derive(Default)]
struct Samples {
    run_pod: Vec<Duration>,
    full_start: Vec<Duration>,
    exec_sync: Vec<Duration>,
    teardown: Vec<Duration>,
}

pub async fn pods(targets: &[Target], args: &PodsArgs, runs: usize) -> anyhow::Result<()> {
    if runs == 0 {
        bail!("--runs wants a positive number");
    }
    for t in targets {
        ensure_image(&t.cri, &args.image).await?;
    }
    let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
    // Cycle 0 is the untimed warm-up.
    for n in 0..=runs {
        for (t, s) in targets.iter().zip(samples.iter_mut()) {
            let got = cycle(&t.cri, &t.label, args, n).await?;
            if n > 0 {
                s.run_pod.push(got[0]);
                s.full_start.push(got[1]);
                s.exec_sync.push(got[2]);
                s.teardown.push(got[3]);
            }
        }
        if n > 0 && n % 10 == 0 {
            eprintln!("bench pods: {n}/{runs} cycles");
        }
    }
    let figures = [
        ("run-pod", "RunPodSandbox"),
        ("full-start", "RunPodSandbox+CreateContainer+StartContainer"),
        ("exec-sync", "ExecSync true"),
        ("teardown", "StopPodSandbox+RemovePodSandbox"),
    ];
    let pick = |s: &Samples, key: &str| -> Vec<Duration> {
        match key {
            "run-pod" => s.run_pod.clone(),
            "full-start" => s.full_start.clone(),
            "exec-sync" => s.exec_sync.clone(),
            _ => s.teardown.clone(),
        }
    };
    for (t, s) in targets.iter().zip(&samples) {
        for (key, what) in figures {
            let v = pick(s, key);
            println!(
                "pods {}: {key} p50 {} p90 {} max {} ({what}, {} runs)",
                t.label,
                ms(percentile(&v, 50)),
                ms(percentile(&v, 90)),
                ms(percentile(&v, 100)),
                v.len()
            );
        }
    }
    if let [a, b] = &samples[..] {
        for (key, _) in figures {
            let (pa, pb) = (percentile(&pick(a, key), 50), percentile(&pick(b, key), 50));
            if pb > Duration::ZERO {
                println!(
                    "ratio {}/{} {key} p50: {:.3}",
                    targets[0].label,
                    targets[1].label,
                    pa.as_secs_f64() / pb.as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// Removes every pod labelled `strata-bench=pods` on each endpoint.
pub async fn pods_cleanup(targets: &[Target]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for t in targets {
        let pods = t
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    label_selector: HashMap::from([(LABEL_KEY.into(), LABEL_VALUE.into())]),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("{}: ListPodSandbox", t.cri.endpoint))?
            .into_inner()
            .items;
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

/// One cycle: [run-pod, full-start, exec-sync, teardown]. The pod is removed also when a
/// step fails.
async fn cycle(cri: &Cri, label: &str, args: &PodsArgs, n: usize) -> anyhow::Result<[Duration; 4]> {
    let runtime = path_component(label);
    let log_directory = match &args.log_dir {
        Some(dir) => {
            let d = dir.join(&runtime).join(format!("pod{n}"));
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            d.to_string_lossy().into_owned()
        }
        None => String::new(),
    };
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-pods-{n}"),
            uid: format!("bench-pods-{}-{n}", std::process::id()),
            namespace: "strata-bench".into(),
            attempt: 0,
        }),
        hostname: format!("bench-pods-{n}"),
        log_directory: log_directory.clone(),
        labels: HashMap::from([(LABEL_KEY.into(), LABEL_VALUE.into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!(
                "{}/{runtime}/pod{n}",
                args.cgroup_parent.trim_end_matches('/')
            ),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rt = cri.runtime.clone();
    let t0 = Instant::now();
    let pod_id = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| format!("{}: RunPodSandbox bench-pods-{n}", cri.endpoint))?
        .into_inner()
        .pod_sandbox_id;
    let run_pod = t0.elapsed();
    let result = async {
        let container = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "sleeper".into(),
                attempt: 0,
            }),
            image: Some(image_spec(&args.image)),
            command: vec!["sleep".into(), "3600".into()],
            log_path: if log_directory.is_empty() {
                String::new()
            } else {
                "sleeper.log".into()
            },
            ..Default::default()
        };
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(container),
                sandbox_config: Some(config.clone()),
            })
            .await
            .with_context(|| format!("{}: CreateContainer in {pod_id}", cri.endpoint))?
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .with_context(|| format!("{}: StartContainer {id}", cri.endpoint))?;
        let full_start = t0.elapsed();
        // Untimed: the pod really is on the network.
        let ip = rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.clone(),
                verbose: false,
            })
            .await
            .with_context(|| format!("{}: PodSandboxStatus {pod_id}", cri.endpoint))?
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        if ip.is_empty() {
            bail!(
                "{}: pod {pod_id} has no IP (is CNI configured?)",
                cri.endpoint
            );
        }
        let t1 = Instant::now();
        let exec = rt
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await
            .with_context(|| format!("{}: ExecSync in {id}", cri.endpoint))?
            .into_inner();
        let exec_sync = t1.elapsed();
        if exec.exit_code != 0 {
            bail!(
                "{}: ExecSync true in {id} exited {}: {}",
                cri.endpoint,
                exec.exit_code,
                String::from_utf8_lossy(&exec.stderr)
            );
        }
        Ok((full_start, exec_sync))
    }
    .await;
    let t2 = Instant::now();
    let removed = remove_pod(cri, &pod_id).await;
    let teardown = t2.elapsed();
    let (full_start, exec_sync) = result?;
    removed?;
    Ok([run_pod, full_start, exec_sync, teardown])
}
