//! Refuses to build the extension for a wheel without the component beside it.
//!
//! A wheel without `relay_wasm/relay.wasm` would install and then fail at the
//! first `Relay()`. maturin (the package's build backend) sets
//! `PYO3_BUILD_EXTENSION_MODULE` when it builds the extension; a plain `cargo
//! build` (the workspace's tests, a checkout's `cargo build -p relay-python`) does
//! not, and is not checked. `RELAY_WASM_ALLOW_MISSING=1` builds one anyway: the
//! package then needs `$RELAY_WASM`.

use std::path::Path;

fn main() {
    const WASM: &str = "../relay_wasm/relay.wasm";
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    println!("cargo:rerun-if-env-changed=RELAY_WASM_ALLOW_MISSING");
    println!("cargo:rerun-if-changed={WASM}");
    let for_wheel = std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some();
    let allowed = std::env::var_os("RELAY_WASM_ALLOW_MISSING").is_some_and(|v| !v.is_empty());
    if for_wheel && !allowed && !Path::new(WASM).is_file() {
        eprintln!(
            "embed/python/relay_wasm/relay.wasm is missing: stage the component first with \
             `python3 embed/python/stage_wasm.py` (after `cargo build --release -p relay-host`), \
             or set RELAY_WASM_ALLOW_MISSING=1 to build a package that loads it from $RELAY_WASM"
        );
        std::process::exit(1);
    }
}
