//! `CreateContainer`.

use tonic::Status;
use tracing::Instrument as _;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn create_container(
    ctx: &Context,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse, Status> {
    record_id(&req.pod_sandbox_id);
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("container config is required"))?;
    // Its own task, as RunPodSandbox's build: a cancelled request leaves a finished container
    // for kubelet's retry, never half of one.
    let runtime = ctx.runtime.clone();
    let build = tokio::spawn(
        async move {
            runtime
                .create_container(&req.pod_sandbox_id, config, req.sandbox_config)
                .await
        }
        .instrument(tracing::Span::current()),
    );
    let id = build
        .await
        .map_err(|e| Status::internal(format!("container build task failed: {e}")))?
        .map_err(status)?;
    Ok(cri::CreateContainerResponse { container_id: id })
}
