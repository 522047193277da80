//! relay-host: the wasmtime host of the relay component.
//!
//! The host does every piece of I/O — sockets, TLS, timers, the application's
//! stdio — and nothing the component decides. See `docs/ARCHITECTURE.md`.

pub mod bench;
pub mod conform;
pub mod connector;
pub mod demo;
pub mod sandbox;

// The running host (issue relay-host): tenants, their sockets, the application side.
pub mod app;
pub mod config;
mod dial;
pub mod event;
pub mod instance;
pub mod link;
pub mod metrics;
pub mod run;
pub mod secret;
pub mod spec;
pub mod tenant;
pub mod timers;
