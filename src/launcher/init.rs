//! The container init: its plan (built and validated in the parent before the clone) and what
//! the cloned child does with it.
//!
//! Namespace ordering rules (runc's nsexec, youki's `process/`):
//! - A pid namespace to join (pod or target container) is joined by the *parent* before the
//!   clone: setns(CLONE_NEWPID) only affects children, and the monitor is a dedicated process.
//!   A new pid namespace (and a new user namespace) is created by the clone itself, so the init
//!   is PID 1 of it.
//! - In the child, namespaces with a path are joined before any new one is created: ipc, uts,
//!   net, cgroup. Joining a mount or time namespace is refused.
//! - A user namespace with a path (the pod's, `hostUsers: false`) is joined *late*: after the
//!   whole filesystem setup and the hostname, right before the process setup. Until then the
//!   init is host root, which it needs for: id-mapped mounts (mount_setattr(MOUNT_ATTR_IDMAP)
//!   needs CAP_SYS_ADMIN over the layers' filesystem, i.e. in the host's user namespace); the
//!   overlay (mounted from the host's user namespace so it honours the layers'
//!   `trusted.overlay.*` xattrs); proc when the container has its own pid namespace (created by
//!   our clone, so owned by the host's user namespace, which refuses a proc mount from inside
//!   the pod's); mknod of the default devices; sysfs, cgroup, mqueue. Host root may join every
//!   namespace (the host's user namespace owns all others), the reverse is not true, hence user
//!   last. Right after joining it, the init unshares a new mount namespace: owned by the pod's
//!   user namespace, it lets the container's root mount (tmpfs...) there, while every mount
//!   made so far is locked (cannot be unmounted or made writable from inside). The container's
//!   new uts/ipc/cgroup namespaces (not Kubernetes' case: uts/ipc/net come from the pod, whose
//!   namespaces pod-init created inside the pod's user namespace) stay owned by the host's.
//! - The new ones (mount, uts, ipc, net, cgroup) are then created with one unshare. The cgroup
//!   namespace is created after the parent wrote our pid into the container's cgroups (the `Go`
//!   message), so its root is the container's cgroup.
//!
//! Child sequence: wait `Go` (cgroups joined, id maps written); setsid; non-dumpable (until
//! exec); namespaces; sysctls (through the host's /proc: the kernel resolves /proc/sys against
//! the writer's namespaces, and the container's /proc/sys is read-only later); oom_score_adj;
//! the filesystem ([`super::mounts`]: mounts, devices, masked/read-only paths, pivot_root,
//! read-only root); hostname; the process setup ([`super::process`]: rlimits, cwd, user,
//! capabilities, no_new_privs, seccomp last); stdio; executable lookup; `Ready`; wait `Start`;
//! execve. Any failure is sent back as `Error { step, message }` and the child exits.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;

use super::channel::{Channel, Msg};
use super::mount_plan::{self, HostFacts, RootfsPlan};
use super::mounts;
use super::process::{self, ProcessPlan};
use super::seccomp::{self, Filter};
use super::sys::{RealSys, Syscall};
use super::{Failure, InitConfig, LaunchError};

/// Everything the init needs, computed in the parent.
#[derive(Debug)]
pub(crate) struct InitPlan {
    /// A pid namespace the parent joins before the clone.
    pub pid_join: Option<OwnedFd>,
    /// v1 `tasks` files the child writes `0` to, itself, before joining or creating any
    /// namespace (see `cgroups::self_join_split` for why the child and not the parent).
    pub cgroup_tasks: Vec<PathBuf>,
    /// cgroup files the parent writes the child's pid to (v1 ones when the clone makes a user
    /// namespace: the child then has no rights over the host's cgroup files).
    pub cgroup_procs: Vec<PathBuf>,
    /// The cgroup v2 directory the child is cloned into (`CLONE_INTO_CGROUP`), with its
    /// `cgroup.procs` for the parent to write instead if the kernel refuses the clone flag.
    pub clone_cgroup: Option<(OwnedFd, PathBuf)>,
    /// Namespaces created by the clone (`CLONE_NEWPID`, `CLONE_NEWUSER`).
    pub clone_flags: CloneFlags,
    /// uid_map / gid_map contents the parent writes for a new user namespace.
    pub id_maps: Option<(String, String)>,
    /// Namespaces the child joins, in order.
    pub joins: Vec<(OwnedFd, CloneFlags)>,
    /// The pod's user namespace, joined late (see the module doc); also what id-maps mounts.
    pub user_join: Option<OwnedFd>,
    /// Cloning from the template mount namespace (`template.rs`): (template, ours to return to).
    pub clone_ns: Option<(OwnedFd, OwnedFd)>,
    /// With `clone_ns`: each bind mount's source as a detached mount, by index in
    /// `rootfs.mounts`.
    pub bind_trees: Vec<Option<OwnedFd>>,
    /// Namespaces the child creates after the joins.
    pub unshare: CloneFlags,
    /// (key, /proc/sys path, value).
    pub sysctls: Vec<(String, PathBuf, String)>,
    pub oom_score_adj: Option<i32>,
    pub rootfs: RootfsPlan,
    pub hostname: Option<String>,
    pub process: ProcessPlan,
    pub seccomp: Option<Filter>,
}

