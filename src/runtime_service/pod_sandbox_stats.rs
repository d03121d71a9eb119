//! `PodSandboxStats`: a ready pod's cgroup, network and running containers.

use std::sync::Arc;

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::runtime::PodError;
use crate::server::Context;
use crate::server::status::status;
use crate::stats::{Collector, to_cri};
use crate::store::{ContainerRecord, ContainerState, PodRecord, PodState};

/// Samples `pod` with its running containers (out of `all`).
pub(super) fn sample_pod(
    ctx: &Context,
    stats: &Collector,
    pod: PodRecord,
    all: &[ContainerRecord],
) -> Result<crate::stats::PodSample, Status> {
    let containers = all
        .iter()
        .filter(|c| c.pod_id == pod.id && c.state == ContainerState::Running)
        .cloned()
        .collect();
    stats.pod(&ctx.runtime, pod, containers).map_err(status)
}

pub async fn pod_sandbox_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse, Status> {
    record_id(&req.pod_sandbox_id);
    let pod = ctx.runtime.pod(&req.pod_sandbox_id).map_err(status)?;
    if pod.state != PodState::Ready {
        // Its namespaces and cgroup are gone (containerd refuses too).
        return Err(status(PodError::NotReady { id: pod.id }));
    }
    let all = ctx
        .store
        .read()
        .and_then(|r| r.containers())
        .map_err(status)?;
    let (ctx, stats) = (ctx.clone(), stats.clone());
    let sample =
        super::list_container_stats::blocking(move || sample_pod(&ctx, &stats, pod, &all)).await?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(to_cri::pod_stats(&sample)),
    })
}
