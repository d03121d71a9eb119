//! `GetContainerEvents`: every lifecycle event from the subscription on, until the client
//! leaves. A client that falls too far behind loses the oldest events (logged), so a slow
//! reader never holds the runtime back.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::cri::v1 as cri;
use crate::server::Context;

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

pub fn get_container_events(ctx: &Context, _req: cri::GetEventsRequest) -> EventStream {
    let rx = ctx.runtime.subscribe_events();
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((Ok(event), rx)),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "a GetContainerEvents client is too slow; it lost the oldest events"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }))
}
