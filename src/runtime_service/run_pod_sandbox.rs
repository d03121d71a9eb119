//! `RunPodSandbox`.

use tonic::Status;
use tracing::Instrument as _;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn run_pod_sandbox(
    ctx: &Context,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("pod sandbox config is required"))?;
    if let Some(m) = &config.metadata {
        record_id(&m.name);
    }
    // The build runs as its own task: a client that gives up (kubelet's deadline) must not
    // abort it half-way, leaving a pod-init, a netns and a CNI attachment behind. The pod is
    // finished and recorded, and kubelet's retry with the same name gets it.
    let runtime = ctx.runtime.clone();
    let build = tokio::spawn(
        async move { runtime.run_pod(config, req.runtime_handler).await }
            .instrument(tracing::Span::current()),
    );
    let id = build
        .await
        .map_err(|e| Status::internal(format!("pod sandbox build task failed: {e}")))?
        .map_err(status)?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}
