//! Benchmarks against one runtime endpoint, or two with `--compare-endpoint`.
//! The machine is small and shared: runs of the two endpoints are interleaved
//! (A, B, A, B, ...) and figures are medians and ratios.

mod containers;
mod pods;
mod pull;
mod status;
mod streaming;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use k8s_cri::v1::{ImageStatusRequest, RemoveImageRequest};
use tonic::Code;

use crate::client::Cri;
use crate::specs::image_spec;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Also run every measurement against this endpoint, interleaved.
    #[arg(long, global = true)]
    compare_endpoint: Option<String>,
    /// Measurements per endpoint (default: 5 for pull and portforward, 1 for pull-shared, 100
    /// for containers and exec-stream, 50 for pods).
    #[arg(long, global = true)]
    runs: Option<usize>,
    #[command(subcommand)]
    kind: BenchKind,
}

#[derive(Subcommand, Debug)]
enum BenchKind {
    /// Cold PullImage time and throughput of each image.
    Pull(pull::PullArgs),
    /// Pull a base image, then an image sharing its layers.
    PullShared(pull::PullSharedArgs),
    /// Print each runtime's Status(verbose) info document (strata's has the
    /// cumulative pull counters `pulls.bytesFetched` / `pulls.layersFetched`).
    StatusCounters,
    /// Create+start and stop+remove times of a container in a running pod, and the memory
    /// of the daemon and of its per-pod helpers with 1..N running pods.
    Containers(containers::ContainersArgs),
    /// Stop and remove every pod `bench containers`, `exec-stream` or `portforward` made (after
    /// an interrupted run).
    ContainersCleanup,
    /// RunPodSandbox, full pod start, ExecSync and pod teardown times, pods on CNI.
    Pods(pods::PodsArgs),
    /// Stop and remove every pod `bench pods` made (after an interrupted run).
    PodsCleanup,
    /// Exec RPC + SPDY upgrade + streams until the first stdout byte of `echo hi` (p50/p90).
    ExecStream(streaming::StreamingArgs),
    /// Port-forward throughput: PortForward RPC + SPDY + reading `--bytes` from a server in the
    /// pod's network namespace (MB/s).
    Portforward(streaming::PortForwardArgs),
}

/// An endpoint under test, labelled by its runtime name.
pub struct Target {
    pub label: String,
    pub cri: Cri,
}

pub async fn run(endpoint: &str, args: BenchArgs) -> anyhow::Result<()> {
    let mut targets = vec![connect(endpoint).await?];
    if let Some(other) = &args.compare_endpoint {
        let mut t = connect(other).await?;
        if t.label == targets[0].label {
            t.label = format!("{} ({other})", t.label);
            targets[0].label = format!("{} ({endpoint})", targets[0].label);
        }
        targets.push(t);
    }
    match args.kind {
        BenchKind::Pull(a) => pull::pull(&targets, &a, args.runs.unwrap_or(5)).await,
        BenchKind::PullShared(a) => pull::pull_shared(&targets, &a, args.runs.unwrap_or(1)).await,
        BenchKind::StatusCounters => status::status_counters(&targets).await,
        BenchKind::Containers(a) => {
            containers::containers(&targets, &a, args.runs.unwrap_or(100)).await
        }
        BenchKind::ContainersCleanup => containers::containers_cleanup(&targets).await,
        BenchKind::Pods(a) => pods::pods(&targets, &a, args.runs.unwrap_or(50)).await,
        BenchKind::PodsCleanup => pods::pods_cleanup(&targets).await,
        BenchKind::ExecStream(a) => {
            streaming::exec_stream(&targets, &a, args.runs.unwrap_or(100)).await
        }
        BenchKind::Portforward(a) => {
            streaming::portforward(&targets, &a, args.runs.unwrap_or(5)).await
        }
    }
}

async fn connect(endpoint: &str) -> anyhow::Result<Target> {
    let cri = Cri::connect(endpoint).await?;
    let version = cri.version().await?;
    let label = if version.runtime_name.is_empty() {
        endpoint.to_owned()
    } else {
        version.runtime_name
    };
    Ok(Target { label, cri })
}

/// Removes `image` (by id, so every name of it goes, then by name), ignoring
/// NotFound, so that the next pull of it is cold.
pub async fn remove_cold(cri: &Cri, image: &str) -> anyhow::Result<()> {
    let mut images = cri.images.clone();
    let status = images
        .image_status(ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        })
        .await
        .with_context(|| format!("{}: ImageStatus {image}", cri.endpoint))?
        .into_inner();
    let mut names = vec![image.to_owned()];
    if let Some(img) = status.image {
        names.insert(0, img.id);
    }
    for name in names {
        match images
            .remove_image(RemoveImageRequest {
                image: Some(image_spec(&name)),
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => anyhow::bail!("{}: RemoveImage {name}: {s}", cri.endpoint),
        }
    }
    Ok(())
}

/// The size ImageStatus reports for `image`.
pub async fn image_size(cri: &Cri, image: &str) -> anyhow::Result<u64> {
    let status = cri
        .images
        .clone()
        .image_status(ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        })
        .await
        .with_context(|| format!("{}: ImageStatus {image}", cri.endpoint))?
        .into_inner();
    status
        .image
        .map(|i| i.size)
        .with_context(|| format!("{}: ImageStatus {image}: no image after pull", cri.endpoint))
}

pub fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(&[ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(&[]), Duration::ZERO);
    }

    #[test]
    fn throughput() {
        assert_eq!(mb_per_s(2_000_000, Duration::from_secs(2)), 1.0);
        assert_eq!(mb_per_s(1, Duration::ZERO), 0.0);
    }
}
