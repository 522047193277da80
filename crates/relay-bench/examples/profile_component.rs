//! Runs only pipeline (c) of `relay-bench` (the component, 64 frames per
//! call) in a loop, so `perf` sees the component path alone:
//! `RELAY_PERFMAP=1 perf record -e cpu-clock -g target/release/examples/profile_component`.

use relay_bench::{corpus, throughput, CORPUS_SEED};
use relay_host::sandbox::{Allocation, Runtime};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(100);
    let lines = corpus::generate(CORPUS_SEED, 2_000);
    let batches: Vec<String> = lines
        .chunks(throughput::BATCH)
        .map(|c| c.iter().map(|l| format!("{l}\n")).collect())
        .collect();
    let limits = throughput::bench_limits();
    let runtime = Runtime::new(Allocation::OnDemand, limits)?;
    let mut sb = runtime.instantiate(limits)?;
    let conn = throughput::ready_component(&mut sb)?;
    let start = std::time::Instant::now();
    for round in 0..rounds {
        for b in &batches {
            throughput::settle(relay_host::sandbox::block_on(sb.receive_text(
                conn,
                round as u64 + 1,
                b,
            ))?)?;
        }
    }
    let per_frame = start.elapsed().as_secs_f64() / (rounds * lines.len()) as f64;
    println!("{:.0} frames/s", 1.0 / per_frame);
    Ok(())
}
