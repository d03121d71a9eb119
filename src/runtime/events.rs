//! Container and pod lifecycle events for `GetContainerEvents` (kubelet's evented PLEG).
//!
//! Each state change sends one [`cri::ContainerEventResponse`] on a broadcast channel: every
//! subscriber gets every event, in the order they were sent; a subscriber that falls behind
//! by more than [`CAPACITY`] events loses the oldest ones (it is told how many, and logs it)
//! rather than slowing the runtime down. With no subscriber no event is even built. Events are
//! built and sent one at a time, so their timestamps increase in sending order and no event
//! carries statuses older than the one before it.
//!
//! As containerd does, a pod's own events use the pod id as `container_id`: CREATED and
//! STARTED on RunPodSandbox, STOPPED on StopPodSandbox, DELETED on RemovePodSandbox. Every event
//! carries the pod's status and the statuses of all its containers, which is what kubelet caches
//! from it (it drops events without a pod status). The DELETED event of a pod carries the pod's
//! last status (containerd sends none, and kubelet then ignores the event); a container's
//! DELETED event carries the pod's remaining containers.

use std::sync::Mutex;

use tokio::sync::{broadcast, watch};

use super::Runtime;
use crate::cri::v1 as cri;

/// Events a subscriber may fall behind by before it loses the oldest.
pub const CAPACITY: usize = 1024;

pub type EventKind = cri::ContainerEventType;

/// The event channel, and whether the daemon is shutting down (subscriptions then end, so an
/// open event stream does not hold the daemon's graceful shutdown).
pub struct Events {
    tx: broadcast::Sender<cri::ContainerEventResponse>,
    closing: watch::Sender<bool>,
    /// Held from an event's timestamp to its sending: events go out in timestamp order, and
    /// each carries statuses read after its timestamp. kubelet keeps a pod's status from the
    /// event with the newest timestamp, so a snapshot must never be sent after a newer one.
    order: Mutex<()>,
}

impl Events {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            closing: watch::channel(false).0,
            order: Mutex::new(()),
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

/// One subscriber's view: the events, and the shutdown flag.
pub struct Subscription {
    pub events: broadcast::Receiver<cri::ContainerEventResponse>,
    pub closing: watch::Receiver<bool>,
}

impl Runtime {
    /// A new subscriber to every event sent from now on.
    pub fn subscribe_events(&self) -> Subscription {
        Subscription {
            events: self.events.tx.subscribe(),
            closing: self.events.closing.subscribe(),
        }
    }

    /// Ends every subscription (at daemon shutdown).
    pub fn close_events(&self) {
        self.events.closing.send_replace(true);
    }

    /// Whether anyone listens to events (a kubelet with the evented PLEG does, all the time).
    pub fn has_event_subscribers(&self) -> bool {
        self.events.tx.receiver_count() > 0
    }

    /// Sends the event of `id` (a container, or the pod itself) with the current statuses of
    /// pod `pod_id` and its containers.
    pub(super) fn emit(&self, kind: EventKind, id: &str, pod_id: &str) {
        if !self.has_event_subscribers() {
            return;
        }
        let _order = self.events.order.lock().unwrap_or_else(|p| p.into_inner());
        let created_at = super::now_nanos();
        let (pod_status, containers) = match self.pod_status(pod_id, false) {
            Ok(resp) => (resp.status, resp.containers_statuses),
            Err(e) => {
                tracing::warn!(pod = pod_id, error = %e, "pod status for a container event");
                (None, self.pod_container_statuses(pod_id))
            }
        };
        self.send_event(kind, id, created_at, pod_status, containers);
    }

    /// The pod's status to send later with its DELETED event (`None` without subscribers).
    pub(super) fn pod_status_for_event(&self, pod_id: &str) -> Option<cri::PodSandboxStatus> {
        if !self.has_event_subscribers() {
            return None;
        }
        self.pod_status(pod_id, false).ok()?.status
    }

    /// [`Runtime::emit`] with a pod status taken earlier (the pod may be gone by now).
    pub(super) fn emit_with(
        &self,
        kind: EventKind,
        id: &str,
        pod_id: &str,
        pod_status: Option<cri::PodSandboxStatus>,
    ) {
        if !self.has_event_subscribers() {
            return;
        }
        let _order = self.events.order.lock().unwrap_or_else(|p| p.into_inner());
        let created_at = super::now_nanos();
        let containers = self.pod_container_statuses(pod_id);
        self.send_event(kind, id, created_at, pod_status, containers);
    }

    fn send_event(
        &self,
        kind: EventKind,
        id: &str,
        created_at: i64,
        pod_status: Option<cri::PodSandboxStatus>,
        containers_statuses: Vec<cri::ContainerStatus>,
    ) {
        let event = cri::ContainerEventResponse {
            container_id: id.to_owned(),
            container_event_type: kind as i32,
            created_at,
            pod_sandbox_status: pod_status,
            containers_statuses,
        };
        // An error only means every subscriber left meanwhile.
        let _ = self.events.tx.send(event);
    }

    /// The statuses of every container of the pod (those that cannot be read are left out).
    pub(super) fn pod_container_statuses(&self, pod_id: &str) -> Vec<cri::ContainerStatus> {
        let containers = match self.store.read().and_then(|r| r.containers()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = pod_id, error = %e, "listing the pod's containers");
                return Vec::new();
            }
        };
        containers
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .map(|c| self.status_of(&c))
            .collect()
    }
}
