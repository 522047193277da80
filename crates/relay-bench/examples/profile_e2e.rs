//! Runs one end-to-end pipeline for a while so a profiler (`perf record`) sees
//! only it. `cargo run --release -p relay-bench --example profile_e2e --
//! [sidecar|inprocess] [tenants] [seconds]`.

use std::sync::Arc;
use std::time::Duration;

use relay_bench::e2e::{self, Consumer};
use relay_host::sandbox::{Allocation, Limits, Runtime};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let consumer = match args.next().as_deref() {
        Some("inprocess") => Consumer::InProcess,
        _ => Consumer::Sidecar,
    };
    let tenants: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let lines = relay_bench::corpus::generate(relay_bench::CORPUS_SEED, relay_bench::CORPUS_LINES);
    let corpus = e2e::messages(&lines);
    // The allocation `Host::start` would pick for this many tenants.
    let runtime = if tenants > 50 {
        relay_bench::live::runtime_for(tenants)?
    } else {
        Arc::new(Runtime::new(Allocation::OnDemand, Limits::default())?)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(e2e::measure(
        consumer,
        &runtime,
        &corpus,
        tenants,
        Duration::from_secs(seconds),
    ))?;
    println!(
        "{consumer:?}, {tenants} tenants: {:.0} frames/s ({} repeats)",
        r.fps, r.repeats
    );
    Ok(())
}