fn spec_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Spec(msg.into())
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

fn ns_name(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNS => "mnt",
        _ => "?",
    }
}

/// Opens a namespace file to join later.
pub(crate) fn open_ns(path: &Path) -> Result<OwnedFd, LaunchError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| LaunchError::io(format!("opening namespace {}", path.display()), e))
}

fn id_map(
    maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>,
    what: &str,
) -> Result<String, LaunchError> {
    let maps = maps
        .filter(|m| !m.is_empty())
        .ok_or_else(|| spec_err(format!("a new user namespace needs {what} mappings")))?;
    Ok(maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect())
}

impl InitPlan {
    /// Validates the config and prepares everything the child needs (parent side).
    pub(crate) fn build(config: &InitConfig) -> Result<InitPlan, LaunchError> {
        let spec = &config.spec;
        let proc_spec = spec
            .process()
            .as_ref()
            .ok_or_else(|| spec_err("the spec has no process"))?;
        let linux = spec.linux().as_ref();
        let namespaces = linux
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();

        let mut seen = CloneFlags::empty();
        let (mut clone_flags, mut unshare) = (CloneFlags::empty(), CloneFlags::empty());
        let (mut pid_join, mut joins, mut user_join) = (None, Vec::new(), None);
        for ns in &namespaces {
            let flag = ns_flag(ns.typ());
            if seen.contains(flag) {
                return Err(spec_err(format!("namespace {} listed twice", ns.typ())));
            }
            seen |= flag;
            match (ns.typ(), ns.path()) {
                (LinuxNamespaceType::Time, _) => {
                    return Err(spec_err("time namespaces are not supported"));
                }
                (LinuxNamespaceType::Mount, Some(_)) => {
                    return Err(spec_err(
                        "joining an existing mount namespace is not supported",
                    ));
                }
                (LinuxNamespaceType::Pid, Some(p)) => pid_join = Some(open_ns(p)?),
                (LinuxNamespaceType::User, Some(p)) => user_join = Some(open_ns(p)?),
                (LinuxNamespaceType::Pid | LinuxNamespaceType::User, None) => clone_flags |= flag,
                (_, Some(p)) => joins.push((open_ns(p)?, flag)),
                (_, None) => unshare |= flag,
            }
        }
        if !seen.contains(CloneFlags::CLONE_NEWNS) {
            return Err(spec_err("the spec must ask for a mount namespace"));
        }
        let new_userns = clone_flags.contains(CloneFlags::CLONE_NEWUSER);
        let id_maps = if new_userns {
            Some((
                id_map(linux.and_then(|l| l.uid_mappings().as_ref()), "uid")?,
                id_map(linux.and_then(|l| l.gid_mappings().as_ref()), "gid")?,
            ))
        } else {
            None
        };
        let host_netns = !seen.contains(CloneFlags::CLONE_NEWNET);
        let hostname = spec
            .hostname()
            .clone()
            .filter(|h| !h.is_empty() && unshare.contains(CloneFlags::CLONE_NEWUTS));

        let mut sysctls = Vec::new();
        for (key, value) in linux
            .and_then(|l| l.sysctl().as_ref())
            .into_iter()
            .flatten()
        {
            // Dotted names; a `/` inside a component is a `.` in the path (`eth0/100`).
            let rel = crate::spec::sysctl::proc_sys_relative(key)
                .ok_or_else(|| spec_err(format!("invalid sysctl name {key:?}")))?;
            sysctls.push((key.clone(), Path::new("/proc/sys").join(rel), value.clone()));
        }
        sysctls.sort();

        let seccomp = linux
            .and_then(|l| l.seccomp().as_ref())
            .map(seccomp::compile)
            .transpose()
            .map_err(LaunchError::Spec)?;
        let (cgroup_tasks, mut cgroup_procs) = if new_userns {
            (Vec::new(), config.cgroup_procs.clone())
        } else {
            crate::cgroups::self_join_split(&config.cgroup_procs)
        };
        let clone_cgroup = crate::cgroups::take_v2_dir(&mut cgroup_procs);
        let mut host = HostFacts::probe(host_netns, new_userns);
        if user_join.is_some() {
            let maps = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, what| {
                m.filter(|m| !m.is_empty()).cloned().ok_or_else(|| {
                    spec_err(format!(
                        "joining a user namespace needs its {what} mappings in the spec"
                    ))
                })
            };
            host.userns = Some(mount_plan::IdMaps::from_oci(
                &maps(linux.and_then(|l| l.uid_mappings().as_ref()), "uid")?,
                &maps(linux.and_then(|l| l.gid_mappings().as_ref()), "gid")?,
            ));
        }
        let mut rootfs = mount_plan::plan(spec, &config.rootfs, &config.cgroup_procs, &host)?;
        let user = proc_spec.user();
        // The cwd is created while the init is still host root: owned by the user's host ids.
        let (cwd_uid, cwd_gid) = match &host.userns {
            Some(maps) => maps.to_host(user.uid(), user.gid())?,
            None => (user.uid(), user.gid()),
        };
        rootfs.cwd = Some((proc_spec.cwd().clone(), cwd_uid, cwd_gid));
        let (mut clone_ns, mut bind_trees) = (None, Vec::new());
        if let Some(template) = &config.clone_mntns {
            clone_ns = Some((open_ns(template)?, open_ns(Path::new("/proc/self/ns/mnt"))?));
            for m in &rootfs.mounts {
                bind_trees.push(match &m.kind {
                    mount_plan::MountKind::Bind {
                        source, recursive, ..
                    } => Some(
                        super::sys::open_tree_clone(source, *recursive).map_err(|e| {
                            LaunchError::io(format!("opening mount source {}", source.display()), e)
                        })?,
                    ),
                    _ => None,
                });
            }
        }
        Ok(InitPlan {
            pid_join,
            cgroup_tasks,
            cgroup_procs,
            clone_cgroup,
            clone_flags,
            id_maps,
            joins,
            user_join,
            clone_ns,
            bind_trees,
            unshare,
            sysctls,
            oom_score_adj: proc_spec.oom_score_adj(),
            rootfs,
            hostname,
            process: ProcessPlan::from_spec(proc_spec)?,
            seccomp,
        })
    }
}

