//! The process: args (Kubernetes' rules), environment, working directory, oom_score_adj.

use std::path::PathBuf;

use super::{SpecError, SpecInput, invalid, io_err};
use crate::cri::v1 as cri;

/// PATH when the image sets none (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `command` replaces the image's ENTRYPOINT and, unless `args` are given, its CMD too; `args`
/// replace CMD. An ENTRYPOINT of `[""]` counts as none.
pub fn args(
    container: &cri::ContainerConfig,
    image: &oci_spec::image::Config,
) -> Result<Vec<String>, SpecError> {
    let mut command = container.command.clone();
    let mut args = container.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd().clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint().clone().unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(invalid("no command specified"));
    }
    Ok(command)
}

/// `PATH` (default, replaced by the image's), `TERM=xterm` with a tty, `HOSTNAME`, then the
/// image's environment, then the CRI envs; a later entry replaces an earlier one of the same
/// name in place, and an entry without `=` removes the name (containerd's rules).
pub fn env(input: &SpecInput, image: &oci_spec::image::Config) -> Result<Vec<String>, SpecError> {
    let mut env = vec![DEFAULT_PATH.to_owned()];
    if input.container.tty {
        env.push("TERM=xterm".to_owned());
    }
    let hostname = if input.pod.hostname.is_empty() {
        nix::unistd::gethostname()
            .map_err(|e| io_err(std::path::Path::new("/proc/sys/kernel/hostname"))(e.into()))?
            .to_string_lossy()
            .into_owned()
    } else {
        input.pod.hostname.clone()
    };
    replace_or_append(&mut env, [format!("HOSTNAME={hostname}")]);
    let image_env = image.env().clone().unwrap_or_default();
    let cri_env = input
        .container
        .envs
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value));
    replace_or_append(&mut env, image_env.into_iter().chain(cri_env));
    Ok(env)
}

fn replace_or_append(env: &mut Vec<String>, overrides: impl IntoIterator<Item = String>) {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let mut removed = vec![false; env.len()];
    for value in overrides {
        let k = key(&value);
        let pos = env.iter().position(|e| key(e) == k);
        match (value.contains('='), pos) {
            (false, Some(i)) => removed[i] = true,
            (false, None) => {}
            (true, Some(i)) => {
                env[i] = value;
                removed[i] = false;
            }
            (true, None) => {
                env.push(value);
                removed.push(false);
            }
        }
    }
    let mut i = 0;
    env.retain(|_| {
        let keep = !removed[i];
        i += 1;
        keep
    });
}

/// CRI `working_dir`, else the image's `WorkingDir`, else `/`.
pub fn cwd(container: &cri::ContainerConfig, image: &oci_spec::image::Config) -> PathBuf {
    if !container.working_dir.is_empty() {
        return container.working_dir.clone().into();
    }
    match image.working_dir() {
        Some(w) if !w.is_empty() => w.into(),
        _ => "/".into(),
    }
}

