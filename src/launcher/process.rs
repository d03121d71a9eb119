//! The process setup shared by the container init and `strata exec`: rlimits, working
//! directory, user, capabilities, no_new_privs, seccomp; then the executable lookup and execve.
//!
//! Order (runc's `finalizeNamespace`):
//! 1. rlimits (raising a hard limit needs CAP_SYS_RESOURCE: refused here, reported clearly);
//! 2. chdir to the working directory (the init created it, see [`super::mounts`]);
//! 3. seccomp here when `noNewPrivileges` is false: installing a filter without no_new_privs
//!    needs CAP_SYS_ADMIN, which the user switch may drop (runc does the same);
//! 4. capability bounding set (PR_CAPBSET_DROP needs CAP_SETPCAP, so before the user switch);
//! 5. user: setgroups(additionalGids), setresgid, PR_SET_KEEPCAPS, setresuid, keepcaps off;
//! 6. inheritable/effective/permitted/ambient capabilities; umask;
//! 7. no_new_privs; 8. seccomp last when no_new_privs is set.
//!
//! The AppArmor profile (when the spec names one) is requested first, for the coming execve
//! (`exec NAME` to the `attr/apparmor/exec` file, as runc does): the setup itself runs
//! unconfined, and the kernel switches profiles atomically at the exec.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};

use super::seccomp::Filter;
use super::sys::{CapSets, Syscall};
use super::{Failure, LaunchError};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rlimit {
    pub name: String,
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapsPlan {
    pub bounding: caps::CapsHashSet,
    pub sets: CapSets,
}

#[derive(Debug, Clone)]
pub(crate) struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub argv0: String,
    pub path_env: String,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub caps: Option<CapsPlan>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privs: bool,
    pub terminal: bool,
    /// AppArmor profile the execve switches to.
    pub apparmor: Option<String>,
}

fn spec_err(msg: impl Into<String>) -> LaunchError {
    LaunchError::Spec(msg.into())
}

fn cap_set(set: Option<&Capabilities>) -> Result<caps::CapsHashSet, LaunchError> {
    let mut out = caps::CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = name
            .parse::<caps::Capability>()
            .map_err(|_| spec_err(format!("unknown capability {name}")))?;
        out.insert(cap);
    }
    Ok(out)
}

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

fn cstrings<'a>(
    what: &str,
    v: impl Iterator<Item = &'a String>,
) -> Result<Vec<CString>, LaunchError> {
    v.map(|s| {
        CString::new(s.as_str()).map_err(|_| spec_err(format!("{what} contains a NUL byte: {s:?}")))
    })
    .collect()
}

impl ProcessPlan {
    /// Validates and converts `process` (parent side).
    pub(crate) fn from_spec(p: &Process) -> Result<ProcessPlan, LaunchError> {
        let args = p.args().clone().unwrap_or_default();
        let argv0 = args
            .first()
            .cloned()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| spec_err("process.args is empty"))?;
        let env = p.env().clone().unwrap_or_default();
        let path_env = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        if !p.cwd().is_absolute() {
            return Err(spec_err(format!(
                "process.cwd {} must be absolute",
                p.cwd().display()
            )));
        }
        let caps = match p.capabilities() {
            None => None,
            Some(c) => Some(CapsPlan {
                bounding: cap_set(c.bounding().as_ref())?,
                sets: CapSets {
                    effective: cap_set(c.effective().as_ref())?,
                    permitted: cap_set(c.permitted().as_ref())?,
                    inheritable: cap_set(c.inheritable().as_ref())?,
                    ambient: cap_set(c.ambient().as_ref())?,
                },
            }),
        };
        let rlimits = p
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                if r.soft() > r.hard() {
                    return Err(spec_err(format!(
                        "rlimit {}: soft limit {} above hard limit {}",
                        r.typ(),
                        r.soft(),
                        r.hard()
                    )));
                }
                Ok(Rlimit {
                    name: r.typ().to_string(),
                    resource: rlimit_resource(r.typ()),
                    soft: r.soft(),
                    hard: r.hard(),
                })
            })
            .collect::<Result<_, _>>()?;
        let user = p.user();
        Ok(ProcessPlan {
            args: cstrings("process.args", args.iter())?,
            env: cstrings("process.env", env.iter())?,
            argv0,
            path_env,
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            caps,
            rlimits,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            apparmor: p
                .apparmor_profile()
                .clone()
                .filter(|name| !name.is_empty() && name != "unconfined"),
        })
    }
}

fn at(step: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure {
        step: step.to_string(),
        message: e.to_string(),
    }
}

