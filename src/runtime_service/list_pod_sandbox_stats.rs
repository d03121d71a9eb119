//! `ListPodSandboxStats`: ready pods, filtered by id (or prefix) and labels.

use std::sync::Arc;

use tonic::Status;

use crate::cri::v1 as cri;
use crate::runtime::labels_match;
use crate::server::Context;
use crate::server::status::status;
use crate::stats::{Collector, PodSample, to_cri};
use crate::store::{PodRecord, PodState};

/// Whether a pod is one `ListPodSandboxStats` reports under `filter`.
fn selected(p: &PodRecord, filter: &cri::PodSandboxStatsFilter) -> bool {
    p.state == PodState::Ready
        && p.id.starts_with(&filter.id)
        && labels_match(&p.sandbox_config().labels, &filter.label_selector)
}

/// Samples every ready pod `keep` accepts; a pod that cannot be read (stopped meanwhile) is
/// logged and left out.
pub(super) async fn sample_ready_pods(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    keep: impl Fn(&PodRecord) -> bool,
) -> Result<Vec<PodSample>, Status> {
    let read = ctx.store.read().map_err(status)?;
    let all_pods = read.pods().map_err(status)?;
    let containers = read.containers().map_err(status)?;
    drop(read);
    let pods: Vec<PodRecord> = all_pods
        .iter()
        .filter(|p| p.state == PodState::Ready && keep(p))
        .cloned()
        .collect();
    let (ctx, stats) = (ctx.clone(), stats.clone());
    super::list_container_stats::blocking(move || {
        stats.forget_others(&ctx.runtime, &containers, &all_pods);
        Ok(pods
            .into_iter()
            .filter_map(|p| {
                let id = p.id.clone();
                super::pod_sandbox_stats::sample_pod(&ctx, &stats, p, &containers)
                    .inspect_err(|e| tracing::warn!(pod = %id, error = %e, "pod stats"))
                    .ok()
            })
            .collect())
    })
    .await
}

pub async fn list_pod_sandbox_stats(
    ctx: &Arc<Context>,
    stats: &Arc<Collector>,
    req: cri::ListPodSandboxStatsRequest,
) -> Result<cri::ListPodSandboxStatsResponse, Status> {
    let filter = req.filter.unwrap_or_default();
    let samples = sample_ready_pods(ctx, stats, |p| selected(p, &filter)).await?;
    Ok(cri::ListPodSandboxStatsResponse {
        stats: samples.iter().map(to_cri::pod_stats).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn pod(id: &str, state: PodState, label: &str) -> PodRecord {
        let config = cri::PodSandboxConfig {
            labels: [("tier".to_owned(), label.to_owned())].into(),
            ..Default::default()
        };
        PodRecord {
            id: id.into(),
            config: config.encode_to_vec(),
            state,
            created_at: 0,
            runtime_handler: String::new(),
            init_pid: 0,
            init_start_time: 0,
            netns_path: String::new(),
            ips: vec![],
            cgroup_parent: String::new(),
            network: None,
        }
    }

    #[test]
    fn filters() {
        let pods = [
            pod("aa1", PodState::Ready, "web"),
            pod("ab2", PodState::Ready, "db"),
            pod("aa3", PodState::NotReady, "web"),
        ];
        let pick = |id: &str, label: Option<&str>| -> Vec<&str> {
            let f = cri::PodSandboxStatsFilter {
                id: id.into(),
                label_selector: label
                    .map(|l| [("tier".to_owned(), l.to_owned())].into())
                    .unwrap_or_default(),
            };
            pods.iter()
                .filter(|p| selected(p, &f))
                .map(|p| p.id.as_str())
                .collect()
        };
        assert_eq!(pick("", None), ["aa1", "ab2"]);
        assert_eq!(pick("aa", None), ["aa1"]);
        assert_eq!(pick("", Some("db")), ["ab2"]);
        assert_eq!(pick("aa", Some("db")), Vec::<&str>::new());
    }
}
