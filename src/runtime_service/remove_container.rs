//! `RemoveContainer`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn remove_container(
    ctx: &Context,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .remove_container(&req.container_id)
        .await
        .map_err(status)?;
    Ok(cri::RemoveContainerResponse {})
}
