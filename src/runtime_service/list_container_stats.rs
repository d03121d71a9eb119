//! `ListContainerStats`: running containers, filtered by id and pod id (or unique prefixes,
//! like `ListContainers`) and labels.

use std::sync::Arc;

use tonic::Status;

use crate::cri::v1 as cri;
use crate::runtime::labels_match;
use crate::server::Context;
use crate::server::status::status;
use crate::stats::{Collector, to_cri};
use crate::store::{ContainerRecord, ContainerState};

/// Runs `f` (which reads cgroupfs and walks writable layers) off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("stats task: {e}")))?
}

/// Whether a container is one `ListContainerStats` reports under `filter`.
pub(super) fn selected(c: &ContainerRecord, filter: &cri::ContainerStatsFilter) -> bool {
    c.state == ContainerState::Running
        && c.id.starts_with(&filter.id)
        && c.pod_id.starts_with(&filter.pod_sandbox_id)
        && labels_match(&c.container_config().labels, &filter.label_selector)
}

pub async fn list_container_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse, Status> {
    let filter = req.filter.unwrap_or_default();
    let read = ctx.store.read().map_err(status)?;
    let all = read.containers().map_err(status)?;
    let pods = read.pods().map_err(status)?;
    drop(read);
    let chosen: Vec<ContainerRecord> = all
        .iter()
        .filter(|c| selected(c, &filter))
        .cloned()
        .collect();
    let (ctx, stats) = (ctx.clone(), stats.clone());
    let out = blocking(move || {
        stats.forget_others(&ctx.runtime, &all, &pods);
        Ok(chosen
            .into_iter()
            .filter_map(|c| {
                let id = c.id.clone();
                match stats.container(&ctx.runtime, c) {
                    Ok(s) => Some(to_cri::container_stats(&s)),
                    Err(e) => {
                        // Removed meanwhile, most likely; the others are still worth reporting.
                        tracing::warn!(container = %id, error = %e, "container stats");
                        None
                    }
                }
            })
            .collect())
    })
    .await?;
    Ok(cri::ListContainerStatsResponse { stats: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn record(id: &str, pod: &str, state: ContainerState, label: &str) -> ContainerRecord {
        let config = cri::ContainerConfig {
            labels: [("app".to_owned(), label.to_owned())].into(),
            ..Default::default()
        };
        ContainerRecord {
            id: id.into(),
            pod_id: pod.into(),
            config: config.encode_to_vec(),
            image_id: String::new(),
            image_ref: String::new(),
            layers: vec![],
            state,
            created_at: 0,
            started_at: 0,
            pid: 0,
            exit: None,
            log_path: String::new(),
            cgroup_path: String::new(),
            user: None,
        }
    }

    #[test]
    fn filters() {
        let a = record("abc1", "p1", ContainerState::Running, "x");
        let b = record("abd2", "p2", ContainerState::Running, "y");
        let exited = record("abe3", "p1", ContainerState::Exited, "x");
        let f = |id: &str, pod: &str, label: Option<&str>| cri::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            label_selector: label
                .map(|l| [("app".to_owned(), l.to_owned())].into())
                .unwrap_or_default(),
        };
        let pick = |filter: &cri::ContainerStatsFilter| -> Vec<String> {
            [&a, &b, &exited]
                .into_iter()
                .filter(|c| selected(c, filter))
                .map(|c| c.id.clone())
                .collect()
        };
        assert_eq!(pick(&f("", "", None)), ["abc1", "abd2"]);
        assert_eq!(pick(&f("abc", "", None)), ["abc1"]);
        assert_eq!(pick(&f("", "p2", None)), ["abd2"]);
        assert_eq!(pick(&f("", "", Some("x"))), ["abc1"]);
        assert_eq!(pick(&f("ab", "p1", Some("y"))), Vec::<String>::new());
    }
}