fn at(step: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure {
        step: step.to_string(),
        message: e.to_string(),
    }
}

/// Everything between `Go` and the stdio/exec steps (see the module doc).
pub(crate) fn setup<S: Syscall>(sys: &S, plan: &InitPlan) -> Result<(), Failure> {
    sys.prctl(libc::PR_SET_DUMPABLE, 0)
        .map_err(at("dumpable"))?;
    // Ordering: the cgroup join comes first, while the child still has the host's rights over
    // the cgroup files (before joining a user namespace) and before a cgroup namespace is made
    // (its root is the cgroup we are in at unshare time).
    for tasks in &plan.cgroup_tasks {
        sys.write_file(tasks, "0")
            .map_err(at(format!("joining cgroup {}", tasks.display())))?;
    }
    for (fd, flag) in &plan.joins {
        sys.setns(fd.as_fd(), *flag)
            .map_err(at(format!("join {} namespace", ns_name(*flag))))?;
    }
    if !plan.unshare.is_empty() {
        sys.unshare(plan.unshare)
            .map_err(at("unshare namespaces"))?;
    }
    for (key, path, value) in &plan.sysctls {
        sys.write_file(path, value)
            .map_err(at(format!("sysctl {key}")))?;
    }
    if let Some(adj) = plan.oom_score_adj {
        match sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string()) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
                tracing::warn!(
                    oom_score_adj = adj,
                    error = %e,
                    "the host refuses this oom_score_adj (no CAP_SYS_RESOURCE); keeping the inherited value"
                );
            }
            Err(e) => return Err(at("oom_score_adj")(e)),
        }
    }
    let userns = plan.user_join.as_ref().map(|fd| fd.as_fd());
    mounts::setup_rootfs(sys, &plan.rootfs, userns, &plan.bind_trees)?;
    if let Some(h) = &plan.hostname {
        sys.sethostname(h).map_err(at("sethostname"))?;
    }
    if let Some(fd) = userns {
        sys.setns(fd, CloneFlags::CLONE_NEWUSER)
            .map_err(at("join user namespace"))?;
        sys.unshare(CloneFlags::CLONE_NEWNS)
            .map_err(at("unshare mount namespace in the user namespace"))?;
    }
    process::apply(sys, &plan.process, plan.seccomp.as_ref())
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong to the parent.
    unsafe { libc::_exit(code) }
}

