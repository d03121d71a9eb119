//! `PodSandboxStatus`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn pod_sandbox_status(
    ctx: &Context,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .pod_status(&req.pod_sandbox_id, req.verbose)
        .map_err(status)
}
