//! Connecting to a CRI v1 endpoint over a unix socket.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{VersionRequest, VersionResponse};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

/// CRI messages can be large (ListContainers / ListImages on a busy node); the
/// kubelet allows 16 MiB, allow more so that the limit is never ours.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The version kubelet sends in VersionRequest.
pub const KUBELET_API_VERSION: &str = "0.1.0";

/// Both CRI services of one runtime endpoint, sharing one connection.
#[derive(Clone)]
pub struct Cri {
    pub endpoint: String,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to `endpoint` (`unix:///path/to.sock`, or a bare socket path).
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let path = socket_path(endpoint)?;
        // The URI is required by tonic but unused: the connector ignores it.
        let channel =
            Endpoint::try_from("http://[::1]:50051")?
                .connect_timeout(Duration::from_secs(10))
                .connect_with_connector(service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        })
    }

    /// The runtime's Version answer.
    pub async fn version(&self) -> anyhow::Result<VersionResponse> {
        let resp = self
            .runtime
            .clone()
            .version(VersionRequest {
                version: KUBELET_API_VERSION.to_owned(),
            })
            .await
            .with_context(|| format!("Version on {}", self.endpoint))?;
        Ok(resp.into_inner())
    }
}

/// The socket path of a `unix://` endpoint.
pub fn socket_path(endpoint: &str) -> anyhow::Result<PathBuf> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(p) => p,
        None if endpoint.starts_with('/') => endpoint,
        None => bail!("endpoint {endpoint:?}: only unix:///path endpoints are supported"),
    };
    if path.is_empty() {
        bail!("endpoint {endpoint:?} has an empty path");
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_endpoints() {
        assert_eq!(
            socket_path("unix:///run/strata/strata.sock").ok(),
            Some(PathBuf::from("/run/strata/strata.sock"))
        );
        assert_eq!(
            socket_path("/run/x.sock").ok(),
            Some(PathBuf::from("/run/x.sock"))
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://").is_err());
    }
}
