//! Mounts and devices.
//!
//! Mounts, in order: the defaults (`/proc`, `/dev` tmpfs, `/dev/pts`, `/dev/shm` tmpfs,
//! `/dev/mqueue`, `/sys` read-only, `/sys/fs/cgroup` read-only; read-write when privileged),
//! minus those a CRI mount replaces (and everything under `/dev` when the container mounts
//! `/dev`); then the CRI mounts and the pod's files (`/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf`, read-only with a read-only rootfs; `/dev/shm` from the pod, or the
//! host's with host IPC) unless a CRI mount has that destination, sorted by depth so a mount
//! never hides a deeper one. Bind mounts get `rbind`, the propagation (`rprivate`, `rslave` —
//! the source must be on a shared or slave mount — or `rshared` — on a shared mount; the
//! rootfs propagation follows) and `ro`/`rw`/`rro`. A `/sys/fs/cgroup` mount of type `cgroup`
//! is what runc expects; on cgroup v1 the launcher mounts the container's hierarchies there.
//! Device nodes and rules are in [`super::devices`].

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, Mount, MountBuilder};

use super::{SpecError, SpecInput, invalid, io_err};
use crate::cri::v1 as cri;
use cri::MountPropagation;

/// A bind mount to add, after validation.
struct Bind {
    src: PathBuf,
    dst: String,
    options: Vec<String>,
    uid_mappings: Vec<cri::IdMapping>,
    gid_mappings: Vec<cri::IdMapping>,
}

fn clean(path: &str) -> String {
    let mut out = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

fn depth(dst: &str) -> usize {
    clean(dst).matches('/').count()
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dst.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(src.into()));
    m.set_options(Some(opts.iter().map(|o| o.to_string()).collect()));
    m
}

/// The mounts every container gets (containerd's defaults).
pub(crate) fn default_mounts(privileged: bool, sysfs_bind: bool) -> Vec<Mount> {
    let rw = if privileged { "rw" } else { "ro" };
    let sys = if sysfs_bind {
        mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "rro", "nosuid", "nodev", "noexec"],
        )
    } else {
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw])
    };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        ),
    ]
}

/// The mounts and the rootfs propagation (`rslave`/`rshared` when a mount needs it).
pub fn mounts(
    input: &SpecInput,
    sc: &cri::LinuxContainerSecurityContext,
) -> Result<(Vec<Mount>, Option<String>), SpecError> {
    let mut rootfs_propagation: Option<String> = None;
    let mut binds = Vec::new();
    for m in &input.container.mounts {
        binds.push(cri_mount(input, m, &mut rootfs_propagation)?);
    }
    let userns = sc
        .namespace_options
        .as_ref()
        .and_then(|n| n.userns_options.as_ref())
        .filter(|u| u.mode == cri::NamespaceMode::Pod as i32);
    let taken = |dst: &str, binds: &[Bind]| binds.iter().any(|b| clean(&b.dst) == dst);
    let pp = input.pod_paths;
    let mut extra = Vec::new();
    for (dst, file) in [
        ("/etc/hostname", &pp.hostname_file),
        ("/etc/hosts", &pp.hosts_file),
        ("/etc/resolv.conf", &pp.resolv_conf_file),
    ] {
        if let Some(file) = file
            && !taken(dst, &binds)
            && file.exists()
        {
            extra.push(Bind {
                src: file.clone(),
                dst: dst.into(),
                options: bind_options("rprivate", if sc.readonly_rootfs { "ro" } else { "rw" }),
                uid_mappings: userns.map(|u| u.uids.clone()).unwrap_or_default(),
                gid_mappings: userns.map(|u| u.gids.clone()).unwrap_or_default(),
            });
        }
    }
    let host_ipc = sc
        .namespace_options
        .as_ref()
        .is_some_and(|n| n.ipc == cri::NamespaceMode::Node as i32);
    let shm = if host_ipc {
        Some(PathBuf::from("/dev/shm"))
    } else {
        pp.shm_dir.clone()
    };
    if let Some(shm) = shm
        && !taken("/dev/shm", &binds)
        && shm.exists()
    {
        extra.push(Bind {
            src: shm,
            dst: "/dev/shm".into(),
            options: bind_options("rprivate", "rw"),
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
        });
    }
    binds.extend(extra);
    binds.sort_by_key(|b| depth(&b.dst));

    let dsts: Vec<String> = binds.iter().map(|b| clean(&b.dst)).collect();
    let has_dev = dsts.iter().any(|d| d == "/dev");
    let host_network = input
        .pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
    let mut out: Vec<Mount> = default_mounts(sc.privileged, userns.is_some() && host_network)
        .into_iter()
        .filter(|m| {
            let dst = clean(&m.destination().to_string_lossy());
            let replaced = dsts.contains(&dst);
            let under_dev = has_dev && dst.starts_with("/dev/");
            !replaced && !under_dev
        })
        .collect();
    for b in binds {
        let mut m = MountBuilder::default()
            .destination(b.dst)
            .typ("bind")
            .source(b.src)
            .options(b.options);
        if !b.uid_mappings.is_empty() || !b.gid_mappings.is_empty() {
            m = m
                .uid_mappings(id_mappings(&b.uid_mappings)?)
                .gid_mappings(id_mappings(&b.gid_mappings)?);
        }
        out.push(m.build()?);
    }
    Ok((out, rootfs_propagation))
}

