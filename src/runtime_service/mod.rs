//! CRI `RuntimeService`, one file per verb. Calls that are not implemented yet answer
//! UNIMPLEMENTED through tonic's generated default stubs: an honest answer kubelet and crictl
//! understand, never a fake success.

mod containers;
mod pods;
mod runtime_config;
mod status;
mod version;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cri::v1::runtime_service_server::RuntimeService;
use crate::cri::v1::{self as cri};
use crate::server::Context;

pub struct RuntimeServiceImpl {
    ctx: Arc<Context>,
}

impl RuntimeServiceImpl {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeServiceImpl {
    async fn version(
        &self,
        request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(version::version(request.into_inner())))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        status::status(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn runtime_config(
        &self,
        request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(runtime_config::runtime_config(
            request.into_inner(),
        )))
    }

        async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        pods::run_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        pods::stop_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        pods::remove_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        pods::pod_sandbox_status(&self.ctx, request.into_inner())
            .map(Response::new)
    }

        async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        pods::list_pod_sandbox(&self.ctx, request.into_inner())
            .map(Response::new)
    }

        async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        containers::create_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        containers::start_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        containers::stop_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        containers::remove_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

        async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        containers::container_status(&self.ctx, request.into_inner())
            .map(Response::new)
    }

        async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        containers::list_containers(&self.ctx, request.into_inner())
            .map(Response::new)
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        containers::exec_sync(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        containers::reopen_container_log(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        containers::update_container_resources(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }
}
