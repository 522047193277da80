//! Instantiates tenants in a loop so a profiler (`perf record`, callgrind) sees
//! where instantiation time goes. `cargo run --release -p relay-host --example
//! profile_instantiate -- [pooling|cold|ondemand] [count]`.

use std::time::Instant;

use relay_host::sandbox::{Allocation, Limits, Runtime};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "pooling".into());
    let count: usize = args
        .next()
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(100_000);
    // "pooling" reuses warm slots (a restart); "cold" keeps every instance alive
    // so each takes a slot never used before (a host starting its tenants).
    let batch = if mode == "cold" { count } else { 1_000 };
    let allocation = match mode.as_str() {
        "ondemand" => Allocation::OnDemand,
        _ => Allocation::Pooling {
            max_instances: batch as u32 + 8,
        },
    };
    let limits = Limits::default();
    let runtime = Runtime::new(allocation, limits)?;
    drop(runtime.instantiate(limits)?);
    let mut alive = Vec::with_capacity(batch);
    let mut spent = 0.0;
    let mut done = 0;
    while done < count {
        let start = Instant::now();
        for _ in 0..batch {
            alive.push(runtime.instantiate(limits)?);
        }
        spent += start.elapsed().as_secs_f64();
        done += batch;
        alive.clear();
    }
    println!(
        "{mode}: {:.2} µs per instantiation",
        spent * 1e6 / done as f64
    );
    Ok(())
}
