//! relay-logic: the relay's decisions as a sans-IO library.
//!
//! Every decision of the relay lives here — what a frame means, which request a
//! result answers, when to reconnect, what a Discord interaction becomes — so that
//! every host (wasmtime, Python, JavaScript, the sidecar) behaves identically. It is
//! plain Rust with no WIT in it: `relay-component` wraps it into `relay.wasm`, and
//! natively it is unit-tested, fuzzed and benchmarked without a wasm runtime.

pub mod auth;
pub mod codec;
pub mod descriptor;
pub mod discord;
pub mod error;
pub mod event;
pub mod forward;
pub mod json;
pub mod lines;
pub mod link;
pub mod platform;
pub mod session;
pub mod url;
pub mod wire;

pub use error::{DecodeError, ErrorKind};
