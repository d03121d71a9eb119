//! Pod networking through Debian's real CNI plugins (bridge, host-local, portmap): every test
//! brings its own network (a unique bridge, a unique private /24 in 10.234.0.0/16, host-local's
//! data in a temp dir) and a [`TestNet`] guard that deletes the bridge and the iptables rules
//! left for that network, even when the test fails. Traffic goes only to 127.0.0.1 and to the
//! pods' addresses.

mod support;

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, eventually, tail, unique};

/// Where Debian's containernetworking-plugins puts the plugins.
const PLUGINS: &str = "/usr/lib/cni";

/// Live [`TestNet`]s, and the host settings to restore when the last one goes: the bridge
/// plugin (isGateway) turns on IPv4 forwarding; portmap adds its top-level nat chains.
static HOST: Mutex<Option<HostState>> = Mutex::new(None);

struct HostState {
    live: usize,
    ip_forward: String,
    hostport_chains_existed: bool,
}

const HOSTPORT_CHAINS: &[&str] = &[
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// One test's CNI network: its conf dir, its bin dir (links to the real plugins, so a test can
/// break one), its host-local data dir. Dropping it deletes what the plugins may have left.
struct TestNet {
    name: String,
    bridge: String,
    /// `10.234.N`
    prefix: String,
    dir: tempfile::TempDir,
}

impl TestNet {
    /// Network number `n` (unique per test in this file): bridge + host-local (10.234.n.0/24)
    /// + portmap, or with `ip_ranges` host-local takes its range from the pod CIDR.
    fn new(n: u8, ip_ranges: bool) -> TestNet {
        {
            let mut host = HOST.lock().unwrap_or_else(|p| p.into_inner());
            match host.as_mut() {
                Some(h) => h.live += 1,
                None => {
                    *host = Some(HostState {
                        live: 1,
                        ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                            .unwrap_or_else(|_| "0".into()),
                        hostport_chains_existed: nat_chains().contains("CNI-HOSTPORT-DNAT"),
                    })
                }
            }
        }
        let pid = std::process::id() % 100_000;
        let net = TestNet {
            name: format!("strata-test-{n}-{pid}"),
            bridge: format!("stn{n}p{pid}"),
            prefix: format!("10.234.{n}"),
            dir: tempfile::Builder::new()
                .prefix("strata-cni-")
                .tempdir()
                .unwrap(),
        };
        std::fs::create_dir_all(net.conf_dir()).unwrap();
        std::fs::create_dir_all(net.bin_dir()).unwrap();
        for plugin in ["bridge", "host-local", "portmap"] {
            std::os::unix::fs::symlink(Path::new(PLUGINS).join(plugin), net.bin_dir().join(plugin))
                .unwrap();
        }
        let ipam = if ip_ranges {
            serde_json::json!({"type": "host-local", "dataDir": net.data_dir()})
        } else {
            serde_json::json!({
                "type": "host-local",
                "ranges": [[{"subnet": format!("{}.0/24", net.prefix), "gateway": format!("{}.1", net.prefix)}]],
                "dataDir": net.data_dir(),
            })
        };
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": net.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": net.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "capabilities": {"ipRanges": ip_ranges},
                    "ipam": ipam,
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            ],
        });
        net.write_conf(&conf);
        net
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn write_conf(&self, conf: &serde_json::Value) {
        std::fs::write(
            self.conf_dir().join("10-test.conflist"),
            serde_json::to_vec_pretty(conf).unwrap(),
        )
        .unwrap();
    }

    /// The daemon's `[network]` section for this network.
    fn toml(&self) -> String {
        format!(
            "[network]\ncni_conf_dir = \"{}\"\ncni_bin_dirs = [\"{}\"]\n",
            self.conf_dir().display(),
            self.bin_dir().display()
        )
    }

    /// Replaces plugin `name` by a script that fails every call.
    fn break_plugin(&self, name: &str) {
        self.script_plugin(
            name,
            "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"broken on purpose\"}'\nexit 1\n",
        );
    }

    /// Installs (or replaces) plugin `name` as a shell script.
    fn script_plugin(&self, name: &str, script: &str) {
        let path = self.bin_dir().join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{e}"),
            _ => {}
        }
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Makes `plugin` the last one of the list, in place of portmap; returns the list before.
    fn replace_last_plugin(&self, plugin: serde_json::Value) -> serde_json::Value {
        let original: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.conf_dir().join("10-test.conflist")).unwrap(),
        )
        .unwrap();
        let mut conf = original.clone();
        conf["plugins"][1] = plugin;
        self.write_conf(&conf);
        original
    }

    /// A last plugin that refuses ADD (and lets DEL succeed).
    fn fail_add_last(&self) {
        self.script_plugin(
            "fail-add",
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then \
             echo '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"refusing ADD\"}'; exit 1; fi\n",
        );
        self.replace_last_plugin(serde_json::json!({"type": "fail-add"}));
    }

    /// The addresses host-local has handed out and not released.
    fn allocated(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir().join(&self.name))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        delete_nat_rules(&format!("name: \\\"{}\\\"", self.name));
        let mut host = HOST.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = host.as_mut() {
            h.live -= 1;
            if h.live == 0 {
                let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &h.ip_forward);
                if !h.hostport_chains_existed {
                    remove_hostport_chains();
                }
                *host = None;
            }
        }
    }
}

