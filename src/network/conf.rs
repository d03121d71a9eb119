//! CNI network config discovery, as libcni and kubelet do it: the files of the config directory
//! ending in `.conflist`, `.conf` or `.json`, in lexical order; the first one that parses, names
//! its network and whose plugins are all installed is the pod network. A single-plugin `.conf`
//! is wrapped into a list of one.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A network config list, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    /// The plugin configs, in ADD order (each holds at least `type`).
    pub plugins: Vec<Map<String, Value>>,
    /// The list's `disableCheck`.
    pub disable_check: bool,
    /// The file it came from (for messages).
    pub file: PathBuf,
}

/// Why no pod network is usable, for NetworkReady's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("no usable CNI network config in {dir}: {reasons}")]
    NoneValid { dir: PathBuf, reasons: String },
}

/// The pod network: the first valid config of `conf_dir`.
pub fn load(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkList, ConfError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("conflist" | "conf" | "json")
                    ) && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        return Err(ConfError::NoConfig {
            dir: conf_dir.to_owned(),
        });
    }
    files.sort();
    let mut reasons = Vec::new();
    for file in files {
        match load_file(&file).and_then(|list| validate(&list, bin_dirs).map(|()| list)) {
            Ok(list) => return Ok(list),
            Err(reason) => reasons.push(format!("{}: {reason}", file.display())),
        }
    }
    Err(ConfError::NoneValid {
        dir: conf_dir.to_owned(),
        reasons: reasons.join("; "),
    })
}

fn load_file(file: &Path) -> Result<NetworkList, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("reading: {e}"))?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err("not a JSON object".into());
    };
    let is_list = file.extension().and_then(|e| e.to_str()) == Some("conflist");
    parse(doc, is_list, file)
}

/// A config list from its JSON (`is_list`), or a single plugin config wrapped into one.
pub fn parse(
    mut doc: Map<String, Value>,
    is_list: bool,
    file: &Path,
) -> Result<NetworkList, String> {
    let text = |doc: &Map<String, Value>, key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let name = text(&doc, "name");
    if name.is_empty() {
        return Err("no network `name`".into());
    }
    let mut cni_version = text(&doc, "cniVersion");
    if cni_version.is_empty() {
        // libcni's default for configs that name none.
        cni_version = "0.1.0".into();
    }
    let disable_check = doc.get("disableCheck").and_then(Value::as_bool) == Some(true);
    let plugins = if is_list {
        let Some(Value::Array(plugins)) = doc.remove("plugins") else {
            return Err("a .conflist needs a `plugins` array".into());
        };
        plugins
            .into_iter()
            .map(|p| match p {
                Value::Object(p) => Ok(p),
                _ => Err("a plugin config is not a JSON object".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![doc]
    };
    if plugins.is_empty() {
        return Err("the `plugins` list is empty".into());
    }
    Ok(NetworkList {
        name,
        cni_version,
        plugins,
        disable_check,
        file: file.to_owned(),
    })
}

/// Every plugin (and IPAM plugin) named by the list is installed in one of `bin_dirs`.
pub fn validate(list: &NetworkList, bin_dirs: &[PathBuf]) -> Result<(), String> {
    for plugin in &list.plugins {
        let kind = plugin_type(plugin)?;
        find_plugin(kind, bin_dirs)?;
        if let Some(ipam) = plugin.get("ipam").and_then(Value::as_object)
            && let Some(ipam_type) = ipam.get("type").and_then(Value::as_str)
        {
            find_plugin(ipam_type, bin_dirs)?;
        }
    }
    Ok(())
}

/// A plugin config's `type`: its binary's file name.
pub fn plugin_type(plugin: &Map<String, Value>) -> Result<&str, String> {
    match plugin.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => Ok(t),
        Some(t) => Err(format!("invalid plugin type `{t}`")),
        None => Err("a plugin config has no `type`".into()),
    }
}

/// The executable of plugin `kind` in the first of `bin_dirs` that holds it.
pub fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
            format!("CNI plugin `{kind}` not found in {}", dirs.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn plugin_dir(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            let p = dir.path().join(n);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    #[test]
    fn first_valid_file_in_lexical_order_wins_and_conf_is_wrapped() {
        let bin = plugin_dir(&["bridge", "host-local", "portmap"]);
        let conf = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(conf.path().join(name), text).unwrap();
        write("05-broken.conflist", "{not json");
        write(
            "10-missing.conflist",
            r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"flannel"}]}"#,
        );
        write(
            "20-net.conf",
            r#"{"cniVersion":"0.4.0","name":"net","type":"bridge","ipam":{"type":"host-local"}}"#,
        );
        write(
            "30-later.conflist",
            r#"{"cniVersion":"1.0.0","name":"later","plugins":[{"type":"portmap"}]}"#,
        );
        write("README", "not a config");
        let list = load(conf.path(), &[bin.path().to_owned()]).unwrap();
        assert_eq!(list.name, "net");
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["type"], "bridge");
    }

    #[test]
    fn missing_plugins_and_empty_dirs_are_explained() {
        let bin = plugin_dir(&["bridge"]);
        let conf = tempfile::tempdir().unwrap();
        let err = load(conf.path(), &[bin.path().to_owned()]).unwrap_err();
        assert!(matches!(err, ConfError::NoConfig { .. }), "{err}");
        std::fs::write(
            conf.path().join("10.conflist"),
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"host-local"}}]}"#,
        )
        .unwrap();
        let err = load(conf.path(), &[bin.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`host-local` not found"), "{err}");
    }

    #[test]
    fn invalid_lists_are_refused() {
        let f = Path::new("x.conflist");
        let obj = |s: &str| match serde_json::from_str(s).unwrap() {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        assert!(parse(obj(r#"{"plugins":[{"type":"a"}]}"#), true, f).is_err());
        assert!(parse(obj(r#"{"name":"n","plugins":[]}"#), true, f).is_err());
        assert!(parse(obj(r#"{"name":"n"}"#), true, f).is_err());
        let list = parse(obj(r#"{"name":"n","plugins":[{"type":"../x"}]}"#), true, f).unwrap();
        assert!(
            validate(&list, &[])
                .unwrap_err()
                .contains("invalid plugin type")
        );
    }
}
