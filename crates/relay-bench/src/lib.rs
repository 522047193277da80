//! `relay-bench`: throughput, tenant density and latency, measured side by
//! side in one run and reported as ratios. Numbers come from here, never from
//! timed tests.

pub mod corpus;
pub mod live;
pub mod python_ref;
pub mod throughput;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Smaller corpus and shorter budgets: finishes within a minute on 2 cores.
    pub quick: bool,
    /// An NDJSON corpus of connector→gateway lines instead of the generated one.
    pub corpus: Option<PathBuf>,
    /// Only these sections (all when empty): a profiler then sees one workload.
    pub only: Vec<Section>,
    /// Also run the pure-Python reference on the same corpus (the script's path).
    pub python_ref: Option<PathBuf>,
}

/// One part of the report, selectable with `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Frames per second of the four pipelines and the call costs.
    Throughput,
    /// Instantiation time per tenant.
    Instantiate,
    /// Resident memory per instance and per idle connected tenant.
    Density,
    /// End-to-end latency percentiles at two rates.
    Latency,
}

impl BenchOptions {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// The seed of the generated corpus; fixed so runs compare.
pub const CORPUS_SEED: u64 = 0x00c0_ffee;

/// Runs the benchmarks and returns the report object (`--json` writes it as is).
pub fn run(opts: &BenchOptions) -> anyhow::Result<Value> {
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine().into());
    if opts.runs(Section::Throughput) {
        throughput_section(opts, &mut report)?;
    }
    if opts.runs(Section::Instantiate) {
        let (fresh, reused, ondemand) =
            throughput::instantiate_us(if opts.quick { 200 } else { 1_000 })?;
        report.insert("instantiate_us_pooling".into(), fresh.into());
        report.insert("instantiate_us_pooling_reused".into(), reused.into());
        report.insert("instantiate_us_ondemand".into(), ondemand.into());
    }
    let density = opts.runs(Section::Density);
    let latency = opts.runs(Section::Latency);
    if density {
        report.insert(
            "rss_kib_per_instance_1k".into(),
            live::rss_per_instance(1_000)?.into(),
        );
    }
    if density || latency {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let probe = Duration::from_millis(if opts.quick { 2_000 } else { 10_000 });
        rt.block_on(async {
            if density {
                report.insert(
                    "rss_kib_per_tenant_1k".into(),
                    live::rss_per_tenant(1_000).await?.into(),
                );
                report.insert(
                    "rss_kib_per_tenant_10k".into(),
                    live::rss_per_tenant(10_000).await?.into(),
                );
            }
            if latency {
                for (rate, k) in [(1_000, "1k"), (10_000, "10k")] {
                    let (inbound, outbound) = live::latency(rate, 100, probe).await?;
                    for (name, p) in [("latency_us", inbound), ("outbound_rtt_us", outbound)] {
                        report.insert(format!("{name}_p50_{k}"), p.p50.into());
                        report.insert(format!("{name}_p99_{k}"), p.p99.into());
                        report.insert(format!("{name}_p999_{k}"), p.p999.into());
                        report.insert(format!("{name}_samples_{k}"), p.samples.into());
                    }
                }
                report.insert("latency_tenants".into(), 100.into());
                report.insert("latency_probe_ms".into(), (probe.as_millis() as u64).into());
            }
            anyhow::Ok(())
        })?;
    }
    Ok(Value::Object(report))
}

/// Item 1 of the report: the four pipelines, their ratios and the call costs.
fn throughput_section(
    opts: &BenchOptions,
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let lines = match &opts.corpus {
        Some(path) => corpus::load(path)?,
        // More distinct messages than the component remembers (4096, D16), so a
        // round never meets its own duplicates from the round before.
        None => corpus::generate(CORPUS_SEED, if opts.quick { 5_000 } else { 10_000 }),
    };
    anyhow::ensure!(!lines.is_empty(), "the corpus is empty");
    if lines.len() <= 4096 {
        eprintln!(
            "note: the corpus has {} lines; every round after the first meets messages \
             the component already delivered (D16 de-duplicates up to 4096), so it times \
             the duplicate path",
            lines.len()
        );
    }
    let budget = Duration::from_millis(if opts.quick { 1_500 } else { 5_000 });
    let t = throughput::measure(&lines, budget)?;
    let (call_empty_us, call_decode_us, call_receive_us) = throughput::call_costs()?;
    let values = json!({
        "corpus": {
            "source": opts.corpus.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("generated, seed {CORPUS_SEED:#x}")),
            "frames": t.frames,
            "bytes": t.bytes,
            "batch_frames_per_message": throughput::BATCH,
        },
        "native_fps": throughput::Throughput::fps(t.native_s),
        "component_fps_single": throughput::Throughput::fps(t.component_single_s),
        "component_fps_batched": throughput::Throughput::fps(t.component_batched_s),
        "component_fps_batched_pooling": throughput::Throughput::fps(t.component_batched_pooling_s),
        "serde_floor_fps": throughput::Throughput::fps(t.serde_floor_s),
        "ratio_single_over_native": t.component_single_s / t.native_s,
        "ratio_batched_over_native": t.component_batched_s / t.native_s,
        "ratio_native_over_floor": t.native_s / t.serde_floor_s,
        "ratio_batched_over_floor": t.component_batched_s / t.serde_floor_s,
        "call_us_empty": call_empty_us,
        "call_us_decode_283b": call_decode_us,
        "call_us_receive_283b": call_receive_us,
    });
    if let Value::Object(values) = values {
        report.extend(values);
    }
    if let Some(script) = &opts.python_ref {
        python_reference(script, &lines, &t, opts.quick, report)?;
    }
    Ok(())
}

