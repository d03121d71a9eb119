//! The template mount namespace the monitors clone container inits from (see
//! `launcher/template.rs` for why): made once, on the first container, by the
//! `strata mntns-template` helper and pinned at `<state>/mntns`, where a later daemon finds it.
//! If it cannot be made, containers are cloned from the host's mount namespace as before (and
//! the daemon log says why).

use std::path::PathBuf;

use super::Runtime;

impl Runtime {
    /// The pinned template, made on first use; `None` when it could not be made.
    pub(super) async fn clone_mntns(&self) -> Option<PathBuf> {
        self.clone_mntns
            .get_or_init(|| async {
                let pin = self.state_dir.join("mntns");
                if crate::launcher::mntns_template_pinned(&pin) {
                    return Some(pin);
                }
                let out = tokio::process::Command::new(&self.binary)
                    .arg("mntns-template")
                    .arg("--pin")
                    .arg(&pin)
                    .arg("--keep")
                    .arg(&self.root_dir)
                    .arg("--keep")
                    .arg(&self.state_dir)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await;
                match out {
                    Ok(out) if out.status.success() => Some(pin),
                    Ok(out) => {
                        tracing::warn!(
                            error = %String::from_utf8_lossy(&out.stderr).trim(),
                            "no template mount namespace: containers clone from the host's"
                        );
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no template mount namespace: containers clone from the host's");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}
