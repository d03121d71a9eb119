//! `bench exec-stream` and `bench portforward`: the CRI streaming path as crictl / kubelet use
//! it, with strata's own SPDY client (`strata::streaming::spdy`, written to behave like
//! client-go: one stream at a time, each waiting for its SYN_REPLY).
//!
//! Each endpoint runs one pod with its own network namespace (not host network) and one
//! container. exec-stream: per session, the `Exec` RPC (`echo hi`, stdout only), the HTTP
//! upgrade to SPDY/3.1 and the streams `error` and `stdout`, timed until the first stdout byte
//! (p50/p90); the rest of the session (output check, status, close) is untimed. portforward:
//! the container serves `--bytes` zeros on `--port` with busybox `nc` (restarted after each
//! connection); per run, the `PortForward` RPC, the upgrade, the streams `error` and `data`
//! (headers `port`, `requestid`) and reading all the bytes, reported as MB/s.
//!
//! Endpoints are interleaved run by run. Every pod the bench made is removed at the end, also
//! after a failure (label `strata-bench=streaming`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecRequest, LinuxContainerConfig, LinuxPodSandboxConfig,
    PodSandboxConfig, PodSandboxMetadata, PortForwardRequest, RunPodSandboxRequest,
    StartContainerRequest,
};
use strata::streaming::spdy::{ClientSession, SpdyStream, client_upgrade};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Target;
use super::containers::{ensure_image, ms, percentile, remove_pod};
use crate::client::Cri;
use crate::specs::image_spec;

const LABEL_KEY: &str = "strata-bench";
const LABEL_VALUE: &str = "streaming";
/// What crictl offers for exec/attach, in its order.
const EXEC_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// client-go's wait for each SYN_REPLY.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct StreamingArgs {
    /// The container image (busybox with sh, echo, dd and nc; pulled first where absent).
    #[arg(long)]
    image: String,
    /// cgroup parent below which each runtime's pod gets `<runtime>-streaming`.
    #[arg(long, default_value = "/strata-bench")]
    cgroup_parent: String,
}

#[derive(Args, Debug)]
pub struct PortForwardArgs {
    #[command(flatten)]
    common: StreamingArgs,
    /// The port the container listens on (inside the pod's network namespace).
    #[arg(long, default_value = "8080")]
    port: u16,
    /// Bytes served per connection (default 100 MB).
    #[arg(long, default_value = "100000000")]
    bytes: u64,
}

struct Run<'a> {
    target: &'a Target,
    pod: Option<String>,
    container: String,
    samples: Vec<Duration>,
    rates: Vec<f64>,
}

