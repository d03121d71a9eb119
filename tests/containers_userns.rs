//! Pods with their own user namespace (`userns_options.mode == POD`, Kubernetes
//! `hostUsers: false`), through CRI on the real kernel: the maps, root inside, image files owned
//! by root through id-mapped layers, new files owned by the mapped host id in the upperdir, the
//! shared layers untouched, id-mapped hostPath volumes, ExecSync in the same user namespace,
//! capabilities relative to it, and bad requests refused.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata::cri::v1 as cri;
use support::cri::{Env, Pod, unique, with_security};

const HOST_BASE: u32 = 100_000;
const LEN: u32 = 65_536;

fn userns() -> cri::UserNamespace {
    let map = vec![cri::IdMapping {
        host_id: HOST_BASE,
        container_id: 0,
        length: LEN,
    }];
    cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: map.clone(),
        gids: map,
    }
}

fn pod_config(u: cri::UserNamespace) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        hostname: "userns-pod".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    userns_options: Some(u),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container side of the pod's user namespace options (kubelet repeats them), with the
/// given pid mode.
fn in_userns(config: cri::ContainerConfig, pid: cri::NamespaceMode) -> cri::ContainerConfig {
    with_security(config, |sc| {
        sc.namespace_options = Some(cri::NamespaceOption {
            pid: pid as i32,
            userns_options: Some(userns()),
            ..Default::default()
        });
    })
}

/// Every entry under `dir`: relative path -> (uid, gid, mode, content of regular files or
/// symlink target).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                std::fs::read(&path).unwrap()
            } else if meta.is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            if meta.is_dir() {
                todo.push(path.clone());
            }
            out.insert(
                path.strip_prefix(dir).unwrap().to_path_buf(),
                (meta.uid(), meta.gid(), meta.mode(), content),
            );
        }
    }
    out
}

/// A host directory for a hostPath volume, removed on drop.
struct HostDir(tempfile::TempDir);

