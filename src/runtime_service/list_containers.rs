//! `ListContainers`.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn list_containers(
    ctx: &Context,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse, Status> {
    Ok(cri::ListContainersResponse {
        containers: ctx.runtime.list_containers(req.filter).map_err(status)?,
    })
}
