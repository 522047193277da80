//! Builds the component (crates/relay-component) for `wasm32-wasip2` and hands its path to the host
//! crate (`RELAY_COMPONENT_WASM`), so `cargo build -p relay-host` is the only step.
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
            "wasm32-wasip2",
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
        panic!("building the component for wasm32-wasip2 failed (see the output above)");
    }
    let wasm = target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join("relay_component.wasm");
    let copy = out_dir.join("relay.wasm");
    std::fs::copy(&wasm, &copy).expect("component missing after a successful build");
    println!("cargo:rustc-env=RELAY_COMPONENT_WASM={}", copy.display());
}
