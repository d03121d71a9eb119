//! CRI streaming (Exec / Attach / PortForward URLs): the wire protocols real clients speak
//! toward a runtime's streaming server (see docs/cri-streaming.md of the shared notes).
//!
//! - [`spdy`]: SPDY/3.1 framing, header compression and connection sessions (server side, plus a
//!   client-go-like client for tests and benchmarks).
//! - [`ws`]: the Kubernetes WebSocket channel protocols and a byte-stream adapter for the
//!   `SPDY/3.1+portforward.k8s.io` tunnel.

pub mod spdy;
pub mod ws;
