//! `RemovePodSandbox`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn remove_pod_sandbox(
    ctx: &Context,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .remove_pod(&req.pod_sandbox_id)
        .await
        .map_err(status)?;
    Ok(cri::RemovePodSandboxResponse {})
}
