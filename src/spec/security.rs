//! Capabilities and masked / read-only paths.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::{SpecError, invalid, io_err};
use crate::cri::v1 as cri;

/// The default capability set (containerd 1.x / Docker).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// containerd's defaults, used when the CRI request names none.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Capability numbers (linux/capability.h) in order, 0..=40.
const BY_NUMBER: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The effective capabilities of this process (what "ALL" and privileged mean: containerd uses
/// the caller's capabilities, so a host where root lacks some, e.g. CAP_SYS_RESOURCE, still
/// works).
pub fn current_capabilities() -> Result<Capabilities, SpecError> {
    let path = std::path::Path::new("/proc/self/status");
    let status = std::fs::read_to_string(path).map_err(io_err(path))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .ok_or_else(|| io_err(path)(std::io::ErrorKind::InvalidData.into()))?;
    let bits = u64::from_str_radix(hex, 16)
        .map_err(|_| io_err(path)(std::io::ErrorKind::InvalidData.into()))?;
    Ok(BY_NUMBER
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect())
}

/// Parses a CRI capability name: any case, with or without `CAP_`.
pub fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| invalid(format!("unknown capability {name:?}")))
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

pub struct CapSets {
    pub caps: LinuxCapabilities,
    /// The bounding set, for the seccomp profile's capability-dependent rules.
    pub bounding: Capabilities,
}

