//! relay-guest: the relay logic as a sans-IO library, compiled to a WASI component.
//!
//! Every decision of the relay lives here — what a frame means, which request a
//! result answers, when to reconnect, what a Discord interaction becomes — so that
//! every host (wasmtime, Python, JavaScript, the sidecar) behaves identically. The
//! crate also builds natively so the same logic can be unit-tested and benchmarked
//! without a wasm runtime; `component` holds the WIT glue and only exists in wasm.

pub mod allocator;
pub mod auth;
pub mod codec;
pub mod conformance;
pub mod descriptor;
pub mod discord;
pub mod error;
pub mod event;
pub mod forward;
pub mod json;
pub mod lines;
pub mod platform;
pub mod session;
pub mod url;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod component;

pub use error::{DecodeError, ErrorKind};

/// Size-class free lists over talc instead of Rust's default wasm allocator
/// (dlmalloc, 11 % of the component's instructions per frame; docs/PERFORMANCE.md).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: allocator::SizeClasses<talc::wasm::WasmDynamicTalc> =
    allocator::SizeClasses::new(talc::wasm::new_wasm_dynamic_allocator());