/// `--python-ref`: the reference on the same lines, and each pipeline's speed as a
/// multiple of it (`null` with a note when it cannot run).
fn python_reference(
    script: &std::path::Path,
    lines: &[String],
    t: &throughput::Throughput,
    quick: bool,
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let corpus = dir.join("corpus.ndjson");
    std::fs::write(&corpus, lines.join("\n") + "\n")?;
    let result = python_ref::run(script, &corpus, if quick { 3 } else { 5 });
    let _ = std::fs::remove_dir_all(&dir);
    let fps = |s: f64| throughput::Throughput::fps(s);
    match result {
        Ok(r) => {
            report.insert("py_ref_fps".into(), r.py_ref_fps.into());
            report.insert("py_json_floor_fps".into(), r.py_json_floor_fps.into());
            for (key, s) in [
                ("native", t.native_s),
                ("component_single", t.component_single_s),
                ("component_batched", t.component_batched_s),
            ] {
                report.insert(
                    format!("ratio_{key}_over_py_ref"),
                    (fps(s) / r.py_ref_fps).into(),
                );
            }
        }
        Err(why) => {
            eprintln!("note: --python-ref skipped: {why}");
            report.insert("py_ref_fps".into(), Value::Null);
            report.insert("py_ref_note".into(), why.into());
        }
    }
    Ok(())
}

/// Prints the report as a table.
pub fn print_table(report: &Value) {
    let f = |k: &str| report.get(k).and_then(Value::as_f64);
    // A row of a section left out with --only is not printed.
    let row = |name: &str, key: &str, unit: &str| {
        if let Some(v) = f(key) {
            println!("{name:<50} {v:>12.1} {unit}");
        }
    };
    println!("machine: {}", report["machine"].as_str().unwrap_or("?"));
    if let Some(corpus) = report.get("corpus") {
        println!(
            "corpus: {} ({} frames, {} bytes)",
            corpus["source"].as_str().unwrap_or("?"),
            corpus["frames"],
            corpus["bytes"]
        );
    }
    println!("{:-<72}", "");
    row("(a) native relay logic", "native_fps", "frames/s");
    row(
        "(b) component, one frame per call",
        "component_fps_single",
        "frames/s",
    );
    row(
        "(c) component, 64 frames per message",
        "component_fps_batched",
        "frames/s",
    );
    row(
        "(c) the same, pooling allocator (bounds checks)",
        "component_fps_batched_pooling",
        "frames/s",
    );
    row(
        "(d) floor: serde_json::Value per line",
        "serde_floor_fps",
        "frames/s",
    );
    println!("{:-<72}", "");
    row("time (b)/(a)", "ratio_single_over_native", "×");
    row("time (c)/(a)", "ratio_batched_over_native", "×");
    row("time (a)/(d)", "ratio_native_over_floor", "×");
    row("time (c)/(d)", "ratio_batched_over_floor", "×");
    println!("{:-<72}", "");
    if report.get("py_ref_fps").is_some() {
        row(
            "pure-Python reference handler (same corpus)",
            "py_ref_fps",
            "frames/s",
        );
        row("CPython json.loads alone", "py_json_floor_fps", "frames/s");
        row("(a) / reference", "ratio_native_over_py_ref", "×");
        row("(b) / reference", "ratio_component_single_over_py_ref", "×");
        row(
            "(c) / reference",
            "ratio_component_batched_over_py_ref",
            "×",
        );
        if let Some(note) = report.get("py_ref_note").and_then(Value::as_str) {
            println!("reference skipped: {note}");
        }
        println!("{:-<72}", "");
    }
    row(
        "instantiate, pooling, fresh slot",
        "instantiate_us_pooling",
        "µs",
    );
    row(
        "instantiate, pooling, reused slot",
        "instantiate_us_pooling_reused",
        "µs",
    );
    row("instantiate, on demand", "instantiate_us_ondemand", "µs");
    row("call: near-empty (dial-url)", "call_us_empty", "µs");
    row(
        "call: codec.decode, 283-byte inbound",
        "call_us_decode_283b",
        "µs",
    );
    row(
        "call: receive-text, 283-byte inbound",
        "call_us_receive_283b",
        "µs",
    );
    row(
        "RSS per instance alone (no task, no socket)",
        "rss_kib_per_instance_1k",
        "KiB",
    );
    row(
        "RSS per idle tenant, 1,000 tenants",
        "rss_kib_per_tenant_1k",
        "KiB",
    );
    row(
        "RSS per idle tenant, 10,000 tenants",
        "rss_kib_per_tenant_10k",
        "KiB",
    );
    for (rate, k) in [("1,000", "1k"), ("10,000", "10k")] {
        for p in ["p50", "p99", "p999"] {
            row(
                &format!("inbound latency {p}, {rate} frames/s, 100 tenants"),
                &format!("latency_us_{p}_{k}"),
                "µs",
            );
        }
        for p in ["p50", "p99", "p999"] {
            row(
                &format!("outbound round trip {p}, {rate} frames/s"),
                &format!("outbound_rtt_us_{p}_{k}"),
                "µs",
            );
        }
    }
}

/// CPU model, core count and OS, so a number is never quoted without its machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!(
        "{cpu}, {cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