fn report(chan: &Channel, step: &str, message: String) {
    let _ = chan.send(&Msg::Error {
        step: step.to_string(),
        message,
    });
}

/// Makes `stdio` the child's 0, 1, 2 (and the controlling terminal when `terminal`), and every
/// other descriptor close-on-exec.
fn install_stdio(stdio: [RawFd; 3], terminal: bool) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    use std::os::fd::BorrowedFd;
    // Move them out of the way first, so that e.g. stdout == 0 is not clobbered by stdin.
    let mut moved = Vec::with_capacity(3);
    for fd in stdio {
        // SAFETY: the parent passed us descriptors that are open in this (cloned) process.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        moved.push(fcntl(b, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(std::io::Error::from)?);
    }
    for (target, fd) in moved.into_iter().enumerate() {
        // SAFETY: fd is the descriptor F_DUPFD_CLOEXEC just returned; we own it.
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: dup2 onto 0/1/2 (which we replace on purpose); both are plain integers.
        if unsafe { libc::dup2(owned.as_raw_fd(), target as RawFd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if terminal {
        // SAFETY: integer arguments; stdin is the pty slave, we are a session leader.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // Everything else closes at exec (Rust opens with O_CLOEXEC already; this covers the rest).
    // SAFETY: integer arguments only.
    let _ = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    Ok(())
}

/// The cloned child. Never returns: execs the container process or exits.
pub(crate) fn child_main(
    plan: &InitPlan,
    chan: &Channel,
    parent_end: RawFd,
    stdio: [RawFd; 3],
) -> ! {
    // Our copy of the parent's end would keep our own end from seeing EOF if the parent died.
    // SAFETY: closing a descriptor number this process owns a copy of; the Channel value that
    // owns it in the parent's memory is never dropped here (this function diverges).
    unsafe { libc::close(parent_end) };
    match chan.recv() {
        Ok(Some(Msg::Go)) => {}
        _ => exit(1),
    }
    let _ = nix::unistd::setsid();
    // Whatever process cloned us (monitor or template), the container starts with no signal
    // blocked and none ignored.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    process::restore_ignored_signals();
    if let Err(f) = setup(&RealSys, plan) {
        report(chan, &f.step, f.message);
        exit(1);
    }
    if let Err(e) = install_stdio(stdio, plan.process.terminal) {
        report(chan, "stdio", e.to_string());
        exit(1);
    }
    let exe = process::resolve_executable(&plan.process);
    if chan.send(&Msg::Ready).is_err() {
        exit(1);
    }
    match chan.recv() {
        Ok(Some(Msg::Start)) => {}
        _ => exit(1),
    }
    let exe = match exe {
        Ok(exe) => exe,
        Err(message) => {
            report(chan, "exec", message);
            exit(127);
        }
    };
    let message = process::execve(&plan.process, &exe);
    report(chan, "exec", message);
    exit(127)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oci_spec::runtime::{
        LinuxBuilder, LinuxNamespaceBuilder, LinuxSeccompAction, LinuxSeccompBuilder, Mount,
        MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    };

    use super::super::Rootfs;
    use super::super::sys::fake::FakeSys;
    use super::*;

    fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    fn spec(netns_path: Option<&str>, nnp: bool) -> Spec {
        let mut namespaces = vec![
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Mount)
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Pid)
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Uts)
                .build()
                .unwrap(),
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Cgroup)
                .build()
                .unwrap(),
        ];
        if let Some(p) = netns_path {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(p)
                    .build()
                    .unwrap(),
            );
        }
        SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path("/run/c1/rootfs")
                    .readonly(true)
                    .build()
                    .unwrap(),
            )
            .hostname("box")
            .process(
                ProcessBuilder::default()
                    .args(vec!["sh".to_string()])
                    .cwd("/")
                    .oom_score_adj(-500)
                    .no_new_privileges(nnp)
                    .build()
                    .unwrap(),
            )
            .mounts(vec![
                mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
                mount(
                    "/dev",
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "strictatime", "mode=755", "size=65536k"],
                ),
                mount(
                    "/sys",
                    "sysfs",
                    "sysfs",
                    &["nosuid", "noexec", "nodev", "ro"],
                ),
                mount("/etc/hosts", "bind", "/etc/hosts", &["rbind", "ro"]),
                mount("/data", "bind", "/tmp", &["rbind", "rro", "rslave"]),
            ])
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .sysctl(HashMap::from([(
                        "net.ipv4.ip_forward".to_string(),
                        "1".to_string(),
                    )]))
                    .masked_paths(vec![
                        "/proc/kcore".to_string(),
                        "/proc/acpi".to_string(),
                        "/proc/missing".to_string(),
                    ])
                    .readonly_paths(vec!["/proc/sys".to_string()])
                    .seccomp(
                        LinuxSeccompBuilder::default()
                            .default_action(LinuxSeccompAction::ScmpActAllow)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn config(spec: Spec) -> InitConfig {
        InitConfig {
            spec,
            rootfs: Rootfs::Overlay {
                lower: vec!["/layers/1".into(), "/layers/2".into()],
                upper: "/c1/upper".into(),
                work: "/c1/work".into(),
            },
            cgroup_procs: vec![],
            clone_mntns: None,
        }
    }

    #[test]
    fn plan_splits_namespaces_between_clone_join_and_unshare() {
        let plan = InitPlan::build(&config(spec(Some("/proc/self/ns/net"), true))).unwrap();
        assert_eq!(plan.clone_flags, CloneFlags::CLONE_NEWPID);
        assert_eq!(plan.joins.len(), 1);
        assert_eq!(plan.joins[0].1, CloneFlags::CLONE_NEWNET);
        assert_eq!(
            plan.unshare,
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWCGROUP
        );
        assert_eq!(plan.hostname.as_deref(), Some("box"));
        assert!(plan.pid_join.is_none());
        assert!(matches!(
            plan.rootfs.mounts[2].kind,
            mount_plan::MountKind::Fs { ref fstype, .. } if fstype == "sysfs"
        ));
        // Sharing the host's netns: sysfs becomes a read-only rbind of the host's /sys.
        let host = InitPlan::build(&config(spec(None, true))).unwrap();
        assert_eq!(
            host.rootfs.mounts[2].kind,
            mount_plan::MountKind::SysfsBind { readonly: true }
        );
    }

    #[test]
    fn bad_specs_are_refused_before_any_clone() {
        let mut s = spec(None, true);
        s.set_process(None);
        assert!(matches!(
            InitPlan::build(&config(s)),
            Err(LaunchError::Spec(_))
        ));

        let mut s = spec(None, true);
        let mut mounts = s.mounts().clone().unwrap();
        mounts.push(mount("/x", "bind", "/definitely/not/here", &["rbind"]));
        s.set_mounts(Some(mounts));
        let err = InitPlan::build(&config(s)).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
        assert_eq!(
            crate::error::Classify::kind(&err),
            crate::error::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn init_sequence_in_order() {
        let plan = InitPlan::build(&config(spec(Some("/proc/self/ns/net"), true))).unwrap();
        let sys = FakeSys {
            files: [PathBuf::from("/proc/kcore")].into(),
            missing: [PathBuf::from("/proc/missing")].into(),
            ..Default::default()
        };
        setup(&sys, &plan).unwrap();
        let calls = sys.calls();
        let r = "/run/c1/rootfs";
        let expected_prefix: Vec<String> = vec![
            "prctl DUMPABLE 0".into(),
            "setns CLONE_NEWNET".into(),
            "unshare CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS".into(),
            "write /proc/sys/net/ipv4/ip_forward 1".into(),
            "write /proc/self/oom_score_adj -500".into(),
            "umask 0".into(),
            "mount - / - MS_REC | MS_SLAVE -".into(),
            format!(
                "mount overlay {r} overlay empty lowerdir=/layers/2:/layers/1,upperdir=/c1/upper,workdir=/c1/work"
            ),
            format!("open_root {r}"),
            format!("mount proc {r}/proc proc MS_NOSUID | MS_NODEV | MS_NOEXEC -"),
            format!("mount tmpfs {r}/dev tmpfs MS_NOSUID | MS_STRICTATIME mode=755,size=65536k"),
            format!("mount sysfs {r}/sys sysfs MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC -"),
            format!("mount /etc/hosts {r}/etc/hosts - MS_BIND | MS_REC -"),
            format!("mount - {r}/etc/hosts - MS_RDONLY | MS_REMOUNT | MS_BIND | MS_REC -"),
            format!("mount /tmp {r}/data - MS_BIND | MS_REC -"),
            format!("mount - {r}/data - MS_REC | MS_SLAVE -"),
            format!("mount_setattr {r}/data recursive=true set=0x1 clear=0x0"),
        ];
        assert_eq!(
            &calls[..expected_prefix.len()],
            &expected_prefix[..],
            "{calls:#?}"
        );
        let rest = &calls[expected_prefix.len()..];
        let pos = |p: &str| {
            rest.iter()
                .position(|c| c.starts_with(p))
                .unwrap_or_else(|| panic!("no {p:?} in {rest:#?}"))
        };
        // Devices and /dev links come after the mounts, then ro paths, masks, pivot.
        assert!(rest[0].starts_with(&format!("mknod {r}/dev/null 20666")));
        assert!(pos("symlink pts/ptmx") < pos(&format!("mount {r}/proc/sys")));
        assert!(
            pos(&format!(
                "mount_setattr {r}/proc/sys recursive=true set=0x1"
            )) < pos("mount /dev/null")
        );
        assert!(rest.contains(&format!("mount /dev/null {r}/proc/kcore - MS_BIND -")));
        assert!(rest.contains(&format!("mount tmpfs {r}/proc/acpi tmpfs MS_RDONLY -")));
        assert!(!rest.iter().any(|c| c.contains("/proc/missing")));
        let tail: Vec<&str> = rest[pos("chdir /run")..]
            .iter()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            tail,
            vec![
                "chdir /run/c1/rootfs",
                "pivot_root . .",
                "mount - . - MS_REC | MS_SLAVE -",
                "umount2 . MNT_DETACH",
                "chdir /",
                "open_root /",
                "mount - / - MS_RDONLY | MS_REMOUNT | MS_BIND -",
                "sethostname box",
                &format!("setrlimit {} 1024 1024", libc::RLIMIT_NOFILE),
                "chdir /",
                "drop_bounding keep=3",
                "setgroups []",
                "setresgid 0",
                "prctl KEEPCAPS 1",
                "setresuid 0",
                "prctl KEEPCAPS 0",
                "set_caps eff=3 perm=3 inh=3 amb=3",
                "umask 22",
                "prctl NO_NEW_PRIVS 1",
                "seccomp len=7 flags=0",
            ]
        );
    }

    /// The spec of [`spec`] joining a pod user namespace (0 -> 100000, 65536) and its net
    /// namespace, with an id-mapped bind mount.
    fn userns_spec() -> Spec {
        use oci_spec::runtime::LinuxIdMappingBuilder;
        let map = vec![
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(100_000u32)
                .size(65_536u32)
                .build()
                .unwrap(),
        ];
        let mut s = spec(Some("/proc/self/ns/net"), true);
        let mut linux = s.linux().clone().unwrap();
        let mut namespaces = linux.namespaces().clone().unwrap();
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .path("/proc/self/ns/user")
                .build()
                .unwrap(),
        );
        linux.set_namespaces(Some(namespaces));
        linux.set_uid_mappings(Some(map.clone()));
        linux.set_gid_mappings(Some(map.clone()));
        s.set_linux(Some(linux));
        let mut mounts = s.mounts().clone().unwrap();
        let mut vol = mount("/vol", "bind", "/tmp", &["rbind"]);
        vol.set_uid_mappings(Some(map.clone()));
        vol.set_gid_mappings(Some(map));
        mounts.push(vol);
        s.set_mounts(Some(mounts));
        s
    }

    #[test]
    fn pod_user_namespace_is_joined_after_the_privileged_filesystem_setup() {
        let plan = InitPlan::build(&config(userns_spec())).unwrap();
        assert!(plan.user_join.is_some());
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWPID,
            "user: joined, not cloned"
        );
        assert_eq!(plan.rootfs.root_ids, Some((100_000, 100_000)));
        let sys = FakeSys {
            files: [PathBuf::from("/proc/kcore")].into(),
            ..Default::default()
        };
        setup(&sys, &plan).unwrap();
        let calls = sys.calls();
        let r = "/run/c1/rootfs";
        let pos = |p: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(p))
                .unwrap_or_else(|| panic!("no {p:?} in {calls:#?}"))
        };
        // Host root first: other namespaces, upper/work handed to the mapped root, each layer
        // id-mapped in place, then the overlay over them.
        let order = [
            "setns CLONE_NEWNET",
            "unshare CLONE_NEWNS",
            "chown /c1/upper 100000:100000",
            "chown /c1/work 100000:100000",
            "idmap_mount /layers/2 /layers/2 recursive=false",
            "idmap_mount /layers/1 /layers/1 recursive=false",
            "mount overlay",
            &format!("mount proc {r}/proc"),
            &format!("idmap_mount /tmp {r}/vol recursive=true"),
            &format!("mknod {r}/dev/null"),
            &format!("chown {r}/dev/null 100000:100000"),
            "pivot_root",
            "mount - / - MS_RDONLY | MS_REMOUNT | MS_BIND",
            "sethostname box",
            // Then the pod's user namespace and a mount namespace it owns.
            "setns CLONE_NEWUSER",
            "unshare CLONE_NEWNS",
            "setrlimit",
            "setresuid 0",
            "seccomp",
        ];
        let mut last = 0;
        for step in order {
            let at = calls[last..]
                .iter()
                .position(|c| c.starts_with(step))
                .map(|i| i + last)
                .unwrap_or_else(|| panic!("{step:?} not after call {last} in {calls:#?}"));
            last = at + 1;
        }
        // The /dev tmpfs belongs to the container's root.
        assert!(
            calls[pos(&format!("mount tmpfs {r}/dev tmpfs"))].contains("uid=100000,gid=100000"),
            "{calls:#?}"
        );
        // No plain bind for the id-mapped volume.
        let plain = format!("mount /tmp {r}/vol ");
        assert!(!calls.iter().any(|c| c.starts_with(&plain)), "{calls:#?}");
    }

    #[test]
    fn idmapped_mounts_need_the_pod_user_namespace_and_its_maps() {
        use oci_spec::runtime::LinuxIdMappingBuilder;
        // Without a user namespace to join.
        let mut s = spec(None, true);
        let mut mounts = s.mounts().clone().unwrap();
        let other = vec![
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(200_000u32)
                .size(10u32)
                .build()
                .unwrap(),
        ];
        let mut vol = mount("/vol", "bind", "/tmp", &["rbind"]);
        vol.set_uid_mappings(Some(other.clone()));
        vol.set_gid_mappings(Some(other.clone()));
        mounts.push(vol.clone());
        s.set_mounts(Some(mounts));
        let err = InitPlan::build(&config(s)).unwrap_err();
        assert!(err.to_string().contains("user namespace"), "{err}");
        // With other maps than the pod's.
        let mut s = userns_spec();
        let mut mounts = s.mounts().clone().unwrap();
        mounts.pop();
        vol.set_destination("/vol2".into());
        mounts.push(vol);
        s.set_mounts(Some(mounts));
        let err = InitPlan::build(&config(s)).unwrap_err();
        assert!(err.to_string().contains("other than"), "{err}");
        assert_eq!(
            crate::error::Classify::kind(&err),
            crate::error::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn refused_oom_score_adj_is_only_a_warning_but_other_failures_name_the_step() {
        let plan = InitPlan::build(&config(spec(None, true))).unwrap();
        let sys = FakeSys {
            fail_prefix: Some("write /proc/self/oom_score_adj".into()),
            fail_errno: libc::EACCES,
            ..Default::default()
        };
        setup(&sys, &plan).unwrap();
        assert!(sys.calls().last().unwrap().starts_with("seccomp"));

        let sys = FakeSys {
            fail_prefix: Some("pivot_root".into()),
            fail_errno: libc::EINVAL,
            ..Default::default()
        };
        let f = setup(&sys, &plan).unwrap_err();
        assert_eq!(f.step, "pivot_root");
        assert!(!sys.calls().iter().any(|c| c.starts_with("setresuid")));
    }
}
