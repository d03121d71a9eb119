//! The server streams of the `Stream*` list calls: a finished list handed out in batches, so
//! that no message nears gRPC's size limit however many objects a node has. The lists are
//! built exactly as the unary calls build them (one snapshot), then split.

use std::pin::Pin;

use futures::Stream;
use tonic::Status;

/// Objects per message: containerd's batch size, far below the 16 MiB limit even for stats.
pub const BATCH_SIZE: usize = 100;

pub type BatchStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// `items` as a stream of `wrap(batch)` messages; none at all for an empty list.
pub fn in_batches<T, R>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> BatchStream<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let mut batches = Vec::with_capacity(items.len().div_ceil(BATCH_SIZE));
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        batches.push(Ok(wrap(rest.by_ref().take(BATCH_SIZE).collect())));
    }
    Box::pin(futures::stream::iter(batches))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn splits_into_full_batches_and_sends_nothing_for_nothing() {
        let sizes = |n: usize| async move {
            in_batches((0..n).collect::<Vec<_>>(), |b| b)
                .map(|b| b.map(|b| b.len()).unwrap_or(0))
                .collect::<Vec<_>>()
                .await
        };
        assert_eq!(sizes(0).await, Vec::<usize>::new());
        assert_eq!(sizes(1).await, vec![1]);
        assert_eq!(sizes(BATCH_SIZE).await, vec![BATCH_SIZE]);
        assert_eq!(
            sizes(2 * BATCH_SIZE + 3).await,
            vec![BATCH_SIZE, BATCH_SIZE, 3]
        );
        // Order is kept.
        let all: Vec<usize> = in_batches((0..250).collect(), |b| b)
            .map(|b| b.unwrap_or_default())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(all, (0..250).collect::<Vec<_>>());
    }
}
