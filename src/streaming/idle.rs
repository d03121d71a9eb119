//! The idle limit of streaming sessions: a connection that carried no byte either way for
//! [`IDLE_TIMEOUT`] is dropped (kubelet's library: 4 h). Live client-go clients ping every few
//! seconds, so this only reaps connections whose peer vanished without closing them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// When a connection last moved bytes.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Completes once the connection has been idle for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

pin_project_lite::pin_project! {
    /// An IO that records its activity.
    pub struct Tracked<IO> {
        #[pin]
        io: IO,
        activity: Activity,
    }
}

impl<IO> Tracked<IO> {
    pub fn new(io: IO, activity: Activity) -> Self {
        Self { io, activity }
    }
}

impl<IO: AsyncRead> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.io.poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write(cx, buf))?;
        if n > 0 {
            this.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn idle_completes_only_after_silence() {
        let activity = Activity::new();
        let (a, mut b) = tokio::io::duplex(64);
        let mut tracked = Tracked::new(a, activity.clone());
        let limit = Duration::from_millis(400);
        tokio::time::sleep(Duration::from_millis(250)).await;
        b.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        tracked.read_exact(&mut byte).await.unwrap();
        let read_at = Instant::now();
        activity.idle(limit).await;
        // The read at 250 ms moved the deadline to 650 ms.
        assert!(read_at.elapsed() >= Duration::from_millis(390));
    }
}