fn rlimit_failure(r: &Rlimit, e: std::io::Error) -> Failure {
    let mut current = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: current is a valid rlimit64 to fill; the new-limit pointer may be null.
    let got = unsafe { libc::prlimit64(0, r.resource as _, std::ptr::null(), &mut current) };
    let message = if e.raw_os_error() == Some(libc::EPERM) && got == 0 && r.hard > current.rlim_max
    {
        format!(
            "cannot raise the hard limit of {} from {} to {}: this host does not grant \
             CAP_SYS_RESOURCE (ask for a hard limit of at most {})",
            r.name, current.rlim_max, r.hard, current.rlim_max
        )
    } else {
        format!("{} soft={} hard={}: {e}", r.name, r.soft, r.hard)
    };
    Failure {
        step: "rlimits".into(),
        message,
    }
}

/// Asks the kernel to confine the next execve by AppArmor `profile`: the per-thread file of
/// the apparmor LSM (5.8+), or the older shared one.
fn apparmor_on_exec<S: Syscall>(sys: &S, profile: &str) -> Result<(), Failure> {
    let request = format!("exec {profile}");
    let result = match sys.write_file(Path::new("/proc/thread-self/attr/apparmor/exec"), &request) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sys.write_file(Path::new("/proc/self/attr/exec"), &request)
        }
        other => other,
    };
    result.map_err(|e| Failure {
        step: "apparmor".into(),
        message: format!("profile {profile}: {e}"),
    })
}

/// Applies the process attributes (see the module doc for the order).
pub(crate) fn apply<S: Syscall>(
    sys: &S,
    plan: &ProcessPlan,
    seccomp: Option<&Filter>,
) -> Result<(), Failure> {
    if let Some(profile) = &plan.apparmor {
        apparmor_on_exec(sys, profile)?;
    }
    for r in &plan.rlimits {
        sys.setrlimit(r.resource, r.soft, r.hard)
            .map_err(|e| rlimit_failure(r, e))?;
    }
    sys.chdir(&plan.cwd).map_err(|e| Failure {
        step: "cwd".into(),
        message: format!("chdir to {}: {e}", plan.cwd.display()),
    })?;
    if let Some(f) = seccomp.filter(|_| !plan.no_new_privs) {
        sys.seccomp(&f.program, f.flags).map_err(at("seccomp"))?;
    }
    if let Some(c) = &plan.caps {
        sys.drop_bounding(&c.bounding)
            .map_err(at("capability bounding set"))?;
    }
    sys.setgroups(&plan.additional_gids)
        .map_err(at("setgroups"))?;
    sys.setresgid(plan.gid).map_err(at("setresgid"))?;
    sys.prctl(libc::PR_SET_KEEPCAPS, 1)
        .map_err(at("keepcaps"))?;
    sys.setresuid(plan.uid).map_err(at("setresuid"))?;
    sys.prctl(libc::PR_SET_KEEPCAPS, 0)
        .map_err(at("keepcaps"))?;
    if let Some(c) = &plan.caps {
        sys.set_caps(&c.sets).map_err(at("capabilities"))?;
    }
    sys.umask(plan.umask);
    if plan.no_new_privs {
        sys.prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
            .map_err(at("no_new_privs"))?;
        if let Some(f) = seccomp {
            sys.seccomp(&f.program, f.flags).map_err(at("seccomp"))?;
        }
    }
    Ok(())
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `argv0` as Go's `exec.LookPath` does (what runc reports): through `$PATH` of the
/// container's env unless it contains a slash. The error is the text after `exec: `.
pub(crate) fn resolve_executable(plan: &ProcessPlan) -> Result<CString, String> {
    let argv0 = &plan.argv0;
    let found = if argv0.contains('/') {
        match std::fs::metadata(argv0) {
            Ok(_) => PathBuf::from(argv0),
            Err(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::ENOENT) => "no such file or directory".to_string(),
                    _ => e.to_string(),
                };
                return Err(format!("{argv0:?}: stat {argv0}: {why}"));
            }
        }
    } else {
        plan.path_env
            .split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(argv0))
            .find(|p| is_executable(p))
            .ok_or_else(|| format!("{argv0:?}: executable file not found in $PATH"))?
    };
    CString::new(found.into_os_string().into_encoded_bytes())
        .map_err(|_| format!("{argv0:?}: invalid path"))
}

/// The most of `/etc/passwd` read to find `HOME`.
const PASSWD_MAX: u64 = 1 << 20;

