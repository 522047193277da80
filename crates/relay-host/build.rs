//! Builds the component (crates/relay-component) and hands its path to the host
//! crate (`RELAY_COMPONENT_WASM`), so `cargo build -p relay-host` is the only step.
//!
//! The core module is built for `wasm32-unknown-unknown`, where Rust's std links
//! no WASI at all, then encoded as a component with `wit-component` from the
//! world wit-bindgen embedded in it. Its imports are exactly what the world
//! declares (`wasi:cli/stderr` and its `wasi:io` types), not the fifteen WASI
//! interfaces std for `wasm32-wasip2` reaches for. The result is also written to
//! `target/component/relay.wasm`, the file the Python and npm packages ship.
//!
//! The nested cargo uses its own target dir: sharing the outer one deadlocks on
//! cargo's build lock. Flags meant for the host (RUSTFLAGS, wrappers, coverage)
//! are cleared so they do not leak into the wasm build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("crates/relay-host sits two levels below the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    for watched in [
        "wit",
        "crates/relay-logic/src",
        "crates/relay-logic/Cargo.toml",
        "crates/relay-component/src",
        "crates/relay-component/Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=RELAY_COMPONENT_PREBUILT");

    // An explicitly supplied component (e.g. a prebuilt or hostile test fixture
    // build) skips the nested build.
    if let Ok(prebuilt) = std::env::var("RELAY_COMPONENT_PREBUILT") {
        println!("cargo:rustc-env=RELAY_COMPONENT_WASM={prebuilt}");
        return;
    }

    let target_dir = root.join("target").join("component");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "relay-component",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_LLVM_COV")
        .env_remove("CARGO_MAKEFLAGS")
        .env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .status()
        .expect("could not run cargo for the component");
    if !status.success() {
        panic!("building the component for wasm32-unknown-unknown failed (see the output above)");
    }
    let core = target_dir
        .join("wasm32-unknown-unknown")
        .join("release")
        .join("relay_component.wasm");
    let core = std::fs::read(&core).expect("core module missing after a successful build");
    let component = wit_component::ComponentEncoder::default()
        .module(&core)
        .and_then(|e| e.validate(true).encode())
        .unwrap_or_else(|e| panic!("encoding the component failed: {e:#}"));
    let copy = out_dir.join("relay.wasm");
    std::fs::write(&copy, &component).expect("cannot write the component");
    // The file the packages ship (embed/python/stage_wasm.py, embed/js/build.mjs),
    // written only when it changed so their staleness checks stay meaningful.
    let shipped = target_dir.join("relay.wasm");
    if std::fs::read(&shipped).ok().as_deref() != Some(component.as_slice()) {
        std::fs::write(&shipped, &component).expect("cannot write target/component/relay.wasm");
    }
    println!("cargo:rustc-env=RELAY_COMPONENT_WASM={}", copy.display());
}
