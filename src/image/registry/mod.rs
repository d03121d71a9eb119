//! The registry client: resolves a reference to this machine's image (linux/amd64 on x86-64:
//! manifest, config) and streams the layers.
//!
//! The protocol (the `/v2/` challenge, anonymous and credentialed bearer tokens, HTTP basic
//! auth, manifest and blob requests, token refresh) is oci-client's. This module adds what
//! oci-client leaves to its caller:
//!
//! - **Endpoints** ([`endpoints`]): `registry.hosts[domain].endpoint` alone, else the mirrors in
//!   order and then the host (`docker.io` is `registry-1.docker.io`). A failing mirror is logged
//!   and the next endpoint tried; the last error is returned. An endpoint may carry a path
//!   prefix (`https://mirror.example/docker`): oci-client builds `scheme://{registry}/v2/...`,
//!   so the prefix is passed as part of its "registry". No `?ns=` parameter is sent to mirrors.
//! - **Scheme**: plain HTTP for `http://` endpoints, for hosts in `insecure_hosts` and for
//!   loopback hosts (as Docker does); HTTPS with rustls everywhere else. "Insecure" means plain
//!   HTTP, not HTTPS without certificate checks.
//! - **Credentials**: the request's credentials go only to the image's own registry (or the
//!   endpoint that replaces it), never to a mirror; otherwise the credentials file is looked up
//!   by the host contacted (for the registry itself: by its domain, and Docker Hub's
//!   `https://index.docker.io/v1/` key counts for `docker.io`).
//! - **One oci-client per (endpoint, credentials)**: oci-client keeps the first credentials it
//!   sees for a registry and caches tokens per registry and repository, so one shared client
//!   would let one pod's credentials (or their absence) leak into another's pull. Clients are
//!   cached by endpoint and credentials, so tokens are still reused between pulls that may.
//! - **Verification**: the top-level manifest must hash to the reference's digest when it has
//!   one, the chosen platform manifest to its index entry, the config blob to its descriptor
//!   (size and digest). oci-client also checks `Docker-Content-Digest` headers and re-hashes
//!   blobs as they stream.
//! - **Timeouts**: connect (10 s); a whole resolution at one endpoint (2 min); and an idle
//!   timeout on blob streams that only runs while waiting for the network (2 min), so a slow
//!   consumer does not trip it and a large layer can take as long as it needs.
//!
//! Not done: an identity token is sent as a bearer token as it is, not exchanged for an
//! access token first; manifest size is not capped (oci-client reads the body whole).

mod credentials;
mod endpoints;
mod error;
mod manifest;

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use oci_client::Reference as OciReference;
use oci_client::client::{ClientConfig, ClientProtocol};

pub use credentials::Credentials;
use credentials::CredentialsFile;
use endpoints::{Endpoint, Role};
pub use error::RegistryError;
use error::from_oci;
pub use manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use manifest::{Manifest, ParseError};

use crate::config::RegistryConfig;
use crate::image::digest::Digest;
use crate::image::reference::Reference;

const USER_AGENT: &str = concat!("strata/", env!("CARGO_PKG_VERSION"));
/// Image configs are small JSON documents; refuse to buffer anything absurd.
const MAX_CONFIG_SIZE: u64 = 64 << 20;
/// Bound on cached oci-clients (one per endpoint and credentials); the cache is simply emptied
/// when full.
const MAX_CACHED_CLIENTS: usize = 64;

/// The stream of one blob's bytes.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// A blob as a manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDescriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// How long to wait. The defaults suit a daemon; tests may shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// Resolving at one endpoint (token, manifests, config), and the response headers of a
    /// blob request.
    pub request: Duration,
    /// A blob stream that yields nothing for this long while waiting on the network fails.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(120),
            idle: Duration::from_secs(120),
        }
    }
}

/// An image resolved to this machine's platform manifest, with its verified config.
#[derive(Clone)]
pub struct ResolvedImage {
    pub reference: Reference,
    /// Digest of what the reference points at (the index, for a multi-arch image): the image's
    /// repo digest.
    pub manifest_digest: Digest,
    /// Digest of the platform's image manifest (equal to `manifest_digest` unless the
    /// reference points at an index).
    pub platform_manifest_digest: Digest,
    /// The image id.
    pub config_digest: Digest,
    /// The raw config JSON, verified against `config_digest`.
    pub config: Vec<u8>,
    /// From the platform manifest, in order.
    pub layers: Vec<BlobDescriptor>,
    endpoint: Endpoint,
    client: oci_client::Client,
    oci_ref: OciReference,
}

