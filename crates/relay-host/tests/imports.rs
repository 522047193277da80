//! Contract 0.2 grants the component no capability: its only imports are the
//! error channel a panic message needs, `wasi:cli/stderr` and the `wasi:io`
//! types it is written through. No clock, no randomness, no environment, no
//! files, no sockets, no terminal, no stdin (the component is built for
//! wasm32-unknown-unknown; crates/relay-host/build.rs).

#[test]
fn the_component_imports_no_capability() {
    let imports = relay_host::sandbox::embedded_imports().expect("the component loads");
    let outside: Vec<&String> = imports
        .iter()
        .filter(|name| !relay_host::sandbox::is_error_channel(name))
        .collect();
    assert!(
        outside.is_empty(),
        "imports outside the error channel: {outside:?} (all: {imports:?})"
    );
    assert!(
        imports.iter().any(|n| n.starts_with("wasi:cli/stderr@")),
        "the panic channel is gone: {imports:?}"
    );
    eprintln!("the component imports: {imports:?}");
}

#[test]
fn a_std_wasi_component_would_be_caught() {
    // The rule itself can fail: what std for wasm32-wasip2 links is refused.
    for name in [
        "wasi:clocks/monotonic-clock@0.2.9",
        "wasi:random/insecure-seed@0.2.9",
        "wasi:cli/environment@0.2.9",
        "wasi:cli/terminal-stdout@0.2.9",
        "wasi:cli/stdin@0.2.9",
        "wasi:filesystem/preopens@0.2.9",
    ] {
        assert!(!relay_host::sandbox::is_error_channel(name), "{name}");
    }
}
