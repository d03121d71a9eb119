//! The filesystem plan: the OCI spec's root, mounts, devices, masked and read-only paths turned
//! into [`RootfsPlan`] in the parent (pure, validated: a bad spec fails before any clone; bind
//! sources are checked to exist). [`super::mounts`] executes it in the init.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::sys::{
    MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME, MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME,
};
use super::{LaunchError, Rootfs};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootSource {
    Overlay {
        lower_top_first: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// The option string for mount(2); `None` when the fsconfig API must be used.
        options: Option<String>,
    },
    Existing,
}

/// Propagation changes and recursive mount attributes applied after a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub propagation: Vec<MsFlags>,
    pub rec_set: u64,
    pub rec_clear: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountKind {
    Bind {
        source: PathBuf,
        recursive: bool,
        source_is_dir: bool,
        /// Flags beyond MS_BIND/MS_REC; non-empty means a remount.
        flags: MsFlags,
        attrs: Attrs,
        /// Id-mapped through the pod's user namespace (the mount has uid/gid mappings).
        idmap: bool,
    },
    Fs {
        fstype: String,
        source: String,
        flags: MsFlags,
        data: String,
        attrs: Attrs,
    },
    /// cgroup v1 host: a tmpfs with the container's own cgroup directory of each hierarchy
    /// bind-mounted (read-only when the mount is) under its hierarchy name.
    CgroupBinds {
        flags: MsFlags,
        dirs: Vec<(String, PathBuf)>,
    },
    /// A cgroup2 mount (shows the container's cgroup as root, thanks to the cgroup ns).
    Cgroup2 { flags: MsFlags },
    /// sysfs when sharing the host's network namespace: rbind of the host's /sys.
    SysfsBind { readonly: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountOp {
    pub destination: PathBuf,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub path: PathBuf,
    /// Type bits (`S_IFCHR`...) and permissions.
    pub mode: u32,
    pub major: u64,
    pub minor: u64,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootfsPlan {
    pub rootfs: PathBuf,
    pub source: RootSource,
    pub root_propagation: MsFlags,
    pub shared_after_pivot: Option<MsFlags>,
    pub mounts: Vec<MountOp>,
    /// `Some(bind_from_host)` when the spec mounts a tmpfs on /dev: default devices are
    /// created (bind-mounted from the host's /dev inside a user namespace, where mknod is refused).
    pub dev_setup: Option<bool>,
    pub devices: Vec<Device>,
    pub dev_core: bool,
    pub readonly_paths: Vec<PathBuf>,
    pub masked_paths: Vec<PathBuf>,
    pub readonly_root: bool,
    /// The working directory (uid, gid): created after pivot_root when missing, owned by the
    /// user, before the root turns read-only.
    pub cwd: Option<(PathBuf, u32, u32)>,
    /// With the pod's user namespace: the host uid and gid of the container's root, which
    /// owns the upperdir, workdir, tmpfs mounts and device nodes (all made by the init while it
    /// is still host root, see `init.rs`).
    pub root_ids: Option<(u32, u32)>,
}

/// The id maps of the user namespace the container joins: (inside, outside, length) lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IdMaps {
    pub uids: Vec<(u32, u32, u32)>,
    pub gids: Vec<(u32, u32, u32)>,
}

fn to_host(map: &[(u32, u32, u32)], id: u32) -> Option<u32> {
    map.iter().find_map(|&(inside, outside, len)| {
        (id >= inside && u64::from(id) < u64::from(inside) + u64::from(len))
            .then(|| outside + (id - inside))
    })
}

impl IdMaps {
    pub(crate) fn from_oci(
        uids: &[oci_spec::runtime::LinuxIdMapping],
        gids: &[oci_spec::runtime::LinuxIdMapping],
    ) -> IdMaps {
        let lines = |m: &[oci_spec::runtime::LinuxIdMapping]| {
            m.iter()
                .map(|m| (m.container_id(), m.host_id(), m.size()))
                .collect()
        };
        IdMaps {
            uids: lines(uids),
            gids: lines(gids),
        }
    }

    /// The host (uid, gid) of a container (uid, gid).
    pub(crate) fn to_host(&self, uid: u32, gid: u32) -> Result<(u32, u32), LaunchError> {
        match (to_host(&self.uids, uid), to_host(&self.gids, gid)) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(spec_err(format!(
                "uid {uid} / gid {gid} is not mapped by the container's user namespace"
            ))),
        }
    }
}

/// What a mount option string means.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    flags: MsFlags,
    attrs: Attrs,
    data: Vec<String>,
}

