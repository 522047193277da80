#![warn(missing_docs)]

//! relay-host: the wasmtime host of the relay component.
//!
//! The host does every piece of I/O — sockets, TLS, timers, the application's
//! stdio — and nothing the component decides. See `docs/ARCHITECTURE.md`.
//!
//! What a program embedding the host touches:
//! - [`spec`]: what one tenant is configured with; [`config`] reads it from TOML;
//! - [`app`]: [`app::Host::start`] runs tenants, each in its own sandbox,
//!   [`app::HostHandle::reload_specs`] changes them while they run, and
//!   [`app::run_stdio`] is the sidecar protocol (spec/SIDECAR.md) over them;
//! - [`sandbox`]: the component in one wasmtime store, for callers that drive a
//!   connection themselves;
//! - [`conform`]: the conformance vectors through the component;
//! - [`run`]: the `relay-host run` command; [`metrics`]: `/metrics`, `/healthz`,
//!   `/readyz`; [`shard`]: which tenants one of N processes serves (`--shard`).

pub mod app;
pub mod client;
pub mod config;
pub mod conform;
pub mod event_line;
pub mod link;
pub mod metrics;
pub mod run;
pub mod sandbox;
pub mod secret;
pub mod shard;
pub mod spec;

// Internals: one tenant's task and instance, its clock, the events the host
// itself builds, the dialer, the memory-mapping budget of an instance pool.
mod clock;
mod cpu_budget;
mod dial;
mod event;
mod instance;
mod map_count;
mod tenant;

pub use tenant::{RestartBudget, TenantStatus};
