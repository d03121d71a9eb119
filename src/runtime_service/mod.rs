//! CRI `RuntimeService`, one file per verb. Calls that are not implemented yet answer
//! UNIMPLEMENTED through tonic's generated default stubs: an honest answer kubelet and crictl
//! understand, never a fake success.

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
}