fn parse_options(options: &[String]) -> Result<Options, String> {
    let mut o = Options {
        flags: MsFlags::empty(),
        attrs: Attrs::default(),
        data: Vec::new(),
    };
    for opt in options {
        let (clear, flag) = match opt.as_str() {
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "atime" => (true, MsFlags::MS_NOATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "defaults" => (false, MsFlags::empty()),
            "dev" => (true, MsFlags::MS_NODEV),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "iversion" => (false, MsFlags::MS_I_VERSION),
            "lazytime" => (false, MsFlags::MS_LAZYTIME),
            "loud" => (true, MsFlags::MS_SILENT),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "nodev" => (false, MsFlags::MS_NODEV),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "noiversion" => (true, MsFlags::MS_I_VERSION),
            "nolazytime" => (true, MsFlags::MS_LAZYTIME),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "silent" => (false, MsFlags::MS_SILENT),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "suid" => (true, MsFlags::MS_NOSUID),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                if let Some(p) = propagation(opt) {
                    o.attrs.propagation.push(p);
                }
                continue;
            }
            "tmpcopyup" => continue,
            "idmap" | "ridmap" => return Err(format!("mount option {opt:?} is not supported")),
            other => {
                if let Some((set, clear)) = recursive_attr(other) {
                    o.attrs.rec_set |= set;
                    o.attrs.rec_clear |= clear;
                } else {
                    o.data.push(other.to_string());
                }
                continue;
            }
        };
        if clear {
            o.flags.remove(flag);
        } else {
            o.flags.insert(flag);
        }
    }
    Ok(o)
}

fn propagation(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// `rro` & co: (attributes to set, attributes to clear) for mount_setattr(AT_RECURSIVE).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME),
        "rnorelatime" => (0, MOUNT_ATTR__ATIME),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME),
        "ratime" => (0, MOUNT_ATTR__ATIME),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME),
        "rnostrictatime" => (0, MOUNT_ATTR__ATIME),
        _ => return None,
    })
}

/// Inputs of [`plan`] that do not come from the spec.
pub(crate) struct HostFacts {
    /// The host's /sys/fs/cgroup is a cgroup2 mount.
    pub cgroup2: bool,
    /// The container shares the host's network namespace.
    pub host_netns: bool,
    /// The container gets a new user namespace (mknod refused: bind devices).
    pub new_userns: bool,
    pub page_size: usize,
    pub dev_core: bool,
    /// The maps of the pod user namespace the container joins (`None`: the host's).
    pub userns: Option<IdMaps>,
}

impl HostFacts {
    pub(crate) fn probe(host_netns: bool, new_userns: bool) -> HostFacts {
        let cgroup2 = nix::sys::statfs::statfs(CGROUP_ROOT)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(4096);
        HostFacts {
            cgroup2,
            host_netns,
            new_userns,
            page_size,
            dev_core: Path::new("/proc/kcore").exists(),
            userns: None,
        }
    }
}

fn spec_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Spec(msg.into())
}

