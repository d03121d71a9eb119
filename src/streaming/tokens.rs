//! One-time tokens: each names a cached CRI streaming request. Unguessable (128 random bits,
//! URL-safe), single use (the first lookup removes it, whatever happens next), valid for
//! [`TTL`] from minting, and at most [`MAX_OUTSTANDING`] at a time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::cri::v1 as cri;

/// How long a minted token stays valid (kubelet's streaming library uses one minute).
pub const TTL: Duration = Duration::from_secs(60);
/// Outstanding tokens beyond this are refused with ResourceExhausted.
pub const MAX_OUTSTANDING: usize = 1000;

/// The CRI request a token stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl Pending {
    /// The URL path prefix of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many outstanding streaming requests ({MAX_OUTSTANDING}); try again later")]
pub struct TooManyTokens;

pub struct Tokens {
    ttl: Duration,
    cap: usize,
    entries: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new(TTL, MAX_OUTSTANDING)
    }
}

impl Tokens {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Mints a token for `request`.
    pub fn insert(&self, request: Pending) -> Result<String, TooManyTokens> {
        self.insert_at(request, Instant::now())
    }

    /// The request behind `token`, removing it; `None` when unknown, used or expired.
    pub fn take(&self, token: &str) -> Option<Pending> {
        self.take_at(token, Instant::now())
    }

    pub(crate) fn insert_at(
        &self,
        request: Pending,
        now: Instant,
    ) -> Result<String, TooManyTokens> {
        let mut entries = self.lock();
        if entries.len() >= self.cap {
            let ttl = self.ttl;
            entries.retain(|_, (minted, _)| now.saturating_duration_since(*minted) < ttl);
            if entries.len() >= self.cap {
                return Err(TooManyTokens);
            }
        }
        loop {
            let token = new_token();
            if !entries.contains_key(&token) {
                entries.insert(token.clone(), (now, request));
                return Ok(token);
            }
        }
    }

    pub(crate) fn take_at(&self, token: &str, now: Instant) -> Option<Pending> {
        let (minted, request) = self.lock().remove(token)?;
        (now.saturating_duration_since(minted) < self.ttl).then_some(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Pending)>> {
        // A panic while holding the lock leaves the map consistent (every operation on it is a
        // single insert/remove/retain), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// 16 random bytes as unpadded URL-safe base64 (22 characters).
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(cri::ExecRequest {
            container_id: "c".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
    }

    #[test]
    fn single_use() {
        let tokens = Tokens::default();
        let t = tokens.insert(exec()).unwrap();
        assert_eq!(tokens.take(&t), Some(exec()));
        assert_eq!(tokens.take(&t), None);
        assert_eq!(tokens.take("unknown"), None);
    }

    #[test]
    fn url_safe_and_distinct() {
        let tokens = Tokens::default();
        let a = tokens.insert(exec()).unwrap();
        let b = tokens.insert(exec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn expires_after_the_ttl() {
        let tokens = Tokens::default();
        let start = Instant::now();
        let t = tokens.insert_at(exec(), start).unwrap();
        assert_eq!(
            tokens.take_at(&t, start + TTL + Duration::from_secs(1)),
            None
        );
        let t = tokens.insert_at(exec(), start).unwrap();
        assert!(
            tokens
                .take_at(&t, start + TTL - Duration::from_secs(1))
                .is_some()
        );
    }

    #[test]
    fn bounded_and_expired_ones_make_room() {
        let tokens = Tokens::new(TTL, 3);
        let start = Instant::now();
        let minted: Vec<_> = (0..3)
            .map(|_| tokens.insert_at(exec(), start).unwrap())
            .collect();
        assert!(tokens.insert_at(exec(), start).is_err());
        // A used token frees its slot.
        assert!(tokens.take_at(&minted[0], start).is_some());
        assert!(tokens.insert_at(exec(), start).is_ok());
        assert!(tokens.insert_at(exec(), start).is_err());
        // Once they expired, there is room again.
        assert!(tokens.insert_at(exec(), start + TTL).is_ok());
    }
}
