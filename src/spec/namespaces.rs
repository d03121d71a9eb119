//! Namespaces and hostname.
//!
//! - mount: new;
//! - network, IPC, UTS: the pod's (its paths), or the host's when the pod has none there
//!   (hostNetwork / hostIPC);
//! - pid: CONTAINER -> new; POD -> the pod's (an error when the pod has none to share);
//!   NODE -> the host's; TARGET -> that of the target container's init (`/proc/<pid>/ns/pid`);
//! - cgroup: new, except for privileged containers (containerd);
//! - user: with `userns_options.mode == POD`, the pod's user namespace (or a new one) with the
//!   requested mappings, which must be the pod's; NODE or unset -> the host's.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use super::mounts::id_mappings;
use super::{SpecError, SpecInput, invalid};
use crate::cri::v1 as cri;
use cri::NamespaceMode;

pub struct Namespaces {
    pub namespaces: Vec<LinuxNamespace>,
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

fn mode(v: i32, what: &str) -> Result<NamespaceMode, SpecError> {
    NamespaceMode::try_from(v).map_err(|_| invalid(format!("unknown {what} namespace mode {v}")))
}

pub fn namespaces(
    input: &SpecInput,
    sc: &cri::LinuxContainerSecurityContext,
) -> Result<Namespaces, SpecError> {
    let opts = sc.namespace_options.clone().unwrap_or_default();
    let pp = input.pod_paths;
    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    if let Some(p) = &pp.net_ns {
        out.push(ns(LinuxNamespaceType::Network, Some(p.clone())));
    }
    if let Some(p) = &pp.ipc_ns {
        out.push(ns(LinuxNamespaceType::Ipc, Some(p.clone())));
    }
    if let Some(p) = &pp.uts_ns {
        out.push(ns(LinuxNamespaceType::Uts, Some(p.clone())));
    }
    match mode(opts.pid, "pid")? {
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Pod => match &pp.pid_ns {
            Some(p) => out.push(ns(LinuxNamespaceType::Pid, Some(p.clone()))),
            None => {
                return Err(invalid(
                    "pid namespace mode POD, but the pod shares no pid namespace",
                ));
            }
        },
        NamespaceMode::Node => {}
        NamespaceMode::Target => match input.target_pid {
            Some(pid) => out.push(ns(
                LinuxNamespaceType::Pid,
                Some(format!("/proc/{pid}/ns/pid").into()),
            )),
            None => {
                return Err(invalid(format!(
                    "pid namespace target container {:?} is not running",
                    opts.target_id
                )));
            }
        },
    }
    if !sc.privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }

    let pod_userns = input
        .pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.clone());
    let userns = opts.userns_options.clone();
    let as_node = |u: &Option<cri::UserNamespace>| {
        u.as_ref()
            .is_none_or(|u| u.mode == NamespaceMode::Node as i32)
    };
    if !(pod_userns == userns || (as_node(&pod_userns) && as_node(&userns))) {
        return Err(invalid(
            "the container's user namespace options differ from its pod's",
        ));
    }
    let (mut uid_mappings, mut gid_mappings) = (None, None);
    if let Some(u) = &userns {
        match mode(u.mode, "user")? {
            NamespaceMode::Node => {}
            NamespaceMode::Pod => {
                if u.uids.is_empty() || u.gids.is_empty() {
                    return Err(invalid(
                        "user namespace mode POD needs uid and gid mappings",
                    ));
                }
                out.push(ns(LinuxNamespaceType::User, pp.user_ns.clone()));
                uid_mappings = Some(id_mappings(&u.uids)?);
                gid_mappings = Some(id_mappings(&u.gids)?);
            }
            m => {
                return Err(invalid(format!(
                    "user namespace mode {} is not supported",
                    m.as_str_name()
                )));
            }
        }
    }
    Ok(Namespaces {
        namespaces: out,
        uid_mappings,
        gid_mappings,
    })
}

/// The pod's user namespace maps (as `(inside, outside, length)` lines) when the pod asks for
/// its own user namespace (`userns_options.mode == POD`); `None` for the host's (NODE or no
/// options). Checks what the kernel would refuse late or what would make the pod useless: at
/// least one mapping each, no empty or overflowing range, no two ranges overlapping inside or
/// outside (the kernel refuses those), and container id 0 mapped (the container's root). Only POD
/// and NODE are valid for user namespaces (CRI api.proto).
pub fn pod_userns_maps(pod: &cri::PodSandboxConfig) -> Result<Option<UsernsMaps>, SpecError> {
    let Some(u) = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
    else {
        return Ok(None);
    };
    match mode(u.mode, "user")? {
        NamespaceMode::Node => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return Err(invalid(
                    "user namespace mode NODE takes no uid/gid mappings",
                ));
            }
            Ok(None)
        }
        NamespaceMode::Pod => Ok(Some((
            check_maps(&u.uids, "uid")?,
            check_maps(&u.gids, "gid")?,
        ))),
        m => Err(invalid(format!(
            "user namespace mode {} is not supported (only POD and NODE are)",
            m.as_str_name()
        ))),
    }
}

