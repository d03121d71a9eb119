//! The daemon's TOML configuration: parsed strictly (unknown keys are errors), validated once at
//! start-up, and documented by `strata config default`, which prints `default.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Longest `state` path that leaves room for `/c/<64-hex id>/m.sock` in a unix socket path.
pub const MAX_STATE_PATH: usize = 107 - "/c//m.sock".len() - 64;

/// The commented default configuration, as printed by `strata config default`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub log: LogConfig,
    pub images: ImagesConfig,
    pub registry: RegistryConfig,
    pub runtime: RuntimeConfig,
    pub network: NetworkConfig,
    pub streaming: StreamingConfig,
}

/// `[network]`: pod networking through CNI plugins, configured as for kubelet with containerd.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Where CNI network configs are looked up (the first `*.conflist`, `*.conf` or `*.json`
    /// in lexical order that is valid wins).
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked up, in order (`CNI_PATH`).
    pub cni_bin_dirs: Vec<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// The streaming server behind the `Exec`, `Attach` and `PortForward` URLs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// Listen address. Loopback by default: kubelet runs on the node, and the URL's token is the
    /// only authentication.
    pub address: std::net::IpAddr,
    /// Listen port; 0 picks a free one at start-up.
    pub port: u16,
    /// TLS certificate chain and private key (PEM files), both or neither: with them the server
    /// speaks HTTPS and hands out `https://` URLs.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 0,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// cgroupfs parent of pods whose `cgroup_parent` is empty (kubelet always sets one).
    pub cgroup_parent: String,
    /// Runtime handlers (`RunPodSandboxRequest.runtime_handler`, a RuntimeClass's `handler`)
    /// whose containers run under an external OCI runtime. The default handler (`""` or
    /// [`DEFAULT_HANDLER`]) is always the built-in launcher.
    pub handlers: BTreeMap<String, HandlerConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cgroup_parent: "/strata".into(),
            handlers: BTreeMap::new(),
        }
    }
}

/// The name of the built-in launcher's handler (as is `""`).
pub const DEFAULT_HANDLER: &str = "strata";

/// `[runtime.handlers.NAME]`: an OCI runtime binary (runc) and its state directory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    /// The runtime binary, absolute (e.g. `/usr/sbin/runc`).
    pub runtime_path: PathBuf,
    /// The runtime's state directory (`runc --root`); default `<state>/oci/NAME`.
    #[serde(default)]
    pub runtime_root: Option<PathBuf>,
}

impl Config {
    /// The state directory (`--root`) of handler `name`'s OCI runtime.
    pub fn handler_root(&self, name: &str, handler: &HandlerConfig) -> PathBuf {
        handler
            .runtime_root
            .clone()
            .unwrap_or_else(|| self.state.join("oci").join(name))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    pub pinned: Vec<String>,
    pub max_concurrent_downloads: usize,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub credentials_file: PathBuf,
    pub insecure_hosts: Vec<String>,
    pub hosts: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Endpoints (`scheme://host[:port]`) tried in order before the host itself.
    pub mirrors: Vec<String>,
    /// When set, the only endpoint used for this host (no fallback).
    pub endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/strata"),
            state: PathBuf::from("/run/strata"),
            socket: PathBuf::from("/run/strata/strata.sock"),
            log: LogConfig::default(),
            images: ImagesConfig::default(),
            registry: RegistryConfig::default(),
            runtime: RuntimeConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            pinned: Vec::new(),
            max_concurrent_downloads: 3,
        }
    }
}