/// The process's environment: the spec's, plus `HOME` when the spec sets none (or an empty
/// one), as runc does: the home directory of the uid's entry in the container's `/etc/passwd`,
/// else `/`. Runs in the container (after pivot_root); a FIFO or device as `/etc/passwd`
/// cannot block it.
pub(crate) fn exec_env(plan: &ProcessPlan) -> Vec<CString> {
    let has_home = plan.env.iter().any(|e| {
        e.to_bytes()
            .strip_prefix(b"HOME=")
            .is_some_and(|v| !v.is_empty())
    });
    let mut env: Vec<CString> = plan
        .env
        .iter()
        .filter(|e| has_home || !e.to_bytes().starts_with(b"HOME="))
        .cloned()
        .collect();
    if !has_home {
        let passwd = read_passwd(Path::new("/etc/passwd")).unwrap_or_default();
        let home = home_of(&passwd, plan.uid).unwrap_or("/");
        if let Ok(var) = CString::new(format!("HOME={home}")) {
            env.push(var);
        }
    }
    env
}

fn read_passwd(path: &Path) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(PASSWD_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The home directory of `uid` in passwd(5) text (`name:pw:uid:gid:gecos:home:shell`).
fn home_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [_, _, id, _, _, home, ..]
                if id.parse::<u32>().ok() == Some(uid) && !home.is_empty() =>
            {
                Some(*home)
            }
            _ => None,
        }
    })
}

/// Gives every ignored signal its default action back. An ignored disposition survives
/// `execve` (a handler does not), and a POSIX shell cannot even `trap` a signal that was ignored
/// when it started: a daemon run under `nohup` (SIGHUP ignored) or the Rust runtime (SIGPIPE
/// ignored) must not pass that on to the container's processes. Async-signal-safe.
///
/// The raw `rt_sigaction` system call, not libc's wrapper: glibc refuses its reserved signals
/// 32 and 33, which a parent may have ignored all the same.
pub(crate) fn restore_ignored_signals() {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 both have `sa_restorer`).
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    const MASK_SIZE: usize = std::mem::size_of::<u64>();
    // SIGKILL and SIGSTOP cannot be ignored; the kernel refuses to change them anyway.
    for signal in (1..=64).filter(|s| *s != libc::SIGKILL && *s != libc::SIGSTOP) {
        let mut old = KernelSigaction::default();
        // SAFETY: rt_sigaction with a null new action only writes the current one into `old`,
        // a struct of the kernel's layout owned by this frame.
        let read = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                MASK_SIZE,
            )
        };
        if read != 0 || old.handler != libc::SIG_IGN {
            continue;
        }
        let default = KernelSigaction::default(); // SIG_DFL is 0
        // SAFETY: installs SIG_DFL (no handler code) from a struct owned by this frame.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                MASK_SIZE,
            )
        };
    }
}

