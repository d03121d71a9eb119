//! Pod sysctls: only namespaced ones, and only in a namespace the pod owns (runc's
//! `libcontainer/configs/validate` and kubelet's `pkg/kubelet/sysctl/namespace.go`):
//!
//! - IPC: `kernel.sem`, `kernel.shm*`, `kernel.msg*`, `fs.mqueue.*` -> not with hostIPC;
//! - network: `net.*` -> not with hostNetwork;
//! - UTS: `kernel.domainname` -> not in the host's UTS namespace (hostNetwork); `kernel.hostname`
//!   is refused like runc does, as it conflicts with the pod's `hostname` field;
//! - anything else (`kernel.panic`, `vm.*`...) is global to the host and refused.
//!
//! Names may use `/` as the separator (`net/ipv4/conf/eth0.100/forwarding`); they are turned
//! into the dotted form (dots and slashes swapped, as kubelet does), which the launcher maps
//! back to a `/proc/sys` path.

use std::collections::{BTreeMap, HashMap};

use super::{SpecError, invalid};

/// Which of the sysctl-bearing namespaces the pod has of its own (not the host's).
#[derive(Debug, Clone, Copy)]
pub struct OwnNamespaces {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// The dotted form of a sysctl name: a name whose first separator is `/` has its dots and
/// slashes swapped.
pub fn canonical_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// The path of a (dotted) sysctl under `/proc/sys`: dots become slashes and slashes dots.
/// `None` when a component would be empty, `.` or `..` (or has a NUL).
pub fn proc_sys_relative(key: &str) -> Option<String> {
    let rel: String = key
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    rel.split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
        .then_some(rel)
}

/// Checks every sysctl against the namespaces the pod owns; returns them by canonical name.
pub fn validate(
    sysctls: &HashMap<String, String>,
    own: OwnNamespaces,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out = BTreeMap::new();
    for (name, value) in sysctls {
        let key = canonical_name(name);
        if proc_sys_relative(&key).is_none() {
            return Err(invalid(format!("invalid sysctl name {name:?}")));
        }
        let refused = |why: &str| Err(invalid(format!("sysctl {name:?} {why}")));
        if key == "kernel.sem"
            || key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key.starts_with("fs.mqueue.")
        {
            if !own.ipc {
                return refused("is not allowed in the host's IPC namespace (hostIPC)");
            }
        } else if key.starts_with("net.") {
            if !own.net {
                return refused("is not allowed in the host's network namespace (hostNetwork)");
            }
        } else if key == "kernel.domainname" {
            if !own.uts {
                return refused("is not allowed in the host's UTS namespace (hostNetwork)");
            }
        } else if key == "kernel.hostname" {
            return refused("conflicts with the pod's hostname field; set that instead");
        } else {
            return refused("is not namespaced: it would change the whole host");
        }
        if out.insert(key, value.clone()).is_some() {
            return Err(invalid(format!("sysctl {name:?} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: OwnNamespaces = OwnNamespaces {
        net: true,
        ipc: true,
        uts: true,
    };

    fn one(name: &str, own: OwnNamespaces) -> Result<BTreeMap<String, String>, SpecError> {
        validate(&HashMap::from([(name.to_owned(), "1".to_owned())]), own)
    }

    #[test]
    fn namespaced_ones_pass_in_own_namespaces() {
        for name in [
            "kernel.shmmax",
            "kernel.shm_rmid_forced",
            "kernel.msgmnb",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
            "net.core.somaxconn",
            "kernel.domainname",
        ] {
            assert!(one(name, ALL).is_ok(), "{name}");
        }
    }

    #[test]
    fn global_ones_are_refused() {
        for name in [
            "kernel.panic",
            "vm.max_map_count",
            "fs.file-max",
            "kernel.hostname",
        ] {
            assert!(
                matches!(one(name, ALL), Err(SpecError::InvalidArgument(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn host_namespaces_refuse_their_sysctls() {
        let host_net = OwnNamespaces {
            net: false,
            uts: false,
            ..ALL
        };
        assert!(one("net.ipv4.ip_forward", host_net).is_err());
        assert!(one("kernel.domainname", host_net).is_err());
        assert!(one("kernel.shmmax", host_net).is_ok());
        let host_ipc = OwnNamespaces { ipc: false, ..ALL };
        assert!(one("kernel.shmmax", host_ipc).is_err());
        assert!(one("fs.mqueue.queues_max", host_ipc).is_err());
        assert!(one("net.ipv4.ip_forward", host_ipc).is_ok());
    }

    #[test]
    fn slash_names_are_canonicalised() {
        assert_eq!(
            canonical_name("net/ipv4/conf/eth0.100/forwarding"),
            "net.ipv4.conf.eth0/100.forwarding"
        );
        assert_eq!(canonical_name("net.ipv4.ip_forward"), "net.ipv4.ip_forward");
        let out = one("net/ipv4/ip_forward", ALL).unwrap();
        assert!(out.contains_key("net.ipv4.ip_forward"));
        assert_eq!(
            proc_sys_relative("net.ipv4.conf.eth0/100.forwarding").as_deref(),
            Some("net/ipv4/conf/eth0.100/forwarding")
        );
        for bad in ["net..x", "net.//.x", "net./.x", "net.x.", "net.a\0b"] {
            assert!(one(bad, ALL).is_err(), "{bad:?}");
        }
    }
}
