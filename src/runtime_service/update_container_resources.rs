//! `UpdateContainerResources`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn update_container_resources(
    ctx: &Context,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, Status> {
    record_id(&req.container_id);
    let resources = req
        .linux
        .ok_or_else(|| Status::invalid_argument("linux resources are required"))?;
    ctx.runtime
        .update_resources(&req.container_id, resources)
        .await
        .map_err(status)?;
    Ok(cri::UpdateContainerResourcesResponse {})
}
