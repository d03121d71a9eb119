//! The daemon: takes the lock, opens the store, reconciles leftovers of a crash, binds the CRI
//! socket and serves RuntimeService, ImageService and strata's admin API through one tower layer
//! until SIGTERM or SIGINT.

pub mod admin;
pub mod batches;
pub mod layer;
pub mod lock;
pub mod metrics;
pub mod socket;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::cri::admin::admin_server::AdminServer;
use crate::cri::v1::image_service_server::ImageServiceServer;
use crate::cri::v1::runtime_service_server::RuntimeServiceServer;
use crate::error::{Classify, ErrorKind};
use crate::image::Images;
use crate::image::catalog::CatalogError;
use crate::image_service::ImageServiceImpl;
use crate::runtime_service::RuntimeServiceImpl;
use crate::store::{Store, StoreError};

/// kubelet's own limit for CRI messages; ListImages/ListContainers on a busy node get large.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long in-flight calls may run on after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Images(#[from] CatalogError),
    #[error(transparent)]
    Recover(#[from] crate::runtime::RecoverError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Streaming(#[from] crate::streaming::StreamingError),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Classify for ServerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Lock(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

/// Everything the service handlers share.
pub struct Context {
    pub config: Config,
    pub store: Arc<Store>,
    pub images: Arc<Images>,
    pub runtime: Arc<crate::runtime::Runtime>,
    pub metrics: Arc<metrics::RpcMetrics>,
    /// The streaming server (Exec/Attach/PortForward URLs), once `serve` started it.
    pub streaming: std::sync::OnceLock<Arc<crate::streaming::StreamingServer>>,
}

impl Context {
    /// Opens the store and the image catalog under `config.root`, reconciling crash leftovers.
    /// The caller must hold the daemon lock (or be the only user of the root).
    pub fn open(config: Config) -> Result<Self, ServerError> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        let store = Arc::new(Store::open(&config.root.join("meta.db"))?);
        let images = Arc::new(Images::new(&config, store.clone())?);
        images.recover()?;
        let runtime = Arc::new(
            crate::runtime::Runtime::new(&config, store.clone(), images.clone()).map_err(
                |source| ServerError::Dir {
                    path: PathBuf::from("/proc/self/exe"),
                    source,
                },
            )?,
        );
        Ok(Self {
            config,
            store,
            images,
            runtime,
            metrics: Arc::default(),
            streaming: std::sync::OnceLock::new(),
        })
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.state).map_err(|source| ServerError::Dir {
        path: config.state.clone(),
        source,
    })?;
    let _lock = lock::DaemonLock::acquire(&config.lock_file())?;
    // The root is guarded too: two daemons with different state dirs must not share it.
    std::fs::create_dir_all(&config.root).map_err(|source| ServerError::Dir {
        path: config.root.clone(),
        source,
    })?;
    let _root_lock = lock::DaemonLock::acquire(&config.root.join("strata.lock"))?;
    let socket_path = config.socket.clone();
    let ctx = Arc::new(Context::open(config)?);
    ctx.runtime.recover().await?;
    let streaming =
        crate::streaming::StreamingServer::start(&ctx.config.streaming, ctx.runtime.clone())
            .await?;
    let _ = ctx.streaming.set(streaming);
    let listener = socket::bind(&socket_path)?;
    let shutdown = shutdown_signal()?;
    tracing::info!(socket = %socket_path.display(), version = crate::RUNTIME_VERSION, "strata serving CRI");

    let runtime = RuntimeServiceServer::new(RuntimeServiceImpl::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let image = ImageServiceServer::new(ImageServiceImpl::new(ctx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let admin = AdminServer::new(admin::AdminImpl::new(ctx.clone()));
    // After the signal, in-flight calls get a grace period; a client that keeps a connection
    // open and silent must not keep the daemon from exiting.
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let closing = ctx.clone();
    let shutdown = async move {
        shutdown.await;
        closing.runtime.close_events();
        let _ = signalled_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .layer(layer::RpcLayer::new(ctx.metrics.clone()))
        .add_service(runtime)
        .add_service(image)
        .add_service(admin)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown);
    let result = tokio::select! {
        result = server => result,
        () = async {
            if signalled_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("strata stopped");
    Ok(result?)
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
