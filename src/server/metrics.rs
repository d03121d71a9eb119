//! Per-RPC duration histograms, kept in memory and reported in `Status(verbose)` info. Buckets
//! follow the usual Prometheus latency ladder so figures can be compared with containerd's.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

const BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Debug, Default, Clone, Serialize)]
pub struct Histogram {
    /// Cumulative counts per upper bound (seconds), Prometheus style; the last is +Inf.
    pub buckets: Vec<(String, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
    pub errors: u64,
}

#[derive(Default)]
pub struct RpcMetrics {
    by_method: Mutex<BTreeMap<String, Histogram>>,
}

impl RpcMetrics {
    pub fn observe(&self, method: &str, elapsed: Duration, ok: bool) {
        let secs = elapsed.as_secs_f64();
        let Ok(mut map) = self.by_method.lock() else {
            return;
        };
        let h = map.entry(method.to_owned()).or_insert_with(|| Histogram {
            buckets: BUCKETS_SECONDS
                .iter()
                .map(|b| (b.to_string(), 0))
                .chain(std::iter::once(("+Inf".to_owned(), 0)))
                .collect(),
            ..Histogram::default()
        });
        for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i].1 += 1;
            }
        }
        if let Some(inf) = h.buckets.last_mut() {
            inf.1 += 1;
        }
        h.count += 1;
        h.sum_seconds += secs;
        if !ok {
            h.errors += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, Histogram> {
        self.by_method.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let m = RpcMetrics::default();
        m.observe("/x/Y", Duration::from_millis(3), true);
        m.observe("/x/Y", Duration::from_secs(2), false);
        let snap = m.snapshot();
        let h = &snap["/x/Y"];
        assert_eq!(h.count, 2);
        assert_eq!(h.errors, 1);
        let at = |b: &str| h.buckets.iter().find(|(k, _)| k == b).map(|(_, v)| *v);
        assert_eq!(at("0.005"), Some(1));
        assert_eq!(at("2.5"), Some(2));
        assert_eq!(at("+Inf"), Some(2));
    }
}
