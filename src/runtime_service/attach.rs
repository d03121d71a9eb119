//! `Attach`: validates the request and returns the streaming server's URL for it.

use tonic::Status;

use super::{record_id, streaming_url};
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;
use crate::streaming::tokens::Pending;

pub async fn attach(ctx: &Context, req: cri::AttachRequest) -> Result<cri::AttachResponse, Status> {
    record_id(&req.container_id);
    super::check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
    ctx.runtime
        .running(&req.container_id, "attach needs a running container")
        .map_err(status)?;
    let url = streaming_url(ctx, Pending::Attach(req))?;
    Ok(cri::AttachResponse { url })
}
