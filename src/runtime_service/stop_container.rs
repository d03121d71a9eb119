//! `StopContainer`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn stop_container(
    ctx: &Context,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .stop_container(&req.container_id, req.timeout)
        .await
        .map_err(status)?;
    Ok(cri::StopContainerResponse {})
}
