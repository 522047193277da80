//! relay-component: the WIT glue that turns the relay logic (`relay-logic`) into
//! `relay.wasm`, the `hermes:relay` component every host loads.
//!
//! Nothing here decides anything: `exports` converts between WIT values and the
//! logic's types, and `allocator` is the component's allocator. Natively only the
//! allocator's unit tests build; the exports exist in wasm alone.

// Natively only its unit tests use it.
#[cfg(any(test, target_family = "wasm"))]
mod allocator;
#[cfg(target_arch = "wasm32")]
mod exports;

/// Size-class free lists over talc instead of Rust's default wasm allocator
/// (dlmalloc, 11 % of the component's instructions per frame; docs/PERFORMANCE.md).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: allocator::SizeClasses<talc::wasm::WasmDynamicTalc> =
    allocator::SizeClasses::new(talc::wasm::new_wasm_dynamic_allocator());
