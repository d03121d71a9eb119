//! `StartContainer`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn start_container(
    ctx: &Context,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .start_container(&req.container_id)
        .await
        .map_err(status)?;
    Ok(cri::StartContainerResponse {})
}
