//! `CreateContainer`.

use tonic::Status;

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
    let id = ctx
        .runtime
        .create_container(&req.pod_sandbox_id, config, req.sandbox_config)
        .await
        .map_err(status)?;
    Ok(cri::CreateContainerResponse { container_id: id })
}
