//! The CRI streaming server: the HTTP endpoint behind the URLs that `Exec`, `Attach` and
//! `PortForward` return, speaking SPDY/3.1 and WebSocket (see `docs` in the shared notes:
//! `cri-streaming.md`).
//!
//! - [`spdy`] / [`ws`]: the wire protocols (SPDY/3.1 session, Kubernetes WebSocket channels).
//! - [`server`]: the HTTP/1.1 listener, token lookup, protocol negotiation and upgrades.
//! - [`tokens`]: single-use, short-lived tokens naming a cached CRI request.
//! - [`remotecommand`]: the exec/attach protocol versions, status JSON, and the transport-neutral
//!   [`remotecommand::Streams`] that [`exec`] and [`attach`] run against.
//! - [`portforward`]: port-forward sessions and the dialer into a pod's network namespace.

pub mod spdy;
pub mod ws;

pub mod attach;
pub mod exec;
mod idle;
pub mod portforward;
pub mod remotecommand;
pub mod server;
mod session;
pub mod tokens;

pub use server::{StreamingError, StreamingServer};