pub async fn exec_stream(
    targets: &[Target],
    args: &StreamingArgs,
    runs: usize,
) -> anyhow::Result<()> {
    if runs == 0 {
        bail!("--runs wants a positive number");
    }
    let mut state: Vec<Run> = targets.iter().map(new_run).collect();
    let result = async {
        for r in state.iter_mut() {
            setup(r, args, &["sleep".into(), "3600".into()]).await?;
        }
        eprintln!(
            "bench exec-stream: 1 warm-up + {runs} sessions per runtime{}",
            if state.len() > 1 { ", interleaved" } else { "" }
        );
        for run in 0..=runs {
            for r in state.iter_mut() {
                let t = exec_session(&r.target.cri, &r.container)
                    .await
                    .with_context(|| format!("{}: exec session {run}", r.target.label))?;
                if run > 0 {
                    r.samples.push(t);
                }
            }
            if run > 0 && (run % 20 == 0 || run == runs) {
                let p: Vec<String> = state
                    .iter()
                    .map(|r| format!("{} p50 {}", r.target.label, ms(percentile(&r.samples, 50))))
                    .collect();
                eprintln!("  {run}/{runs}: {}", p.join(", "));
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    teardown(&mut state, result).await?;
    let mut p50s = Vec::new();
    for r in &state {
        println!(
            "exec-stream {}: exec+upgrade+streams to first stdout byte p50 {} p90 {} (min {}, max {}; {} sessions)",
            r.target.label,
            ms(percentile(&r.samples, 50)),
            ms(percentile(&r.samples, 90)),
            ms(percentile(&r.samples, 1)),
            ms(percentile(&r.samples, 100)),
            r.samples.len()
        );
        p50s.push(percentile(&r.samples, 50));
    }
    if let [a, b] = p50s[..] {
        println!(
            "ratio {}/{} exec-stream p50: {:.3}",
            state[0].target.label,
            state[1].target.label,
            a.as_secs_f64() / b.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

pub async fn portforward(
    targets: &[Target],
    args: &PortForwardArgs,
    runs: usize,
) -> anyhow::Result<()> {
    if runs == 0 {
        bail!("--runs wants a positive number");
    }
    // Whole MiB blocks from dd, and the client reads exactly `bytes`.
    let mib = args.bytes.div_ceil(1 << 20);
    let total = mib << 20;
    let script = format!(
        "while true; do dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | nc -l -p {}; done",
        args.port
    );
    let mut state: Vec<Run> = targets.iter().map(new_run).collect();
    let result = async {
        for r in state.iter_mut() {
            setup(r, &args.common, &["sh".into(), "-c".into(), script.clone()]).await?;
        }
        eprintln!(
            "bench portforward: 1 warm-up + {runs} transfers of {total} bytes per runtime{}",
            if state.len() > 1 { ", interleaved" } else { "" }
        );
        for run in 0..=runs {
            for r in state.iter_mut() {
                let pod = r.pod.clone().unwrap_or_default();
                let (t, n) = forward_session(&r.target.cri, &pod, args.port, total)
                    .await
                    .with_context(|| format!("{}: port-forward run {run}", r.target.label))?;
                let rate = n as f64 / 1e6 / t.as_secs_f64().max(1e-9);
                eprintln!(
                    "  {} run {run}: {n} bytes in {}: {rate:.1} MB/s",
                    r.target.label,
                    ms(t)
                );
                if run > 0 {
                    r.rates.push(rate);
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    teardown(&mut state, result).await?;
    let mut medians = Vec::new();
    for r in &state {
        let mut v = r.rates.clone();
        v.sort_by(f64::total_cmp);
        let med = v[(v.len() - 1) / 2];
        println!(
            "portforward {}: {total} bytes, MB/s p50 {med:.1} min {:.1} max {:.1} ({} runs)",
            r.target.label,
            v[0],
            v[v.len() - 1],
            v.len()
        );
        medians.push(med);
    }
    if let [a, b] = medians[..] {
        println!(
            "ratio {}/{} portforward MB/s p50: {:.3}",
            state[0].target.label,
            state[1].target.label,
            a / b.max(1e-9)
        );
    }
    Ok(())
}

fn new_run(target: &Target) -> Run<'_> {
    Run {
        target,
        pod: None,
        container: String::new(),
        samples: Vec::new(),
        rates: Vec::new(),
    }
}

async fn teardown(state: &mut [Run<'_>], result: anyhow::Result<()>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for r in state.iter_mut() {
        if let Some(pod) = r.pod.take()
            && let Err(e) = remove_pod(&r.target.cri, &pod).await
        {
            errors.push(format!("{e:#}"));
        }
    }
    result?;
    if !errors.is_empty() {
        bail!("removing pods: {}", errors.join("; "));
    }
    Ok(())
}

/// Runs the pod (own network namespace) and the container with `command`.
async fn setup(r: &mut Run<'_>, args: &StreamingArgs, command: &[String]) -> anyhow::Result<()> {
    let cri = &r.target.cri;
    ensure_image(cri, &args.image).await?;
    let runtime: String = r
        .target
        .label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let nonce = std::process::id();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "bench-streaming".into(),
            uid: format!("bench-{nonce}-streaming"),
            namespace: "strata-bench".into(),
            attempt: 0,
        }),
        labels: HashMap::from([(LABEL_KEY.into(), LABEL_VALUE.into())]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!(
                "{}/{runtime}-streaming",
                args.cgroup_parent.trim_end_matches('/')
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut rt = cri.runtime.clone();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| format!("{}: RunPodSandbox", cri.endpoint))?
        .into_inner()
        .pod_sandbox_id;
    r.pod = Some(pod.clone());
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "server".into(),
                    attempt: 0,
                }),
                image: Some(image_spec(&args.image)),
                command: command.to_vec(),
                linux: Some(LinuxContainerConfig::default()),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .with_context(|| format!("{}: CreateContainer", cri.endpoint))?
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .with_context(|| format!("{}: StartContainer", cri.endpoint))?;
    let state = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .with_context(|| format!("{}: ContainerStatus", cri.endpoint))?
        .into_inner()
        .status
        .map(|s| s.state);
    if state != Some(ContainerState::ContainerRunning as i32) {
        bail!("{}: the container is not running ({state:?})", cri.endpoint);
    }
    r.container = id;
    Ok(())
}

/// `http://host:port/path` -> (host:port, path).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("streaming URL {url:?}: only http:// is supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("streaming URL {url:?} has no host");
    }
    Ok((host.to_owned(), path.to_owned()))
}

/// Connects and upgrades; the negotiated protocol and the SPDY client.
async fn connect(url: &str, protocols: &[&str]) -> anyhow::Result<(String, ClientSession)> {
    let (host, path) = split_url(url)?;
    let tcp = TcpStream::connect(&host)
        .await
        .with_context(|| format!("connecting to {host}"))?;
    tcp.set_nodelay(true)?;
    let (status, headers, io) = client_upgrade(tcp, &host, "POST", &path, protocols)
        .await
        .with_context(|| format!("upgrading {url}"))?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if status != 101 {
        bail!("{url}: HTTP {status} instead of 101 ({headers:?})");
    }
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("spdy/3.1")) {
        bail!("{url}: the 101 lacks Upgrade: SPDY/3.1 ({headers:?})");
    }
    let proto = header("x-stream-protocol-version").unwrap_or_default();
    Ok((proto, ClientSession::start(io)))
}

/// Everything the peer sends on `s`. A reset after the data ends it like EOF: client-go's
/// spdystream reads a reset stream that way, and the Go server (apimachinery's SPDY
/// connection) resets every stream when it closes, right after writing the exec status.
async fn read_all(s: SpdyStream) -> std::io::Result<Vec<u8>> {
    let (mut r, _w) = s.split();
    read_to_end_or_reset(&mut r).await
}

async fn read_to_end_or_reset(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// One exec session; the time from the Exec RPC to the first stdout byte.
async fn exec_session(cri: &Cri, container: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let url = cri
        .runtime
        .clone()
        .exec(ExecRequest {
            container_id: container.into(),
            cmd: vec!["echo".into(), "hi".into()],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: false,
        })
        .await
        .with_context(|| format!("{}: Exec", cri.endpoint))?
        .into_inner()
        .url;
    let (proto, client) = connect(&url, EXEC_PROTOCOLS).await?;
    if proto != "v4.channel.k8s.io" && proto != "v5.channel.k8s.io" {
        bail!("{url}: negotiated {proto:?}, expected v4 or v5");
    }
    let error = client
        .open(&[("streamType", "error")], STREAM_TIMEOUT)
        .await
        .context("opening the error stream")?;
    let stdout = client
        .open(&[("streamType", "stdout")], STREAM_TIMEOUT)
        .await
        .context("opening the stdout stream")?;
    let (mut out_r, _out_w) = stdout.split();
    let mut first = [0u8; 1];
    let n = out_r.read(&mut first).await.context("reading stdout")?;
    let elapsed = t0.elapsed();
    if n == 0 {
        bail!("stdout ended without output");
    }
    let rest = read_to_end_or_reset(&mut out_r)
        .await
        .context("reading stdout")?;
    let status = read_all(error).await.context("reading the error stream")?;
    client.close().await;
    let mut output = vec![first[0]];
    output.extend_from_slice(&rest);
    if output != b"hi\n" {
        bail!("stdout was {:?}", String::from_utf8_lossy(&output));
    }
    let status = String::from_utf8_lossy(&status);
    if !status.is_empty() && !status.contains("\"Success\"") {
        bail!("exec status: {status}");
    }
    Ok(elapsed)
}

/// One forwarded connection reading `total` bytes; the time from the PortForward RPC to the last
/// byte. A refused connection (the server between two `nc` runs) is retried, untimed.
async fn forward_session(
    cri: &Cri,
    pod: &str,
    port: u16,
    total: u64,
) -> anyhow::Result<(Duration, u64)> {
    let mut last_error = String::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let url = cri
            .runtime
            .clone()
            .port_forward(PortForwardRequest {
                pod_sandbox_id: pod.into(),
                port: vec![],
            })
            .await
            .with_context(|| format!("{}: PortForward", cri.endpoint))?
            .into_inner()
            .url;
        let (proto, client) = connect(&url, &[PORTFORWARD_PROTOCOL]).await?;
        if proto != PORTFORWARD_PROTOCOL {
            bail!("{url}: negotiated {proto:?}");
        }
        let port_s = port.to_string();
        let headers = |kind| {
            [
                ("streamType", kind),
                ("port", port_s.as_str()),
                ("requestID", "0"),
            ]
        };
        let error = client
            .open(&headers("error"), STREAM_TIMEOUT)
            .await
            .context("opening the error stream")?;
        let (mut err_r, mut err_w) = error.split();
        // client-go closes its side of the error stream at once.
        err_w.shutdown().await?;
        let data = client
            .open(&headers("data"), STREAM_TIMEOUT)
            .await
            .context("opening the data stream")?;
        let (mut r, _w) = data.split();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < total {
            let n = r.read(&mut buf).await.context("reading the data stream")?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        let elapsed = t0.elapsed();
        if got >= total {
            client.close().await;
            return Ok((elapsed, got));
        }
        let mut msg = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), err_r.read_to_end(&mut msg)).await;
        client.close().await;
        last_error = format!(
            "data ended after {got} bytes; error stream: {:?}",
            String::from_utf8_lossy(&msg)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("port-forward to {port} failed 50 times: {last_error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_streaming_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:10010/exec/AbC").unwrap(),
            ("127.0.0.1:10010".into(), "/exec/AbC".into())
        );
        assert_eq!(
            split_url("http://[::1]:1").unwrap(),
            ("[::1]:1".into(), "/".into())
        );
        assert!(split_url("https://x/y").is_err());
        assert!(split_url("http:///y").is_err());
    }
}
