//! The container's filesystem setup in the init: executes the [`super::mount_plan`] plan through
//! [`Syscall`], so the order is unit-tested with the recording fake.
//!
//! Order (runc's `prepareRootfs` + `finalizeRootfs`), all in the container's new mount ns:
//! 1. `/` made `rslave` recursively (or the spec's `rootfsPropagation`), so nothing we mount
//!    propagates back to the host, and umask 0 so device modes are exact.
//! 2. The rootfs: the overlay mounted at `root.path` (`lowerdir=` topmost first; through
//!    fsopen/fsconfig `lowerdir+` when the option string would not fit in a page), or the existing
//!    directory bind-mounted onto itself (pivot_root needs a mount point).
//! 3. The spec's mounts in order, each target resolved inside the rootfs (`RESOLVE_IN_ROOT`) and
//!    created when missing (a file when a bind source is a file); bind mounts get their flags by
//!    a `MS_BIND|MS_REMOUNT` remount, then propagation flags, then recursive attributes (`rro`...)
//!    through mount_setattr(AT_RECURSIVE).
//! 4. When the spec mounts a tmpfs on `/dev`: the default devices, the spec's devices, the
//!    `/dev/{fd,stdin,stdout,stderr,core}` symlinks and `/dev/ptmx -> pts/ptmx`.
//! 5. Read-only paths (self bind + recursive read-only), then masked paths (`/dev/null` over
//!    files, a read-only tmpfs over directories; missing paths are skipped).
//! 6. pivot_root(".", "."), the old root made rslave and lazily unmounted, chdir("/").
//! 7. the working directory created when missing (owned by the user), then `/` remounted
//!    read-only when `root.readonly`; shared root propagation applied last.
//!
//! With the pod's user namespace (`userns`), all of this still runs as host root in a mount
//! namespace owned by the host's user namespace (init.rs says why), and before step 2 the
//! per-container upperdir and workdir are chowned to the host ids of the container's root and
//! every lower layer is covered, in this mount namespace only, by an id-mapped clone of itself
//! (open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount onto the same path), so the overlay
//! mounted on them shows the image's root-owned files as the container's root while the shared
//! layer directories are never written. Bind mounts with id mappings are id-mapped clones of
//! their source instead of plain binds.
//!
//! Why id-mapped lower layers and not an id-mapped overlay: overlayfs refuses
//! `MOUNT_ATTR_IDMAP` on its own mounts (EINVAL, measured on 6.18), and an overlay mounted from
//! inside the user namespace could not read the `trusted.overlay.*` xattrs (opaque directories)
//! of our layers. With a host-mounted overlay over id-mapped lowers, files the container
//! creates land in the upperdir owned by their host ids (container root -> e.g. 100000).

use std::io;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::Failure;
use super::mount_plan::{Attrs, Device, MountKind, MountOp, RootSource, RootfsPlan};
use super::sys::{
    Create, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Syscall,
    Target,
};

fn at(step: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Failure {
    move |e| Failure {
        step: step.to_string(),
        message: e.to_string(),
    }
}

/// Executes `plan` in the init's new mount namespace (see the module doc for the order).
/// `userns`: the pod's user namespace the container joins afterwards (id-mapped mounts).
/// `trees`: per mount of the plan, its source already opened as a detached mount by the parent
/// (cloning from the template mount namespace, see `template.rs`), attached instead of bound.
pub(crate) fn setup_rootfs<S: Syscall>(
    sys: &S,
    plan: &RootfsPlan,
    userns: Option<BorrowedFd<'_>>,
    trees: &[Option<OwnedFd>],
) -> Result<(), Failure> {
    sys.umask(0);
    sys.mount(None, Path::new("/"), None, plan.root_propagation, None)
        .map_err(at("rootfs propagation"))?;
    if let (Some(userns), Some((uid, gid))) = (userns, plan.root_ids) {
        idmap_source(sys, &plan.source, &plan.rootfs, userns, uid, gid)?;
    }
    match &plan.source {
        RootSource::Overlay {
            lower_top_first,
            upper,
            work,
            options,
        } => match options {
            Some(options) => sys.mount(
                Some(Path::new("overlay")),
                &plan.rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(options),
            ),
            None => sys.mount_overlay_fsconfig(&plan.rootfs, lower_top_first, upper, work),
        }
        .map_err(at("mount overlay rootfs"))?,
        RootSource::Existing if userns.is_some() => {}
        RootSource::Existing => sys
            .mount(
                Some(&plan.rootfs),
                &plan.rootfs,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(at("bind rootfs"))?,
    }
    let root = sys.open_root(&plan.rootfs).map_err(at("open rootfs"))?;

    for (i, m) in plan.mounts.iter().enumerate() {
        let tree = trees.get(i).and_then(|t| t.as_ref()).map(|t| t.as_fd());
        mount_one(sys, &root, m, userns, tree)
            .map_err(at(format!("mount {}", m.destination.display())))?;
    }
    if let Some(bind) = plan.dev_setup {
        setup_dev(sys, &root, plan, bind)?;
    } else {
        for d in &plan.devices {
            make_device(sys, &root, d, false)
                .map_err(at(format!("device {}", d.path.display())))?;
        }
    }
    for p in &plan.readonly_paths {
        readonly_path(sys, &root, p).map_err(at(format!("readonly path {}", p.display())))?;
    }
    for p in &plan.masked_paths {
        mask_path(sys, &root, p).map_err(at(format!("masked path {}", p.display())))?;
    }
    drop(root);

    // pivot_root(".", "."): the old root ends up stacked on the new one; detach it.
    sys.chdir(&plan.rootfs).map_err(at("chdir rootfs"))?;
    sys.pivot_root(Path::new("."), Path::new("."))
        .map_err(at("pivot_root"))?;
    sys.mount(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )
    .map_err(at("old root propagation"))?;
    sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(at("unmount old root"))?;
    sys.chdir(Path::new("/")).map_err(at("chdir /"))?;

    if let Some((cwd, uid, gid)) = &plan.cwd {
        let root = sys.open_root(Path::new("/")).map_err(at("cwd"))?;
        match sys.resolve(&root, cwd, Create::No) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                sys.resolve(&root, cwd, Create::Dir)
                    .map_err(at(format!("create cwd {}", cwd.display())))?;
                sys.chown(cwd, *uid, *gid)
                    .map_err(at(format!("chown cwd {}", cwd.display())))?;
            }
            Err(e) => return Err(at(format!("cwd {}", cwd.display()))(e)),
        }
    }
    if plan.readonly_root {
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(at("readonly rootfs"))?;
    }
    if let Some(p) = plan.shared_after_pivot {
        sys.mount(None, Path::new("/"), None, p, None)
            .map_err(at("rootfs propagation"))?;
    }
    Ok(())
}