fn bind_options(propagation: &str, mode: &str) -> Vec<String> {
    vec!["rbind".into(), propagation.into(), mode.into()]
}

pub fn id_mappings(m: &[cri::IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    m.iter()
        .map(|m| {
            Ok(LinuxIdMappingBuilder::default()
                .host_id(m.host_id)
                .container_id(m.container_id)
                .size(m.length)
                .build()?)
        })
        .collect()
}

fn cri_mount(
    input: &SpecInput,
    m: &cri::Mount,
    rootfs_propagation: &mut Option<String>,
) -> Result<Bind, SpecError> {
    if !m.container_path.starts_with('/') {
        return Err(invalid(format!(
            "mount container_path {:?} is not absolute",
            m.container_path
        )));
    }
    let image = m.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    let (src, readonly) = if !image.is_empty() {
        if !m.host_path.is_empty() {
            return Err(invalid(format!(
                "mount at {}: host_path and image are mutually exclusive",
                m.container_path
            )));
        }
        (image_source(input, image, &m.image_sub_path)?, true)
    } else {
        if m.host_path.is_empty() {
            return Err(invalid(format!(
                "mount at {} has no host_path",
                m.container_path
            )));
        }
        let src = match std::fs::canonicalize(&m.host_path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(invalid(format!(
                    "mount host_path {} does not exist",
                    m.host_path
                )));
            }
            Err(e) => return Err(io_err(Path::new(&m.host_path))(e)),
        };
        (src, m.readonly)
    };

    let propagation = match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationBidirectional) => {
            ensure_propagation(&src, &["shared:"])?;
            *rootfs_propagation = Some("rshared".into());
            "rshared"
        }
        Ok(MountPropagation::PropagationHostToContainer) => {
            ensure_propagation(&src, &["shared:", "master:"])?;
            if rootfs_propagation.as_deref() != Some("rshared") {
                *rootfs_propagation = Some("rslave".into());
            }
            "rslave"
        }
        Ok(MountPropagation::PropagationPrivate) => "rprivate",
        Err(_) => {
            tracing::warn!(
                propagation = m.propagation,
                host_path = %m.host_path,
                "unknown mount propagation, using private"
            );
            "rprivate"
        }
    };
    let mode = if m.recursive_read_only {
        if !readonly {
            return Err(invalid(format!(
                "mount {}: recursive_read_only needs readonly",
                m.container_path
            )));
        }
        if m.propagation != MountPropagation::PropagationPrivate as i32 {
            return Err(invalid(format!(
                "mount {}: recursive_read_only needs private propagation",
                m.container_path
            )));
        }
        "rro"
    } else if readonly {
        "ro"
    } else {
        "rw"
    };
    Ok(Bind {
        src,
        dst: m.container_path.clone(),
        options: bind_options(propagation, mode),
        uid_mappings: m.uid_mappings.clone(),
        gid_mappings: m.gid_mappings.clone(),
    })
}

