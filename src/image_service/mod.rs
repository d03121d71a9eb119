//! CRI `ImageService`, one file per verb. Handlers translate between CRI messages and the image
//! catalog; errors become gRPC statuses only through `server::status`.

mod fs_info;
mod list;
mod pull;
mod remove;
mod status;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cri::v1::image_service_server::ImageService;
use crate::cri::v1::{self as cri};
use crate::server::Context;
use crate::server::batches::{BatchStream, in_batches};
use crate::store::ImageRecord;

pub struct ImageServiceImpl {
    ctx: Arc<Context>,
}

impl ImageServiceImpl {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl ImageService for ImageServiceImpl {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        list::list_images(&self.ctx, request.into_inner()).map(Response::new)
    }

    /// `ListImages` in batches (see `runtime_service::stream_lists`).
    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<BatchStream<cri::StreamImagesResponse>>, Status> {
        let list = list::list_images(
            &self.ctx,
            cri::ListImagesRequest {
                filter: request.into_inner().filter,
            },
        )?;
        Ok(Response::new(in_batches(list.images, |images| {
            cri::StreamImagesResponse { images }
        })))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        status::image_status(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        pull::pull_image(&self.ctx, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        remove::remove_image(&self.ctx, request.into_inner()).map(Response::new)
    }

    async fn image_fs_info(
        &self,
        request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        fs_info::image_fs_info(&self.ctx, request.into_inner()).map(Response::new)
    }
}

/// The image name a request carries, which must not be empty.
fn image_name(spec: Option<&cri::ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.as_str()) {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(Status::invalid_argument(
            "image name is required (ImageSpec.image)",
        )),
    }
}

/// Records the image a call acts on in the RPC's tracing span.
fn record_id(name: &str) {
    tracing::Span::current().record("id", name);
}

/// The CRI view of a stored image.
fn to_cri(ctx: &Context, image: &ImageRecord) -> cri::Image {
    use crate::image::catalog::ImageUser;
    let (uid, username) = match image.user() {
        ImageUser::None => (None, String::new()),
        ImageUser::Uid(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        ImageUser::Name(name) => (None, name),
    };
    cri::Image {
        id: image.id.to_string(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: image.id.to_string(),
            ..Default::default()
        }),
        pinned: ctx.images.is_pinned(image),
    }
}