/// Builds the filesystem plan from the spec (parent side; validates and checks bind sources).
pub(crate) fn plan(
    spec: &oci_spec::runtime::Spec,
    rootfs: &Rootfs,
    cgroup_procs: &[PathBuf],
    host: &HostFacts,
) -> Result<RootfsPlan, LaunchError> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| spec_err("the spec has no root"))?;
    let root_path = root.path().clone();
    if !root_path.is_absolute() {
        return Err(spec_err(format!(
            "root.path {} must be absolute",
            root_path.display()
        )));
    }
    let source = match rootfs {
        Rootfs::Existing => RootSource::Existing,
        Rootfs::Overlay { lower, upper, work } => {
            if lower.is_empty() {
                return Err(spec_err("an overlay rootfs needs at least one lower layer"));
            }
            let lower_top_first: Vec<PathBuf> = lower.iter().rev().cloned().collect();
            let options = overlay_options(&lower_top_first, upper, work, host.page_size);
            RootSource::Overlay {
                lower_top_first,
                upper: upper.clone(),
                work: work.clone(),
                options,
            }
        }
    };
    let linux = spec.linux().as_ref();
    let (root_propagation, shared_after_pivot) =
        match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
            None | Some("") => (MsFlags::MS_SLAVE | MsFlags::MS_REC, None),
            Some(p) => {
                let flags = propagation(p)
                    .ok_or_else(|| spec_err(format!("unknown rootfsPropagation {p:?}")))?;
                if flags.contains(MsFlags::MS_SHARED) {
                    // pivot_root refuses a shared new root: share it once pivoted.
                    (MsFlags::MS_SLAVE | MsFlags::MS_REC, Some(flags))
                } else {
                    (flags, None)
                }
            }
        };

    let root_ids = host.userns.as_ref().map(|m| m.to_host(0, 0)).transpose()?;
    let mut mounts = Vec::new();
    let mut dev_setup = None;
    for m in spec.mounts().iter().flatten() {
        let destination = m.destination().clone();
        if !destination.is_absolute() {
            return Err(spec_err(format!(
                "mount destination {} must be absolute",
                destination.display()
            )));
        }
        let opts = parse_options(m.options().as_deref().unwrap_or_default())
            .map_err(|e| spec_err(format!("mount {}: {e}", destination.display())))?;
        let fstype = m.typ().as_deref().unwrap_or("");
        let is_bind = fstype == "bind" || opts.flags.contains(MsFlags::MS_BIND);
        let kind = if is_bind {
            let source = m.source().clone().ok_or_else(|| {
                spec_err(format!(
                    "bind mount {} has no source",
                    destination.display()
                ))
            })?;
            let meta = std::fs::metadata(&source).map_err(|e| {
                spec_err(format!(
                    "mount source {} for {}: {e}",
                    source.display(),
                    destination.display()
                ))
            })?;
            MountKind::Bind {
                source,
                recursive: opts.flags.contains(MsFlags::MS_REC),
                source_is_dir: meta.is_dir(),
                flags: opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT),
                attrs: opts.attrs,
                idmap: bind_idmap(m, host)?,
            }
        } else {
            match fstype {
                "cgroup" | "cgroup2" => {
                    if host.cgroup2 {
                        MountKind::Cgroup2 { flags: opts.flags }
                    } else {
                        MountKind::CgroupBinds {
                            flags: opts.flags,
                            dirs: cgroup_dirs(cgroup_procs),
                        }
                    }
                }
                "sysfs" if host.host_netns => MountKind::SysfsBind {
                    readonly: opts.flags.contains(MsFlags::MS_RDONLY),
                },
                "" => {
                    return Err(spec_err(format!(
                        "mount {} has no type",
                        destination.display()
                    )));
                }
                t => {
                    if t == "tmpfs" && destination == Path::new("/dev") {
                        dev_setup = Some(host.new_userns);
                    }
                    let mut data = opts.data;
                    if let (Some(ids), "tmpfs") = (root_ids, t)
                        && !data
                            .iter()
                            .any(|d| d.starts_with("uid=") || d.starts_with("gid="))
                    {
                        // Owned by the container's root, as if it had mounted it itself.
                        data.push(format!("uid={}", ids.0));
                        data.push(format!("gid={}", ids.1));
                    }
                    MountKind::Fs {
                        fstype: t.to_string(),
                        source: m
                            .source()
                            .as_ref()
                            .map(|s| s.display().to_string())
                            .unwrap_or_else(|| t.to_string()),
                        flags: opts.flags,
                        data: data.join(","),
                        attrs: opts.attrs,
                    }
                }
            }
        };
        mounts.push(MountOp { destination, kind });
    }

    let mut devices = Vec::new();
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        use oci_spec::runtime::LinuxDeviceType as D;
        let kind = match d.typ() {
            D::C | D::U => libc::S_IFCHR,
            D::B => libc::S_IFBLK,
            D::P => libc::S_IFIFO,
            D::A => {
                return Err(spec_err(format!(
                    "device {} has type \"a\"",
                    d.path().display()
                )));
            }
        };
        let (major, minor) = (
            u64::try_from(d.major()).map_err(|_| spec_err("negative device major"))?,
            u64::try_from(d.minor()).map_err(|_| spec_err("negative device minor"))?,
        );
        if !d.path().is_absolute() {
            return Err(spec_err(format!(
                "device path {} must be absolute",
                d.path().display()
            )));
        }
        let (mut uid, mut gid) = (d.uid().unwrap_or(0), d.gid().unwrap_or(0));
        if let Some(maps) = &host.userns {
            // mknod'ed by the init as host root: chowned to the host ids of the owner.
            (uid, gid) = maps.to_host(uid, gid)?;
        }
        devices.push(Device {
            path: d.path().clone(),
            mode: kind | (d.file_mode().unwrap_or(0o666) & 0o7777),
            major,
            minor,
            uid,
            gid,
        });
    }

    // /dev bind-mounted from the host (privileged): never mknod into it (runc does the same).
    let dev_bound = mounts.iter().any(|m: &MountOp| {
        m.destination == Path::new("/dev") && matches!(m.kind, MountKind::Bind { .. })
    });
    if dev_bound {
        devices.clear();
    }
    let paths = |v: Option<&Vec<String>>| -> Vec<PathBuf> {
        v.into_iter().flatten().map(PathBuf::from).collect()
    };
    Ok(RootfsPlan {
        rootfs: root_path,
        source,
        root_propagation,
        shared_after_pivot,
        mounts,
        dev_setup,
        devices,
        dev_core: host.dev_core,
        readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
        masked_paths: paths(linux.and_then(|l| l.masked_paths().as_ref())),
        readonly_root: root.readonly().unwrap_or(false),
        cwd: None,
        root_ids,
    })
}

