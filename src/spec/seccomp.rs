//! Choosing the seccomp profile: `RuntimeDefault` -> [`super::seccomp_default`]; `Unconfined`
//! (and privileged containers) -> none; `Localhost` -> a profile file in Docker's / containerd's
//! JSON format (a superset of the OCI `linux.seccomp` object: `archMap`, `includes`/`excludes`
//! by capability, architecture and kernel version, `name` or `names`), converted to the OCI
//! form as containerd's `seccomp.LoadProfile` does. The deprecated `seccomp_profile_path` string
//! is used when `seccomp` is unset: "" and "unconfined" -> none, "runtime/default" (or
//! "docker/default") -> default, "localhost/<path>" -> that file.
//!
//! `localhost_ref` should be absolute (CRI); a relative one is looked up under the configured
//! seccomp root. A missing file is `InvalidArgument` naming it (the request names a profile that
//! is not on this node), an unparsable one too.

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::security::parse_capability;
use super::{SpecError, SpecInput, invalid, io_err, seccomp_default};
use crate::cri::v1 as cri;
use cri::security_profile::ProfileType;

enum Choice {
    None,
    Default,
    Localhost(String),
}

fn choice(sc: &cri::LinuxContainerSecurityContext) -> Result<Choice, SpecError> {
    #[allow(deprecated)]
    let legacy = &sc.seccomp_profile_path;
    let Some(p) = &sc.seccomp else {
        return match legacy.as_str() {
            "" | "unconfined" => Ok(Choice::None),
            "runtime/default" | "docker/default" => Ok(Choice::Default),
            other => match other.strip_prefix("localhost/") {
                Some(path) => Ok(Choice::Localhost(path.to_owned())),
                None => Err(invalid(format!("unknown seccomp_profile_path {other:?}"))),
            },
        };
    };
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(Choice::Default),
        Ok(ProfileType::Unconfined) => Ok(Choice::None),
        Ok(ProfileType::Localhost) => {
            let r = p.localhost_ref.trim();
            let r = r.strip_prefix("localhost/").unwrap_or(r);
            if r.is_empty() {
                return Err(invalid("seccomp profile Localhost without localhost_ref"));
            }
            Ok(Choice::Localhost(r.to_owned()))
        }
        Err(_) => Err(invalid(format!(
            "unknown seccomp profile type {}",
            p.profile_type
        ))),
    }
}

pub fn profile(
    input: &SpecInput,
    sc: &cri::LinuxContainerSecurityContext,
    bounding: &Capabilities,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if sc.privileged {
        return Ok(None);
    }
    match choice(sc)? {
        Choice::None => Ok(None),
        Choice::Default => Ok(Some(seccomp_default::default_profile(bounding))),
        Choice::Localhost(r) => {
            let path = if r.starts_with('/') {
                PathBuf::from(&r)
            } else {
                input.seccomp_root.join(&r)
            };
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(invalid(format!(
                        "seccomp profile {} does not exist",
                        path.display()
                    )));
                }
                Err(e) => return Err(io_err(&path)(e)),
            };
            convert(&bytes, bounding)
                .map(Some)
                .map_err(|m| invalid(format!("seccomp profile {}: {m}", path.display())))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<SyscallRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallRule {
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<ArgRule>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgRule {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

/// Go's name of this architecture, as profiles' `arches` filters use.
fn native_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        std::env::consts::ARCH
    }
}

fn native_seccomp_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "SCMP_ARCH_X86_64"
    } else if cfg!(target_arch = "aarch64") {
        "SCMP_ARCH_AARCH64"
    } else {
        ""
    }
}

fn enum_from_str<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown {what} {s:?}"))
}