impl HostDir {
    fn new() -> HostDir {
        let dir = tempfile::Builder::new()
            .prefix("strata-userns-vol-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("rootfile"), "r").unwrap();
        std::fs::write(dir.path().join("mine"), "m").unwrap();
        // Id-mapped volumes show on-disk ids as the same ids in the container.
        std::os::unix::fs::chown(dir.path().join("mine"), Some(7), Some(8)).unwrap();
        HostDir(dir)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_user_namespace_end_to_end() {
    let env = Env::shared();
    let image = env.busybox();
    env.pull(&image).await;
    let layers_dir = env.daemon.root().join("layers");
    let layers_before = snapshot(&layers_dir);
    assert!(!layers_before.is_empty());

    // Status: the built-in launcher claims user namespaces.
    let status = env
        .daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let default = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .expect("default handler");
    assert!(default.features.as_ref().unwrap().user_namespaces);

    let vol = HostDir::new();
    let pod = Pod::start(&env.daemon, pod_config(userns())).await;
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; \
                  stat -c %u:%g /etc/passwd /bin/sh /; \
                  echo hello > /created; mkdir /newdir; \
                  stat -c %u:%g /created /vol/rootfile /vol/mine /etc/hosts; \
                  grep CapEff /proc/self/status; \
                  mkdir /m && busybox mount -t tmpfs none /m && echo tmpfs-mounted; \
                  busybox mknod /sda b 8 0 && echo device-made || echo device-refused; \
                  sleep 30";
    let mut config = in_userns(pod.sh("c1", &image, script), cri::NamespaceMode::Container);
    config.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.0.path().to_string_lossy().into_owned(),
        uid_mappings: userns().uids,
        gid_mappings: userns().gids,
        ..Default::default()
    });
    let config = with_security(config, |sc| {
        sc.capabilities = Some(cri::Capability {
            add_capabilities: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        });
    });
    let id = pod.launch(config).await;
    let log = async {
        for _ in 0..200 {
            let out = support::cri::stream(&pod.log("c1"), "stdout");
            if out.contains("device-") {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "container output incomplete: {:?} {:?}",
            pod.log("c1"),
            pod.status(&id).await
        );
    }
    .await;
    let err = support::cri::stream(&pod.log("c1"), "stderr");
    let log = format!("{log}\nstderr: {err}");
    // The container was cloned from the pinned template mount namespace (daemon state dir is
    // <tmp>/state next to <tmp>/root), not from the host's.
    let pin = env.daemon.root().with_file_name("state").join("mntns");
    assert!(
        strata::launcher::mntns_template_pinned(&pin),
        "no template at {}: {}",
        pin.display(),
        support::cri::tail(&env.daemon.log())
    );
    let lines: Vec<&str> = log.lines().collect();
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(lines[0]), "0 100000 65536", "{log}");
    assert_eq!(words(lines[1]), "0 100000 65536", "{log}");
    assert_eq!(&lines[2..4], ["0", "0"], "{log}");
    // Image files (root-owned in the shared layers) and the root appear owned by root.
    assert_eq!(&lines[4..7], ["0:0", "0:0", "0:0"], "{log}");
    // A new file is root's; the id-mapped volume shows its on-disk owners (0 and 7:8) as the
    // same ids inside; the pod's /etc/hosts (host root's) is root's too.
    assert_eq!(&lines[7..11], ["0:0", "0:0", "7:8", "0:0"], "{log}");
    // Capabilities are the container's (default + SYS_ADMIN), valid in the user namespace:
    // mounting a tmpfs in its own mount namespace works, a block device stays the host's.
    assert!(lines[11].starts_with("CapEff:"), "{log}");
    assert_ne!(
        lines[11].split_whitespace().nth(1),
        Some("0000000000000000")
    );
    assert_eq!(lines[12], "tmpfs-mounted", "{log}");
    assert_eq!(lines[13], "device-refused", "{log}");

    // On the host: the new file is in the upperdir, owned by the mapped id.
    let (_, info) = pod.status_verbose(&id).await;
    let upper = PathBuf::from(info["upperDir"].as_str().expect("upperDir"));
    let created = std::fs::metadata(upper.join("created")).unwrap();
    assert_eq!((created.uid(), created.gid()), (HOST_BASE, HOST_BASE));
    let newdir = std::fs::metadata(upper.join("newdir")).unwrap();
    assert_eq!((newdir.uid(), newdir.gid()), (HOST_BASE, HOST_BASE));

    // ExecSync joins the same user namespace.
    let out = pod
        .rt
        .clone()
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/self/uid_map; id -u; stat -c %u /etc/passwd /created".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("exec")
        .into_inner();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.exit_code, 0, "{text} {:?}", out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(words(lines[0]), "0 100000 65536", "{text}");
    assert_eq!(&lines[1..4], ["0", "0", "0"], "{text}");

    // A second container sharing the pod's pid namespace (owned by the pod's user namespace).
    let ran = pod
        .run_ok(in_userns(
            pod.sh(
                "c2",
                &image,
                "cat /proc/self/uid_map; ls -ln /created 2>&1; id -u",
            ),
            cri::NamespaceMode::Pod,
        ))
        .await;
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(words(lines[0]), "0 100000 65536", "{}", ran.stdout);
    assert!(lines[1].contains("No such file"), "{}", ran.stdout);
    assert_eq!(lines[2], "0", "{}", ran.stdout);

    // A non-root user: its missing working directory is created for it, its files are its own.
    let mut c3 = in_userns(
        pod.sh(
            "c3",
            &image,
            "id -u; stat -c %u .; touch f && stat -c %u:%g f",
        ),
        cri::NamespaceMode::Pod,
    );
    c3.working_dir = "/home/u1000/work".into();
    let c3 = with_security(c3, |sc| {
        sc.run_as_user = Some(cri::Int64Value { value: 1000 });
        sc.run_as_group = Some(cri::Int64Value { value: 1000 });
    });
    let ran = pod.run_ok(c3).await;
    assert_eq!(ran.stdout, "1000\n1000\n1000:1000\n", "{ran:#?}");
    let (_, info) = pod.status_verbose(&ran.id).await;
    let upper = PathBuf::from(info["upperDir"].as_str().expect("upperDir"));
    let f = std::fs::metadata(upper.join("home/u1000/work/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (HOST_BASE + 1000, HOST_BASE + 1000));

    pod.stop(&id, 0).await.unwrap();
    drop(pod);
    // The shared layers: byte for byte, owners and modes unchanged.
    assert_eq!(snapshot(&layers_dir), layers_before);
    // The volume's owners are unchanged too.
    let mine = std::fs::metadata(vol.0.path().join("mine")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (7, 8));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_user_namespace_requests_are_refused() {
    let env = Env::shared();
    let mut rt = env.daemon.runtime().await;
    let mut no_root = userns();
    no_root.uids[0].container_id = 1;
    let mut overlap = userns();
    overlap.gids.push(cri::IdMapping {
        host_id: HOST_BASE + 10,
        container_id: 70_000,
        length: 5,
    });
    let mut container_mode = userns();
    container_mode.mode = cri::NamespaceMode::Container as i32;
    let mut empty = userns();
    empty.uids.clear();
    for (what, u) in [
        ("no root", no_root),
        ("overlap", overlap),
        ("CONTAINER", container_mode),
        ("empty", empty),
    ] {
        let mut config = pod_config(u);
        let name = unique("bad-userns");
        config.metadata = Some(cri::PodSandboxMetadata {
            uid: format!("uid-{name}"),
            name,
            namespace: "default".into(),
            attempt: 0,
        });
        let err = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err:?}");
    }
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(
        pods.iter().all(|p| !p
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.starts_with("bad-userns"))),
        "{pods:?}"
    );
}
