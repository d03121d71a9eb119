//! `StopPodSandbox`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn stop_pod_sandbox(
    ctx: &Context,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .stop_pod(&req.pod_sandbox_id)
        .await
        .map_err(status)?;
    Ok(cri::StopPodSandboxResponse {})
}
