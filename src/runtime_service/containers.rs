//! `CreateContainer`, `StartContainer`, `StopContainer`, `RemoveContainer`, `ContainerStatus`,
//! `ListContainers`.

use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;
use crate::server::status::status;

fn record_id(id: &str) {
    tracing::Span::current().record("id", id);
}

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

pub async fn start_container(
    ctx: &Context,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .start_container(&req.container_id)
        .await
        .map_err(status)?;
    Ok(cri::StartContainerResponse {})
}

pub async fn stop_container(
    ctx: &Context,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .stop_container(&req.container_id, req.timeout)
        .await
        .map_err(status)?;
    Ok(cri::StopContainerResponse {})
}

pub async fn remove_container(
    ctx: &Context,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .remove_container(&req.container_id)
        .await
        .map_err(status)?;
    Ok(cri::RemoveContainerResponse {})
}

pub fn container_status(
    ctx: &Context,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, Status> {
    record_id(&req.container_id);
    ctx.runtime
        .container_status(&req.container_id, req.verbose)
        .map_err(status)
}

pub fn list_containers(
    ctx: &Context,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse, Status> {
    Ok(cri::ListContainersResponse {
        containers: ctx.runtime.list_containers(req.filter).map_err(status)?,
    })
}

pub async fn exec_sync(
    ctx: &Context,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, Status> {
    record_id(&req.container_id);
    let timeout = (req.timeout > 0).then(|| std::time::Duration::from_secs(req.timeout as u64));
    let out = ctx
        .runtime
        .exec_sync(&req.container_id, req.cmd, timeout)
        .await
        .map_err(status)?;
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.exit_code,
    })
}

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

pub async fn update_container_resources(
    ctx: &Context,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, Status> {
    record_id(&req.container_id);
    let resources = req
        .linux
        .ok_or_else(|| Status::invalid_argument("linux resources are required"))?;
    ctx.runtime
        .update_resources(&req.container_id, resources)
        .await
        .map_err(status)?;
    Ok(cri::UpdateContainerResourcesResponse {})
}
