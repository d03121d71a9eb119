//! Running one CNI plugin: its binary with the `CNI_*` environment, the network config on
//! stdin, the result (or a CNI error object) on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

/// The `CNI_*` parameters of one call, shared by every plugin of a list.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS` pairs.
    pub args: &'a [(String, String)],
    pub bin_dirs: &'a [PathBuf],
}

/// Runs `plugin` with `stdin`; returns its stdout parsed as JSON (`Value::Null` when it printed
/// nothing, as DEL and CHECK do).
pub async fn exec(plugin: &Path, args: &Args<'_>, stdin: &[u8]) -> Result<Value, String> {
    let cni_args: Vec<String> = args.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = std::env::join_paths(args.bin_dirs).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(plugin)
        .env("CNI_COMMAND", args.command)
        .env("CNI_CONTAINERID", args.container_id)
        .env("CNI_NETNS", args.netns)
        .env("CNI_IFNAME", args.ifname)
        .env("CNI_ARGS", cni_args.join(";"))
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {}: {e}", plugin.display()))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading its config makes this fail with EPIPE; its exit
        // status and output then say what went wrong.
        let _ = input.write_all(stdin).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for {}: {e}", plugin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed = if stdout.trim().is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_str::<Value>(&stdout)
    };
    if out.status.success() {
        return parsed.map_err(|e| {
            format!(
                "{} {}: output is not JSON ({e}): {}",
                plugin.display(),
                args.command,
                stdout.trim()
            )
        });
    }
    // The spec's error object: {"code": N, "msg": "...", "details": "..."}.
    let detail = match parsed {
        Ok(Value::Object(err)) if err.contains_key("msg") => {
            let msg = err.get("msg").and_then(Value::as_str).unwrap_or_default();
            let code = err.get("code").and_then(Value::as_u64).unwrap_or_default();
            match err.get("details").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{msg}: {d} (CNI error {code})"),
                _ => format!("{msg} (CNI error {code})"),
            }
        }
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            format!("{} {}", stdout.trim(), stderr.trim())
                .trim()
                .to_owned()
        }
    };
    Err(format!(
        "plugin {} {} failed ({}): {detail}",
        plugin.display(),
        args.command,
        out.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("plugin");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn args<'a>(pairs: &'a [(String, String)], dirs: &'a [PathBuf]) -> Args<'a> {
        Args {
            command: "ADD",
            container_id: "cid",
            netns: "/proc/1/ns/net",
            ifname: "eth0",
            args: pairs,
            bin_dirs: dirs,
        }
    }

    #[tokio::test]
    async fn environment_and_stdin_reach_the_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            r#"in=$(cat); printf '{"cmd":"%s","id":"%s","if":"%s","args":"%s","path":"%s","in":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$in""#,
        );
        let pairs = vec![
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("K8S_POD_NAME".to_owned(), "p".to_owned()),
        ];
        let dirs = vec![PathBuf::from("/a"), PathBuf::from("/b")];
        let out = exec(&p, &args(&pairs, &dirs), br#"{"x":1}"#).await.unwrap();
        assert_eq!(out["cmd"], "ADD");
        assert_eq!(out["id"], "cid");
        assert_eq!(out["if"], "eth0");
        assert_eq!(out["args"], "IgnoreUnknown=1;K8S_POD_NAME=p");
        assert_eq!(out["path"], "/a:/b");
        assert_eq!(out["in"]["x"], 1);
    }

    #[tokio::test]
    async fn cni_error_objects_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"no luck","details":"really"}'; exit 1"#,
        );
        let err = exec(&p, &args(&[], &[]), b"{}").await.unwrap_err();
        assert!(err.contains("no luck: really (CNI error 11)"), "{err}");
        let p = script(dir.path(), "echo oops >&2; exit 3");
        let err = exec(&p, &args(&[], &[]), b"{}").await.unwrap_err();
        assert!(err.contains("oops"), "{err}");
    }
}