impl ResolvedImage {
    /// The endpoint that served the manifest (`http://127.0.0.1:5000`), from which the blobs
    /// are fetched.
    pub fn endpoint(&self) -> String {
        self.endpoint.url()
    }
}

impl fmt::Debug for ResolvedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedImage")
            .field("reference", &self.reference)
            .field("manifest_digest", &self.manifest_digest)
            .field("platform_manifest_digest", &self.platform_manifest_digest)
            .field("config_digest", &self.config_digest)
            .field("layers", &self.layers)
            .field("endpoint", &self.endpoint.url())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    plain_http: bool,
    registry: String,
    creds: Option<Credentials>,
}

struct Inner {
    cfg: RegistryConfig,
    file: CredentialsFile,
    timeouts: Timeouts,
    clients: Mutex<HashMap<ClientKey, oci_client::Client>>,
}

/// The daemon's registry client; cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("timeouts", &self.inner.timeouts)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Reads `credentials_file` if set (a missing or bad file is an error naming it).
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        Self::with_timeouts(cfg, Timeouts::default())
    }

    pub fn with_timeouts(cfg: &RegistryConfig, timeouts: Timeouts) -> Result<Self, RegistryError> {
        let file = if cfg.credentials_file.as_os_str().is_empty() {
            CredentialsFile::default()
        } else {
            CredentialsFile::load(&cfg.credentials_file)?
        };
        // Refuse bad endpoint URLs now rather than at the first pull.
        for host in cfg.hosts.keys() {
            endpoints::endpoints_for(cfg, host)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                file,
                timeouts,
                clients: Mutex::default(),
            }),
        })
    }

    /// Resolves `reference` to this machine's image: fetches the manifest (following an OCI
    /// index / Docker manifest list to the linux/<native arch> entry, preferring no variant / v1),
    /// verifies it, fetches and verifies the config blob. Tries the host's endpoints in order.
    pub async fn resolve(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<ResolvedImage, RegistryError> {
        let endpoints = endpoints::endpoints_for(&self.inner.cfg, reference.domain())?;
        let count = endpoints.len();
        let mut last = None;
        for (i, endpoint) in endpoints.into_iter().enumerate() {
            let url = endpoint.url();
            let creds = self.creds_for(reference, &endpoint, creds);
            let attempt = self.resolve_at(reference, endpoint, creds);
            let result = match tokio::time::timeout(self.inner.timeouts.request, attempt).await {
                Ok(result) => result,
                Err(_) => Err(RegistryError::TimedOut {
                    what: format!("manifest of {reference}"),
                    endpoint: url.clone(),
                    seconds: self.inner.timeouts.request.as_secs(),
                }),
            };
            match result {
                Ok(image) => return Ok(image),
                Err(e) => {
                    if i + 1 < count {
                        tracing::warn!(%reference, endpoint = %url, error = %e,
                            "registry mirror failed; trying the next endpoint");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("endpoints_for returns at least one endpoint"))
    }

    /// Streams one blob (a layer) from the endpoint that served the manifest. The caller
    /// verifies the digest as it consumes the stream (oci-client checks it too, and the stream
    /// ends with an error if it does not match). A `Content-Length` other than the
    /// descriptor's size fails at once.
    pub async fn fetch_blob(
        &self,
        image: &ResolvedImage,
        blob: &BlobDescriptor,
    ) -> Result<BlobStream, RegistryError> {
        let what = format!("blob {} of {}", blob.digest, image.reference);
        let endpoint = image.endpoint.url();
        let sized = self
            .start_blob(&image.client, &image.oci_ref, blob, &what, &endpoint)
            .await?;
        Ok(Box::pin(IdleTimeout {
            inner: sized.stream,
            sleep: None,
            idle: self.inner.timeouts.idle,
            what,
            endpoint,
            done: false,
        }))
    }

    /// Which credentials go to `endpoint` for `reference` (see the module doc).
    fn creds_for(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        request: Option<&Credentials>,
    ) -> Option<Credentials> {
        let file = &self.inner.file;
        match endpoint.role {
            Role::Mirror => file.get(&endpoint.authority).cloned(),
            Role::Upstream => request.or_else(|| file.get(reference.domain())).cloned(),
            Role::Redirect => request
                .or_else(|| file.get(reference.domain()))
                .or_else(|| file.get(&endpoint.authority))
                .cloned(),
        }
    }

    fn oci_client(
        &self,
        endpoint: &Endpoint,
        creds: Option<&Credentials>,
    ) -> Result<oci_client::Client, RegistryError> {
        let key = ClientKey {
            plain_http: endpoint.plain_http,
            registry: endpoint.oci_registry(),
            creds: creds.cloned(),
        };
        let mut clients = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(self.inner.timeouts.connect),
            platform_resolver: None,
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let client =
            oci_client::Client::try_from(config).map_err(|e| RegistryError::Unavailable {
                what: "HTTP client".into(),
                endpoint: endpoint.url(),
                message: error::chain(&e),
            })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    async fn resolve_at(
        &self,
        reference: &Reference,
        endpoint: Endpoint,
        creds: Option<Credentials>,
    ) -> Result<ResolvedImage, RegistryError> {
        let client = self.oci_client(&endpoint, creds.as_ref())?;
        let auth = Credentials::to_oci(creds.as_ref());
        let url = endpoint.url();
        let registry = endpoint.oci_registry();
        let repository = reference.repository().to_owned();
        // What the manifests endpoint is asked for: the digest when pinned, else the tag.
        let top_ref = match reference.digest() {
            Some(digest) => OciReference::with_digest(registry, repository, digest.to_string()),
            None => OciReference::with_tag(registry, repository, reference.manifest_reference()),
        };
        let what = format!("manifest of {reference}");
        let (bytes, _) = client
            .pull_manifest_raw(&top_ref, &auth, manifest::ACCEPT)
            .await
            .map_err(|e| from_oci(e, &what, &url))?;
        let manifest_digest = Digest::of(&bytes);
        if let Some(want) = reference.digest()
            && *want != manifest_digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                endpoint: url,
                expected: want.clone(),
                actual: manifest_digest,
            });
        }
        let parse = |bytes: &[u8], what: &str| {
            manifest::parse(bytes).map_err(|e| match e {
                ParseError::Schema1 => RegistryError::Schema1 {
                    reference: reference.to_string(),
                    endpoint: url.clone(),
                },
                ParseError::Invalid(message) => RegistryError::BadManifest {
                    what: what.to_owned(),
                    endpoint: url.clone(),
                    message,
                },
            })
        };

        let (platform_manifest_digest, config, layers) = match parse(&bytes, &what)? {
            Manifest::Image { config, layers } => (manifest_digest.clone(), config, layers),
            Manifest::Index(entries) => {
                let entry =
                    manifest::pick_native(&entries).ok_or_else(|| RegistryError::NoPlatform {
                        reference: reference.to_string(),
                        endpoint: url.clone(),
                        platforms: manifest::platforms(&entries),
                    })?;
                let what = format!(
                    "linux/{} manifest {} of {reference}",
                    manifest::native_arch(),
                    entry.digest
                );
                let child_ref = top_ref.clone_with_digest(entry.digest.to_string());
                let (child, _) = client
                    .pull_manifest_raw(&child_ref, &auth, manifest::ACCEPT)
                    .await
                    .map_err(|e| from_oci(e, &what, &url))?;
                let actual = Digest::of(&child);
                if actual != entry.digest {
                    return Err(RegistryError::DigestMismatch {
                        what,
                        endpoint: url,
                        expected: entry.digest.clone(),
                        actual,
                    });
                }
                match parse(&child, &what)? {
                    Manifest::Image { config, layers } => (actual, config, layers),
                    Manifest::Index(_) => {
                        return Err(RegistryError::BadManifest {
                            what,
                            endpoint: url,
                            message: "an index entry for this platform is itself an index".into(),
                        });
                    }
                }
            }
        };

        let what = format!("config {} of {reference}", config.digest);
        if config.size > MAX_CONFIG_SIZE {
            return Err(RegistryError::BadManifest {
                what,
                endpoint: url,
                message: format!(
                    "config of {} bytes is larger than the {MAX_CONFIG_SIZE} allowed",
                    config.size
                ),
            });
        }
        let mut stream = self
            .start_blob(&client, &top_ref, &config, &what, &url)
            .await?
            .stream;
        let mut config_bytes = Vec::with_capacity(config.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Unavailable {
                what: what.clone(),
                endpoint: url.clone(),
                message: error::chain(&e),
            })?;
            config_bytes.extend_from_slice(&chunk);
            if config_bytes.len() as u64 > config.size {
                break;
            }
        }
        if config_bytes.len() as u64 != config.size {
            return Err(RegistryError::SizeMismatch {
                what,
                endpoint: url,
                expected: config.size,
                actual: config_bytes.len() as u64,
            });
        }
        let actual = Digest::of(&config_bytes);
        if actual != config.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                endpoint: url,
                expected: config.digest,
                actual,
            });
        }

        Ok(ResolvedImage {
            reference: reference.clone(),
            manifest_digest,
            platform_manifest_digest,
            config_digest: config.digest,
            config: config_bytes,
            layers,
            endpoint,
            client,
            // Blob URLs only use its registry and repository.
            oci_ref: top_ref,
        })
    }

    /// Sends a blob request and checks the response's length against the descriptor.
    async fn start_blob(
        &self,
        client: &oci_client::Client,
        oci_ref: &OciReference,
        blob: &BlobDescriptor,
        what: &str,
        endpoint: &str,
    ) -> Result<oci_client::client::SizedStream, RegistryError> {
        let digest = blob.digest.to_string();
        let request = client.pull_blob_stream(oci_ref, digest.as_str());
        let sized = tokio::time::timeout(self.inner.timeouts.request, request)
            .await
            .map_err(|_| RegistryError::TimedOut {
                what: what.to_owned(),
                endpoint: endpoint.to_owned(),
                seconds: self.inner.timeouts.request.as_secs(),
            })?
            .map_err(|e| from_oci(e, what, endpoint))?;
        if let Some(length) = sized.content_length
            && length != blob.size
        {
            return Err(RegistryError::SizeMismatch {
                what: what.to_owned(),
                endpoint: endpoint.to_owned(),
                expected: blob.size,
                actual: length,
            });
        }
        Ok(sized)
    }
}