/// The host directory of an image volume, with its sub path, which must stay inside it.
fn image_source(input: &SpecInput, image: &str, sub_path: &str) -> Result<PathBuf, SpecError> {
    let root = input.image_volumes.get(image).ok_or_else(|| {
        invalid(format!(
            "image volume {image:?} is not available (pull the image first)"
        ))
    })?;
    if sub_path.is_empty() {
        return Ok(root.clone());
    }
    let rel = Path::new(sub_path);
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "image_sub_path {sub_path:?} must be relative and stay inside the image"
        )));
    }
    let root_real = std::fs::canonicalize(root).map_err(io_err(root))?;
    let full = root.join(rel);
    match std::fs::canonicalize(&full) {
        Ok(p) if p.starts_with(&root_real) => Ok(p),
        Ok(_) => Err(invalid(format!(
            "image_sub_path {sub_path:?} leads outside image {image:?}"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(invalid(format!(
            "image_sub_path {sub_path:?} does not exist in image {image:?}"
        ))),
        Err(e) => Err(io_err(&full)(e)),
    }
}

/// containerd's check that the mount holding `path` (in our mount namespace) has one of the
/// given propagation tags (`shared:N`, `master:N`).
fn ensure_propagation(path: &Path, tags: &[&str]) -> Result<(), SpecError> {
    let info_path = Path::new("/proc/self/mountinfo");
    let info = std::fs::read_to_string(info_path).map_err(io_err(info_path))?;
    let (mountpoint, optional) = mount_of(&info, path)
        .ok_or_else(|| invalid(format!("no mount found for {}", path.display())))?;
    if optional
        .split(' ')
        .any(|o| tags.iter().any(|t| o.starts_with(t)))
    {
        return Ok(());
    }
    let kind = if tags.len() == 1 {
        "a shared"
    } else {
        "a shared or slave"
    };
    Err(invalid(format!(
        "path {} is mounted on {mountpoint} but it is not {kind} mount",
        path.display()
    )))
}

/// The mount point containing `path` (the longest one, the last in mount order on ties) and
/// its optional fields, from mountinfo text.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for line in mountinfo.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        if fields.len() < 6 {
            continue;
        }
        let mountpoint = unescape(fields[4]);
        if !path.starts_with(&mountpoint) {
            continue;
        }
        let better = best
            .as_ref()
            .is_none_or(|(b, _)| mountpoint.len() >= b.len());
        if better {
            best = Some((mountpoint, fields[6..].join(" ")));
        }
    }
    best
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;

    fn by_dst<'a>(mounts: &'a [Mount], dst: &str) -> Vec<&'a Mount> {
        mounts
            .iter()
            .filter(|m| m.destination() == Path::new(dst))
            .collect()
    }

    fn opts(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap_or_default()
    }

    fn mounts_of(f: &Fixture) -> Vec<Mount> {
        f.ok().mounts().clone().unwrap()
    }

    fn cri_mount(host: &Path, dst: &str) -> cri::Mount {
        cri::Mount {
            container_path: dst.into(),
            host_path: host.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let f = Fixture::new();
        let m = mounts_of(&f);
        let dsts: Vec<_> = m.iter().map(|m| m.destination().clone()).collect();
        assert_eq!(
            dsts,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
            .map(PathBuf::from)
        );
        assert!(opts(by_dst(&m, "/sys")[0]).contains(&"ro".into()));
        assert!(opts(by_dst(&m, "/sys/fs/cgroup")[0]).contains(&"ro".into()));
        assert_eq!(by_dst(&m, "/dev/shm")[0].typ().as_deref(), Some("tmpfs"));
    }

    #[test]
    fn cri_mounts_options_and_order() {
        let mut f = Fixture::new();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        let mut deep = cri_mount(&d.path().join("a/b"), "/data/deep/er");
        deep.readonly = true;
        let mut rro = cri_mount(&d.path().join("a"), "/data");
        rro.readonly = true;
        rro.recursive_read_only = true;
        f.container.mounts = vec![deep, rro, cri_mount(d.path(), "/rw")];
        let m = mounts_of(&f);
        let n = m.len();
        let tail: Vec<_> = m[n - 3..].iter().map(|m| m.destination().clone()).collect();
        // By depth; equal depths keep the request's order.
        assert_eq!(tail, ["/data", "/rw", "/data/deep/er"].map(PathBuf::from));
        assert_eq!(opts(&m[n - 3]), ["rbind", "rprivate", "rro"]);
        assert_eq!(opts(&m[n - 2]), ["rbind", "rprivate", "rw"]);
        assert_eq!(opts(&m[n - 1]), ["rbind", "rprivate", "ro"]);
        assert_eq!(m[n - 1].typ().as_deref(), Some("bind"));
        assert_eq!(
            m[n - 1].source().as_deref(),
            Some(
                std::fs::canonicalize(d.path().join("a/b"))
                    .unwrap()
                    .as_path()
            )
        );
    }

    #[test]
    fn recursive_read_only_rules() {
        let mut f = Fixture::new();
        let d = tempfile::tempdir().unwrap();
        let mut m = cri_mount(d.path(), "/x");
        m.recursive_read_only = true;
        f.container.mounts = vec![m.clone()];
        assert!(f.invalid().contains("needs readonly"));
        m.readonly = true;
        m.propagation = MountPropagation::PropagationHostToContainer as i32;
        f.container.mounts = vec![m];
        // Either the source's propagation or the rro rule refuses it.
        assert!(f.spec().is_err());
    }

    #[test]
    fn missing_host_path_is_invalid_naming_it() {
        let mut f = Fixture::new();
        f.container.mounts = vec![cri_mount(Path::new("/nonexistent/strata/src"), "/x")];
        assert!(f.invalid().contains("/nonexistent/strata/src"));
        f.container.mounts = vec![cri_mount(Path::new("/tmp"), "relative")];
        assert!(f.invalid().contains("not absolute"));
    }

    #[test]
    fn propagation_checks_the_source_mount() {
        let info = "22 1 0:21 / / rw - ext4 /dev/root rw\n\
                    30 22 0:25 / /shared rw shared:5 - tmpfs tmpfs rw\n\
                    31 22 0:26 / /slave rw master:7 - tmpfs tmpfs rw\n\
                    32 22 0:27 / /sp\\040ace rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_of(info, Path::new("/shared/x")),
            Some(("/shared".into(), "shared:5".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/slave")),
            Some(("/slave".into(), "master:7".into()))
        );
        assert_eq!(
            mount_of(info, Path::new("/other")),
            Some(("/".into(), String::new()))
        );
        assert_eq!(mount_of(info, Path::new("/sp ace/y")).unwrap().0, "/sp ace");
    }

    #[test]
    fn propagation_sets_rootfs_propagation_when_allowed() {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let d = tempfile::tempdir().unwrap();
        let src = std::fs::canonicalize(d.path()).unwrap();
        let (_, optional) = mount_of(&info, &src).unwrap();
        let mut f = Fixture::new();
        let mut m = cri_mount(d.path(), "/x");
        m.propagation = MountPropagation::PropagationBidirectional as i32;
        f.container.mounts = vec![m];
        if optional.contains("shared:") {
            let spec = f.ok();
            assert_eq!(
                spec.linux()
                    .as_ref()
                    .unwrap()
                    .rootfs_propagation()
                    .as_deref(),
                Some("rshared")
            );
            assert_eq!(
                opts(spec.mounts().as_ref().unwrap().last().unwrap())[1],
                "rshared"
            );
        } else {
            assert!(f.invalid().contains("not a shared mount"));
        }
    }

    #[test]
    fn pod_files_and_shm() {
        let mut f = Fixture::new();
        let d = tempfile::tempdir().unwrap();
        for n in ["hostname", "hosts", "resolv.conf"] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        std::fs::create_dir(d.path().join("shm")).unwrap();
        f.pod_paths.hostname_file = Some(d.path().join("hostname"));
        f.pod_paths.hosts_file = Some(d.path().join("hosts"));
        f.pod_paths.resolv_conf_file = Some(d.path().join("resolv.conf"));
        f.pod_paths.shm_dir = Some(d.path().join("shm"));
        f.sc().readonly_rootfs = true;
        let m = mounts_of(&f);
        let shm = by_dst(&m, "/dev/shm");
        assert_eq!(shm.len(), 1);
        assert_eq!(
            shm[0].source().as_deref(),
            Some(d.path().join("shm").as_path())
        );
        assert_eq!(opts(shm[0]), ["rbind", "rprivate", "rw"]);
        for dst in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
            let e = by_dst(&m, dst);
            assert_eq!(e.len(), 1, "{dst}");
            assert_eq!(opts(e[0]), ["rbind", "rprivate", "ro"]);
        }
        // A CRI mount at /etc/hosts replaces the pod's.
        let other = tempfile::NamedTempFile::new().unwrap();
        f.container.mounts = vec![cri_mount(other.path(), "/etc/hosts")];
        let m = mounts_of(&f);
        let hosts = by_dst(&m, "/etc/hosts");
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(std::fs::canonicalize(other.path()).unwrap().as_path())
        );
        // Host IPC: the host's /dev/shm.
        f.ns().ipc = cri::NamespaceMode::Node as i32;
        let m = mounts_of(&f);
        assert_eq!(
            by_dst(&m, "/dev/shm")[0].source().as_deref(),
            Some(Path::new("/dev/shm"))
        );
    }

    #[test]
    fn userns_with_host_network_binds_sys() {
        let mut f = Fixture::new();
        let u = cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                host_id: 100000,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                host_id: 100000,
                container_id: 0,
                length: 65536,
            }],
        };
        f.ns().userns_options = Some(u.clone());
        f.pod
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options = Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            userns_options: Some(u),
            ..Default::default()
        });
        let m = mounts_of(&f);
        let sys = by_dst(&m, "/sys")[0];
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        assert!(opts(sys).contains(&"rro".to_string()));
    }

    #[test]
    fn dev_mount_replaces_dev_defaults() {
        let mut f = Fixture::new();
        f.container.mounts = vec![cri_mount(Path::new("/dev"), "/dev")];
        let m = mounts_of(&f);
        assert!(
            m.iter()
                .all(|m| !m.destination().to_string_lossy().starts_with("/dev/"))
        );
        assert_eq!(by_dst(&m, "/dev").len(), 1);
        assert_eq!(by_dst(&m, "/dev")[0].typ().as_deref(), Some("bind"));
    }

    #[test]
    fn image_volumes() {
        let mut f = Fixture::new();
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data/sub")).unwrap();
        f.image_volumes
            .insert("sha256:abc".into(), d.path().to_owned());
        let m = cri::Mount {
            container_path: "/vol".into(),
            image: Some(cri::ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            }),
            image_sub_path: "data/sub".into(),
            ..Default::default()
        };
        f.container.mounts = vec![m.clone()];
        let spec_mounts = mounts_of(&f);
        let vol = by_dst(&spec_mounts, "/vol")[0];
        assert_eq!(opts(vol), ["rbind", "rprivate", "ro"]);
        assert_eq!(
            vol.source().as_deref(),
            Some(
                std::fs::canonicalize(d.path().join("data/sub"))
                    .unwrap()
                    .as_path()
            )
        );
        let mut missing = m.clone();
        missing.image_sub_path = "nope".into();
        f.container.mounts = vec![missing];
        assert!(f.invalid().contains("nope"));
        let mut escape = m.clone();
        escape.image_sub_path = "../x".into();
        f.container.mounts = vec![escape];
        assert!(f.invalid().contains("../x"));
        let mut unknown = m;
        unknown.image.as_mut().unwrap().image = "sha256:def".into();
        f.container.mounts = vec![unknown];
        assert!(f.invalid().contains("sha256:def"));
    }
}
