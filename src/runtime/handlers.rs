//! Runtime handlers: the default one (`""` or `"strata"`: the built-in launcher) and the
//! configured OCI runtimes (`[runtime.handlers.NAME]`), with what each runtime supports.
//!
//! What a runtime supports comes from `RUNTIME features` (runc ≥ 1.1; containerd asks the same
//! way): its `mountOptions` decide whether it applies recursive mount attributes (`rro`...),
//! which both the `Status` feature flags and the spec adaptation ([`adapt_spec`]) use. A
//! runtime without a `features` command is assumed to support none of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::{Config, DEFAULT_HANDLER};
use crate::monitor::oci_runtime::OciRuntimeConfig;

/// A configured OCI runtime handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciHandler {
    pub name: String,
    pub runtime_path: PathBuf,
    /// `--root` of the runtime.
    pub runtime_root: PathBuf,
    /// The mount options the runtime knows (`None`: it could not say).
    pub mount_options: Option<BTreeSet<String>>,
}

impl OciHandler {
    /// Whether the runtime applies `rro` (recursive read-only) mounts.
    pub fn recursive_read_only_mounts(&self) -> bool {
        self.mount_options
            .as_ref()
            .is_some_and(|o| o.contains("rro"))
    }

    /// What the monitor of a container with the bundle directory `bundle` needs.
    pub fn monitor_config(&self, bundle: PathBuf) -> OciRuntimeConfig {
        OciRuntimeConfig {
            runtime_path: self.runtime_path.clone(),
            runtime_root: self.runtime_root.clone(),
            bundle,
        }
    }
}

/// Whether `name` is the built-in launcher's handler.
pub fn is_default(name: &str) -> bool {
    name.is_empty() || name == DEFAULT_HANDLER
}

/// The configured handlers, their runtimes asked for their features (a runtime that cannot be
/// run is logged; its containers fail to create with the runtime's error).
pub fn probe(config: &Config) -> BTreeMap<String, OciHandler> {
    config
        .runtime
        .handlers
        .iter()
        .map(|(name, h)| {
            let mount_options = match features(&h.runtime_path) {
                Ok(options) => Some(options),
                Err(e) => {
                    tracing::warn!(
                        handler = %name,
                        runtime = %h.runtime_path.display(),
                        error = %e,
                        "cannot ask the OCI runtime for its features; assuming no recursive mount options"
                    );
                    None
                }
            };
            let handler = OciHandler {
                name: name.clone(),
                runtime_path: h.runtime_path.clone(),
                runtime_root: config.handler_root(name, h),
                mount_options,
            };
            tracing::info!(
                handler = %name,
                runtime = %handler.runtime_path.display(),
                root = %handler.runtime_root.display(),
                recursive_read_only_mounts = handler.recursive_read_only_mounts(),
                "OCI runtime handler"
            );
            (name.clone(), handler)
        })
        .collect()
}

/// `RUNTIME features` -> its `mountOptions`.
fn features(runtime: &std::path::Path) -> Result<BTreeSet<String>, String> {
    let out = std::process::Command::new(runtime)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`features` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_mount_options(&out.stdout)
}

fn parse_mount_options(json: &[u8]) -> Result<BTreeSet<String>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("`features` output: {e}"))?;
    Ok(doc["mountOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(str::to_owned))
        .collect())
}

/// Recursive mount attributes (mount_setattr with AT_RECURSIVE) and the plain option each falls
/// back to (`None`: the default, dropped).
const RECURSIVE: &[(&str, Option<&str>)] = &[
    ("rro", Some("ro")),
    ("rrw", Some("rw")),
    ("rnosuid", Some("nosuid")),
    ("rsuid", Some("suid")),
    ("rnodev", Some("nodev")),
    ("rdev", Some("dev")),
    ("rnoexec", Some("noexec")),
    ("rexec", Some("exec")),
    ("rnodiratime", Some("nodiratime")),
    ("rdiratime", Some("diratime")),
    ("rrelatime", Some("relatime")),
    ("rnorelatime", Some("norelatime")),
    ("rnoatime", Some("noatime")),
    ("ratime", Some("atime")),
    ("rstrictatime", Some("strictatime")),
    ("rnostrictatime", Some("nostrictatime")),
    ("rnosymfollow", None),
    ("rsymfollow", None),
];

