//! The files a pod's containers share: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, and the
//! pod's `/dev/shm` (a size-limited tmpfs, so one pod cannot fill the node's memory through it).

use std::path::{Path, PathBuf};

use crate::cri::v1 as cri;

/// Kubernetes' default /dev/shm size (as containerd and CRI-O use).
const SHM_SIZE: &str = "65536k";

#[derive(Debug, thiserror::Error)]
pub enum PodFilesError {
    #[error("pod file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting the pod's /dev/shm at {path}: {source}")]
    Shm { path: PathBuf, source: nix::Error },
}

impl crate::error::Classify for PodFilesError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::Internal
    }
}

pub struct PodFiles {
    pub dir: PathBuf,
}

impl PodFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }

    /// Where the pod's network namespace is pinned (a bind mount), for CNI.
    pub fn netns(&self) -> PathBuf {
        self.dir.join("netns")
    }

    /// Puts the pod's IP with its hostname into `/etc/hosts` (instead of 127.0.1.1).
    pub fn add_pod_ip(&self, ip: &str) -> Result<(), PodFilesError> {
        let hostname =
            std::fs::read_to_string(self.hostname()).map_err(|source| PodFilesError::Io {
                path: self.hostname(),
                source,
            })?;
        write(&self.hosts(), &hosts_file(hostname.trim(), ip))
    }

    /// Writes the files and mounts the shm tmpfs (unless the pod uses the host's IPC namespace,
    /// whose /dev/shm it then shares).
    pub fn create(
        &self,
        config: &cri::PodSandboxConfig,
        host_ipc: bool,
    ) -> Result<(), PodFilesError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PodFilesError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let hostname = if config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        write(&self.hostname(), &format!("{hostname}\n"))?;
        write(&self.hosts(), &hosts_file(&hostname, "127.0.1.1"))?;
        let resolv = match &config.dns_config {
            Some(dns) => resolv_conf(dns),
            None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        write(&self.resolv_conf(), &resolv)?;
        if !host_ipc {
            let shm = self.shm();
            std::fs::create_dir_all(&shm).map_err(io(&shm))?;
            use nix::mount::{MsFlags, mount};
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={SHM_SIZE}").as_str()),
            )
            .map_err(|source| PodFilesError::Shm { path: shm, source })?;
        }
        Ok(())
    }

    /// Unmounts the shm tmpfs; idempotent.
    pub fn release(&self) -> Result<(), PodFilesError> {
        let shm = self.shm();
        match nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
            Err(source) => Err(PodFilesError::Shm { path: shm, source }),
        }
    }

    /// Removes everything; idempotent.
    pub fn remove(&self) -> Result<(), PodFilesError> {
        self.release()?;
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PodFilesError::Io {
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), PodFilesError> {
    std::fs::write(path, contents).map_err(|source| PodFilesError::Io {
        path: path.to_owned(),
        source,
    })
}

/// `ip` is the hostname's address: the pod's IP, or 127.0.1.1 while it has none.
fn hosts_file(hostname: &str, ip: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )
}

/// resolv.conf from the pod's DNS config (servers, searches, options), as kubelet asks.
pub fn resolv_conf(dns: &cri::DnsConfig) -> String {
    let mut out = String::new();
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_has_servers_searches_options() {
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "nameserver 10.0.0.10\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
    }
}
