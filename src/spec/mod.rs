//! CRI -> OCI runtime spec: turns a CRI `ContainerConfig` (plus its pod's `PodSandboxConfig` and
//! the image config) into the `oci_spec::runtime::Spec` the launcher (or an external OCI runtime)
//! runs. Pure logic over the request; it reads the host only where the request names host things
//! (the image's `/etc/passwd` and `/etc/group` in the layer directories, mount sources, device
//! nodes, Localhost seccomp profiles, `/proc/self/oom_score_adj`, our own capabilities).
//!
//! The semantics follow containerd's CRI plugin (`internal/cri/server/container_create*.go`,
//! `internal/cri/opts/spec_*`, `pkg/oci/spec*.go`). Deliberate differences, each explained where
//! it is implemented:
//! - a mount whose `host_path` does not exist is an `InvalidArgument` error (containerd creates
//!   the directory; the CRI API and this project's acceptance tests want an error);
//! - masked/readonly paths default to containerd's lists when the CRI lists are empty (proto3
//!   cannot tell "absent" from "empty"; containerd leaves them empty unless kubelet sends them);
//! - the default capability set is the one containerd 1.x and Docker use (14 capabilities,
//!   including `NET_RAW`, `MKNOD`, `SYS_CHROOT`, `SETFCAP`, `AUDIT_WRITE`), as the design brief asks;
//! - the cgroup namespace is always new (except for privileged containers), also on cgroup v1;
//! - the default device cgroup rules (what runc adds on its own) are written into the spec.
//!
//! Errors: a bad request is `InvalidArgument` naming the field and value (unknown user, missing
//! mount source or device, missing Localhost seccomp profile — the request names a file that is
//! not there, as for mounts); a host failure reading something that exists is `Internal`.

mod apparmor;
mod devices;
mod layers;
mod mounts;
mod namespaces;
pub use namespaces::pod_userns_maps;
mod process;
mod resources;
mod seccomp;
mod seccomp_default;
mod security;
pub mod sysctl;
mod user;

#[cfg(test)]
mod testutil;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Linux, Process, Root, Spec};

use crate::cri::v1 as cri;
use crate::error::{Classify, ErrorKind};

pub use layers::read_file as read_layered_file;
#[cfg(test)]
pub(crate) use mounts::default_mounts;

/// CRI resources as OCI resources for a live update (`UpdateContainerResources`): device rules
/// are left as they are.
pub fn linux_resources(
    r: &cri::LinuxContainerResources,
    swap_available: bool,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    let mut out = resources::resources(Some(r), swap_available, Vec::new())?;
    out.set_devices(None);
    Ok(out)
}
pub use seccomp_default::default_profile as default_seccomp_profile;
pub use security::{DEFAULT_CAPABILITIES, current_capabilities};

/// The OCI runtime spec version we produce.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request cannot be run as asked; the message names the field and value.
    #[error("{0}")]
    InvalidArgument(String),
    /// Reading something on the host that should be readable failed.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// oci-spec refused a value we built (a bug).
    #[error("building the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

impl Classify for SpecError {
    fn kind(&self) -> ErrorKind {
        match self {
            SpecError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            SpecError::Io { .. } | SpecError::Build(_) => ErrorKind::Internal,
        }
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> SpecError {
    SpecError::InvalidArgument(msg.into())
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpecError + '_ {
    move |source| SpecError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Host paths of the pod's shared namespaces and files. `None` for a namespace means the host's
/// (hostNetwork / hostIPC / hostPID, or no user namespace); `None` for a file means "do not
/// mount it".
#[derive(Debug, Clone, Default)]
pub struct PodPaths {
    pub net_ns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    /// The pod's pid namespace, when the pod shares one (`NamespaceOption.pid == POD`).
    pub pid_ns: Option<PathBuf>,
    /// The pod's user namespace, when the pod has one (`userns_options.mode == POD`). When the
    /// pod asks for one but this is `None`, the container gets a new user namespace with the
    /// requested mappings.
    pub user_ns: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub hosts_file: Option<PathBuf>,
    pub resolv_conf_file: Option<PathBuf>,
    /// The pod's `/dev/shm` (a tmpfs); bind-mounted at `/dev/shm` unless the container uses the
    /// host IPC namespace (then the host's `/dev/shm`).
    pub shm_dir: Option<PathBuf>,
}

/// Everything [`container_spec`] needs.
#[derive(Debug, Clone, Copy)]
pub struct SpecInput<'a> {
    pub container: &'a cri::ContainerConfig,
    pub pod: &'a cri::PodSandboxConfig,
    pub image: &'a ImageConfiguration,
    /// The image's layer directories, bottom first (for `/etc/passwd` and `/etc/group`).
    pub layers: &'a [PathBuf],
    pub pod_paths: &'a PodPaths,
    /// Where the container's root filesystem is mounted (`root.path`).
    pub rootfs: &'a Path,
    /// The init pid of the container named by `NamespaceOption.target_id`, for `pid: TARGET`.
    pub target_pid: Option<i32>,
    /// Relative Localhost seccomp profile names are looked up here.
    pub seccomp_root: &'a Path,
    /// `linux.cgroupsPath` (empty: none).
    pub cgroups_path: &'a str,
    /// Whether this host lets us lower `oom_score_adj` below our own (it needs
    /// CAP_SYS_RESOURCE). When false, lower requests are clamped to our own value.
    pub host_allows_negative_oom_score_adj: bool,
    /// Whether the memory controller accounts swap (v1 `memory.memsw.*`, v2 `memory.swap.max`);
    /// see `crate::cgroups::CgroupLayout::swap_available`. Without it no swap limit is set.
    pub swap_controller_available: bool,
    /// Image volumes (`Mount.image`): the image reference as sent in `Mount.image.image` ->
    /// the host directory showing that image's filesystem (read-only), resolved by the caller.
    pub image_volumes: &'a HashMap<String, PathBuf>,
}

impl SpecInput<'_> {
    pub(crate) fn security(&self) -> cri::LinuxContainerSecurityContext {
        self.container
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default()
    }

    pub(crate) fn pod_security(&self) -> cri::LinuxSandboxSecurityContext {
        self.pod
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default()
    }

    pub(crate) fn image_config(&self) -> oci_spec::image::Config {
        self.image.config().clone().unwrap_or_default()
    }

    pub(crate) fn resources(&self) -> Option<&cri::LinuxContainerResources> {
        self.container.linux.as_ref()?.resources.as_ref()
    }
}

/// Builds the OCI runtime spec of a CRI container.
pub fn container_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    let sc = input.security();
    let privileged = sc.privileged;
    if privileged && !input.pod_security().privileged {
        return Err(invalid(
            "privileged container requested in a pod that is not privileged",
        ));
    }
    let image = input.image_config();

