//! `ReopenContainerLog`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn reopen_container_log(
    ctx: &Context,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .reopen_log(&req.container_id)
        .await
        .map_err(status)?;
    Ok(cri::ReopenContainerLogResponse {})
}
