//! `Exec`: validates the request and returns the streaming server's URL for it.

use tonic::Status;

use super::{record_id, streaming_url};
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;
use crate::streaming::tokens::Pending;

pub async fn exec(ctx: &Context, req: cri::ExecRequest) -> Result<cri::ExecResponse, Status> {
    record_id(&req.container_id);
    super::check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
    if req.cmd.is_empty() {
        return Err(Status::invalid_argument("cmd is required"));
    }
    ctx.runtime
        .running(&req.container_id, "exec needs a running container")
        .map_err(status)?;
    let url = streaming_url(ctx, Pending::Exec(req))?;
    Ok(cri::ExecResponse { url })
}