/// The CRI `oom_score_adj` (only when resources are given, like containerd). Without
/// CAP_SYS_RESOURCE a process cannot go below its parent's value, so when the host does not
/// allow it a lower request is clamped to our own `/proc/self/oom_score_adj` (containerd's
/// `restrict_oom_score_adj`).
pub fn oom_score_adj(input: &SpecInput) -> Result<Option<i32>, SpecError> {
    let Some(r) = input.resources() else {
        return Ok(None);
    };
    let requested = i32::try_from(r.oom_score_adj)
        .ok()
        .filter(|v| (-1000..=1000).contains(v))
        .ok_or_else(|| invalid(format!("oom_score_adj {} out of range", r.oom_score_adj)))?;
    if input.host_allows_negative_oom_score_adj {
        return Ok(Some(requested));
    }
    let path = std::path::Path::new("/proc/self/oom_score_adj");
    let current: i32 = std::fs::read_to_string(path)
        .map_err(io_err(path))?
        .trim()
        .parse()
        .map_err(|_| io_err(path)(std::io::ErrorKind::InvalidData.into()))?;
    if requested < current {
        tracing::info!(
            requested,
            used = current,
            "oom_score_adj clamped: this host does not allow lowering it below the runtime's own"
        );
        return Ok(Some(current));
    }
    Ok(Some(requested))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::Fixture;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn args_of(f: &Fixture) -> Vec<String> {
        f.ok().process().as_ref().unwrap().args().clone().unwrap()
    }

    #[test]
    fn args_follow_kubernetes_rules() {
        let mut f = Fixture::new();
        assert_eq!(args_of(&f), s(&["/entry", "cmd-arg"]));
        f.container.args = s(&["a1", "a2"]);
        assert_eq!(args_of(&f), s(&["/entry", "a1", "a2"]));
        f.container.command = s(&["/bin/cmd"]);
        assert_eq!(args_of(&f), s(&["/bin/cmd", "a1", "a2"]));
        f.container.args.clear();
        // command without args drops CMD too
        assert_eq!(args_of(&f), s(&["/bin/cmd"]));
    }

    #[test]
    fn empty_entrypoint_string_is_none() {
        let mut f = Fixture::new();
        f.image_config(|c| {
            c.set_entrypoint(Some(vec![String::new()]));
        });
        assert_eq!(args_of(&f), s(&["cmd-arg"]));
    }

    #[test]
    fn no_command_is_invalid() {
        let mut f = Fixture::new();
        f.image_config(|c| {
            c.set_entrypoint(None);
            c.set_cmd(None);
        });
        assert_eq!(f.invalid(), "no command specified");
    }

    #[test]
    fn env_order_and_overrides() {
        let mut f = Fixture::new();
        f.container.envs = vec![
            cri::KeyValue {
                key: "SHARED".into(),
                value: "cri".into(),
            },
            cri::KeyValue {
                key: "NEW".into(),
                value: "a=b".into(),
            },
        ];
        f.container.tty = true;
        let env = f.ok().process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(
            env,
            s(&[
                "PATH=/usr/bin:/bin",
                "TERM=xterm",
                "HOSTNAME=podhost",
                "IMAGE_ONLY=1",
                "SHARED=cri",
                "NEW=a=b",
            ])
        );
    }

    #[test]
    fn default_path_when_image_has_none() {
        let mut f = Fixture::new();
        f.image_config(|c| {
            c.set_env(None);
        });
        let env = f.ok().process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, s(&[DEFAULT_PATH, "HOSTNAME=podhost"]));
    }

    #[test]
    fn env_without_equals_unsets() {
        let mut env = s(&["A=1", "B=2", "C=3"]);
        replace_or_append(&mut env, s(&["B", "D=4", "A=9", "B=5", "C"]));
        assert_eq!(env, s(&["A=9", "B=5", "D=4"]));
    }

    #[test]
    fn hostname_env_falls_back_to_the_hosts() {
        let mut f = Fixture::new();
        f.pod.hostname.clear();
        let host = nix::unistd::gethostname().unwrap();
        let env = f.ok().process().as_ref().unwrap().env().clone().unwrap();
        assert!(env.contains(&format!("HOSTNAME={}", host.to_string_lossy())));
    }

    #[test]
    fn cwd_rules() {
        let mut f = Fixture::new();
        let cwd = |f: &Fixture| f.ok().process().as_ref().unwrap().cwd().clone();
        assert_eq!(cwd(&f), PathBuf::from("/work"));
        f.container.working_dir = "/override".into();
        assert_eq!(cwd(&f), PathBuf::from("/override"));
        f.container.working_dir.clear();
        f.image_config(|c| {
            c.set_working_dir(None);
        });
        assert_eq!(cwd(&f), PathBuf::from("/"));
    }

    #[test]
    fn oom_score_adj_clamped_when_host_forbids_lowering() {
        let current: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut f = Fixture::new();
        let adj = |f: &Fixture| f.ok().process().as_ref().unwrap().oom_score_adj();
        assert_eq!(adj(&f), None);
        f.resources().oom_score_adj = -998;
        assert_eq!(adj(&f), Some(-998));
        f.host_allows_negative_oom_score_adj = false;
        assert_eq!(adj(&f), Some(current.max(-998)));
        f.resources().oom_score_adj = 1000;
        assert_eq!(adj(&f), Some(1000));
        f.resources().oom_score_adj = 5000;
        assert!(f.invalid().contains("oom_score_adj"));
    }
}
