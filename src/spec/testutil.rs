//! Test fixtures: fake image layers in temp dirs and a default CRI request.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;

use super::{PodPaths, SpecError, SpecInput, container_spec};
use crate::cri::v1 as cri;

pub struct Layers {
    pub dir: tempfile::TempDir,
    n: usize,
}

impl Layers {
    pub fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            fs::create_dir(dir.path().join(i.to_string())).unwrap();
        }
        Layers { dir, n }
    }

    pub fn dirs(&self) -> Vec<PathBuf> {
        (0..self.n)
            .map(|i| self.dir.path().join(i.to_string()))
            .collect()
    }

    fn p(&self, layer: usize, rel: &str) -> PathBuf {
        let p = self.dir.path().join(layer.to_string()).join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }

    pub fn write(&self, layer: usize, rel: &str, content: &str) {
        fs::write(self.p(layer, rel), content).unwrap();
    }

    pub fn whiteout(&self, layer: usize, rel: &str) {
        let p = CString::new(self.p(layer, rel).as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string; a 0/0 character device is an overlay whiteout, which the
        // kernel lets anyone create.
        let rc = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(rc, 0, "mknod whiteout: {}", std::io::Error::last_os_error());
    }

    pub fn opaque(&self, layer: usize, rel: &str) {
        let p = self.p(layer, rel);
        fs::create_dir_all(&p).unwrap();
        set_opaque(&p).unwrap();
    }

    pub fn symlink(&self, layer: usize, rel: &str, target: &str) {
        std::os::unix::fs::symlink(target, self.p(layer, rel)).unwrap();
    }
}

fn set_opaque(dir: &Path) -> std::io::Result<()> {
    let p = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a 1-byte value.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process may set `trusted.*` xattrs (root with CAP_SYS_ADMIN, on a filesystem
/// that supports them).
pub fn can_set_trusted_xattr() -> bool {
    let d = tempfile::tempdir().unwrap();
    set_opaque(d.path()).is_ok()
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
# a comment\n\
malformed line\n\
alice:x:1000:1000::/home/alice:/bin/sh\n\
bob:x:1001:100::/home/bob:/bin/sh\n";

pub const GROUP: &str = "root:x:0:\n\
users:x:100:alice\n\
alice:x:1000:\n\
wheel:x:10:alice,bob\n\
audio:x:29:bob\n";

/// A request with sane defaults that each test adjusts.
pub struct Fixture {
    pub layers: Layers,
    pub container: cri::ContainerConfig,
    pub pod: cri::PodSandboxConfig,
    pub image: ImageConfiguration,
    pub pod_paths: PodPaths,
    pub target_pid: Option<i32>,
    pub seccomp_root: tempfile::TempDir,
    pub host_allows_negative_oom_score_adj: bool,
    pub swap_controller_available: bool,
    pub image_volumes: HashMap<String, PathBuf>,
}

impl Fixture {
    pub fn new() -> Self {
        let layers = Layers::new(2);
        layers.write(0, "etc/passwd", PASSWD);
        layers.write(0, "etc/group", GROUP);
        let image: ImageConfiguration = serde_json::from_value(serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/bin:/bin", "IMAGE_ONLY=1", "SHARED=image"],
                "Entrypoint": ["/entry"],
                "Cmd": ["cmd-arg"],
                "WorkingDir": "/work"
            },
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            linux: Some(cri::LinuxContainerConfig {
                resources: None,
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let pod = cri::PodSandboxConfig {
            hostname: "podhost".into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(Default::default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        Fixture {
            layers,
            container,
            pod,
            image,
            pod_paths: PodPaths {
                net_ns: Some("/run/netns/pod".into()),
                ipc_ns: Some("/proc/42/ns/ipc".into()),
                uts_ns: Some("/proc/42/ns/uts".into()),
                ..Default::default()
            },
            target_pid: None,
            seccomp_root: tempfile::tempdir().unwrap(),
            host_allows_negative_oom_score_adj: true,
            swap_controller_available: true,
            image_volumes: HashMap::new(),
        }
    }

    pub fn sc(&mut self) -> &mut cri::LinuxContainerSecurityContext {
        self.container
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
    }

    /// A privileged container in a privileged pod (kubelet sets both).
    pub fn make_privileged(&mut self) {
        self.sc().privileged = true;
        self.pod
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .privileged = true;
    }

    pub fn ns(&mut self) -> &mut cri::NamespaceOption {
        self.sc().namespace_options.as_mut().unwrap()
    }

    pub fn resources(&mut self) -> &mut cri::LinuxContainerResources {
        self.container
            .linux
            .as_mut()
            .unwrap()
            .resources
            .get_or_insert_with(Default::default)
    }

    pub fn image_config(&mut self, f: impl FnOnce(&mut oci_spec::image::Config)) {
        let mut cfg = self.image.config().clone().unwrap_or_default();
        f(&mut cfg);
        self.image.set_config(Some(cfg));
    }

    pub fn spec(&self) -> Result<Spec, SpecError> {
        let dirs = self.layers.dirs();
        container_spec(&SpecInput {
            container: &self.container,
            pod: &self.pod,
            image: &self.image,
            layers: &dirs,
            pod_paths: &self.pod_paths,
            rootfs: Path::new("/run/strata/containers/c/rootfs"),
            target_pid: self.target_pid,
            seccomp_root: self.seccomp_root.path(),
            cgroups_path: "/kubepods/pod1/c",
            host_allows_negative_oom_score_adj: self.host_allows_negative_oom_score_adj,
            swap_controller_available: self.swap_controller_available,
            image_volumes: &self.image_volumes,
        })
    }

    /// The spec, which must build.
    pub fn ok(&self) -> Spec {
        self.spec().expect("spec")
    }

    /// The error message of a request that must fail with InvalidArgument.
    pub fn invalid(&self) -> String {
        match self.spec() {
            Err(SpecError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}
