//! `ListPodSandboxMetrics`: cadvisor-style metrics of every ready pod and its running
//! containers, from the same samples as the stats calls.

use std::sync::Arc;

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::stats::Collector;

pub async fn list_pod_sandbox_metrics(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    _req: cri::ListPodSandboxMetricsRequest,
) -> Result<cri::ListPodSandboxMetricsResponse, Status> {
    let samples = super::list_pod_sandbox_stats::sample_ready_pods(ctx, stats, |_| true).await?;
    Ok(cri::ListPodSandboxMetricsResponse {
        pod_metrics: samples
            .iter()
            .map(crate::stats::metrics::pod_metrics)
            .collect(),
    })
}