    let user = user::resolve(&sc, image.user().as_deref().unwrap_or(""), input.layers)?;
    let caps = security::capabilities(&sc, privileged, current_capabilities)?;
    let seccomp = seccomp::profile(input, &sc, &caps.bounding)?;
    let hostname = namespaces::hostname(input);

    let mut process = Process::default();
    process.set_terminal(Some(input.container.tty));
    process.set_console_size(None);
    process.set_user(user.to_oci()?);
    process.set_args(Some(process::args(input.container, &image)?));
    process.set_command_line(None);
    process.set_env(Some(process::env(input, &image)?));
    process.set_cwd(process::cwd(input.container, &image));
    process.set_capabilities(Some(caps.caps));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.no_new_privs));
    process.set_apparmor_profile(apparmor::profile(&sc, &apparmor::Kernel)?);
    process.set_oom_score_adj(process::oom_score_adj(input)?);
    process.set_selinux_label(None);
    process.set_io_priority(None);
    process.set_scheduler(None);
    process.set_exec_cpu_affinity(None);

    let (mounts, rootfs_propagation) = mounts::mounts(input, &sc)?;
    let (devices, device_rules) = devices::devices(input, privileged)?;
    let ns = namespaces::namespaces(input, &sc)?;
    let (masked, readonly) = security::masked_and_readonly_paths(&sc);

    let mut linux = Linux::default();
    linux.set_uid_mappings(ns.uid_mappings);
    linux.set_gid_mappings(ns.gid_mappings);
    let no_sysctls = Default::default();
    let sysctls = sysctl::validate(
        input.pod.linux.as_ref().map_or(&no_sysctls, |l| &l.sysctls),
        sysctl::OwnNamespaces {
            net: input.pod_paths.net_ns.is_some(),
            ipc: input.pod_paths.ipc_ns.is_some(),
            uts: input.pod_paths.uts_ns.is_some(),
        },
    )?;
    linux.set_sysctl((!sysctls.is_empty()).then(|| sysctls.into_iter().collect()));
    linux.set_resources(Some(resources::resources(
        input.resources(),
        input.swap_controller_available,
        device_rules,
    )?));
    linux.set_cgroups_path((!input.cgroups_path.is_empty()).then(|| input.cgroups_path.into()));
    linux.set_namespaces(Some(ns.namespaces));
    linux.set_devices(Some(devices));
    linux.set_seccomp(seccomp);
    linux.set_rootfs_propagation(rootfs_propagation);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_mount_label(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_owned());
    root.set_readonly(Some(sc.readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_owned());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    spec.set_hostname(hostname);
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::testutil::Fixture;

    #[test]
    fn whole_spec_has_no_library_defaults_left() {
        let mut f = Fixture::new();
        f.pod.linux.as_mut().unwrap().sysctls =
            [("net.ipv4.ip_forward".to_string(), "1".to_string())].into();
        let spec = f.ok();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["ociVersion"], super::OCI_VERSION);
        assert_eq!(json["hostname"], "podhost");
        assert!(json["process"].get("rlimits").is_none());
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        assert!(json["linux"].get("seccomp").is_none());
        assert!(!json.to_string().contains("youki"));
        // It round-trips as OCI JSON.
        let back: oci_spec::runtime::Spec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn no_new_privs_and_tty() {
        let mut f = Fixture::new();
        f.sc().no_new_privs = true;
        f.container.tty = true;
        let spec = f.ok();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.terminal(), Some(true));
    }
}
