//! `RunPodSandbox`, `StopPodSandbox`, `RemovePodSandbox`, `PodSandboxStatus`, `ListPodSandbox`.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

fn record_id(id: &str) {
    tracing::Span::current().record("id", id);
}

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

pub async fn stop_pod_sandbox(
    ctx: &Context,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .stop_pod(&req.pod_sandbox_id)
        .await
        .map_err(status)?;
    Ok(cri::StopPodSandboxResponse {})
}

pub async fn remove_pod_sandbox(
    ctx: &Context,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .remove_pod(&req.pod_sandbox_id)
        .await
        .map_err(status)?;
    Ok(cri::RemovePodSandboxResponse {})
}

pub fn pod_sandbox_status(
    ctx: &Context,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, Status> {
    record_id(&req.pod_sandbox_id);
    ctx.runtime
        .pod_status(&req.pod_sandbox_id, req.verbose)
        .map_err(status)
}

pub fn list_pod_sandbox(
    ctx: &Context,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse, Status> {
    Ok(cri::ListPodSandboxResponse {
        items: ctx.runtime.list_pods(req.filter).map_err(status)?,
    })
}
