//! `RunPodSandbox`.

use tonic::Status;

use super::record_id;
use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

pub async fn run_pod_sandbox(
    ctx: &Context,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, Status> {
    let config = req
        .config
        .ok_or_else(|| Status::invalid_argument("pod sandbox config is required"))?;
    if let Some(m) = &config.metadata {
        record_id(&m.name);
    }
    let id = ctx
        .runtime
        .run_pod(config, req.runtime_handler)
        .await
        .map_err(status)?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
}
