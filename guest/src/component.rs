//! WIT glue (wasm only); filled in with the component build.