/// The user-namespace preparation of the root's source (see the module doc).
fn idmap_source<S: Syscall>(
    sys: &S,
    source: &RootSource,
    rootfs: &Path,
    userns: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
) -> Result<(), Failure> {
    match source {
        RootSource::Overlay {
            lower_top_first,
            upper,
            work,
            ..
        } => {
            for dir in [upper, work] {
                sys.chown(dir, uid, gid)
                    .map_err(at(format!("chown {}", dir.display())))?;
            }
            let mut done: Vec<&PathBuf> = Vec::new();
            for lower in lower_top_first {
                if done.contains(&lower) {
                    continue;
                }
                sys.idmap_mount(lower, lower, userns, false)
                    .map_err(at(format!("id-map layer {}", lower.display())))?;
                done.push(lower);
            }
        }
        // An existing root directory is shown through an id-mapped clone of itself.
        RootSource::Existing => sys
            .idmap_mount(rootfs, rootfs, userns, true)
            .map_err(at("id-map rootfs"))?,
    }
    Ok(())
}

fn apply_attrs<S: Syscall>(sys: &S, root: &Target, dest: &Path, attrs: &Attrs) -> io::Result<()> {
    if attrs.propagation.is_empty() && attrs.rec_set == 0 && attrs.rec_clear == 0 {
        return Ok(());
    }
    // Re-resolve: the earlier descriptor still points below the new mount.
    let t = sys.resolve(root, dest, Create::No)?;
    for p in &attrs.propagation {
        sys.mount(None, &t.path, None, *p, None)?;
    }
    if attrs.rec_set != 0 || attrs.rec_clear != 0 {
        sys.mount_setattr(&t.path, true, attrs.rec_set, attrs.rec_clear)?;
    }
    Ok(())
}