fn iptables(args: &[&str]) -> Option<String> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nat_chains() -> String {
    iptables(&["-S"]).unwrap_or_default()
}

/// Deletes every nat rule whose text contains `needle` (portmap tags its rules with the
/// network's name), and the per-pod chains they jump to.
fn delete_nat_rules(needle: &str) {
    let rules = nat_chains();
    let mut chains = Vec::new();
    for rule in rules.lines().filter(|r| r.contains(needle)) {
        let Some(spec) = rule.strip_prefix("-A ") else {
            continue;
        };
        let words = shell_words(spec);
        if let Some(target) = words
            .iter()
            .position(|w| w == "-j")
            .and_then(|i| words.get(i + 1))
            && target.starts_with("CNI-DN-")
        {
            chains.push(target.clone());
        }
        let mut args = vec!["-D".to_owned()];
        args.extend(words);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        iptables(&refs);
    }
    for chain in chains {
        iptables(&["-F", &chain]);
        iptables(&["-X", &chain]);
    }
}

/// Removes portmap's top-level chains and the jumps to them (when no one else uses them).
fn remove_hostport_chains() {
    for rule in nat_chains().lines() {
        if let Some(spec) = rule.strip_prefix("-A ")
            && HOSTPORT_CHAINS
                .iter()
                .any(|c| spec.contains(&format!("-j {c}")))
        {
            let mut args = vec!["-D".to_owned()];
            args.extend(shell_words(spec));
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            iptables(&refs);
        }
    }
    for chain in HOSTPORT_CHAINS {
        iptables(&["-F", chain]);
        iptables(&["-X", chain]);
    }
}

/// Splits an `iptables -S` line into words, honouring double quotes (comments).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn pod_config(hostname: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        hostname: hostname.into(),
        ..Default::default()
    }
}

/// [`pod_config`] with metadata of a unique name, for calls made without [`Pod::start`].
fn named_pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: unique(name),
            uid: unique("uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        ..pod_config(name)
    }
}

/// RunPodSandbox that must fail; returns the error.
async fn run_pod_sandbox_err(env: &Env, config: cri::PodSandboxConfig) -> tonic::Status {
    env.daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err()
}

