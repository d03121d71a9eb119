//! The streaming server end to end through the real daemon: `Exec`, `Attach` and `PortForward`
//! URLs served over SPDY/3.1 (as client-go speaks it) and WebSocket.

mod support;

use std::sync::Arc;
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod};
use support::streaming::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The shared daemon, a pod, and a long-running busybox container in it.
async fn running() -> (Arc<Env>, Pod, String) {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let id = pod
        .launch(pod.container("sleeper", &env.busybox(), &["sleep", "100000"]))
        .await;
    (env, pod, id)
}

async fn exec_url(pod: &Pod, id: &str, cmd: &[&str], want: Want) -> String {
    pod.rt
        .clone()
        .exec(cri::ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: want.tty,
            stdin: want.stdin,
            stdout: want.stdout,
            stderr: want.stderr,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url
}

async fn exec(pod: &Pod, id: &str, cmd: &[&str], want: Want) -> Finished {
    let url = exec_url(pod, id, cmd, want).await;
    open_command(&url, want).await.finish().await
}

const OUT_ERR: Want = Want {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

#[tokio::test(flavor = "multi_thread")]
async fn exec_echo_without_tty() {
    let (_env, pod, id) = running().await;
    let url = exec_url(&pod, &id, &["echo", "-n", "hello"], OUT_ERR).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(url.contains("/exec/"), "{url}");
    let cmd = open_command(&url, OUT_ERR).await;
    assert_eq!(cmd.protocol, "v5.channel.k8s.io");
    let done = cmd.finish().await;
    assert_eq!(done.stdout(), "hello");
    assert_eq!(done.stderr(), "");
    assert_eq!(
        done.status(),
        serde_json::json!({"metadata": {}, "status": "Success"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_tty_ends_on_exit_while_stdin_stays_open() {
    let (_env, pod, id) = running().await;
    let want = Want {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let started = std::time::Instant::now();
    let done = exec(&pod, &id, &["echo", "-n", "hello"], want).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(done.stdout().contains("hello"), "{done:?}");
    assert_eq!(done.stderr(), "");
    assert_eq!(done.status()["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_reports_the_exit_code() {
    let (_env, pod, id) = running().await;
    let done = exec(&pod, &id, &["sh", "-c", "echo oops >&2; exit 3"], OUT_ERR).await;
    assert_eq!(done.stderr(), "oops\n");
    let status = done.status();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_of_a_missing_command_fails() {
    let (_env, pod, id) = running().await;
    let done = exec(&pod, &id, &["no-such-command"], OUT_ERR).await;
    let status = done.status();
    assert_eq!(status["status"], "Failure", "{status}");
    assert!(
        done.stderr().contains("executable file not found"),
        "{done:?}"
    );
    assert_eq!(status["details"]["causes"][0]["message"], "127");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_stdin_round_trips_through_cat() {
    let (_env, pod, id) = running().await;
    let want = Want {
        stdin: true,
        ..OUT_ERR
    };
    let url = exec_url(&pod, &id, &["cat"], want).await;
    let mut cmd = open_command(&url, want).await;
    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let mut stdin = cmd.stdin.take().unwrap();
    let input = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
        stdin.shutdown().await.unwrap(); // EOF ends cat
    });
    let done = cmd.finish().await;
    writer.await.unwrap();
    assert_eq!(done.stdout.len(), data.len());
    assert!(done.stdout == data, "stdin came back altered");
    assert_eq!(done.status()["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_resize_reaches_the_tty() {
    let (_env, pod, id) = running().await;
    let want = Want {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let url = exec_url(
        &pod,
        &id,
        &["sh", "-c", "sleep 1; /bin/busybox stty size"],
        want,
    )
    .await;
    let mut cmd = open_command(&url, want).await;
    let mut resize = cmd.resize.take().unwrap();
    // One JSON object split across two DATA frames.
    resize.write_all(br#"{"Width":100,"#).await.unwrap();
    resize.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    resize.write_all(b"\"Height\":40}\n").await.unwrap();
    resize.flush().await.unwrap();
    cmd.resize = Some(resize);
    let done = cmd.finish().await;
    assert_eq!(done.stdout().trim(), "40 100", "{done:?}");
    assert_eq!(done.status()["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_large_output_without_window_updates() {
    let (_env, pod, id) = running().await;
    let size = 8 * 1024 * 1024;
    let script = format!("head -c {size} /dev/zero; echo -n end");
    let done = exec(&pod, &id, &["sh", "-c", &script], OUT_ERR).await;
    assert_eq!(done.stdout.len(), size + 3);
    assert!(done.stdout.ends_with(b"end"));
    assert_eq!(done.status()["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_sh_with_stdin_once() {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let mut config = pod.container("shell", &env.busybox(), &["/bin/sh"]);
    config.stdin = true;
    config.stdin_once = true;
    let id = pod.launch(config).await;
    let url = pod
        .rt
        .clone()
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    assert!(url.contains("/attach/"), "{url}");
    let want = Want {
        stdin: true,
        ..OUT_ERR
    };
    let mut cmd = open_command(&url, want).await;
    let mut stdin = cmd.stdin.take().unwrap();
    let mut stdout = cmd.stdout.take().unwrap();
    stdin.write_all(b"echo -n hello\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 5 {
        let n = tokio::time::timeout(SESSION_TIMEOUT, stdout.read(&mut buf))
            .await
            .expect("output in time")
            .unwrap();
        assert!(n > 0, "stdout ended early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello");
    // Closing stdin closes the container's (stdin_once): sh exits and the attach ends.
    stdin.shutdown().await.unwrap();
    cmd.stdout = Some(stdout);
    let done = cmd.finish().await;
    assert_eq!(done.stdout(), "");
    assert_eq!(done.stderr(), "");
    assert_eq!(done.status()["status"], "Success");
    let status = pod.wait_exited(&id, Duration::from_secs(10)).await;
    assert_eq!(status.exit_code, 0);
}

/// A pod running busybox httpd on 127.0.0.1:8080 inside its own network namespace.
async fn httpd_pod() -> (Arc<Env>, Pod) {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let script = "mkdir -p /tmp/www && echo -n hi-from-the-pod > /tmp/www/index.html && \
                  exec /bin/busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www";
    pod.launch(pod.sh("httpd", &env.busybox(), script)).await;
    (env, pod)
}

async fn port_forward_url(pod: &Pod) -> String {
    port_forward_url_with(pod, vec![]).await
}

async fn port_forward_url_with(pod: &Pod, port: Vec<i32>) -> String {
    pod.rt
        .clone()
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.id.clone(),
            port,
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url
}

const GET: &[u8] = b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n";

/// Retries until httpd answers (it starts asynchronously).
async fn first_answer(pf: &PortForward) -> Forwarded {
    for _ in 0..50 {
        let got = pf.request(8080, GET).await;
        if !got.data.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("httpd never answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_serves_concurrent_connections_and_reports_closed_ports() {
    let (_env, pod) = httpd_pod().await;
    let url = port_forward_url(&pod).await;
    assert!(url.contains("/portforward/"), "{url}");
    let pf = Arc::new(PortForward::spdy(&url).await);
    let first = first_answer(&pf).await;
    let text = String::from_utf8_lossy(&first.data).into_owned();
    assert!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    assert!(text.ends_with("hi-from-the-pod"), "{text}");
    assert!(first.error.is_empty());

    let requests = (0..20).map(|_| {
        let pf = pf.clone();
        tokio::spawn(async move { pf.request(8080, GET).await })
    });
    for answered in futures::future::join_all(requests).await {
        let answered = answered.unwrap();
        let text = String::from_utf8_lossy(&answered.data);
        assert!(text.ends_with("hi-from-the-pod"), "{text}");
        assert!(answered.error.is_empty());
    }

    // Nothing listens on 8081: an error message, and the session goes on.
    let refused = pf.request(8081, GET).await;
    assert!(refused.data.is_empty());
    let line: serde_json::Value = serde_json::from_slice(&refused.error).unwrap();
    assert!(line["message"].as_str().unwrap().contains("8081"), "{line}");
    assert_eq!(line["closeConnection"], true);
    let again = pf.request(8080, GET).await;
    assert!(String::from_utf8_lossy(&again.data).ends_with("hi-from-the-pod"));
    // httpd listens in the pod's namespace only.
    assert!(std::net::TcpStream::connect("127.0.0.1:8080").is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_tunnelled_in_websocket() {
    let (_env, pod) = httpd_pod().await;
    let url = port_forward_url(&pod).await;
    let pf = PortForward::websocket(&url).await;
    let got = first_answer(&pf).await;
    assert!(String::from_utf8_lossy(&got.data).ends_with("hi-from-the-pod"));
    pf.session.close().await;

    // Legacy WebSocket port-forward: ports from the request, channel 0 data, 1 errors.
    use futures::StreamExt as _;
    let url = port_forward_url_with(&pod, vec![8080]).await;
    let (mut ws, protocol) = ws_connect(&url, &["v4.channel.k8s.io"]).await;
    assert_eq!(protocol.as_deref(), Some("v4.channel.k8s.io"));
    let mut data = Vec::new();
    let mut announced = Vec::new();
    let mut sent = false;
    let run = async {
        while let Some(message) = ws.next().await {
            let bytes = message.unwrap().into_data();
            if bytes.is_empty() {
                continue;
            }
            if announced.len() < 2 {
                announced.push(bytes.to_vec());
            } else {
                assert_eq!(bytes[0], 0, "{bytes:?}");
                data.extend_from_slice(&bytes[1..]);
            }
            if announced.len() == 2 && !sent {
                let mut get = vec![0u8];
                get.extend_from_slice(GET);
                ws_send(&mut ws, get).await;
                sent = true;
            }
            if data.ends_with(b"hi-from-the-pod") {
                break;
            }
        }
    };
    tokio::time::timeout(SESSION_TIMEOUT, run)
        .await
        .expect("answer in time");
    assert_eq!(announced, vec![vec![0, 0x90, 0x1f], vec![1, 0x90, 0x1f]]);
    assert!(String::from_utf8_lossy(&data).contains(" 200 "));
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_single_use_and_requests_must_upgrade() {
    let (_env, pod, id) = running().await;
    let url = exec_url(&pod, &id, &["true"], OUT_ERR).await;
    let done = open_command(&url, OUT_ERR).await.finish().await;
    assert_eq!(done.status()["status"], "Success");
    // Reused.
    let up = spdy_upgrade(&url, &EXEC_PROTOCOLS).await;
    assert_eq!(up.status, 404);
    // Unknown.
    let (host, _) = split_url(&url);
    let up = spdy_upgrade(&format!("http://{host}/exec/not-a-token"), &EXEC_PROTOCOLS).await;
    assert_eq!(up.status, 404);
    // Not an upgrade.
    let url = exec_url(&pod, &id, &["true"], OUT_ERR).await;
    let (code, _) = raw_request(&url, "").await;
    assert_eq!(code, 400);
    // No common protocol.
    let url = exec_url(&pod, &id, &["true"], OUT_ERR).await;
    let up = spdy_upgrade(&url, &["channel.k8s.io", "v9.channel.k8s.io"]).await;
    assert_eq!(up.status, 403);
    let accepted = up.headers_named("x-accepted-stream-protocol-versions");
    assert!(
        accepted.contains(&"v4.channel.k8s.io".to_owned()),
        "{accepted:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rpcs_validate_their_requests() {
    let (_env, pod, id) = running().await;
    let mut rt = pod.rt.clone();
    let exec = |tty, stdin, stdout, stderr, container: &str| cri::ExecRequest {
        container_id: container.into(),
        cmd: vec!["true".into()],
        tty,
        stdin,
        stdout,
        stderr,
    };
    fn code<T>(r: Result<T, tonic::Status>) -> tonic::Code {
        r.map(|_| ()).unwrap_err().code()
    }
    assert_eq!(
        code(rt.exec(exec(true, false, true, true, &id)).await),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(rt.exec(exec(false, false, false, false, &id)).await),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code(
            rt.exec(exec(false, false, true, false, "nonexistent"))
                .await
        ),
        tonic::Code::NotFound
    );
    let attach = cri::AttachRequest {
        container_id: id.clone(),
        tty: true,
        stderr: true,
        stdout: true,
        stdin: false,
    };
    assert_eq!(code(rt.attach(attach).await), tonic::Code::InvalidArgument);
    let pf = cri::PortForwardRequest {
        pod_sandbox_id: "nonexistent".into(),
        port: vec![],
    };
    assert_eq!(code(rt.port_forward(pf).await), tonic::Code::NotFound);
    // An exited container cannot be exec'd into.
    let done = pod.run(pod.sh("quick", &_env.busybox(), "true")).await;
    assert_eq!(
        code(rt.exec(exec(false, false, true, false, &done.id)).await),
        tonic::Code::FailedPrecondition
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_v5_exec_with_stdin_close() {
    let (_env, pod, id) = running().await;
    let want = Want {
        stdin: true,
        ..OUT_ERR
    };
    let url = exec_url(&pod, &id, &["cat"], want).await;
    let (mut ws, protocol) = ws_connect(&url, &["v5.channel.k8s.io"]).await;
    assert_eq!(protocol.as_deref(), Some("v5.channel.k8s.io"));
    ws_send(&mut ws, b"\x00round trip".to_vec()).await;
    ws_send(&mut ws, vec![255, 0]).await; // stdin EOF: cat exits
    let done = ws_collect(&mut ws, false).await;
    assert_eq!(
        done.channels.get(&1).map(Vec::as_slice),
        Some(&b"round trip"[..])
    );
    assert_eq!(done.channels.get(&2), None);
    let status: serde_json::Value = serde_json::from_slice(&done.channels[&3]).unwrap();
    assert_eq!(status["status"], "Success");
    assert_eq!(done.close_code, Some(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_v5_exec_exit_code() {
    let (_env, pod, id) = running().await;
    let url = exec_url(&pod, &id, &["sh", "-c", "exit 3"], OUT_ERR).await;
    let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await;
    let done = ws_collect(&mut ws, false).await;
    let status: serde_json::Value = serde_json::from_slice(&done.channels[&3]).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(done.close_code, Some(1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_base64_exec() {
    let (_env, pod, id) = running().await;
    let url = exec_url(&pod, &id, &["echo", "-n", "hello"], OUT_ERR).await;
    let (mut ws, protocol) = ws_connect(&url, &["v9.unknown", "v4.base64.channel.k8s.io"]).await;
    assert_eq!(protocol.as_deref(), Some("v4.base64.channel.k8s.io"));
    let done = ws_collect(&mut ws, true).await;
    assert_eq!(done.channels[&1], b"hello");
    // The announcing empty message came first on stdout.
    assert!(done.messages[&1] >= 2, "{done:?}");
    let status: serde_json::Value = serde_json::from_slice(&done.channels[&3]).unwrap();
    assert_eq!(status["status"], "Success");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_never_blocks_the_container() {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let script = "while true; do head -c 100000 /dev/zero; echo; sleep 0.02; done";
    let id = pod.launch(pod.sh("noisy", &env.busybox(), script)).await;
    let url = pod
        .rt
        .clone()
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: false,
            tty: false,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let want = Want {
        stdout: true,
        ..Default::default()
    };
    // Attached, and never reading.
    let cmd = open_command(&url, want).await;
    let log = pod.logs.path().join("noisy.log");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = size();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(size() > before + 1_000_000, "the log stalled at {before}");
    let status = pod.status(&id).await;
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    drop(cmd);
}

/// Whether a process with `arg` on its command line runs in the container.
async fn runs_in(pod: &Pod, id: &str, arg: &str) -> bool {
    let out = pod
        .rt
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), "cat /proc/[0-9]*/cmdline".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    String::from_utf8_lossy(&out.stdout).contains(arg)
}

async fn gone_soon(pod: &Pod, id: &str, arg: &str) {
    for _ in 0..100 {
        if !runs_in(pod, id, arg).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sleep {arg} still runs after its client went away");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_ends_its_exec() {
    let (_env, pod, id) = running().await;
    // SPDY: the client tears the connection down.
    let url = exec_url(&pod, &id, &["sleep", "4242"], OUT_ERR).await;
    let cmd = open_command(&url, OUT_ERR).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(runs_in(&pod, &id, "4242").await);
    cmd.session.close().await;
    gone_soon(&pod, &id, "4242").await;
    // WebSocket: the client closes.
    let url = exec_url(&pod, &id, &["sleep", "4343"], OUT_ERR).await;
    let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(runs_in(&pod, &id, "4343").await);
    ws.close(None).await.unwrap();
    gone_soon(&pod, &id, "4343").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_to_a_host_network_pod() {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let host_net = || cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        ..Default::default()
    };
    let config = cri::PodSandboxConfig {
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(host_net()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = Pod::start(&env.daemon, config).await;
    let port = support::free_port();
    let script = format!(
        "mkdir -p /tmp/www && echo -n hi-from-the-host > /tmp/www/index.html && \
         exec /bin/busybox httpd -f -p 127.0.0.1:{port} -h /tmp/www"
    );
    let mut container = pod.sh("httpd", &env.busybox(), &script);
    container.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            namespace_options: Some(host_net()),
            ..Default::default()
        }),
        ..Default::default()
    });
    pod.launch(container).await;
    let pf = PortForward::spdy(&port_forward_url(&pod).await).await;
    let mut answer = Vec::new();
    for _ in 0..50 {
        answer = pf.request(port, GET).await.data;
        if !answer.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(String::from_utf8_lossy(&answer).ends_with("hi-from-the-host"));
    // The same server is on the host's loopback.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_tty_is_a_pty_of_the_container() {
    let (_env, pod, id) = running().await;
    let want = Want {
        stdin: false,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let script = r#"t=$(/bin/busybox tty) && test -c "$t" && ls /dev/pts | grep -qx "${t#/dev/pts/}" && echo "ok $t""#;
    let done = exec(&pod, &id, &["sh", "-c", script], want).await;
    assert!(done.stdout().starts_with("ok /dev/pts/"), "{done:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_with_tty_applies_resizes() {
    let env = Env::shared();
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let mut config = pod.container("tty", &env.busybox(), &["/bin/sh"]);
    config.stdin = true;
    config.tty = true;
    let id = pod.launch(config).await;
    let url = pod
        .rt
        .clone()
        .attach(cri::AttachRequest {
            container_id: id.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("Attach")
        .into_inner()
        .url;
    let want = Want {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let mut cmd = open_command(&url, want).await;
    let mut resize = cmd.resize.take().unwrap();
    resize
        .write_all(b"{\"Width\":77,\"Height\":33}\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stdin = cmd.stdin.take().unwrap();
    stdin
        .write_all(b"/bin/busybox stty size; exit\n")
        .await
        .unwrap();
    cmd.stdin = Some(stdin);
    cmd.resize = Some(resize);
    let done = cmd.finish().await;
    assert!(done.stdout().contains("33 77"), "{:?}", done.stdout());
    assert_eq!(done.status()["status"], "Success");
}

/// With `tls_cert`/`tls_key` the server speaks HTTPS: the URLs are `https://`, a client that
/// trusts the certificate runs an exec over TLS, and plain HTTP gets no answer.
#[tokio::test(flavor = "multi_thread")]
async fn exec_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    let (csr, ext) = (dir.path().join("leaf.csr"), dir.path().join("leaf.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    // A CA, and a server certificate for 127.0.0.1 it signs.
    let mut args: Vec<&std::ffi::OsStr> = vec![os("req"), os("-x509")];
    args.extend(ec.iter().map(|a| os(a)));
    args.extend([os("-days"), os("1"), os("-subj"), os("/CN=strata-test-ca")]);
    args.extend([
        os("-keyout"),
        ca_key.as_os_str(),
        os("-out"),
        ca.as_os_str(),
    ]);
    openssl(&args);
    let mut args: Vec<&std::ffi::OsStr> = vec![os("req")];
    args.extend(ec.iter().map(|a| os(a)));
    args.extend([os("-subj"), os("/CN=127.0.0.1")]);
    args.extend([os("-keyout"), key.as_os_str(), os("-out"), csr.as_os_str()]);
    openssl(&args);
    openssl(&[
        os("x509"),
        os("-req"),
        os("-in"),
        csr.as_os_str(),
        os("-CA"),
        ca.as_os_str(),
        os("-CAkey"),
        ca_key.as_os_str(),
        os("-CAcreateserial"),
        os("-days"),
        os("1"),
        os("-extfile"),
        ext.as_os_str(),
        os("-out"),
        cert.as_os_str(),
    ]);
    // Kept for the process: only this test's URLs are https.
    let root = std::env::temp_dir().join(format!("strata-tls-root-{}.pem", std::process::id()));
    std::fs::copy(&ca, &root).expect("copying the CA certificate");
    let _remove_root = RemoveOnDrop(root.clone());
    TLS_ROOT.set(root).expect("TLS_ROOT set once");

    let env = Env::new(&format!(
        "[streaming]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    env.pull(&env.busybox()).await;
    let pod = Pod::start(&env.daemon, cri::PodSandboxConfig::default()).await;
    let id = pod
        .launch(pod.container("tls", &env.busybox(), &["sleep", "100000"]))
        .await;
    let url = exec_url(&pod, &id, &["echo", "-n", "hello"], OUT_ERR).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let done = open_command(&url, OUT_ERR).await.finish().await;
    assert_eq!(done.stdout(), "hello");
    assert_eq!(done.status()["status"], "Success");

    // The same server in plain HTTP: the TLS layer refuses it, no HTTP answer comes back.
    let plain = exec_url(&pod, &id, &["true"], OUT_ERR).await;
    let plain = plain.replacen("https://", "http://", 1);
    let (host, path) = split_url(&plain);
    let mut tcp = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
