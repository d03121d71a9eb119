//! `ListPodSandbox`.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub fn list_pod_sandbox(
    ctx: &Context,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse, Status> {
    Ok(cri::ListPodSandboxResponse {
        items: ctx.runtime.list_pods(req.filter).map_err(status)?,
    })
}
