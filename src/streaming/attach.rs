//! An attach session: the container's stdio through its monitor. Ends when the container's
//! output ends (the container exited), or with an error. The client closing stdin closes the
//! container's stdin when it was created with `stdin_once`; otherwise the attach continues.
//! A client too slow to read is disconnected by the monitor; the container never waits for it.

use std::sync::Arc;

use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::remotecommand::{BoxRead, Outcome, Streams, TermSize};
use crate::cri::v1 as cri;
use crate::monitor::client::AttachInput;
use crate::monitor::protocol;
use crate::runtime::Runtime;

pub async fn run(runtime: &Arc<Runtime>, req: &cri::AttachRequest, streams: Streams) -> Outcome {
    let Streams {
        stdin,
        mut stdout,
        mut stderr,
        resize,
    } = streams;
    let attached = runtime
        .attach(
            &req.container_id,
            stdin.is_some(),
            stdout.is_some(),
            stderr.is_some(),
        )
        .await;
    let (input, mut output) = match attached {
        Ok(a) => a,
        Err(e) => {
            for mut w in [stdout, stderr].into_iter().flatten() {
                let _ = w.shutdown().await;
            }
            return Outcome::Failure(e.to_string());
        }
    };
    let input_task = stdin.map(|stdin| tokio::spawn(copy_input(stdin, input)));
    let resize_task = resize.map(|mut rx| {
        let runtime_id = req.container_id.clone();
        let runtime = runtime.clone();
        tokio::spawn(async move {
            while let Some(TermSize { width, height }) = rx.recv().await {
                if let Err(e) = runtime.resize_tty(&runtime_id, width, height).await {
                    tracing::debug!(error = %e, "attach: resizing the tty");
                }
            }
        })
    });
    let mut outcome = Outcome::Success;
    while let Some(frame) = output.next().await {
        let (stream, data) = match frame {
            Ok(frame) => frame,
            Err(e) => {
                outcome = Outcome::Failure(format!("reading the container's output: {e}"));
                break;
            }
        };
        let target = match stream {
            protocol::STDOUT => stdout.as_mut(),
            protocol::STDERR => stderr.as_mut(),
            _ => None,
        };
        // A client stream that failed is dropped; the monitor keeps serving the container.
        if let Some(w) = target
            && w.write_all(&data).await.is_err()
        {
            if stream == protocol::STDOUT {
                stdout = None;
            } else {
                stderr = None;
            }
        }
    }
    for mut w in [stdout, stderr].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    for task in [input_task, resize_task].into_iter().flatten() {
        task.abort();
    }
    outcome
}

/// The client's stdin to the container; its EOF sends the close that ends a `stdin_once`
/// container's stdin.
async fn copy_input(mut from: BoxRead, mut to: AttachInput) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                // AttachInput queues frames until flushed.
                if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                    return;
                }
            }
            // The client reset its stdin: like a close.
            Err(_) => break,
        }
    }
    let _ = to.shutdown().await;
}