fn mount_one<S: Syscall>(
    sys: &S,
    root: &Target,
    m: &MountOp,
    userns: Option<BorrowedFd<'_>>,
    tree: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let dest = &m.destination;
    match &m.kind {
        MountKind::Bind {
            source,
            recursive,
            source_is_dir,
            flags,
            attrs,
            idmap,
        } => {
            let create = if *source_is_dir {
                Create::Dir
            } else {
                Create::File
            };
            let t = sys.resolve(root, dest, create)?;
            let mut bind = MsFlags::MS_BIND;
            if *recursive {
                bind |= MsFlags::MS_REC;
            }
            match (idmap, userns) {
                (true, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an id-mapped mount needs the pod's user namespace",
                    ));
                }
                (idmap, userns) => match tree {
                    Some(tree) => sys.attach_tree(tree, &t.path, userns.filter(|_| *idmap))?,
                    None if *idmap => sys.idmap_mount(
                        source,
                        &t.path,
                        userns.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
                        *recursive,
                    )?,
                    None => sys.mount(Some(source), &t.path, None, bind, None)?,
                },
            }
            if !flags.is_empty() {
                let t = sys.resolve(root, dest, Create::No)?;
                sys.mount(
                    None,
                    &t.path,
                    None,
                    bind | MsFlags::MS_REMOUNT | *flags,
                    None,
                )?;
            }
            apply_attrs(sys, root, dest, attrs)
        }
        MountKind::Fs {
            fstype,
            source,
            flags,
            data,
            attrs,
        } => {
            let t = sys.resolve(root, dest, Create::Dir)?;
            let data = (!data.is_empty()).then_some(data.as_str());
            sys.mount(Some(Path::new(source)), &t.path, Some(fstype), *flags, data)?;
            apply_attrs(sys, root, dest, attrs)
        }
        MountKind::Cgroup2 { flags } => {
            let t = sys.resolve(root, dest, Create::Dir)?;
            sys.mount(
                Some(Path::new("cgroup2")),
                &t.path,
                Some("cgroup2"),
                *flags,
                None,
            )
        }
        MountKind::CgroupBinds { flags, dirs } => {
            let ro = flags.contains(MsFlags::MS_RDONLY);
            let base = (*flags - MsFlags::MS_RDONLY)
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC;
            let t = sys.resolve(root, dest, Create::Dir)?;
            sys.mount(
                Some(Path::new("tmpfs")),
                &t.path,
                Some("tmpfs"),
                base,
                Some("mode=755"),
            )?;
            for (name, dir) in dirs {
                let sub = dest.join(name);
                let t = sys.resolve(root, &sub, Create::Dir)?;
                sys.mount(Some(dir), &t.path, None, MsFlags::MS_BIND, None)?;
                let t = sys.resolve(root, &sub, Create::No)?;
                let mut remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | base;
                if ro {
                    remount |= MsFlags::MS_RDONLY;
                }
                sys.mount(None, &t.path, None, remount, None)?;
            }
            if ro {
                let t = sys.resolve(root, dest, Create::No)?;
                sys.mount(
                    None,
                    &t.path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                    None,
                )?;
            }
            Ok(())
        }
        MountKind::SysfsBind { readonly } => {
            let t = sys.resolve(root, dest, Create::Dir)?;
            sys.mount(
                Some(Path::new("/sys")),
                &t.path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            let t = sys.resolve(root, dest, Create::No)?;
            let mut set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
            if *readonly {
                set |= MOUNT_ATTR_RDONLY;
            }
            sys.mount_setattr(&t.path, true, set, 0)
        }
    }
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn setup_dev<S: Syscall>(
    sys: &S,
    root: &Target,
    plan: &RootfsPlan,
    bind: bool,
) -> Result<(), Failure> {
    let (uid, gid) = plan.root_ids.unwrap_or((0, 0));
    for (path, major, minor) in DEFAULT_DEVICES {
        if plan.devices.iter().any(|d| d.path == Path::new(path)) {
            continue;
        }
        let d = Device {
            path: PathBuf::from(path),
            mode: libc::S_IFCHR | 0o666,
            major,
            minor,
            uid,
            gid,
        };
        make_device(sys, root, &d, bind).map_err(at(format!("device {path}")))?;
    }
    for d in &plan.devices {
        make_device(sys, root, d, bind).map_err(at(format!("device {}", d.path.display())))?;
    }
    let dev = sys
        .resolve(root, Path::new("/dev"), Create::No)
        .map_err(at("open /dev"))?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    if plan.dev_core {
        links.push(("core", "/proc/kcore"));
    }
    links.push(("ptmx", "pts/ptmx"));
    for (name, target) in links {
        match sys.symlink(Path::new(target), &dev.path.join(name)) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                return Err(at(format!("symlink /dev/{name}"))(e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn make_device<S: Syscall>(sys: &S, root: &Target, d: &Device, bind: bool) -> io::Result<()> {
    if bind {
        let t = sys.resolve(root, &d.path, Create::File)?;
        return sys.mount(Some(&d.path), &t.path, None, MsFlags::MS_BIND, None);
    }
    let parent = d.path.parent().unwrap_or(Path::new("/"));
    let name = d
        .path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir = sys.resolve(root, parent, Create::Dir)?;
    let node = dir.path.join(name);
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    sys.mknod(&node, d.mode, dev)?;
    if d.uid != 0 || d.gid != 0 {
        sys.chown(&node, d.uid, d.gid)?;
    }
    Ok(())
}

fn missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

fn readonly_path<S: Syscall>(sys: &S, root: &Target, p: &Path) -> io::Result<()> {
    let t = match sys.resolve(root, p, Create::No) {
        Ok(t) => t,
        Err(e) if missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    sys.mount(
        Some(&t.path),
        &t.path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let t = sys.resolve(root, p, Create::No)?;
    sys.mount_setattr(&t.path, true, MOUNT_ATTR_RDONLY, 0)
}

fn mask_path<S: Syscall>(sys: &S, root: &Target, p: &Path) -> io::Result<()> {
    let t = match sys.resolve(root, p, Create::No) {
        Ok(t) => t,
        Err(e) if missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    if t.is_dir {
        sys.mount(
            Some(Path::new("tmpfs")),
            &t.path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        sys.mount(
            Some(Path::new("/dev/null")),
            &t.path,
            None,
            MsFlags::MS_BIND,
            None,
        )
    }
}
