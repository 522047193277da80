//! Runs only pipeline (c) of `relay-host bench` (the component, 64 frames per
//! call) in a loop, so `perf` sees the component path alone:
//! `RELAY_PERFMAP=1 perf record -e cpu-clock -g target/release/examples/profile_component`.

use relay_host::bench::{corpus, throughput, CORPUS_SEED};
use relay_host::sandbox::{document, Allocation, Effect, Limits, Runtime};

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
    let limits = Limits {
        cpu_per_call: std::time::Duration::from_secs(10),
        ..Limits::default()
    };
    let runtime = Runtime::new(Allocation::OnDemand, limits)?;
    let mut sb = runtime.instantiate(limits)?;
    let conn = sb
        .create_connection(&throughput::component_config())?
        .map_err(|e| anyhow::anyhow!(e.message))?;
    sb.open(conn, 0)?;
    sb.receive_text(conn, 0, throughput::DESCRIPTOR_LINE)?;
    let start = std::time::Instant::now();
    let mut emitted = 0usize;
    for round in 0..rounds {
        for b in &batches {
            for e in sb.receive_text(conn, round as u64 + 1, b)? {
                if let Effect::Emit(bytes) = e {
                    emitted += document(&bytes).map_or(0, str::len);
                }
            }
        }
    }
    let per_frame = start.elapsed().as_secs_f64() / (rounds * lines.len()) as f64;
    println!("{:.0} frames/s, {emitted} bytes emitted", 1.0 / per_frame);
    Ok(())
}
