//! Floors measured in the same run as the figures they bound: what wasmtime
//! needs to instantiate a component with nothing in it, and what an idle
//! WebSocket connection costs in memory with nothing behind it. (The latency
//! floor, a bare WebSocket echo, is in [`crate::saturation`].)

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use wasmtime::component::{Component, Linker};
use wasmtime::Store;

use relay_host::sandbox::{Allocation, Limits, Runtime};

use crate::feeder::socket_config;
use crate::live::{raise_fd_limit, rss_kib, EmulatorChild};

/// The empty component, `(component)`: the 8-byte preamble of the component
/// binary format (magic, version 0x0d, layer 1) and no section.
pub const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

/// Mean µs to instantiate [`EMPTY_COMPONENT`] (a new `Store` + instance from its
/// `InstancePre`) into pooling slots never used before, keeping `count` alive:
/// measured like `throughput::instantiate_us`'s fresh-slot figure, in a pool of
/// the same size, so the ratio says what the relay's own instance adds.
pub fn empty_component_instantiate_us(count: usize) -> anyhow::Result<f64> {
    let err = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    // The host's own engine, configured for a pool the size of the tenant figure's.
    let runtime = Runtime::new(
        Allocation::Pooling {
            max_instances: count as u32 + 8,
        },
        Limits::default(),
    )?;
    let engine = runtime.engine();
    let component = Component::new(engine, EMPTY_COMPONENT).map_err(err)?;
    let pre = Linker::<()>::new(engine)
        .instantiate_pre(&component)
        .map_err(err)?;
    // Warm up once, as the tenant figure does.
    {
        let mut store = Store::new(engine, ());
        pre.instantiate(&mut store).map_err(err)?;
    }
    let mut alive = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let mut store = Store::new(engine, ());
        let instance = pre.instantiate(&mut store).map_err(err)?;
        alive.push((store, instance));
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64;
    drop(alive);
    Ok(us)
}

/// Resident KiB per idle bare WebSocket connection — a tokio task holding a
/// tokio-tungstenite client stream with the link's buffer settings, waiting for a
/// message — with `n` of them, against the emulator in a child process: measured
/// like `live::rss_per_tenant`, so the difference is what a tenant adds to the
/// connection it needs anyway (the instance, its state, the tenant task).
pub async fn rss_per_bare_ws(n: usize) -> anyhow::Result<f64> {
    raise_fd_limit();
    let emulator = EmulatorChild::start().await?;
    let url = format!("ws://{}/relay", emulator.addr);
    let before = rss_kib();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(&emulator.addr).await?;
        tcp.set_nodelay(true)?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(socket_config()))
                .await?;
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib();
    for t in &tasks {
        t.abort();
    }
    drop(emulator);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}