impl Config {
    /// Reads and validates a config file; `None` means the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        for (key, path) in [
            ("root", &self.root),
            ("state", &self.state),
            ("socket", &self.socket),
        ] {
            if !path.is_absolute() {
                return Err(invalid(key, "must be an absolute path"));
            }
        }
        // Monitor sockets live at `<state>/c/<64-hex id>/m.sock`; unix socket paths end at 107
        // bytes.
        if self.state.as_os_str().len() > MAX_STATE_PATH {
            return Err(ConfigError::Invalid {
                key: "state".into(),
                message: format!(
                    "path is too long for the monitors' unix sockets: at most {MAX_STATE_PATH} bytes"
                ),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                "expected error, warn, info, debug, trace or a tracing filter",
            ));
        }
        if !self.runtime.cgroup_parent.starts_with('/') || self.runtime.cgroup_parent.contains("..")
        {
            return Err(invalid(
                "runtime.cgroup_parent",
                "must be an absolute cgroup path without `..`",
            ));
        }
        for (name, handler) in &self.runtime.handlers {
            let key = |field: &str| format!("runtime.handlers.{name}.{field}");
            if name.is_empty() || name == DEFAULT_HANDLER {
                return Err(invalid(
                    &format!("runtime.handlers.{name}"),
                    "the default handler (\"\" or \"strata\") is the built-in launcher; \
                     choose another name",
                ));
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || name.starts_with('.')
            {
                return Err(invalid(
                    &format!("runtime.handlers.{name}"),
                    "a handler name may only hold letters, digits, `-`, `_` and `.`",
                ));
            }
            if !handler.runtime_path.is_absolute() {
                return Err(invalid(&key("runtime_path"), "must be an absolute path"));
            }
            if handler
                .runtime_root
                .as_ref()
                .is_some_and(|r| !r.is_absolute())
            {
                return Err(invalid(&key("runtime_root"), "must be an absolute path"));
            }
        }
        if !self.network.cni_conf_dir.is_absolute() {
            return Err(invalid("network.cni_conf_dir", "must be an absolute path"));
        }
        if self.network.cni_bin_dirs.is_empty()
            || self.network.cni_bin_dirs.iter().any(|d| !d.is_absolute())
        {
            return Err(invalid(
                "network.cni_bin_dirs",
                "must list at least one directory, each an absolute path",
            ));
        }
        let (cert, key) = (&self.streaming.tls_cert, &self.streaming.tls_key);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return Err(invalid(
                "streaming.tls_cert",
                "tls_cert and tls_key go together: set both for HTTPS, or neither",
            ));
        }
        for (key_name, path) in [("streaming.tls_cert", cert), ("streaming.tls_key", key)] {
            if !path.as_os_str().is_empty() && !path.is_absolute() {
                return Err(invalid(key_name, "must be an absolute path"));
            }
        }
        if self.images.max_concurrent_downloads == 0 {
            return Err(invalid(
                "images.max_concurrent_downloads",
                "must be at least 1",
            ));
        }
        for (host, cfg) in &self.registry.hosts {
            let key = |field: &str| format!("registry.hosts.\"{host}\".{field}");
            for url in cfg.mirrors.iter().chain(cfg.endpoint.iter()) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        key: key(if cfg.mirrors.contains(url) {
                            "mirrors"
                        } else {
                            "endpoint"
                        }),
                        message: format!("`{url}` must start with http:// or https://"),
                    });
                }
            }
            if cfg.endpoint.is_some() && !cfg.mirrors.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("endpoint"),
                    message: "set either endpoint (no fallback) or mirrors, not both".into(),
                });
            }
        }
        Ok(())
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state.join("strata.lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_default_parses_to_the_built_in_default() {
        assert_eq!(Config::parse(DEFAULT_TOML).unwrap(), Config::default());
    }

    #[test]
    fn streaming_section() {
        let cfg = Config::parse("[streaming]\naddress = \"::1\"\nport = 10010\n").unwrap();
        assert_eq!(
            cfg.streaming.address,
            "::1".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(cfg.streaming.port, 10010);
        let err = Config::parse("[streaming]\ntls_cert = \"/etc/c.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("streaming.tls_cert"), "{err}");
        let err =
            Config::parse("[streaming]\ntls_cert = \"c.pem\"\ntls_key = \"/k.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let both = "[streaming]\ntls_cert = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n";
        assert!(Config::parse(both).is_ok());
        assert!(Config::parse("[streaming]\naddress = \"localhost\"\n").is_err());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[images]\nmax_downloads = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_downloads"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[images]\nmax_concurrent_downloads = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("images.max_concurrent_downloads"),
            "{err}"
        );
        let err = Config::parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(err.to_string().contains("format"), "{err}");
        let err = Config::parse("root = \"relative\"\n").unwrap_err();
        assert!(err.to_string().contains("`root`"), "{err}");
    }

    #[test]
    fn runtime_handlers_parse_and_validate() {
        let cfg = Config::parse(
            "[runtime.handlers.runc]\nruntime_path = \"/usr/sbin/runc\"\n\
             [runtime.handlers.other]\nruntime_path = \"/bin/x\"\nruntime_root = \"/run/x\"\n",
        )
        .unwrap();
        let runc = &cfg.runtime.handlers["runc"];
        assert_eq!(runc.runtime_path, Path::new("/usr/sbin/runc"));
        assert_eq!(
            cfg.handler_root("runc", runc),
            Path::new("/run/strata/oci/runc")
        );
        let other = &cfg.runtime.handlers["other"];
        assert_eq!(cfg.handler_root("other", other), Path::new("/run/x"));
        for (toml, key) in [
            (
                "[runtime.handlers.strata]\nruntime_path = \"/usr/sbin/runc\"\n",
                "runtime.handlers.strata",
            ),
            (
                "[runtime.handlers.\"\"]\nruntime_path = \"/usr/sbin/runc\"\n",
                "runtime.handlers.",
            ),
            (
                "[runtime.handlers.runc]\nruntime_path = \"runc\"\n",
                "runtime.handlers.runc.runtime_path",
            ),
            (
                "[runtime.handlers.runc]\nruntime_path = \"/r\"\nruntime_root = \"rel\"\n",
                "runtime.handlers.runc.runtime_root",
            ),
            (
                "[runtime.handlers.\"a/b\"]\nruntime_path = \"/r\"\n",
                "runtime.handlers.a/b",
            ),
        ] {
            let err = Config::parse(toml).unwrap_err();
            assert!(
                err.to_string().contains(&format!("`{key}`")),
                "{toml}: {err}"
            );
        }
        let err = Config::parse("[runtime.handlers.runc]\nruntime_root = \"/r\"\n").unwrap_err();
        assert!(err.to_string().contains("runtime_path"), "{err}");
    }

    #[test]
    fn network_section_parses_and_validates() {
        let cfg =
            Config::parse("[network]\ncni_conf_dir = \"/x/net.d\"\ncni_bin_dirs = [\"/x/bin\"]\n")
                .unwrap();
        assert_eq!(cfg.network.cni_conf_dir, Path::new("/x/net.d"));
        assert_eq!(cfg.network.cni_bin_dirs, vec![PathBuf::from("/x/bin")]);
        for (toml, key) in [
            (
                "[network]\ncni_conf_dir = \"rel\"\n",
                "network.cni_conf_dir",
            ),
            ("[network]\ncni_bin_dirs = []\n", "network.cni_bin_dirs"),
            (
                "[network]\ncni_bin_dirs = [\"rel\"]\n",
                "network.cni_bin_dirs",
            ),
        ] {
            let err = Config::parse(toml).unwrap_err();
            assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn redirect_and_mirrors_parse() {
        let cfg = Config::parse(
            "[registry.hosts.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:5001\"]\n\
             [registry.hosts.\"registry.k8s.io\"]\nendpoint = \"http://127.0.0.1:5000\"\n",
        )
        .unwrap();
        assert_eq!(cfg.registry.hosts["docker.io"].mirrors.len(), 1);
        let err = Config::parse("[registry.hosts.\"x\"]\nendpoint = \"ftp://a\"\n").unwrap_err();
        assert!(
            err.to_string().contains("registry.hosts.\"x\".endpoint"),
            "{err}"
        );
    }
}