/// `(inside, outside, length)` map lines.
pub type IdMapLines = Vec<(u32, u32, u32)>;

/// The uid and gid map lines of a pod's user namespace.
pub type UsernsMaps = (IdMapLines, IdMapLines);

/// The kernel accepts at most 340 lines per map (since 4.15).
const MAX_MAP_LINES: usize = 340;

fn check_maps(maps: &[cri::IdMapping], what: &str) -> Result<IdMapLines, SpecError> {
    if maps.is_empty() {
        return Err(invalid(format!(
            "user namespace mode POD needs at least one {what} mapping"
        )));
    }
    if maps.len() > MAX_MAP_LINES {
        return Err(invalid(format!(
            "{} {what} mappings (the kernel takes at most {MAX_MAP_LINES})",
            maps.len()
        )));
    }
    let mut out = Vec::with_capacity(maps.len());
    for m in maps {
        let overflows = |start: u32| u64::from(start) + u64::from(m.length) > 1 << 32;
        if m.length == 0 || overflows(m.container_id) || overflows(m.host_id) {
            return Err(invalid(format!(
                "{what} mapping {} -> {} of length {} is empty or overflows",
                m.container_id, m.host_id, m.length
            )));
        }
        out.push((m.container_id, m.host_id, m.length));
    }
    let overlap = |sel: fn(&(u32, u32, u32)) -> u32| {
        let mut ranges: Vec<(u64, u64)> = out
            .iter()
            .map(|r| (u64::from(sel(r)), u64::from(sel(r)) + u64::from(r.2)))
            .collect();
        ranges.sort();
        ranges.windows(2).any(|w| w[1].0 < w[0].1)
    };
    if overlap(|r| r.0) || overlap(|r| r.1) {
        return Err(invalid(format!("{what} mappings overlap")));
    }
    if !out.iter().any(|&(inside, _, len)| inside == 0 && len > 0) {
        return Err(invalid(format!(
            "the {what} mappings must map container id 0 (the container's root)"
        )));
    }
    Ok(out)
}

