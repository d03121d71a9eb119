//! `StreamPodSandboxes`, `StreamContainers`, `StreamContainerStats`, `StreamPodSandboxStats`
//! and `StreamPodSandboxMetrics`: the list calls' results, built by the same handlers, sent in
//! batches ([`crate::server::batches`]). Kubelet uses them (when its streaming-list gate is
//! on) so that a node with thousands of containers never hits the gRPC message size limit.

use std::sync::Arc;

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::batches::{BatchStream, in_batches};
use crate::stats::Collector;

pub fn pod_sandboxes(
    ctx: &Context,
    req: cri::StreamPodSandboxesRequest,
) -> Result<BatchStream<cri::StreamPodSandboxesResponse>, Status> {
    let list = super::list_pod_sandbox::list_pod_sandbox(
        ctx,
        cri::ListPodSandboxRequest { filter: req.filter },
    )?;
    Ok(in_batches(list.items, |pod_sandboxes| {
        cri::StreamPodSandboxesResponse { pod_sandboxes }
    }))
}

pub fn containers(
    ctx: &Context,
    req: cri::StreamContainersRequest,
) -> Result<BatchStream<cri::StreamContainersResponse>, Status> {
    let list = super::list_containers::list_containers(
        ctx,
        cri::ListContainersRequest { filter: req.filter },
    )?;
    Ok(in_batches(list.containers, |containers| {
        cri::StreamContainersResponse { containers }
    }))
}

pub async fn container_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::StreamContainerStatsRequest,
) -> Result<BatchStream<cri::StreamContainerStatsResponse>, Status> {
    let list = super::list_container_stats::list_container_stats(
        ctx,
        stats,
        cri::ListContainerStatsRequest { filter: req.filter },
    )
    .await?;
    Ok(in_batches(list.stats, |container_stats| {
        cri::StreamContainerStatsResponse { container_stats }
    }))
}

pub async fn pod_sandbox_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::StreamPodSandboxStatsRequest,
) -> Result<BatchStream<cri::StreamPodSandboxStatsResponse>, Status> {
    let list = super::list_pod_sandbox_stats::list_pod_sandbox_stats(
        ctx,
        stats,
        cri::ListPodSandboxStatsRequest { filter: req.filter },
    )
    .await?;
    Ok(in_batches(list.stats, |pod_sandbox_stats| {
        cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
    }))
}

pub async fn pod_sandbox_metrics(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    _req: cri::StreamPodSandboxMetricsRequest,
) -> Result<BatchStream<cri::StreamPodSandboxMetricsResponse>, Status> {
    let list = super::list_pod_sandbox_metrics::list_pod_sandbox_metrics(
        ctx,
        stats,
        cri::ListPodSandboxMetricsRequest {},
    )
    .await?;
    Ok(in_batches(list.pod_metrics, |pod_sandbox_metrics| {
        cri::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        }
    }))
}