/// containerd's order: start from the default set; `add: ALL` sets everything, `drop: ALL`
/// clears everything; then the named adds, then the named drops (from every set). Ambient
/// capabilities go into every set (the CRI API comment). Privileged: all our capabilities,
/// whatever was asked.
pub fn capabilities(
    sc: &cri::LinuxContainerSecurityContext,
    privileged: bool,
    current: impl Fn() -> Result<Capabilities, SpecError>,
) -> Result<CapSets, SpecError> {
    let mut main: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut inheritable = Capabilities::new();
    let mut ambient = Capabilities::new();
    if privileged {
        main = current()?;
    } else if let Some(c) = &sc.capabilities {
        if c.add_capabilities.iter().any(|n| is_all(n)) {
            main = current()?;
        }
        if c.drop_capabilities.iter().any(|n| is_all(n)) {
            main.clear();
            inheritable.clear();
        }
        for name in c.add_capabilities.iter().filter(|n| !is_all(n)) {
            main.insert(parse_capability(name)?);
        }
        for name in &c.add_ambient_capabilities {
            let cap = parse_capability(name)?;
            main.insert(cap);
            inheritable.insert(cap);
            ambient.insert(cap);
        }
        for name in c.drop_capabilities.iter().filter(|n| !is_all(n)) {
            let cap = parse_capability(name)?;
            for set in [&mut main, &mut inheritable, &mut ambient] {
                set.remove(&cap);
            }
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(main.clone()));
    caps.set_effective(Some(main.clone()));
    caps.set_permitted(Some(main.clone()));
    caps.set_inheritable(Some(inheritable));
    caps.set_ambient(Some(ambient));
    Ok(CapSets {
        caps,
        bounding: main,
    })
}

/// The CRI lists when given, containerd's defaults otherwise (see the module doc of
/// [`super`]); none at all for privileged containers.
pub fn masked_and_readonly_paths(
    sc: &cri::LinuxContainerSecurityContext,
) -> (Vec<String>, Vec<String>) {
    if sc.privileged {
        return (Vec::new(), Vec::new());
    }
    let pick = |given: &Vec<String>, default: &[&str]| {
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given.clone()
        }
    };
    (
        pick(&sc.masked_paths, &DEFAULT_MASKED_PATHS),
        pick(&sc.readonly_paths, &DEFAULT_READONLY_PATHS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;
    use std::collections::HashSet;

    fn set_of(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    fn all() -> Result<Capabilities, SpecError> {
        Ok(BY_NUMBER.iter().copied().collect())
    }

    fn sc_with(
        add: &[&str],
        drop: &[&str],
        ambient: &[&str],
    ) -> cri::LinuxContainerSecurityContext {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: v(add),
                drop_capabilities: v(drop),
                add_ambient_capabilities: v(ambient),
            }),
            ..Default::default()
        }
    }

    fn sets(sc: &cri::LinuxContainerSecurityContext) -> CapSets {
        capabilities(sc, sc.privileged, all).unwrap()
    }

    #[test]
    fn default_set() {
        let c = sets(&Default::default());
        assert_eq!(c.bounding, set_of(&DEFAULT_CAPABILITIES));
        assert_eq!(c.caps.effective().as_ref(), Some(&c.bounding));
        assert_eq!(c.caps.permitted().as_ref(), Some(&c.bounding));
        assert!(c.caps.inheritable().as_ref().unwrap().is_empty());
        assert!(c.caps.ambient().as_ref().unwrap().is_empty());
    }

    #[test]
    fn add_and_drop_with_and_without_prefix() {
        let c = sets(&sc_with(
            &["SYS_ADMIN", "cap_net_admin"],
            &["CAP_CHOWN", "kill"],
            &[],
        ));
        assert!(c.bounding.contains(&Capability::SysAdmin));
        assert!(c.bounding.contains(&Capability::NetAdmin));
        assert!(!c.bounding.contains(&Capability::Chown));
        assert!(!c.bounding.contains(&Capability::Kill));
        assert_eq!(c.bounding.len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn all_keywords() {
        let c = sets(&sc_with(&["ALL"], &["CHOWN"], &[]));
        assert_eq!(c.bounding.len(), BY_NUMBER.len() - 1);
        let c = sets(&sc_with(&["NET_BIND_SERVICE"], &["all"], &[]));
        assert_eq!(c.bounding, set_of(&[Capability::NetBindService]));
        let c = sets(&sc_with(&[], &["ALL"], &[]));
        assert!(c.bounding.is_empty());
    }

    #[test]
    fn ambient_goes_everywhere() {
        let c = sets(&sc_with(&[], &[], &["NET_ADMIN"]));
        for set in [
            c.caps.bounding(),
            c.caps.effective(),
            c.caps.permitted(),
            c.caps.inheritable(),
            c.caps.ambient(),
        ] {
            assert!(set.as_ref().unwrap().contains(&Capability::NetAdmin));
        }
        assert_eq!(c.caps.ambient().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn unknown_capability_is_invalid() {
        let e = capabilities(&sc_with(&["CAP_FLY"], &[], &[]), false, all)
            .err()
            .unwrap();
        assert!(matches!(e, SpecError::InvalidArgument(m) if m.contains("CAP_FLY")));
    }

    #[test]
    fn privileged_gets_current_caps_and_ignores_requests() {
        let mut sc = sc_with(&[], &["ALL"], &[]);
        sc.privileged = true;
        let c = capabilities(&sc, true, || {
            Ok(set_of(&[Capability::SysAdmin, Capability::Kill]))
        })
        .unwrap();
        assert_eq!(
            c.bounding,
            set_of(&[Capability::SysAdmin, Capability::Kill])
        );
    }

    #[test]
    fn current_capabilities_reads_our_own() {
        let caps = current_capabilities().unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(caps.contains(&Capability::SysAdmin));
        }
    }

    #[test]
    fn masked_paths_defaults_explicit_and_privileged() {
        let mut f = Fixture::new();
        let paths = |f: &Fixture| {
            let spec = f.ok();
            let l = spec.linux().as_ref().unwrap();
            (
                l.masked_paths().clone().unwrap(),
                l.readonly_paths().clone().unwrap(),
            )
        };
        let (m, r) = paths(&f);
        assert!(m.contains(&"/proc/kcore".to_string()));
        assert!(m.contains(&"/sys/devices/virtual/powercap".to_string()));
        assert_eq!(m.len(), 11);
        assert_eq!(r, DEFAULT_READONLY_PATHS.map(String::from).to_vec());
        f.sc().masked_paths = vec!["/proc/x".into()];
        f.sc().readonly_paths = vec!["/proc/y".into()];
        assert_eq!(paths(&f), (vec!["/proc/x".into()], vec!["/proc/y".into()]));
        f.make_privileged();
        assert_eq!(paths(&f), (vec![], vec![]));
    }

    #[test]
    fn privileged_container_needs_privileged_pod() {
        let mut f = Fixture::new();
        f.sc().privileged = true;
        assert!(f.invalid().contains("privileged"));
    }
}
