//! `PortForward`: checks the pod is ready and returns the streaming server's URL for it. The
//! ports come from the client's streams (SPDY) or, for legacy WebSocket clients, from the
//! request's `port` list.

use tonic::Status;

use super::{record_id, streaming_url};
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;
use crate::streaming::tokens::Pending;

pub async fn port_forward(
    ctx: &Context,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, Status> {
    record_id(&req.pod_sandbox_id);
    if let Some(port) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(Status::invalid_argument(format!("invalid port {port}")));
    }
    // Opens the namespace too: a pod whose init is gone is not ready, whatever its record says.
    ctx.runtime.pod_netns(&req.pod_sandbox_id).map_err(status)?;
    let url = streaming_url(ctx, Pending::PortForward(req))?;
    Ok(cri::PortForwardResponse { url })
}
