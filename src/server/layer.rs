//! The tower layer every RPC passes through: a tracing span (method, plus the object ids the
//! handler records into it), a duration observation, and one log line with the gRPC code.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::Instrument;

use super::metrics::RpcMetrics;

#[derive(Clone)]
pub struct RpcLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcLayer {
    pub fn new(metrics: Arc<RpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B, RB> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Standard tower pattern: use the service that was driven to readiness.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let method = req.uri().path().to_owned();
        // Handlers record the ids they act on (`id`) into this span.
        let span = tracing::info_span!("rpc", method = %method, id = tracing::field::Empty);
        Box::pin(
            async move {
                let start = Instant::now();
                let result = inner.call(req).await;
                let elapsed = start.elapsed();
                match &result {
                    Ok(resp) => {
                        // Errors are sent "trailers-only": grpc-status in the headers. A
                        // success carries its status in the trailers, so absent means OK.
                        let code = resp
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<i32>().ok())
                            .map(tonic::Code::from_i32)
                            .unwrap_or(tonic::Code::Ok);
                        let ok = code == tonic::Code::Ok;
                        metrics.observe(&method, elapsed, ok);
                        if ok {
                            tracing::debug!(elapsed_ms = elapsed.as_secs_f64() * 1e3, "ok");
                        } else {
                            let message = resp
                                .headers()
                                .get("grpc-message")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            tracing::info!(
                                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                                code = ?code,
                                message,
                                "failed"
                            );
                        }
                    }
                    Err(e) => {
                        metrics.observe(&method, elapsed, false);
                        tracing::warn!(error = %e, "transport error");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}
