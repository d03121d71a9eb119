//! Name reservations for pods and containers. kubelet retries a timed-out `RunPodSandbox` or
//! `CreateContainer` with the same name: while the first request is still building the object,
//! the retry waits for it and gets the same id (as CRI-O does) instead of "name is reserved"; once
//! the object exists, a second request for the name is refused with AlreadyExists.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// The outcome of a build: the id, or the error message of the failed first attempt.
type Outcome = Option<Result<String, String>>;

#[derive(Default)]
pub struct Reservations {
    building: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
}

pub enum Reserved<'a> {
    /// This caller builds the object and must call [`Builder::finish`].
    Build(Builder<'a>),
    /// Another request is building it: wait for its outcome.
    Wait(watch::Receiver<Outcome>),
}

pub struct Builder<'a> {
    owner: &'a Reservations,
    name: String,
    tx: watch::Sender<Outcome>,
    finished: bool,
}

impl Reservations {
    pub fn reserve(&self, name: &str) -> Reserved<'_> {
        let mut building = self.building.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = building.get(name) {
            return Reserved::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        building.insert(name.to_owned(), rx);
        Reserved::Build(Builder {
            owner: self,
            name: name.to_owned(),
            tx,
            finished: false,
        })
    }
}

impl Builder<'_> {
    pub fn finish(mut self, outcome: Result<String, String>) {
        self.finished = true;
        let _ = self.tx.send(Some(outcome));
        self.release();
    }

    fn release(&self) {
        let mut building = self
            .owner
            .building
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        building.remove(&self.name);
    }
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // The building request was cancelled: waiters learn it and may retry.
            let _ = self.tx.send(Some(Err(
                "the request creating this object was cancelled".into()
            )));
            self.release();
        }
    }
}

/// Why a name could not be built: it belongs to a finished object, or the concurrent request
/// that was building it failed (its message).
pub enum Refused {
    Taken { id: String },
    Failed(String),
}

impl Reservations {
    /// Builds the object named `key` once: a concurrent request for the same name waits for the
    /// first one's outcome and gets the same id; a name whose object exists (`existing` gives its
    /// id) is refused.
    pub async fn build_once<E, Fut>(
        &self,
        key: &str,
        existing: impl FnOnce() -> Result<Option<String>, E>,
        build: impl FnOnce() -> Fut,
        refused: impl FnOnce(Refused) -> E,
    ) -> Result<String, E>
    where
        E: std::fmt::Display,
        Fut: std::future::Future<Output = Result<String, E>>,
    {
        let builder = match self.reserve(key) {
            Reserved::Wait(rx) => return wait(rx).await.map_err(|m| refused(Refused::Failed(m))),
            Reserved::Build(b) => b,
        };
        let found = match existing() {
            Ok(found) => found,
            Err(e) => {
                builder.finish(Err(e.to_string()));
                return Err(e);
            }
        };
        if let Some(id) = found {
            builder.finish(Err(format!("name {key} is taken")));
            return Err(refused(Refused::Taken { id }));
        }
        let outcome = build().await;
        builder.finish(
            outcome
                .as_ref()
                .map(Clone::clone)
                .map_err(ToString::to_string),
        );
        outcome
    }
}

/// Waits for another request's outcome.
pub async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<String, String> {
    loop {
        if let Some(outcome) = rx.borrow().clone() {
            return outcome;
        }
        if rx.changed().await.is_err() {
            return rx
                .borrow()
                .clone()
                .unwrap_or_else(|| Err("the request creating this object went away".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_waits_for_the_first_build() {
        let r = Reservations::default();
        let Reserved::Build(builder) = r.reserve("pod-a") else {
            panic!("first reservation must build");
        };
        let Reserved::Wait(rx) = r.reserve("pod-a") else {
            panic!("second reservation must wait");
        };
        let waiter = tokio::spawn(wait(rx));
        builder.finish(Ok("id1".into()));
        assert_eq!(waiter.await.unwrap(), Ok("id1".into()));
        assert!(matches!(r.reserve("pod-a"), Reserved::Build(_)));
    }
}