fn kernel_at_least(min: &str) -> Result<bool, String> {
    let parse = |s: &str| -> Option<(u32, u32)> {
        let mut it = s.split(|c: char| !c.is_ascii_digit());
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    let want = parse(min).ok_or_else(|| format!("invalid minKernel {min:?}"))?;
    let uname = nix::sys::utsname::uname().map_err(|e| e.to_string())?;
    let have = parse(&uname.release().to_string_lossy()).unwrap_or((0, 0));
    Ok(have >= want)
}

fn has_cap(bounding: &Capabilities, name: &str) -> bool {
    parse_capability(name).is_ok_and(|c| bounding.contains(&c))
}

fn convert(bytes: &[u8], bounding: &Capabilities) -> Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !file.architectures.is_empty() && !file.arch_map.is_empty() {
        return Err("both architectures and archMap are set".into());
    }
    let mut arches: Vec<Arch> = Vec::new();
    for a in &file.architectures {
        arches.push(enum_from_str(a, "architecture")?);
    }
    for m in file
        .arch_map
        .iter()
        .filter(|m| m.architecture == native_seccomp_arch())
    {
        arches.push(enum_from_str(&m.architecture, "architecture")?);
        for sub in &m.sub_architectures {
            arches.push(enum_from_str(sub, "architecture")?);
        }
    }
    let mut flags: Vec<LinuxSeccompFilterFlag> = Vec::new();
    for f in &file.flags {
        flags.push(enum_from_str(f, "flag")?);
    }

    let mut syscalls = Vec::new();
    for call in &file.syscalls {
        let arch = native_arch();
        if call.excludes.arches.iter().any(|a| a == arch)
            || call.excludes.caps.iter().any(|c| has_cap(bounding, c))
            || (!call.includes.arches.is_empty() && !call.includes.arches.iter().any(|a| a == arch))
            || call.includes.caps.iter().any(|c| !has_cap(bounding, c))
        {
            continue;
        }
        if let Some(min) = &call.includes.min_kernel
            && !kernel_at_least(min)?
        {
            continue;
        }
        if let Some(min) = &call.excludes.min_kernel
            && kernel_at_least(min)?
        {
            continue;
        }
        let names = match (call.name.is_empty(), call.names.is_empty()) {
            (false, true) => vec![call.name.clone()],
            (true, false) => call.names.clone(),
            (false, false) => return Err("a syscall rule has both name and names".into()),
            (true, true) => return Err("a syscall rule has no names".into()),
        };
        let mut rule = LinuxSyscall::default();
        rule.set_names(names);
        rule.set_action(enum_from_str::<LinuxSeccompAction>(&call.action, "action")?);
        rule.set_errno_ret(call.errno_ret);
        if let Some(args) = &call.args {
            let mut out = Vec::new();
            for a in args {
                out.push(seccomp_default::arg(
                    a.index,
                    a.value,
                    a.value_two,
                    enum_from_str::<LinuxSeccompOperator>(&a.op, "operator")?,
                ));
            }
            rule.set_args((!out.is_empty()).then_some(out));
        }
        syscalls.push(rule);
    }

    let mut p = LinuxSeccomp::default();
    p.set_default_action(enum_from_str(&file.default_action, "action")?);
    p.set_default_errno_ret(file.default_errno_ret);
    p.set_architectures((!arches.is_empty()).then_some(arches));
    p.set_flags((!flags.is_empty()).then_some(flags));
    p.set_listener_path(file.listener_path.map(PathBuf::from));
    p.set_listener_metadata(file.listener_metadata);
    p.set_syscalls(Some(syscalls));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;

    fn seccomp_of(f: &Fixture) -> Option<LinuxSeccomp> {
        f.ok().linux().as_ref().unwrap().seccomp().clone()
    }

    fn profile(t: ProfileType, r: &str) -> Option<cri::SecurityProfile> {
        Some(cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        })
    }

    #[test]
    fn unset_is_unconfined_runtime_default_is_default() {
        let mut f = Fixture::new();
        assert!(seccomp_of(&f).is_none());
        f.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
        let p = seccomp_of(&f).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        f.sc().seccomp = profile(ProfileType::Unconfined, "");
        assert!(seccomp_of(&f).is_none());
    }

    #[test]
    #[allow(deprecated)]
    fn legacy_profile_path() {
        let mut f = Fixture::new();
        f.sc().seccomp_profile_path = "runtime/default".into();
        assert!(seccomp_of(&f).is_some());
        f.sc().seccomp_profile_path = "unconfined".into();
        assert!(seccomp_of(&f).is_none());
        f.sc().seccomp_profile_path = "bogus".into();
        assert!(f.invalid().contains("bogus"));
        let path = f.seccomp_root.path().join("p.json");
        std::fs::write(&path, r#"{"defaultAction":"SCMP_ACT_LOG"}"#).unwrap();
        f.sc().seccomp_profile_path = format!("localhost/{}", path.display());
        assert_eq!(
            seccomp_of(&f).unwrap().default_action(),
            LinuxSeccompAction::ScmpActLog
        );
    }

    #[test]
    fn privileged_has_no_seccomp() {
        let mut f = Fixture::new();
        f.sc().seccomp = profile(ProfileType::RuntimeDefault, "");
        f.make_privileged();
        assert!(seccomp_of(&f).is_none());
    }

    #[test]
    fn localhost_missing_file_is_invalid_naming_it() {
        let mut f = Fixture::new();
        f.sc().seccomp = profile(ProfileType::Localhost, "/nonexistent/strata-profile.json");
        let m = f.invalid();
        assert!(m.contains("/nonexistent/strata-profile.json"), "{m}");
        f.sc().seccomp = profile(ProfileType::Localhost, "");
        assert!(f.invalid().contains("localhost_ref"));
    }

    #[test]
    fn localhost_relative_ref_uses_the_root_and_rejects_garbage() {
        let mut f = Fixture::new();
        std::fs::write(f.seccomp_root.path().join("bad.json"), "{not json").unwrap();
        f.sc().seccomp = profile(ProfileType::Localhost, "bad.json");
        assert!(f.invalid().contains("bad.json"));
    }

    #[test]
    fn localhost_docker_format_is_converted() {
        let mut f = Fixture::new();
        let json = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        let path = f.seccomp_root.path().join("docker.json");
        std::fs::write(&path, json.to_string()).unwrap();
        f.sc().seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
        let p = seccomp_of(&f).unwrap();
        let names: Vec<Vec<String>> = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.names().clone())
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["read".to_string(), "write".into()],
                vec!["mkdir".into()],
                vec!["chroot".into()],
                vec!["personality".into()],
            ]
        );
        assert_eq!(p.syscalls().as_ref().unwrap()[1].errno_ret(), Some(13));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
    }

    #[test]
    fn oci_form_profile_loads_too() {
        let mut f = Fixture::new();
        let p = seccomp_default::default_profile(&Default::default());
        let path = f.seccomp_root.path().join("oci.json");
        std::fs::write(&path, serde_json::to_string(&p).unwrap()).unwrap();
        f.sc().seccomp = profile(ProfileType::Localhost, path.to_str().unwrap());
        let loaded = seccomp_of(&f).unwrap();
        assert_eq!(loaded.syscalls(), p.syscalls());
        assert_eq!(loaded.default_errno_ret(), p.default_errno_ret());
    }
}
