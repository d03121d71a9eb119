//! Pod networking through CNI plugins (the CNI spec, as libcni runs it for kubelet's runtimes):
//! the pod network is found in `cni_conf_dir` ([`conf`]), its plugins are run from
//! `cni_bin_dirs` ([`invoke`]) — ADD in list order with each result chained as the next one's
//! `prevResult`, DEL in reverse order with the ADD result as `prevResult` — and the pod's IPs
//! come from the result ([`result`]). What DEL needs later (the config used, the arguments, the
//! result) is the [`Attachment`], which the caller keeps with the pod's record, so teardown works
//! after a daemon restart and after the config directory changed.

pub mod capabilities;
pub mod conf;
pub mod invoke;
pub mod netns;
pub mod result;

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::cri::v1 as cri;
use crate::error::{Classify, ErrorKind};

pub use conf::{ConfError, NetworkList};

/// The interface name of the pod's network inside its namespace (kubelet's choice).
pub const IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("pod network is not ready: {0}")]
    NotReady(#[from] ConfError),
    #[error("CNI network {network}: {message}")]
    Plugin { network: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("invalid pod CIDR `{0}`")]
    InvalidCidr(String),
}

impl Classify for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotReady(_) => ErrorKind::FailedPrecondition,
            NetworkError::InvalidCidr(_) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }
}

/// What it takes to tear a pod's network down (and to CHECK it): kept in the pod's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network config list ADD ran with.
    pub network: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
    #[serde(default)]
    pub disable_check: bool,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: Vec<(String, String)>,
    /// `runtimeConfig` capability arguments.
    pub capabilities: Map<String, Value>,
    /// The ADD result (the last plugin's).
    pub result: Value,
}

impl Attachment {
    pub fn ips(&self) -> Vec<String> {
        result::pod_ips(&self.result)
    }
}

pub struct Network {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    /// The node's pod CIDR(s) from UpdateRuntimeConfig, comma-separated ("" when unknown).
    pod_cidr: RwLock<String>,
    pod_cidr_file: PathBuf,
}

impl Network {
    pub fn new(config: &Config) -> Self {
        let pod_cidr_file = config.root.join("network").join("pod-cidr");
        let pod_cidr = std::fs::read_to_string(&pod_cidr_file)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self {
            conf_dir: config.network.cni_conf_dir.clone(),
            bin_dirs: config.network.cni_bin_dirs.clone(),
            pod_cidr: RwLock::new(pod_cidr),
            pod_cidr_file,
        }
    }

    /// The pod network, or why there is none usable (NetworkReady's message).
    pub fn ready(&self) -> Result<NetworkList, ConfError> {
        conf::load(&self.conf_dir, &self.bin_dirs)
    }

    pub fn pod_cidr(&self) -> String {
        self.pod_cidr
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Stores the node's pod CIDR(s) (durably: it is handed to plugins after a restart too).
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<(), NetworkError> {
        let cidr = cidr.trim();
        for part in cidr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let valid = part.split_once('/').is_some_and(|(ip, len)| {
                let ip: Option<std::net::IpAddr> = ip.parse().ok();
                let max = if ip.is_some_and(|ip| ip.is_ipv6()) {
                    128
                } else {
                    32
                };
                ip.is_some() && len.parse::<u8>().is_ok_and(|l| l <= max)
            });
            if !valid {
                return Err(NetworkError::InvalidCidr(cidr.to_owned()));
            }
        }
        if self.pod_cidr() == cidr {
            return Ok(());
        }
        write_atomic(&self.pod_cidr_file, cidr.as_bytes()).map_err(|source| NetworkError::Io {
            context: format!("saving the pod CIDR in {}", self.pod_cidr_file.display()),
            source,
        })?;
        match self.pod_cidr.write() {
            Ok(mut c) => *c = cidr.to_owned(),
            Err(p) => *p.into_inner() = cidr.to_owned(),
        }
        tracing::info!(pod_cidr = cidr, "pod CIDR updated");
        Ok(())
    }

    /// What CNI ADD of the pod (sandbox `id`, network namespace at `netns`) will run with,
    /// before it runs: recorded first, so DEL can undo an ADD the daemon did not live to record.
    pub fn attachment(
        &self,
        id: &str,
        netns: &Path,
        config: &cri::PodSandboxConfig,
    ) -> Result<Attachment, NetworkError> {
        let list = self.ready()?;
        let meta = config.metadata.clone().unwrap_or_default();
        let args = vec![
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("K8S_POD_NAMESPACE".to_owned(), meta.namespace),
            ("K8S_POD_NAME".to_owned(), meta.name),
            ("K8S_POD_INFRA_CONTAINER_ID".to_owned(), id.to_owned()),
            ("K8S_POD_UID".to_owned(), meta.uid),
        ];
        Ok(Attachment {
            network: list.name.clone(),
            cni_version: list.cni_version.clone(),
            plugins: list.plugins.clone(),
            disable_check: list.disable_check,
            container_id: id.to_owned(),
            netns: netns.display().to_string(),
            ifname: IFNAME.to_owned(),
            args,
            capabilities: capabilities::of_pod(config, &self.pod_cidr()),
            result: Value::Null,
        })
    }

