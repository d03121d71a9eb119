//! `GetContainerEvents`: every lifecycle event from the subscription on, until the client
//! leaves. A client that falls too far behind loses the oldest events (logged), so a slow
//! reader never holds the runtime back.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::Status;

use crate::cri::v1 as cri;
use crate::runtime::events::Subscription;
use crate::server::Context;

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

pub fn get_container_events(ctx: &Context, _req: cri::GetEventsRequest) -> EventStream {
    event_stream(ctx.runtime.subscribe_events())
}

fn event_stream(subscription: Subscription) -> EventStream {
    Box::pin(futures::stream::unfold(
        subscription,
        |mut sub| async move {
            loop {
                let received = tokio::select! {
                    biased;
                    _ = sub.closing.wait_for(|closing| *closing) => return None,
                    received = sub.events.recv() => received,
                };
                match received {
                    Ok(event) => return Some((Ok(event), sub)),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "a GetContainerEvents client is too slow; it lost the oldest events"
                        );
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn event(n: i64) -> cri::ContainerEventResponse {
        cri::ContainerEventResponse {
            container_id: format!("c{n}"),
            created_at: n,
            ..Default::default()
        }
    }

    fn subscription(
        rx: tokio::sync::broadcast::Receiver<cri::ContainerEventResponse>,
        closing: &tokio::sync::watch::Sender<bool>,
    ) -> Subscription {
        Subscription {
            events: rx,
            closing: closing.subscribe(),
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_events_and_never_blocks_the_sender() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let closing = tokio::sync::watch::channel(false).0;
        let slow = event_stream(subscription(rx, &closing));
        let mut fast = event_stream(subscription(tx.subscribe(), &closing));
        for n in 0..10 {
            // Never blocks, whoever reads or not.
            tx.send(event(n)).unwrap();
            assert_eq!(fast.next().await.unwrap().unwrap().created_at, n);
        }
        drop(tx);
        let got: Vec<i64> = slow.map(|e| e.unwrap().created_at).collect().await;
        assert_eq!(got, [6, 7, 8, 9], "the newest, in order");
        assert!(
            fast.next().await.is_none(),
            "the stream ends with the runtime"
        );
    }

    #[tokio::test]
    async fn streams_end_at_shutdown() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let closing = tokio::sync::watch::channel(false).0;
        let mut stream = event_stream(subscription(rx, &closing));
        tx.send(event(1)).unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().created_at, 1);
        closing.send_replace(true);
        let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next());
        assert!(end.await.unwrap().is_none());
        drop(tx);
    }
}
