//! An exec session: runs the command with live stdio and copies between it and the client's
//! [`Streams`]. The session ends when the process has exited and its output is drained; the
//! client's stdin may stay open (it is not waited for).

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::remotecommand::{BoxRead, BoxWrite, Outcome, Streams};
use crate::cri::v1 as cri;
use crate::runtime::Runtime;

/// After the process exited, output still buffered in the pipe is copied; a read that finds
/// nothing for this long ends the copy (a background child may hold the pipe open forever).
const DRAIN_IDLE: Duration = Duration::from_millis(200);

pub async fn run(runtime: &Runtime, req: &cri::ExecRequest, streams: Streams) -> Outcome {
    let Streams {
        stdin,
        stdout,
        stderr,
        resize,
    } = streams;
    let spawned = runtime
        .exec_interactive(
            &req.container_id,
            req.cmd.clone(),
            req.tty,
            stdin.is_some(),
            stdout.is_some(),
            stderr.is_some(),
        )
        .await;
    let mut process = match spawned {
        Ok(p) => p,
        Err(e) => {
            close_outputs(stdout, stderr).await;
            return Outcome::Failure(e.to_string());
        }
    };
    let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
    let copy_out = |from: Option<BoxRead>, to: Option<BoxWrite>| {
        let exited = exited_rx.clone();
        async move {
            match (from, to) {
                (Some(from), Some(to)) => copy_output(from, to, exited).await,
                (None, Some(mut to)) => {
                    let _ = to.shutdown().await;
                }
                _ => {}
            }
        }
    };
    let out = tokio::spawn(copy_out(process.stdout.take(), stdout));
    let err = tokio::spawn(copy_out(process.stderr.take(), stderr));
    let input = match (stdin, process.stdin.take()) {
        (Some(from), Some(to)) => Some(tokio::spawn(copy_input(from, to))),
        _ => None,
    };
    let mut resize = resize;
    let status = loop {
        tokio::select! {
            status = process.wait() => break status,
            size = async {
                match resize.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match size {
                Some(size) => {
                    if let Err(e) = process.resize(size.width, size.height) {
                        tracing::debug!(error = %e, "exec: resizing the tty");
                    }
                }
                None => resize = None,
            },
        }
    };
    let _ = exited_tx.send(true);
    let _ = out.await;
    let _ = err.await;
    if let Some(input) = input {
        input.abort();
    }
    match status {
        Ok(0) => Outcome::Success,
        Ok(code) => Outcome::Exit(code),
        Err(e) => Outcome::Failure(format!("waiting for the exec process: {e}")),
    }
}

async fn close_outputs(stdout: Option<BoxWrite>, stderr: Option<BoxWrite>) {
    for mut w in [stdout, stderr].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}

/// Copies the client's stdin to the process; EOF from the client closes the process's stdin.
async fn copy_input(mut from: BoxRead, mut to: BoxWrite) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Copies process output to the client until EOF, or (once `exited`) until the output is idle;
/// then half-closes the client's stream. A client that went away stops the copy, and the
/// process's output is then discarded rather than left to fill the pipe.
async fn copy_output(
    mut from: BoxRead,
    mut to: BoxWrite,
    mut exited: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut client_ok = true;
    loop {
        let n = if *exited.borrow() {
            match tokio::time::timeout(DRAIN_IDLE, from.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                r = from.read(&mut buf) => r,
                changed = exited.changed() => {
                    if changed.is_err() {
                        break; // the session was dropped: the process is being killed
                    }
                    continue;
                }
            }
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client_ok && to.write_all(&buf[..n]).await.is_err() {
            client_ok = false;
        }
    }
    if client_ok {
        let _ = to.shutdown().await;
    }
}