    /// CNI ADD of a prepared [`Self::attachment`]; returns it with the result. After a failure
    /// the caller runs [`Self::del`] with the same attachment: it is the one that keeps a
    /// record to retry DEL from when that fails too.
    pub async fn add(&self, mut attachment: Attachment) -> Result<Attachment, NetworkError> {
        let mut prev = Value::Null;
        for plugin in &attachment.plugins {
            prev = self
                .run(&attachment, plugin, "ADD", &prev)
                .await
                .map_err(|message| NetworkError::Plugin {
                    network: attachment.network.clone(),
                    message,
                })?;
        }
        attachment.result = prev;
        Ok(attachment)
    }

    /// CNI DEL, plugins in reverse order. Every plugin is run even when one fails (so one broken
    /// plugin does not leak what the others hold); the failures are returned together.
    pub async fn del(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        // prevResult on DEL exists from CNI 0.4.0 on.
        let prev = if version_at_least(&attachment.cni_version, (0, 4, 0)) {
            attachment.result.clone()
        } else {
            Value::Null
        };
        let mut failures = Vec::new();
        for plugin in attachment.plugins.iter().rev() {
            if let Err(e) = self.run(attachment, plugin, "DEL", &prev).await {
                failures.push(e);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NetworkError::Plugin {
                network: attachment.network.clone(),
                message: failures.join("; "),
            })
        }
    }

    /// CNI CHECK (0.4.0 and later, unless the list disables it): whether the pod's network is
    /// still as ADD left it.
    pub async fn check(&self, attachment: &Attachment) -> Result<(), NetworkError> {
        if attachment.disable_check
            || !version_at_least(&attachment.cni_version, (0, 4, 0))
            || attachment.result.is_null()
        {
            return Ok(());
        }
        for plugin in &attachment.plugins {
            self.run(attachment, plugin, "CHECK", &attachment.result)
                .await
                .map_err(|message| NetworkError::Plugin {
                    network: attachment.network.clone(),
                    message,
                })?;
        }
        Ok(())
    }

    async fn run(
        &self,
        attachment: &Attachment,
        plugin: &Map<String, Value>,
        command: &str,
        prev: &Value,
    ) -> Result<Value, String> {
        let kind = conf::plugin_type(plugin)?;
        let binary = conf::find_plugin(kind, &self.bin_dirs)?;
        let stdin = plugin_stdin(attachment, plugin, prev);
        let args = invoke::Args {
            command,
            container_id: &attachment.container_id,
            netns: &attachment.netns,
            ifname: &attachment.ifname,
            args: &attachment.args,
            bin_dirs: &self.bin_dirs,
        };
        let started = std::time::Instant::now();
        let out = invoke::exec(&binary, &args, stdin.to_string().as_bytes()).await;
        tracing::debug!(plugin = kind, command, elapsed = ?started.elapsed(), ok = out.is_ok(), "CNI plugin");
        out
    }
}

/// What one plugin reads on stdin (libcni's `buildOneConfig`): its own config with the list's
/// `name` and `cniVersion`, the previous result, and the capability arguments it declares.
fn plugin_stdin(attachment: &Attachment, plugin: &Map<String, Value>, prev: &Value) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(attachment.network.clone()));
    conf.insert(
        "cniVersion".into(),
        Value::String(attachment.cni_version.clone()),
    );
    if !prev.is_null() {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime_config = capabilities::for_plugin(plugin, &attachment.capabilities);
    if !runtime_config.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(conf)
}

/// `version` (`a.b.c`) >= `min`; unparsable versions count as old.
fn version_at_least(version: &str, min: (u64, u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    let mut next = || parts.next().flatten();
    match (next(), next()) {
        (Some(a), Some(b)) => (a, b, next().unwrap_or(0)) >= min,
        _ => false,
    }
}

/// Writes `path` so that a crash leaves the old or the new content: temp file, fsync, rename,
/// fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attachment(version: &str) -> Attachment {
        Attachment {
            network: "net".into(),
            cni_version: version.into(),
            plugins: vec![],
            disable_check: false,
            container_id: "c".into(),
            netns: "/x".into(),
            ifname: IFNAME.into(),
            args: vec![],
            capabilities: json!({"portMappings": [{"hostPort": 1}]})
                .as_object()
                .cloned()
                .unwrap(),
            result: Value::Null,
        }
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities() {
        let a = attachment("1.0.0");
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let conf = plugin_stdin(&a, plugin.as_object().unwrap(), &prev);
        assert_eq!(conf["name"], "net");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["prevResult"], prev);
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        let bridge = json!({"type": "bridge"});
        let conf = plugin_stdin(&a, bridge.as_object().unwrap(), &Value::Null);
        assert!(conf.get("prevResult").is_none() && conf.get("runtimeConfig").is_none());
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("1.0.0", (0, 4, 0)));
        assert!(version_at_least("0.4.0", (0, 4, 0)));
        assert!(!version_at_least("0.3.1", (0, 4, 0)));
        assert!(!version_at_least("junk", (0, 4, 0)));
    }

    #[test]
    fn pod_cidr_is_validated_and_persisted() {
        let root = tempfile::tempdir().unwrap();
        let config = Config {
            root: root.path().to_owned(),
            ..Default::default()
        };
        let net = Network::new(&config);
        assert_eq!(net.pod_cidr(), "");
        assert!(net.set_pod_cidr("10.0.0.0/33").is_err());
        assert!(net.set_pod_cidr("banana").is_err());
        net.set_pod_cidr("10.244.1.0/24,fd00::/64").unwrap();
        assert_eq!(Network::new(&config).pod_cidr(), "10.244.1.0/24,fd00::/64");
    }
}