/// Adapts a spec strata generated to what the runtime of `handler` accepts: recursive mount
/// attributes it does not know become their plain (top-mount only) form. Returns a warning per
/// change (the caller logs them).
pub fn adapt_spec(spec: &mut oci_spec::runtime::Spec, handler: &OciHandler) -> Vec<String> {
    let known = |o: &str| {
        handler
            .mount_options
            .as_ref()
            .is_some_and(|known| known.contains(o))
    };
    let mut warnings = Vec::new();
    let Some(mounts) = spec.mounts().clone() else {
        return warnings;
    };
    let mounts = mounts
        .into_iter()
        .map(|mut m| {
            let Some(options) = m.options().clone() else {
                return m;
            };
            let mut out = Vec::with_capacity(options.len());
            for o in options {
                match RECURSIVE.iter().find(|(r, _)| *r == o) {
                    Some((r, plain)) if !known(r) => {
                        warnings.push(format!(
                            "mount {}: the {} runtime does not support `{r}`; using {}",
                            m.destination().display(),
                            handler.name,
                            plain.map_or("nothing".to_owned(), |p| format!("`{p}`")),
                        ));
                        out.extend(plain.map(str::to_owned));
                    }
                    _ => out.push(o),
                }
            }
            m.set_options(Some(out));
            m
        })
        .collect();
    spec.set_mounts(Some(mounts));
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(options: Option<&[&str]>) -> OciHandler {
        OciHandler {
            name: "runc".into(),
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/strata/oci/runc".into(),
            mount_options: options.map(|o| o.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn spec_with_mount(options: &[&str]) -> oci_spec::runtime::Spec {
        let mut spec = oci_spec::runtime::Spec::default();
        let m = oci_spec::runtime::MountBuilder::default()
            .destination("/sys")
            .typ("bind")
            .source("/sys")
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap();
        spec.set_mounts(Some(vec![m]));
        spec
    }

    fn options(spec: &oci_spec::runtime::Spec) -> Vec<String> {
        spec.mounts().as_ref().unwrap()[0]
            .options()
            .clone()
            .unwrap()
    }

    #[test]
    fn unsupported_recursive_options_become_plain() {
        let mut spec = spec_with_mount(&["rbind", "rro", "nosuid", "rnosymfollow"]);
        let warnings = adapt_spec(&mut spec, &handler(Some(&["rbind", "ro", "nosuid"])));
        assert_eq!(options(&spec), ["rbind", "ro", "nosuid"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`rro`"), "{warnings:?}");

        // Unknown features: nothing recursive is trusted.
        let mut spec = spec_with_mount(&["rbind", "rro"]);
        adapt_spec(&mut spec, &handler(None));
        assert_eq!(options(&spec), ["rbind", "ro"]);
        assert!(!handler(None).recursive_read_only_mounts());
    }

    #[test]
    fn supported_options_are_kept() {
        let mut spec = spec_with_mount(&["rbind", "rprivate", "rro", "rw"]);
        let h = handler(Some(&["rbind", "rprivate", "rro", "rw"]));
        assert!(adapt_spec(&mut spec, &h).is_empty());
        assert_eq!(options(&spec), ["rbind", "rprivate", "rro", "rw"]);
        assert!(h.recursive_read_only_mounts());
    }

    #[test]
    fn features_output_parses() {
        let set = parse_mount_options(br#"{"ociVersionMin":"1.0.0","mountOptions":["ro","rro"]}"#)
            .unwrap();
        assert!(set.contains("rro") && set.contains("ro"));
        assert!(parse_mount_options(b"{}").unwrap().is_empty());
        assert!(parse_mount_options(b"nope").is_err());
    }

    #[test]
    fn default_handler_names() {
        assert!(is_default(""));
        assert!(is_default("strata"));
        assert!(!is_default("runc"));
    }
}