/// The pod's hostname, unless the container shares the host's UTS namespace.
pub fn hostname(input: &SpecInput) -> Option<String> {
    if input.pod_paths.uts_ns.is_none() || input.pod.hostname.is_empty() {
        return None;
    }
    Some(input.pod.hostname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;

    fn nss(f: &Fixture) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        f.ok()
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    fn find(
        v: &[(LinuxNamespaceType, Option<PathBuf>)],
        t: LinuxNamespaceType,
    ) -> Option<Option<PathBuf>> {
        v.iter().find(|(x, _)| *x == t).map(|(_, p)| p.clone())
    }

    #[test]
    fn pod_namespaces_and_new_ones() {
        let f = Fixture::new();
        let v = nss(&f);
        assert_eq!(find(&v, LinuxNamespaceType::Mount), Some(None));
        assert_eq!(
            find(&v, LinuxNamespaceType::Network),
            Some(Some("/run/netns/pod".into()))
        );
        assert_eq!(
            find(&v, LinuxNamespaceType::Ipc),
            Some(Some("/proc/42/ns/ipc".into()))
        );
        assert_eq!(
            find(&v, LinuxNamespaceType::Uts),
            Some(Some("/proc/42/ns/uts".into()))
        );
        assert_eq!(find(&v, LinuxNamespaceType::Pid), Some(None));
        assert_eq!(find(&v, LinuxNamespaceType::Cgroup), Some(None));
        assert_eq!(find(&v, LinuxNamespaceType::User), None);
        assert_eq!(f.ok().hostname().as_deref(), Some("podhost"));
    }

    #[test]
    fn host_namespaces_are_omitted() {
        let mut f = Fixture::new();
        f.pod_paths.net_ns = None;
        f.pod_paths.ipc_ns = None;
        f.pod_paths.uts_ns = None;
        f.ns().pid = NamespaceMode::Node as i32;
        let v = nss(&f);
        for t in [
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
        ] {
            assert_eq!(find(&v, t), None, "{t:?}");
        }
        assert_eq!(f.ok().hostname(), &None);
    }

    #[test]
    fn pid_pod_and_target() {
        let mut f = Fixture::new();
        f.ns().pid = NamespaceMode::Pod as i32;
        assert!(f.invalid().contains("POD"));
        f.pod_paths.pid_ns = Some("/proc/42/ns/pid".into());
        assert_eq!(
            find(&nss(&f), LinuxNamespaceType::Pid),
            Some(Some("/proc/42/ns/pid".into()))
        );
        f.ns().pid = NamespaceMode::Target as i32;
        f.ns().target_id = "abc".into();
        assert!(f.invalid().contains("abc"));
        f.target_pid = Some(777);
        assert_eq!(
            find(&nss(&f), LinuxNamespaceType::Pid),
            Some(Some("/proc/777/ns/pid".into()))
        );
    }

    #[test]
    fn user_namespace_from_pod() {
        let mut f = Fixture::new();
        let u = cri::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                host_id: 100000,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                host_id: 200000,
                container_id: 0,
                length: 65536,
            }],
        };
        f.ns().userns_options = Some(u.clone());
        assert!(f.invalid().contains("differ"));
        f.pod
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options = Some(cri::NamespaceOption {
            userns_options: Some(u),
            ..Default::default()
        });
        f.pod_paths.user_ns = Some("/proc/42/ns/user".into());
        let spec = f.ok();
        let linux = spec.linux().as_ref().unwrap();
        assert!(
            linux
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::User
                    && n.path().as_deref() == Some("/proc/42/ns/user".as_ref()))
        );
        let uid = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (uid.host_id(), uid.container_id(), uid.size()),
            (100000, 0, 65536)
        );
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].host_id(), 200000);
    }

    #[test]
    fn privileged_keeps_host_cgroup_namespace() {
        let mut f = Fixture::new();
        f.make_privileged();
        assert_eq!(find(&nss(&f), LinuxNamespaceType::Cgroup), None);
    }

    fn pod_with(u: Option<cri::UserNamespace>) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        userns_options: u,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn m(container_id: u32, host_id: u32, length: u32) -> cri::IdMapping {
        cri::IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    #[test]
    fn pod_userns_maps_are_validated() {
        let pod = |mode: NamespaceMode, uids: Vec<cri::IdMapping>, gids: Vec<cri::IdMapping>| {
            pod_with(Some(cri::UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }))
        };
        assert_eq!(pod_userns_maps(&pod_with(None)).unwrap(), None);
        assert_eq!(
            pod_userns_maps(&pod(NamespaceMode::Node, vec![], vec![])).unwrap(),
            None
        );
        let ok = pod(
            NamespaceMode::Pod,
            vec![m(0, 100_000, 65_536)],
            vec![m(0, 100_000, 1), m(1, 300_000, 10)],
        );
        assert_eq!(
            pod_userns_maps(&ok).unwrap(),
            Some((
                vec![(0, 100_000, 65_536)],
                vec![(0, 100_000, 1), (1, 300_000, 10)]
            ))
        );
        let bad = [
            pod(NamespaceMode::Pod, vec![], vec![m(0, 1, 1)]),
            pod(NamespaceMode::Pod, vec![m(1, 100_000, 5)], vec![m(0, 1, 1)]),
            pod(NamespaceMode::Pod, vec![m(0, 100_000, 0)], vec![m(0, 1, 1)]),
            pod(
                NamespaceMode::Pod,
                vec![m(0, u32::MAX, 2)],
                vec![m(0, 1, 1)],
            ),
            pod(
                NamespaceMode::Pod,
                vec![m(0, 100_000, 10), m(5, 200_000, 10)],
                vec![m(0, 1, 1)],
            ),
            pod(
                NamespaceMode::Pod,
                vec![m(0, 100_000, 10), m(20, 100_005, 10)],
                vec![m(0, 1, 1)],
            ),
            pod(NamespaceMode::Container, vec![m(0, 1, 1)], vec![m(0, 1, 1)]),
            pod(NamespaceMode::Target, vec![m(0, 1, 1)], vec![m(0, 1, 1)]),
            pod(NamespaceMode::Node, vec![m(0, 1, 1)], vec![]),
        ];
        for (i, p) in bad.iter().enumerate() {
            let err = pod_userns_maps(p).unwrap_err();
            assert!(matches!(err, SpecError::InvalidArgument(_)), "{i}: {err}");
        }
    }
}
