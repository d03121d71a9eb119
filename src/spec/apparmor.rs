//! The AppArmor profile of a container (`process.apparmorProfile`), from CRI's `apparmor`
//! security profile or the deprecated `apparmor_profile` string.
//!
//! - `Unconfined` (or nothing): no profile.
//! - `RuntimeDefault`: strata ships no AppArmor policy of its own (containerd and CRI-O load
//!   theirs with `apparmor_parser`); the container runs without a profile, confined by the
//!   runtime-default seccomp filter, capabilities and masked paths. Documented in the README.
//! - `Localhost`: the named profile, which must be loaded in the kernel. A profile that is not
//!   loaded, or AppArmor disabled on the host, is InvalidArgument at CreateContainer (as
//!   containerd answers), never a container that silently runs unconfined.

use std::collections::HashSet;

use super::{SpecError, invalid};
use crate::cri::v1 as cri;
use cri::security_profile::ProfileType;

#[derive(Debug, PartialEq, Eq)]
enum Choice {
    Unconfined,
    RuntimeDefault,
    Localhost(String),
}

fn choice(sc: &cri::LinuxContainerSecurityContext) -> Result<Choice, SpecError> {
    // The structured field wins over the deprecated string, as kubelet and containerd order
    // them.
    if let Some(p) = &sc.apparmor {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Choice::RuntimeDefault),
            Ok(ProfileType::Unconfined) => Ok(Choice::Unconfined),
            Ok(ProfileType::Localhost) => {
                let r = p.localhost_ref.trim();
                let r = r.strip_prefix("localhost/").unwrap_or(r);
                if r.is_empty() {
                    return Err(invalid("apparmor profile Localhost without localhost_ref"));
                }
                Ok(Choice::Localhost(r.to_owned()))
            }
            Err(_) => Err(invalid(format!(
                "unknown apparmor profile type {}",
                p.profile_type
            ))),
        };
    }
    #[allow(deprecated)]
    let legacy = sc.apparmor_profile.as_str();
    match legacy {
        "" | "unconfined" => Ok(Choice::Unconfined),
        "runtime/default" => Ok(Choice::RuntimeDefault),
        other => match other.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => Ok(Choice::Localhost(name.to_owned())),
            _ => Err(invalid(format!("unknown apparmor_profile {other:?}"))),
        },
    }
}

/// What the host's AppArmor offers.
pub trait Host {
    fn enabled(&self) -> bool;
    /// Whether a profile of this name is loaded.
    fn loaded(&self, name: &str) -> bool;
}

/// The running kernel, read from sysfs/securityfs.
pub struct Kernel;

impl Host for Kernel {
    fn enabled(&self) -> bool {
        std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.trim_start().starts_with('Y'))
    }

    fn loaded(&self, name: &str) -> bool {
        std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
            .is_ok_and(|list| loaded_names(&list).contains(name))
    }
}

/// Profile names of the securityfs `profiles` list (`NAME (MODE)` per line).
fn loaded_names(list: &str) -> HashSet<&str> {
    list.lines()
        .filter_map(|line| line.rsplit_once(" (").map(|(name, _)| name))
        .collect()
}

/// The profile to put in the spec (None: unconfined).
pub fn profile(
    sc: &cri::LinuxContainerSecurityContext,
    host: &impl Host,
) -> Result<Option<String>, SpecError> {
    match choice(sc)? {
        Choice::Unconfined | Choice::RuntimeDefault => Ok(None),
        Choice::Localhost(name) => {
            if !host.enabled() {
                return Err(invalid(format!(
                    "apparmor profile {name:?} requested, but AppArmor is not enabled on this host"
                )));
            }
            if !host.loaded(&name) {
                return Err(invalid(format!(
                    "apparmor profile {name:?} is not loaded (load it with apparmor_parser)"
                )));
            }
            Ok(Some(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        enabled: bool,
        loaded: &'static [&'static str],
    }

    impl Host for Fake {
        fn enabled(&self) -> bool {
            self.enabled
        }
        fn loaded(&self, name: &str) -> bool {
            self.loaded.contains(&name)
        }
    }

    const ON: Fake = Fake {
        enabled: true,
        loaded: &["deny-write"],
    };
    const OFF: Fake = Fake {
        enabled: false,
        loaded: &[],
    };

    fn structured(t: ProfileType, r: &str) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            }),
            ..Default::default()
        }
    }

    #[allow(deprecated)]
    fn legacy(s: &str) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            apparmor_profile: s.into(),
            ..Default::default()
        }
    }

    #[test]
    fn localhost_profiles_must_be_loaded_and_apparmor_on() {
        let sc = structured(ProfileType::Localhost, "localhost/deny-write");
        assert_eq!(profile(&sc, &ON).unwrap().as_deref(), Some("deny-write"));
        assert_eq!(
            profile(&legacy("localhost/deny-write"), &ON)
                .unwrap()
                .as_deref(),
            Some("deny-write")
        );
        let missing = structured(ProfileType::Localhost, "localhost/non-existent-profile");
        assert!(
            profile(&missing, &ON)
                .unwrap_err()
                .to_string()
                .contains("not loaded")
        );
        assert!(profile(&legacy("localhost/non-existent-profile"), &ON).is_err());
        assert!(
            profile(&sc, &OFF)
                .unwrap_err()
                .to_string()
                .contains("not enabled")
        );
    }

    #[test]
    #[allow(deprecated)]
    fn the_structured_field_wins_over_the_deprecated_one() {
        let mut sc = structured(ProfileType::Localhost, "deny-write");
        sc.apparmor_profile = "localhost/non-existent-profile".into();
        assert_eq!(profile(&sc, &ON).unwrap().as_deref(), Some("deny-write"));
    }

    #[test]
    fn default_and_unconfined_have_no_profile() {
        for sc in [
            structured(ProfileType::RuntimeDefault, ""),
            structured(ProfileType::Unconfined, ""),
            legacy("runtime/default"),
            legacy("unconfined"),
            legacy(""),
        ] {
            assert_eq!(profile(&sc, &OFF).unwrap(), None, "{sc:?}");
            assert_eq!(profile(&sc, &ON).unwrap(), None, "{sc:?}");
        }
        assert!(profile(&legacy("bogus"), &ON).is_err());
        assert!(profile(&structured(ProfileType::Localhost, ""), &ON).is_err());
    }

    #[test]
    fn reads_the_securityfs_profile_list() {
        let list = "cri-validate (enforce)\n/usr/bin/man (complain)\nname with space (enforce)\n";
        let names = loaded_names(list);
        assert!(names.contains("cri-validate"));
        assert!(names.contains("/usr/bin/man"));
        assert!(names.contains("name with space"));
        assert!(!names.contains("cri"));
    }
}