/// A blob stream that fails when the network yields nothing for `idle`. The timer runs only
/// while the inner stream is pending, so time the consumer spends elsewhere does not count.
struct IdleTimeout {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    idle: Duration,
    what: String,
    endpoint: String,
    done: bool,
}

impl Stream for IdleTimeout {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                this.sleep = None;
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(RegistryError::Unavailable {
                    what: this.what.clone(),
                    endpoint: this.endpoint.clone(),
                    message: error::chain(&e),
                })))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.done = true;
                    return Poll::Ready(Some(Err(RegistryError::TimedOut {
                        what: this.what.clone(),
                        endpoint: this.endpoint.clone(),
                        seconds: idle.as_secs(),
                    })));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_timeout_only_counts_network_waits() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Bytes>>();
        let mut s = IdleTimeout {
            inner: rx.boxed(),
            sleep: None,
            idle: Duration::from_millis(200),
            what: "blob".into(),
            endpoint: "http://x".into(),
            done: false,
        };
        tx.unbounded_send(Ok(Bytes::from_static(b"a"))).unwrap();
        tx.unbounded_send(Ok(Bytes::from_static(b"b"))).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), "a");
        // A consumer busy elsewhere for longer than `idle` does not fail the stream.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(s.next().await.unwrap().unwrap(), "b");
        // Silence from the network does.
        let err = s.next().await.unwrap().unwrap_err();
        assert!(matches!(err, RegistryError::TimedOut { .. }), "{err}");
        assert!(s.next().await.is_none());
        drop(tx);
    }

    #[test]
    fn missing_credentials_file_is_named() {
        let cfg = RegistryConfig {
            credentials_file: "/nonexistent/strata-creds.json".into(),
            ..Default::default()
        };
        let err = RegistryClient::new(&cfg).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/strata-creds.json"),
            "{err}"
        );
    }
}