/// Whether a bind mount is id-mapped: it is when it has uid/gid mappings, which must then be
/// those of the pod's user namespace the container joins (its descriptor is what maps the
/// mount; kubelet passes the pod's mappings).
fn bind_idmap(m: &oci_spec::runtime::Mount, host: &HostFacts) -> Result<bool, LaunchError> {
    let (uids, gids) = (
        m.uid_mappings().as_deref().unwrap_or_default(),
        m.gid_mappings().as_deref().unwrap_or_default(),
    );
    if uids.is_empty() && gids.is_empty() {
        return Ok(false);
    }
    let dst = m.destination().display();
    let Some(userns) = &host.userns else {
        return Err(spec_err(format!(
            "mount {dst}: id-mapped mounts need the pod's user namespace"
        )));
    };
    if IdMaps::from_oci(uids, gids) != *userns {
        return Err(spec_err(format!(
            "mount {dst}: id mappings other than the pod user namespace's are not supported"
        )));
    }
    Ok(true)
}

/// `lowerdir=TOP:...:BOTTOM,upperdir=U,workdir=W`, or `None` when it must go through fsconfig
/// (longer than a page minus the NUL, or a path with a character the option syntax reserves).
pub(crate) fn overlay_options(
    lower_top_first: &[PathBuf],
    upper: &Path,
    work: &Path,
    page_size: usize,
) -> Option<String> {
    let plain = |p: &Path| -> Option<String> {
        let s = p.to_str()?;
        (!s.contains([',', ':', '\\'])).then(|| s.to_string())
    };
    let lowers = lower_top_first
        .iter()
        .map(|p| plain(p))
        .collect::<Option<Vec<_>>>()?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        plain(upper)?,
        plain(work)?
    );
    (options.len() < page_size).then_some(options)
}

/// The container's cgroup directory per v1 hierarchy: `/sys/fs/cgroup/<name>/<path>/cgroup.procs`
/// -> (`<name>`, the directory).
fn cgroup_dirs(cgroup_procs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    cgroup_procs
        .iter()
        .filter_map(|p| {
            let dir = p.parent()?;
            let rel = dir.strip_prefix(CGROUP_ROOT).ok()?;
            let name = rel.components().next()?.as_os_str().to_str()?.to_string();
            Some((name, dir.to_path_buf()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_recursive_attrs_and_data() {
        let o = parse_options(
            &[
                "rbind", "ro", "nosuid", "rslave", "rro", "mode=755", "size=64k", "rw",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(
            o.attrs.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]
        );
        assert_eq!(o.attrs.rec_set, MOUNT_ATTR_RDONLY);
        assert_eq!(o.data, vec!["mode=755", "size=64k"]);
        assert!(parse_options(&["idmap".to_string()]).is_err());
    }

    #[test]
    fn overlay_options_fall_back_to_fsconfig_past_a_page() {
        let few: Vec<PathBuf> = vec!["/l/2".into(), "/l/1".into()];
        assert_eq!(
            overlay_options(&few, Path::new("/u"), Path::new("/w"), 4096).as_deref(),
            Some("lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w")
        );
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/strata/layers/{i:040}")))
            .collect();
        assert_eq!(
            overlay_options(&many, Path::new("/u"), Path::new("/w"), 4096),
            None
        );
        let colon: Vec<PathBuf> = vec!["/l:1".into()];
        assert_eq!(
            overlay_options(&colon, Path::new("/u"), Path::new("/w"), 4096),
            None
        );
    }

    #[test]
    fn cgroup_dirs_are_named_after_their_hierarchy() {
        let procs = vec![
            PathBuf::from("/sys/fs/cgroup/memory/kubepods/pod1/c1/cgroup.procs"),
            PathBuf::from("/sys/fs/cgroup/unified/kubepods/pod1/c1/cgroup.procs"),
            PathBuf::from("/elsewhere/cgroup.procs"),
        ];
        assert_eq!(
            cgroup_dirs(&procs),
            vec![
                (
                    "memory".to_string(),
                    PathBuf::from("/sys/fs/cgroup/memory/kubepods/pod1/c1")
                ),
                (
                    "unified".to_string(),
                    PathBuf::from("/sys/fs/cgroup/unified/kubepods/pod1/c1")
                ),
            ]
        );
    }
}
