//! CRI `RuntimeService`, one file per verb. Calls that are not implemented yet answer
//! UNIMPLEMENTED through tonic's generated default stubs: an honest answer kubelet and crictl
//! understand, never a fake success.

mod attach;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_sync;
mod get_container_events;
mod list_container_stats;
mod list_containers;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod list_pod_sandbox_stats;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod remove_container;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod stream_lists;
mod update_container_resources;
mod update_pod_sandbox_resources;
mod update_runtime_config;
mod version;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cri::v1::runtime_service_server::RuntimeService;
use crate::cri::v1::{self as cri};
use crate::server::Context;
use crate::server::batches::BatchStream;

/// Streams an exec or attach asks for: a tty merges stderr into stdout, and at least one is
/// needed.
fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Status> {
    if tty && stderr {
        return Err(Status::invalid_argument(
            "tty and stderr cannot both be true: a tty has no separate stderr",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout or stderr must be true",
        ));
    }
    Ok(())
}

/// The streaming server's URL for `pending`.
fn streaming_url(
    ctx: &Context,
    pending: crate::streaming::tokens::Pending,
) -> Result<String, Status> {
    let server = ctx
        .streaming
        .get()
        .ok_or(crate::streaming::StreamingError::NotRunning)
        .map_err(crate::server::status::status)?;
    server.url(pending).map_err(crate::server::status::status)
}

/// Records the object a call acts on in the RPC's tracing span.
fn record_id(id: &str) {
    tracing::Span::current().record("id", id);
}

pub struct RuntimeServiceImpl {
    ctx: Arc<Context>,
    /// Previous CPU samples and recent writable-layer walks of the stats calls.
    stats: Arc<crate::stats::Collector>,
}

impl RuntimeServiceImpl {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            stats: Default::default(),
        }
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

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        update_runtime_config::update_runtime_config(&self.ctx, request.into_inner())
            .map(Response::new)
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        run_pod_sandbox::run_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        stop_pod_sandbox::stop_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        remove_pod_sandbox::remove_pod_sandbox(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        pod_sandbox_status::pod_sandbox_status(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        list_pod_sandbox::list_pod_sandbox(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        create_container::create_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        start_container::start_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        stop_container::stop_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        remove_container::remove_container(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        container_status::container_status(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        list_containers::list_containers(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        exec_sync::exec_sync(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        exec::exec(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        attach::attach(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        port_forward::port_forward(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        reopen_container_log::reopen_container_log(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_container_events(
        &self,
        request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<get_container_events::EventStream>, Status> {
        Ok(Response::new(get_container_events::get_container_events(
            &self.ctx,
            request.into_inner(),
        )))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        update_container_resources::update_container_resources(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }
    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        container_stats::container_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        list_container_stats::list_container_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        pod_sandbox_stats::pod_sandbox_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        list_pod_sandbox_stats::list_pod_sandbox_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_metric_descriptors(
        &self,
        request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(
            list_metric_descriptors::list_metric_descriptors(request.into_inner()),
        ))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        list_pod_sandbox_metrics::list_pod_sandbox_metrics(
            &self.ctx,
            &self.stats,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<BatchStream<cri::StreamPodSandboxesResponse>>, Status> {
        stream_lists::pod_sandboxes(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<BatchStream<cri::StreamContainersResponse>>, Status> {
        stream_lists::containers(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<BatchStream<cri::StreamContainerStatsResponse>>, Status> {
        stream_lists::container_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<BatchStream<cri::StreamPodSandboxStatsResponse>>, Status> {
        stream_lists::pod_sandbox_stats(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        request: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<BatchStream<cri::StreamPodSandboxMetricsResponse>>, Status> {
        stream_lists::pod_sandbox_metrics(&self.ctx, &self.stats, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
        update_pod_sandbox_resources::update_pod_sandbox_resources(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }
}
