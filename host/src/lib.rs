//! relay-host: the wasmtime host of the relay component.
//!
//! The host does every piece of I/O — sockets, TLS, timers, the application's
//! stdio — and nothing the component decides. See `docs/ARCHITECTURE.md`.

pub mod conform;
pub mod sandbox;
