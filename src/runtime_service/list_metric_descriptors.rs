//! `ListMetricDescriptors`: the fixed set of metrics `ListPodSandboxMetrics` returns.

use crate::cri::v1 as cri;

pub fn list_metric_descriptors(
    _req: cri::ListMetricDescriptorsRequest,
) -> cri::ListMetricDescriptorsResponse {
    cri::ListMetricDescriptorsResponse {
        descriptors: crate::stats::metrics::descriptors(),
    }
}
