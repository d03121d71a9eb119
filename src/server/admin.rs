//! strata's admin API (see `proto/strata/admin/v1/admin.proto`) and the CLI side of it: the
//! `strata image import` command asks the running daemon, or, when none runs, takes the daemon
//! lock and imports into the store itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Context, ServerError};
use crate::config::Config;
use crate::cri::admin::admin_client::AdminClient;
use crate::cri::admin::admin_server::Admin;
use crate::cri::admin::{ImportImagesRequest, ImportImagesResponse, ImportedImage};
use crate::error::{Classify, ErrorKind};
use crate::image::import::{ImportError, import_archive};
use crate::server::status::status;
use crate::store::ImageRecord;

pub struct AdminImpl {
    ctx: Arc<Context>,
}

impl AdminImpl {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Admin for AdminImpl {
    async fn import_images(
        &self,
        request: Request<ImportImagesRequest>,
    ) -> Result<Response<ImportImagesResponse>, Status> {
        let path = PathBuf::from(request.into_inner().path);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "archive path `{}` must be absolute",
                path.display()
            )));
        }
        tracing::Span::current().record("id", path.display().to_string());
        let ctx = self.ctx.clone();
        let images = tokio::task::spawn_blocking(move || import_archive(&ctx.images, &path))
            .await
            .map_err(|e| Status::internal(format!("import task: {e}")))?
            .map_err(status)?;
        Ok(Response::new(ImportImagesResponse {
            images: images.iter().map(imported).collect(),
        }))
    }
}

fn imported(image: &ImageRecord) -> ImportedImage {
    ImportedImage {
        id: image.id.to_string(),
        repo_tags: image.repo_tags.clone(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon refused the import: {0}")]
    Daemon(Status),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Import(#[from] ImportError),
}

impl Classify for CliError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// `strata image import FILE`.
pub async fn import_cli(config: Config, file: &Path) -> Result<Vec<ImportedImage>, CliError> {
    let file = std::fs::canonicalize(file).map_err(|source| CliError::Path {
        path: file.to_owned(),
        source,
    })?;
    if let Ok(channel) = connect_unix(&config.socket).await {
        let reply = AdminClient::new(channel)
            .import_images(ImportImagesRequest {
                path: file.to_string_lossy().into_owned(),
            })
            .await
            .map_err(CliError::Daemon)?;
        return Ok(reply.into_inner().images);
    }
    std::fs::create_dir_all(&config.state).map_err(|source| CliError::Path {
        path: config.state.clone(),
        source,
    })?;
    let _lock = super::lock::DaemonLock::acquire(&config.lock_file()).map_err(ServerError::from)?;
    std::fs::create_dir_all(&config.root).map_err(|source| CliError::Path {
        path: config.root.clone(),
        source,
    })?;
    let _root_lock = super::lock::DaemonLock::acquire(&config.root.join("strata.lock"))
        .map_err(ServerError::from)?;
    let ctx = Context::open(config)?;
    let images = import_archive(&ctx.images, &file)?;
    Ok(images.iter().map(imported).collect())
}

/// A gRPC channel over a unix socket.
pub async fn connect_unix(
    path: &Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_owned();
    tonic::transport::Endpoint::from_static("http://strata.invalid")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
