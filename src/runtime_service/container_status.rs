//! `ContainerStatus`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn container_status(
    ctx: &Context,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .container_status(&req.container_id, req.verbose)
        .map_err(status)
}