async fn pod_status(pod: &Pod) -> cri::PodSandboxStatus {
    pod.rt
        .clone()
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

async fn pod_ip(pod: &Pod) -> String {
    pod_status(pod).await.network.unwrap_or_default().ip
}

/// A container answering `hello-<hostname>` to every TCP connection on port 8080.
fn echo_server(pod: &Pod, image: &str) -> cri::ContainerConfig {
    pod.sh(
        "server",
        image,
        "while true; do echo hello-$(hostname) | nc -l -p 8080; done",
    )
}

/// A script that connects to `addr port` (retrying while the server starts) and prints what
/// it got.
fn client_script(addr: &str) -> String {
    format!(
        "i=0; while [ $i -lt 100 ]; do out=$(nc {addr} 8080 </dev/null) && [ -n \"$out\" ] && \
         echo \"$out\" && exit 0; i=$((i+1)); sleep 0.1; done; exit 1"
    )
}

async fn network_ready(env: &Env) -> cri::RuntimeCondition {
    let status = env
        .daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    status
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady condition")
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_on_the_bridge_reach_each_other_by_ip() {
    let net = TestNet::new(1, false);
    let env = Env::new(&net.toml());
    let image = env.busybox();
    env.pull(&image).await;
    assert!(network_ready(&env).await.status);

    let a = Pod::start(&env.daemon, pod_config("pod-a")).await;
    let b = Pod::start(&env.daemon, pod_config("pod-b")).await;
    let (ip_a, ip_b) = (pod_ip(&a).await, pod_ip(&b).await);
    for ip in [&ip_a, &ip_b] {
        assert!(ip.starts_with(&format!("{}.", net.prefix)), "pod IP {ip}");
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(net.allocated().len(), 2, "{:?}", net.allocated());

    a.launch(echo_server(&a, &image)).await;
    let ran = b.run(b.sh("client", &image, &client_script(&ip_a))).await;
    assert_eq!(
        ran.status.exit_code,
        0,
        "{ran:#?}\n{}",
        tail(&env.daemon.log())
    );
    assert_eq!(ran.stdout, "hello-pod-a\n");

    // eth0 holds the pod IP; /etc/hosts maps the hostname to it.
    let ran = b
        .run_ok(b.sh(
            "hosts",
            &image,
            "cat /etc/hosts; cat /sys/class/net/eth0/address",
        ))
        .await;
    assert!(
        ran.stdout.contains(&format!("{ip_b}\tpod-b\n")),
        "{}",
        ran.stdout
    );

    // Teardown releases the addresses and the pods' interfaces.
    drop(a);
    drop(b);
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_port_reaches_the_container_from_localhost() {
    let net = TestNet::new(2, false);
    let env = Env::new(&net.toml());
    let image = env.busybox();
    env.pull(&image).await;
    let host_port = support::free_port();
    let mut config = pod_config("hostport");
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let pod = Pod::start(&env.daemon, config).await;
    pod.launch(echo_server(&pod, &image)).await;
    let got = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let attempt =
                std::net::TcpStream::connect(("127.0.0.1", host_port)).and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let mut out = String::new();
                    s.read_to_string(&mut out)?;
                    Ok(out)
                });
            match attempt {
                Ok(out) if !out.is_empty() => return out,
                _ if std::time::Instant::now() > deadline => return String::new(),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got, "hello-hostport\n", "{}", tail(&env.daemon.log()));
    let dnat = format!("name: \\\"{}\\\"", net.name);
    assert!(nat_chains().contains(&dnat), "portmap rules for the pod");
    drop(pod);
    assert!(
        !nat_chains().contains(&dnat),
        "DEL removed the port mapping"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_ready_follows_the_config_and_host_network_pods_need_none() {
    let net = TestNet::new(3, false);
    let conf = std::fs::read(net.conf_dir().join("10-test.conflist")).unwrap();
    std::fs::remove_file(net.conf_dir().join("10-test.conflist")).unwrap();
    let env = Env::new(&net.toml());
    let image = env.busybox();
    env.pull(&image).await;

    let cond = network_ready(&env).await;
    assert!(!cond.status);
    assert_eq!(cond.reason, "NetworkPluginNotReady");
    assert!(cond.message.contains("no CNI network config"), "{cond:?}");

    // A pod on the pod network cannot start, and leaves nothing behind.
    let err = run_pod_sandbox_err(&env, named_pod_config("nonet")).await;
    assert!(err.message().contains("network is not ready"), "{err:?}");
    assert_no_pods(&env).await;

    // A hostNetwork pod needs no CNI, and sees the host's interfaces.
    let mut config = pod_config("");
    config.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let host_pod = Pod::start(&env.daemon, config).await;
    assert_eq!(pod_ip(&host_pod).await, "");
    // Tests running alongside add and remove bridges and veths: only the interfaces present
    // both before and after the container listed them must be in its list.
    let before = host_interfaces();
    let ran = host_pod
        .run_ok(host_pod.sh("ifs", &image, "ls /sys/class/net"))
        .await;
    let after = host_interfaces();
    let host_ifs: Vec<&String> = before.intersection(&after).collect();
    assert!(host_ifs.iter().any(|i| *i == "lo"), "{host_ifs:?}");
    for iface in &host_ifs {
        assert!(
            ran.stdout.lines().any(|l| l == iface.as_str()),
            "{iface} missing in {}",
            ran.stdout
        );
    }
    drop(host_pod);

    // A config with a plugin that is not installed is not ready either, and says which.
    let mut broken: serde_json::Value = serde_json::from_slice(&conf).unwrap();
    broken["plugins"][1]["type"] = "no-such-plugin".into();
    net.write_conf(&broken);
    let cond = network_ready(&env).await;
    assert!(!cond.status);
    assert!(cond.message.contains("no-such-plugin"), "{cond:?}");

    std::fs::write(net.conf_dir().join("10-test.conflist"), &conf).unwrap();
    let cond = network_ready(&env).await;
    assert!(cond.status, "{cond:?}");
    let pod = Pod::start(&env.daemon, pod_config("late")).await;
    assert!(pod_ip(&pod).await.starts_with(&format!("{}.", net.prefix)));
}

fn host_interfaces() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

async fn assert_no_pods(env: &Env) {
    let pods = env
        .daemon
        .runtime()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    let state_pods = env.daemon.dir().join("state/pods");
    let left: Vec<_> = std::fs::read_dir(&state_pods)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pod state left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_add_is_undone_and_reported() {
    let net = TestNet::new(4, false);
    // A last plugin that fails ADD (and succeeds DEL): the bridge's work must be undone.
    net.fail_add_last();
    let env = Env::new(&net.toml());
    let err = run_pod_sandbox_err(&env, named_pod_config("failing")).await;
    assert!(err.message().contains("refusing ADD"), "{err:?}");
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    assert_no_pods(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_remove_are_idempotent_and_survive_a_restart() {
    let net = TestNet::new(5, true);
    let mut env = Env::new(&net.toml());
    let image = env.busybox();
    env.pull(&image).await;
    // The pod CIDR reaches host-local through the ipRanges capability, and is remembered.
    let cidr = format!("{}.128/25", net.prefix);
    env.daemon
        .runtime()
        .await
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: cidr.clone(),
                }),
            }),
        })
        .await
        .unwrap();

    let first = Pod::start(&env.daemon, pod_config("first")).await;
    let ip = pod_ip(&first).await;
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with(&format!("{}.", net.prefix)) && last > 128,
        "{ip} not in {cidr}"
    );
    first
        .launch(first.sh("sleeper", &image, "sleep 3600"))
        .await;

    // Stop twice, remove twice.
    let mut rt = env.daemon.runtime().await;
    for _ in 0..2 {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: first.id.clone(),
        })
        .await
        .unwrap();
    }
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    for _ in 0..2 {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: first.id.clone(),
        })
        .await
        .unwrap();
    }

    // A pod outlives a daemon restart, then stops and goes with its network.
    let second = Pod::start(&env.daemon, pod_config("second")).await;
    second
        .launch(second.sh("sleeper", &image, "sleep 3600"))
        .await;
    env.daemon.restart();
    let ip = pod_ip(&second).await;
    assert!(ip.rsplit('.').next().unwrap().parse::<u8>().unwrap() > 128);
    assert_eq!(net.allocated(), vec![ip.clone()]);
    let third = Pod::start(&env.daemon, pod_config("third")).await;
    let ip3 = pod_ip(&third).await;
    assert!(
        ip3.rsplit('.').next().unwrap().parse::<u8>().unwrap() > 128,
        "pod CIDR forgotten after the restart: {ip3}"
    );
    let mut rt = env.daemon.runtime().await;
    for id in [&second.id, &third.id] {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    assert_no_pods(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_succeeds_when_cni_del_fails() {
    let net = TestNet::new(6, false);
    let env = Env::new(&net.toml());
    let pod = Pod::start(&env.daemon, pod_config("doomed")).await;
    assert!(!pod_ip(&pod).await.is_empty());
    net.break_plugin("bridge");
    let mut rt = env.daemon.runtime().await;
    // StopPodSandbox reports the failure (kubelet retries it)...
    let err = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("broken on purpose"), "{err:?}");
    // ...RemovePodSandbox removes the pod anyway, and logs why the network may be left.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .unwrap();
    assert_no_pods(&env).await;
    let log = env.daemon.log();
    assert!(
        log.contains("CNI DEL failed") && log.contains("broken on purpose"),
        "{}",
        tail(&log)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_after_a_restart_reports_a_broken_pod_network() {
    let net = TestNet::new(7, false);
    let mut env = Env::new(&net.toml());
    let healthy = Pod::start(&env.daemon, pod_config("healthy")).await;
    let broken = Pod::start(&env.daemon, pod_config("broken")).await;
    // Behind the runtime's back: the pod loses its interface.
    let pin = env
        .daemon
        .dir()
        .join("state/pods")
        .join(&broken.id)
        .join("netns");
    let status = Command::new("nsenter")
        .arg(format!("--net={}", pin.display()))
        .args(["ip", "link", "del", "eth0"])
        .status()
        .unwrap();
    assert!(status.success());
    env.daemon.restart();
    let reported = |log: &str, id: &str| {
        log.lines()
            .any(|l| l.contains("CNI CHECK failed") && l.contains(id))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !reported(&env.daemon.log(), &broken.id) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = env.daemon.log();
    assert!(reported(&log, &broken.id), "{}", tail(&log));
    assert!(!reported(&log, &healthy.id), "{}", tail(&log));
}

/// SIGKILLs a process this test knows of, on drop.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: kill(2) has no memory-safety implications.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn mounted_below(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

fn pod_dirs(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.daemon.dir().join("state/pods"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_pod_sandbox_cut_short_by_a_crash_is_undone_on_restart() {
    let net = TestNet::new(8, false);
    // The last plugin hangs in ADD once the bridge has taken an address: the daemon is killed
    // then, between ADD and the pod's record.
    let marker = net.dir.path().join("hanging");
    net.script_plugin(
        "hang-add",
        &format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > {m}.tmp; \
             mv {m}.tmp {m}; exec sleep 60; fi\n",
            m = marker.display()
        ),
    );
    let original = net.replace_last_plugin(serde_json::json!({"type": "hang-add"}));
    let mut env = Env::new(&net.toml());
    let config = named_pod_config("interrupted");
    let mut rt = env.daemon.runtime().await;
    let request = cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    };
    let pending = tokio::spawn(async move { rt.run_pod_sandbox(request).await });
    assert!(
        eventually(Duration::from_secs(30), || marker.exists()).await,
        "ADD never reached the last plugin:\n{}",
        tail(&env.daemon.log())
    );
    let _sleeper = KillOnDrop(
        std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    let dirs = pod_dirs(&env);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = dirs[0].clone();
    assert_eq!(net.allocated().len(), 1);
    assert!(!mounted_below(&dir).is_empty());
    let init = strata::podinit::find_by_pod_dir(&dir);
    assert!(!init.is_empty(), "no pod-init names {}", dir.display());

    env.daemon.kill();
    assert!(pending.await.unwrap().is_err());
    drop(_sleeper);
    net.write_conf(&original);
    env.daemon.restart();

    let undone = eventually(Duration::from_secs(30), || {
        net.allocated().is_empty()
            && pod_dirs(&env).is_empty()
            && env.daemon.log().contains("undid a RunPodSandbox")
    })
    .await;
    let log = env.daemon.log();
    assert!(
        undone,
        "left after the restart: addresses {:?}, dirs {:?}\n{}",
        net.allocated(),
        pod_dirs(&env),
        tail(&log)
    );
    assert!(log.contains("undid a RunPodSandbox"), "{}", tail(&log));
    assert!(mounted_below(&dir).is_empty(), "{:?}", mounted_below(&dir));
    assert!(
        eventually(Duration::from_secs(30), || {
            strata::podinit::find_by_pod_dir(&dir).is_empty()
        })
        .await,
        "pod-init {init:?} still runs"
    );
    assert_no_pods(&env).await;
    // kubelet's retry, with the same name, gets a pod.
    let pod = Pod::start(&env.daemon, config).await;
    assert!(!pod_ip(&pod).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_directory_no_record_names_is_removed_with_its_pod_init_on_restart() {
    let mut env = Env::new("");
    env.daemon.kill();
    // What a daemon killed right after starting pod-init leaves: the pod's directory, pod-init
    // and the pinned network namespace, and no record of any of them.
    let dir = env
        .daemon
        .dir()
        .join("state/pods")
        .join(unique("unrecorded"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = strata::podinit::PodInitConfig {
        new_net: true,
        new_ipc: true,
        new_uts: true,
        new_pid: true,
        ..Default::default()
    };
    let pid = strata::podinit::spawn(
        Path::new(env!("CARGO_BIN_EXE_strata-monitor")),
        &config,
        &dir,
    )
    .await
    .unwrap();
    let _init = KillOnDrop(pid);
    let pin = dir.join("netns");
    let pinned = strata::network::netns::pin(pid, &pin);
    if pinned.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    pinned.unwrap();
    // (The parent that forked it may not have exited yet.)
    assert!(strata::podinit::find_by_pod_dir(&dir).contains(&pid));

    env.daemon.restart();
    let gone = eventually(Duration::from_secs(30), || {
        !dir.exists() && env.daemon.log().contains("removed a pod directory")
    })
    .await;
    if !gone {
        let _ = strata::network::netns::unpin(&pin);
    }
    let log = env.daemon.log();
    assert!(gone, "{} left\n{}", dir.display(), tail(&log));
    assert!(mounted_below(&dir).is_empty(), "{:?}", mounted_below(&dir));
    assert!(
        eventually(Duration::from_secs(30), || {
            strata::podinit::find_by_pod_dir(&dir).is_empty()
        })
        .await,
        "pod-init {pid} still runs"
    );
    assert!(log.contains("removed a pod directory"), "{}", tail(&log));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_add_whose_del_fails_too_is_undone_at_the_next_start() {
    let net = TestNet::new(9, false);
    // The bridge refuses DEL while `refuse-del` exists; the last plugin refuses ADD.
    let refuse = net.dir.path().join("refuse-del");
    std::fs::write(&refuse, b"").unwrap();
    net.script_plugin(
        "bridge",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ -e {r} ]; then cat >/dev/null; \
             echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"DEL refused on purpose\"}}'; \
             exit 1; fi\nexec {PLUGINS}/bridge\n",
            r = refuse.display()
        ),
    );
    net.fail_add_last();
    let mut env = Env::new(&net.toml());
    let err = run_pod_sandbox_err(&env, named_pod_config("undeletable")).await;
    assert!(err.message().contains("refusing ADD"), "{err:?}");
    // The address stays taken for now; the pod itself is gone.
    assert_eq!(net.allocated().len(), 1);
    assert_no_pods(&env).await;

    std::fs::remove_file(&refuse).unwrap();
    env.daemon.restart();
    // The warning comes last, once the record is gone too.
    let undone = eventually(Duration::from_secs(30), || {
        env.daemon.log().contains("undid a RunPodSandbox")
    })
    .await;
    let log = env.daemon.log();
    assert!(undone, "{}", tail(&log));
    assert!(
        net.allocated().is_empty(),
        "{:?} still taken",
        net.allocated()
    );
}