/// execve(2); returns only on failure, with the text after `exec: `.
pub(crate) fn execve(plan: &ProcessPlan, exe: &CString) -> String {
    let env = exec_env(plan);
    let err = match nix::unistd::execve(exe, &plan.args, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let desc = err.desc();
    let mut chars = desc.chars();
    let lower = match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    };
    format!("{:?}: {lower}", plan.argv0)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{
        Capability, LinuxCapabilitiesBuilder, PosixRlimitBuilder, ProcessBuilder, UserBuilder,
    };

    use super::super::sys::fake::FakeSys;
    use super::*;

    fn process(nnp: bool) -> Process {
        let caps: Capabilities = [Capability::Chown, Capability::NetBindService]
            .into_iter()
            .collect();
        ProcessBuilder::default()
            .args(vec!["sh".to_string()])
            .env(vec!["PATH=/bin".to_string()])
            .cwd("/work")
            .user(
                UserBuilder::default()
                    .uid(1000u32)
                    .gid(1000u32)
                    .additional_gids(vec![5u32, 6])
                    .build()
                    .unwrap(),
            )
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps.clone())
                    .ambient(Capabilities::new())
                    .build()
                    .unwrap(),
            )
            .rlimits(vec![
                PosixRlimitBuilder::default()
                    .typ(PosixRlimitType::RlimitNofile)
                    .soft(1024u64)
                    .hard(1024u64)
                    .build()
                    .unwrap(),
            ])
            .no_new_privileges(nnp)
            .build()
            .unwrap()
    }

    fn filter() -> Filter {
        Filter {
            program: vec![libc::sock_filter {
                code: 0x06,
                jt: 0,
                jf: 0,
                k: 0x7fff_0000,
            }],
            flags: 0,
        }
    }

    #[test]
    fn apparmor_profile_is_requested_for_the_exec_first() {
        let mut p = process(true);
        p.set_apparmor_profile(Some("cri-validate-deny-write".into()));
        let plan = ProcessPlan::from_spec(&p).unwrap();
        let sys = FakeSys::default();
        apply(&sys, &plan, Some(&filter())).unwrap();
        assert_eq!(
            sys.calls()[0],
            "write /proc/thread-self/attr/apparmor/exec exec cri-validate-deny-write"
        );
        // "unconfined" asks for nothing.
        p.set_apparmor_profile(Some("unconfined".into()));
        assert_eq!(ProcessPlan::from_spec(&p).unwrap().apparmor, None);
    }

    #[test]
    fn user_caps_nnp_then_seccomp_last() {
        let plan = ProcessPlan::from_spec(&process(true)).unwrap();
        let sys = FakeSys::default();
        apply(&sys, &plan, Some(&filter())).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                format!("setrlimit {} 1024 1024", libc::RLIMIT_NOFILE),
                "chdir /work".into(),
                "drop_bounding keep=2".into(),
                "setgroups [5, 6]".into(),
                "setresgid 1000".into(),
                "prctl KEEPCAPS 1".into(),
                "setresuid 1000".into(),
                "prctl KEEPCAPS 0".into(),
                "set_caps eff=2 perm=2 inh=3 amb=0".into(), // builder default inheritable
                "umask 22".into(),
                "prctl NO_NEW_PRIVS 1".into(),
                "seccomp len=1 flags=0".into(),
            ]
        );
    }

    #[test]
    fn without_no_new_privs_seccomp_goes_before_the_user_switch() {
        let plan = ProcessPlan::from_spec(&process(false)).unwrap();
        let sys = FakeSys::default();
        apply(&sys, &plan, Some(&filter())).unwrap();
        let calls = sys.calls();
        let pos = |p: &str| calls.iter().position(|c| c.starts_with(p)).unwrap();
        assert!(pos("seccomp") < pos("drop_bounding"));
        assert!(pos("seccomp") < pos("setresuid"));
        assert!(!calls.iter().any(|c| c.contains("NO_NEW_PRIVS")));
        assert!(!calls.iter().any(|c| c.starts_with("create")));
    }

    #[test]
    fn home_comes_from_passwd_unless_set() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbad line\nweb:x:33:33::/var/www:/bin/false\n\
                      nohome:x:7:7:::/bin/false\n";
        assert_eq!(home_of(passwd, 0), Some("/root"));
        assert_eq!(home_of(passwd, 33), Some("/var/www"));
        assert_eq!(home_of(passwd, 7), None);
        assert_eq!(home_of(passwd, 1000), None);

        let mut plan = ProcessPlan::from_spec(&process(false)).unwrap();
        plan.uid = 4242; // no such entry in the host's /etc/passwd: "/"
        let env = |plan: &ProcessPlan| -> Vec<String> {
            exec_env(plan)
                .into_iter()
                .map(|c| c.into_string().unwrap())
                .collect()
        };
        assert_eq!(env(&plan), ["PATH=/bin", "HOME=/"]);
        plan.env.push(CString::new("HOME=").unwrap());
        assert_eq!(env(&plan), ["PATH=/bin", "HOME=/"]);
        plan.env.pop();
        plan.env.push(CString::new("HOME=/mine").unwrap());
        assert_eq!(env(&plan), ["PATH=/bin", "HOME=/mine"]);
    }

    #[test]
    fn executable_lookup_reports_like_runc() {
        let mut plan = ProcessPlan::from_spec(&process(true)).unwrap();
        plan.argv0 = "definitely-not-here".into();
        plan.path_env = "/bin:/usr/bin".into();
        assert_eq!(
            resolve_executable(&plan).unwrap_err(),
            "\"definitely-not-here\": executable file not found in $PATH"
        );
        plan.argv0 = "/nope/x".into();
        assert_eq!(
            resolve_executable(&plan).unwrap_err(),
            "\"/nope/x\": stat /nope/x: no such file or directory"
        );
        plan.argv0 = "sh".into();
        assert!(resolve_executable(&plan).is_ok());
    }

    #[test]
    fn bad_process_specs_are_invalid_argument() {
        let mut p = process(true);
        p.set_args(Some(vec![]));
        assert!(matches!(
            ProcessPlan::from_spec(&p),
            Err(LaunchError::Spec(_))
        ));
        let mut p = process(true);
        p.set_cwd("relative".into());
        assert!(matches!(
            ProcessPlan::from_spec(&p),
            Err(LaunchError::Spec(_))
        ));
    }
}
