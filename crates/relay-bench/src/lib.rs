//! `relay-bench`: throughput, tenant density and latency, measured side by
//! side in one run and reported as ratios. Numbers come from here, never from
//! timed tests.

pub mod bare_relay;
pub mod corpus;
pub mod e2e;
pub mod feeder;
pub mod floors;
pub mod live;
pub mod python_ref;
pub mod saturation;
pub mod throughput;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use relay_host::sandbox::{Allocation, Limits, Runtime};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct BenchOptions {
    /// Shorter budgets: about a minute on 2 cores.
    pub quick: bool,
    /// Smoke-test sizes (tens of tenants, a 400-line corpus, budgets of
    /// milliseconds), for the tests: every key is written, no number means
    /// anything. Wins over `quick`.
    pub tiny: bool,
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
    /// Frames per second end to end: WebSocket in, events to the application,
    /// through the sidecar's stdio loop (e) and the typed in-process client (f).
    E2e,
    /// Instantiation time per tenant.
    Instantiate,
    /// Resident memory per instance, per idle connected tenant and per bare
    /// idle WebSocket connection.
    Density,
    /// Latency percentiles at two fixed rates, the saturation rate, latency at
    /// 25/50/75 % of it, and a bare WebSocket echo at 50 %.
    Latency,
}

impl BenchOptions {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// The seed of the generated corpus; fixed so runs compare.
pub const CORPUS_SEED: u64 = 0x00c0_ffee;

/// Lines of the generated corpus. 70 % of them are messages with an identity
/// (inbound and Discord interactions), and a round must hold more identities
/// than a link remembers (4,096, D16) for the next round to be delivered again
/// rather than dropped as duplicates: 10,000 lines are 7,000 identities.
pub const CORPUS_LINES: usize = 10_000;

/// Tenants of the many-tenant measurements (end to end, latency).
pub const MANY_TENANTS: usize = 100;

/// How big each measurement is, from `--quick` / `--tiny`.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub corpus_lines: usize,
    /// Timed work per throughput pipeline.
    pub budget: Duration,
    /// Timed work per end-to-end pipeline (at least one repeat).
    pub e2e_budget: Duration,
    pub instantiate: usize,
    /// Tenants (and bare connections) of the `_1k` density figures.
    pub density_small: usize,
    /// Tenants of the `_10k` density figure.
    pub density_large: usize,
    pub many_tenants: usize,
    /// Timed duration of each latency probe (at a fraction of saturation: all
    /// its segments together).
    pub probe: Duration,
    /// Segments of each probe at a fraction of saturation, run in turns.
    pub segments: usize,
    /// Duration of the saturation run.
    pub saturation: Duration,
    /// Untimed start of each segment.
    pub warmup: Duration,
    /// `runs` of the Python reference.
    pub py_runs: u32,
}

impl BenchOptions {
    /// The sizes these options ask for.
    pub fn sizes(&self) -> Sizes {
        if self.tiny {
            Sizes {
                corpus_lines: 400,
                budget: Duration::from_millis(50),
                e2e_budget: Duration::ZERO,
                instantiate: 20,
                density_small: 20,
                density_large: 40,
                many_tenants: 10,
                probe: Duration::from_millis(300),
                segments: 2,
                saturation: Duration::from_millis(300),
                warmup: Duration::from_millis(50),
                py_runs: 1,
            }
        } else if self.quick {
            Sizes {
                corpus_lines: CORPUS_LINES,
                budget: Duration::from_millis(1_500),
                e2e_budget: Duration::from_millis(1_500),
                instantiate: 200,
                density_small: 1_000,
                density_large: 10_000,
                many_tenants: MANY_TENANTS,
                probe: Duration::from_millis(2_000),
                segments: 5,
                saturation: Duration::from_millis(2_000),
                warmup: Duration::from_millis(50),
                py_runs: 3,
            }
        } else {
            Sizes {
                corpus_lines: CORPUS_LINES,
                budget: Duration::from_millis(5_000),
                e2e_budget: Duration::from_millis(5_000),
                instantiate: 1_000,
                density_small: 1_000,
                density_large: 10_000,
                many_tenants: MANY_TENANTS,
                probe: Duration::from_millis(10_000),
                segments: 10,
                saturation: Duration::from_millis(5_000),
                warmup: Duration::from_millis(100),
                py_runs: 5,
            }
        }
    }
}

/// Runs the benchmarks and returns the report object (`--json` writes it as is).
pub fn run(opts: &BenchOptions) -> anyhow::Result<Value> {
    let sizes = opts.sizes();
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine().into());
    report.insert(
        "size".into(),
        if opts.tiny {
            "tiny"
        } else if opts.quick {
            "quick"
        } else {
            "full"
        }
        .into(),
    );
    let needs_corpus = opts.runs(Section::Throughput) || opts.runs(Section::E2e);
    let lines = if needs_corpus {
        load_corpus(opts, &sizes)?
    } else {
        Vec::new()
    };
    let t = if opts.runs(Section::Throughput) {
        Some(throughput_section(opts, &sizes, &lines, &mut report)?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if opts.runs(Section::E2e) {
        rt.block_on(e2e_section(&sizes, &lines, &mut report))?;
    }
    if let (Some(script), true) = (&opts.python_ref, needs_corpus) {
        python_reference(script, &lines, t.as_ref(), sizes.py_runs, &mut report)?;
    }
    if opts.runs(Section::Instantiate) {
        let (fresh, reused, ondemand) = throughput::instantiate_us(sizes.instantiate)?;
        report.insert("instantiate_us_pooling".into(), fresh.into());
        report.insert("instantiate_us_pooling_reused".into(), reused.into());
        report.insert("instantiate_us_ondemand".into(), ondemand.into());
        report.insert(
            "instantiate_us_empty_component".into(),
            floors::empty_component_instantiate_us(sizes.instantiate)?.into(),
        );
    }
    if opts.runs(Section::Density) {
        // Each figure in a process of its own: memory freed by one measurement
        // and kept by the allocator would be reused by the next and not counted.
        for (key, what, n) in [
            (
                "rss_kib_per_instance_1k",
                DensityProbe::Instances,
                sizes.density_small,
            ),
            (
                "rss_kib_per_tenant_1k",
                DensityProbe::Tenants,
                sizes.density_small,
            ),
            (
                "rss_kib_per_tenant_10k",
                DensityProbe::Tenants,
                sizes.density_large,
            ),
            ("rss_kib_bare_ws", DensityProbe::BareWs, sizes.density_small),
        ] {
            // A probe the machine cannot hold (10,000 tenants need more memory
            // mappings than Linux allows by default) is a note, not the end of
            // the run.
            match density_in_child(what, n) {
                Ok(kib) => {
                    report.insert(key.into(), kib.into());
                }
                Err(e) => {
                    eprintln!("note: {key} skipped: {e:#}");
                    report.insert(key.into(), Value::Null);
                    report.insert(format!("{key}_note"), format!("{e:#}").into());
                }
            }
        }
        report.insert("rss_bare_ws_connections".into(), sizes.density_small.into());
    }
    if opts.runs(Section::Latency) {
        rt.block_on(latency_section(&sizes, &mut report))?;
    }
    let targets = targets(&report);
    report.insert("targets".into(), targets);
    Ok(Value::Object(report))
}

/// The run's corpus: `--corpus`, or the generated one.
fn load_corpus(opts: &BenchOptions, sizes: &Sizes) -> anyhow::Result<Vec<String>> {
    let lines = match &opts.corpus {
        Some(path) => corpus::load(path)?,
        None => corpus::generate(CORPUS_SEED, sizes.corpus_lines),
    };
    anyhow::ensure!(!lines.is_empty(), "the corpus is empty");
    Ok(lines)
}

/// One figure of the density section, measured in a child process
/// (`relay-bench density-probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DensityProbe {
    /// Component instances alone, each with a connection past its handshake.
    Instances,
    /// Idle connected tenants of the host.
    Tenants,
    /// Idle bare WebSocket connections.
    BareWs,
}

/// Resident KiB per item of `what` with `n` of them, in this process (what the
/// child runs).
pub fn density_probe(what: DensityProbe, n: usize) -> anyhow::Result<f64> {
    match what {
        DensityProbe::Instances => live::rss_per_instance(n),
        DensityProbe::Tenants | DensityProbe::BareWs => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                match what {
                    DensityProbe::Tenants => live::rss_per_tenant(n).await,
                    _ => floors::rss_per_bare_ws(n).await,
                }
            })
        }
    }
}

fn density_in_child(what: DensityProbe, n: usize) -> anyhow::Result<f64> {
    let name = match what {
        DensityProbe::Instances => "instances",
        DensityProbe::Tenants => "tenants",
        DensityProbe::BareWs => "bare-ws",
    };
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["density-probe", name, &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the density probe ({name}, {n}) failed: {} (its error is above; with many \
         tenants, often vm.max_map_count: docs/DEPLOY.md)",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("the density probe printed {text:?}: {e}"))
}

/// Item 1 of the report: the four pipelines, their ratios and the call costs.
fn throughput_section(
    opts: &BenchOptions,
    sizes: &Sizes,
    lines: &[String],
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<throughput::Throughput> {
    let replay = corpus::replay_check(lines)?;
    if !replay.delivers_all() {
        eprintln!(
            "note: a second round of this corpus delivers {} of the {} events of the \
             first: the rest are messages the link already delivered (D16 remembers \
             4,096), so every round after the first times the duplicate path",
            replay.second, replay.first
        );
    }
    let t = throughput::measure(lines, sizes.budget)?;
    let (call_empty_us, call_decode_us, call_receive_us) = throughput::call_costs()?;
    let values = json!({
        "corpus": {
            "source": opts.corpus.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("generated, seed {CORPUS_SEED:#x}")),
            "frames": t.frames,
            "bytes": t.bytes,
            "batch_frames_per_message": throughput::BATCH,
            "events_first_round": replay.first,
            "events_second_round": replay.second,
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
    Ok(t)
}

/// (e) and (f), one tenant and [`MANY_TENANTS`] (the corpus split between them).
async fn e2e_section(
    sizes: &Sizes,
    lines: &[String],
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let corpus = e2e::messages(lines);
    let many = sizes.many_tenants;
    // The allocation `Host::start` picks: on demand for one tenant, pooling
    // above 50 (two slots per tenant, plus eight).
    let single = Arc::new(Runtime::new(Allocation::OnDemand, Limits::default())?);
    let pooled = live::runtime_for(many)?;
    let mut events_per_corpus = 0;
    for (consumer, key) in [
        (e2e::Consumer::Sidecar, "e2e_sidecar_fps"),
        (e2e::Consumer::InProcess, "e2e_inprocess_fps"),
    ] {
        let one = e2e::measure(consumer, &single, &corpus, 1, sizes.e2e_budget).await?;
        if consumer == e2e::Consumer::Sidecar {
            events_per_corpus = one.events_per_repeat;
        }
        report.insert(key.into(), one.fps.into());
        let n = e2e::measure(consumer, &pooled, &corpus, many, sizes.e2e_budget).await?;
        report.insert(format!("{key}_{MANY_TENANTS}"), n.fps.into());
        // The floor: the same bytes, connections and consumer, no relay.
        let bare_key = key.replace("e2e_", "e2e_bare_");
        let bare = bare_relay::measure(consumer, &corpus, 1, sizes.e2e_budget).await?;
        report.insert(bare_key.clone(), bare.fps.into());
        report.insert(
            format!("ratio_{key}_over_bare").replace("_fps_", "_"),
            (bare.fps / one.fps).into(),
        );
        let bare_n = bare_relay::measure(consumer, &corpus, many, sizes.e2e_budget).await?;
        report.insert(format!("{bare_key}_{MANY_TENANTS}"), bare_n.fps.into());
    }
    report.insert("e2e_events_per_corpus".into(), events_per_corpus.into());
    report.insert("e2e_tenants_many".into(), many.into());
    Ok(())
}

fn insert_percentiles(
    report: &mut serde_json::Map<String, Value>,
    name: &str,
    suffix: &str,
    p: &live::Percentiles,
) {
    report.insert(format!("{name}_p50_{suffix}"), p.p50.into());
    report.insert(format!("{name}_p99_{suffix}"), p.p99.into());
    report.insert(format!("{name}_p999_{suffix}"), p.p999.into());
    report.insert(format!("{name}_samples_{suffix}"), p.samples.into());
}

/// Fixed rates through the emulator (as before), then the saturation rate and
/// the fractions of it through the feeder, and the echo floor.
async fn latency_section(
    sizes: &Sizes,
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let tenants = sizes.many_tenants;
    for (rate, k) in [(1_000, "1k"), (10_000, "10k")] {
        let (inbound, outbound) = live::latency(rate, tenants, sizes.probe).await?;
        insert_percentiles(report, "latency_us", k, &inbound);
        insert_percentiles(report, "outbound_rtt_us", k, &outbound);
    }
    report.insert("latency_tenants".into(), tenants.into());
    report.insert(
        "latency_probe_ms".into(),
        (sizes.probe.as_millis() as u64).into(),
    );

    let mut host = saturation::Rig::host(tenants).await?;
    let mut echo = match saturation::Rig::echo(tenants).await {
        Ok(echo) => echo,
        Err(e) => {
            host.shutdown().await;
            return Err(e);
        }
    };
    let measured = fractions(sizes, &mut host, &mut echo).await;
    host.shutdown().await;
    echo.shutdown().await;
    let (sat, points) = measured?;
    report.insert("saturation_fps".into(), sat.into());
    for (suffix, (one_way, rtt)) in points {
        if suffix == "echo" {
            insert_percentiles(report, "echo_us", "half_sat", &live::percentiles(one_way));
            insert_percentiles(report, "echo_rtt_us", "half_sat", &live::percentiles(rtt));
        } else {
            insert_percentiles(report, "latency_us", suffix, &live::percentiles(one_way));
        }
    }
    report.insert("latency_segments".into(), sizes.segments.into());
    Ok(())
}

type Samples = (Vec<f64>, Vec<f64>);

/// The saturation rate, then each point's samples: the host at 25, 50 and
/// 75 % of it and the echo at 50 %, in turns of `sizes.segments` segments.
async fn fractions(
    sizes: &Sizes,
    host: &mut saturation::Rig,
    echo: &mut saturation::Rig,
) -> anyhow::Result<(f64, Vec<(&'static str, Samples)>)> {
    let sat = host.saturate(sizes.saturation).await?;
    anyhow::ensure!(sat > 0.0, "no probe arrived while saturating");
    let points: [(&'static str, f64); 4] = [
        ("quarter_sat", 0.25),
        ("half_sat", 0.50),
        ("three_quarter_sat", 0.75),
        ("echo", 0.50),
    ];
    let mut samples: Vec<(&'static str, Samples)> = points
        .iter()
        .map(|(name, _)| (*name, Samples::default()))
        .collect();
    let segments = sizes.segments.max(1);
    let timed = sizes.probe / segments as u32;
    for _ in 0..segments {
        for (i, (name, fraction)) in points.iter().enumerate() {
            let rig = if *name == "echo" {
                &mut *echo
            } else {
                &mut *host
            };
            let (one_way, rtt) = rig
                .probe(sat * fraction, sizes.warmup + timed, sizes.warmup)
                .await?;
            samples[i].1 .0.extend(one_way);
            samples[i].1 .1.extend(rtt);
        }
    }
    Ok((sat, samples))
}

/// The targets of issue #15, each `{name, value, bound, met}` (`value` and `met`
/// null when a section it needs did not run or a figure is missing).
pub fn targets(report: &serde_json::Map<String, Value>) -> Value {
    let f = |k: &str| report.get(k).and_then(Value::as_f64).filter(|v| *v > 0.0);
    let ratio = |a: &str, b: &str| Some(f(a)? / f(b)?);
    let list = [
        // Speeds: a multiple to reach.
        (
            "(e) sidecar end to end / Python reference",
            ratio("e2e_sidecar_fps", "py_ref_fps"),
            ">=",
            10.0,
        ),
        (
            "(f) in-process end to end / Python reference",
            ratio("e2e_inprocess_fps", "py_ref_fps"),
            ">=",
            15.0,
        ),
        (
            "(a) native / (d) serde_json::Value floor",
            ratio("native_fps", "serde_floor_fps"),
            ">=",
            1.0,
        ),
        // Costs: a multiple not to exceed.
        (
            "(c) batched component time / (a) native time",
            f("ratio_batched_over_native"),
            "<=",
            1.25,
        ),
        (
            "instantiate (pooling, fresh slot) / empty component",
            ratio("instantiate_us_pooling", "instantiate_us_empty_component"),
            "<=",
            1.5,
        ),
        (
            "RSS per idle tenant (1k) / bare idle WebSocket",
            ratio("rss_kib_per_tenant_1k", "rss_kib_bare_ws"),
            "<=",
            1.5,
        ),
        (
            "inbound p99 at 50 % saturation / echo p99",
            ratio("latency_us_p99_half_sat", "echo_us_p99_half_sat"),
            "<=",
            3.0,
        ),
    ];
    Value::Array(
        list.iter()
            .map(|(name, value, op, bound)| {
                let met = value.map(|v| {
                    if *op == ">=" {
                        v >= *bound
                    } else {
                        v <= *bound
                    }
                });
                json!({"name": name, "value": value, "op": op, "bound": bound, "met": met})
            })
            .collect(),
    )
}

/// `--python-ref`: the reference on the same lines, and each pipeline's speed as a
/// multiple of it (`null` with a note when it cannot run).
fn python_reference(
    script: &std::path::Path,
    lines: &[String],
    t: Option<&throughput::Throughput>,
    runs: u32,
    report: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("relay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let corpus = dir.join("corpus.ndjson");
    std::fs::write(&corpus, lines.join("\n") + "\n")?;
    let result = python_ref::run(script, &corpus, runs);
    let _ = std::fs::remove_dir_all(&dir);
    let fps = |s: f64| throughput::Throughput::fps(s);
    match result {
        Ok(r) => {
            report.insert("py_ref_fps".into(), r.py_ref_fps.into());
            report.insert("py_json_floor_fps".into(), r.py_json_floor_fps.into());
            if let Some(t) = t {
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
            for key in [
                "e2e_sidecar_fps",
                "e2e_inprocess_fps",
                "e2e_bare_sidecar_fps",
                "e2e_bare_inprocess_fps",
            ] {
                if let Some(v) = report.get(key).and_then(Value::as_f64) {
                    report.insert(
                        format!("ratio_{key}_over_py_ref").replace("_fps_", "_"),
                        (v / r.py_ref_fps).into(),
                    );
                }
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

/// Prints the report as a table: groups of rows, a row only when its key is
/// in the report (sections left out with --only print nothing).
pub fn print_table(report: &Value) {
    let f = |k: &str| report.get(k).and_then(Value::as_f64);
    println!("machine: {}", report["machine"].as_str().unwrap_or("?"));
    if report["size"] == "tiny" {
        println!("--tiny: smoke-test sizes; no number below means anything");
    }
    if let Some(corpus) = report.get("corpus") {
        println!(
            "corpus: {} ({} frames, {} bytes)",
            corpus["source"].as_str().unwrap_or("?"),
            corpus["frames"],
            corpus["bytes"]
        );
    }
    for group in rows() {
        let present: Vec<_> = group
            .into_iter()
            .filter_map(|(name, key, unit)| f(&key).map(|v| (name, v, unit)))
            .collect();
        if present.is_empty() {
            continue;
        }
        println!("{:-<72}", "");
        for (name, v, unit) in present {
            println!("{name:<54} {v:>12.1} {unit}");
        }
    }
    if let Some(note) = report.get("py_ref_note").and_then(Value::as_str) {
        println!("reference skipped: {note}");
    }
    if let Some(targets) = report.get("targets").and_then(Value::as_array) {
        println!("{:-<72}", "");
        println!("targets (issue #15)");
        for t in targets {
            let verdict = match t["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "not measured",
            };
            let op = if t["op"] == ">=" { "≥" } else { "≤" };
            println!(
                "{:<54} {:>7} {op} {:<5} {verdict}",
                t["name"].as_str().unwrap_or("?"),
                t["value"]
                    .as_f64()
                    .map_or("-".into(), |v| format!("{v:.2}")),
                t["bound"],
            );
        }
    }
}

type Row = (String, String, &'static str);

/// The table's groups of rows: label, report key, unit.
fn rows() -> Vec<Vec<Row>> {
    let r = |name: &str, key: &str, unit: &'static str| (name.to_string(), key.to_string(), unit);
    let fps = "frames/s";
    let mut groups = vec![
        vec![
            r("(a) native relay logic", "native_fps", fps),
            r(
                "(b) component, one frame per call",
                "component_fps_single",
                fps,
            ),
            r(
                "(c) component, 64 frames per message",
                "component_fps_batched",
                fps,
            ),
            r(
                "(c) the same, pooling allocator (bounds checks)",
                "component_fps_batched_pooling",
                fps,
            ),
            r(
                "(d) floor: serde_json::Value per line",
                "serde_floor_fps",
                fps,
            ),
        ],
        vec![
            r(
                "(e) end to end, sidecar stdio → pipe, 1 tenant",
                "e2e_sidecar_fps",
                fps,
            ),
            r(
                "(e) the same, corpus split over 100 tenants",
                "e2e_sidecar_fps_100",
                fps,
            ),
            r(
                "(f) end to end, typed in-process client, 1 tenant",
                "e2e_inprocess_fps",
                fps,
            ),
            r(
                "(f) the same, corpus split over 100 tenants",
                "e2e_inprocess_fps_100",
                fps,
            ),
            r(
                "floor of (e): bare WebSockets → pipe, no relay, 1",
                "e2e_bare_sidecar_fps",
                fps,
            ),
            r(
                "floor of (e), 100 connections",
                "e2e_bare_sidecar_fps_100",
                fps,
            ),
            r(
                "floor of (f): bare WebSockets → task, no relay, 1",
                "e2e_bare_inprocess_fps",
                fps,
            ),
            r(
                "floor of (f), 100 connections",
                "e2e_bare_inprocess_fps_100",
                fps,
            ),
            r(
                "time (e)/its floor, 1 tenant",
                "ratio_e2e_sidecar_over_bare",
                "×",
            ),
            r(
                "time (f)/its floor, 1 tenant",
                "ratio_e2e_inprocess_over_bare",
                "×",
            ),
        ],
        vec![
            r("time (b)/(a)", "ratio_single_over_native", "×"),
            r("time (c)/(a)", "ratio_batched_over_native", "×"),
            r("time (a)/(d)", "ratio_native_over_floor", "×"),
            r("time (c)/(d)", "ratio_batched_over_floor", "×"),
        ],
        vec![
            r(
                "pure-Python reference handler (same corpus)",
                "py_ref_fps",
                fps,
            ),
            r("CPython json.loads alone", "py_json_floor_fps", fps),
            r("(a) / reference", "ratio_native_over_py_ref", "×"),
            r("(b) / reference", "ratio_component_single_over_py_ref", "×"),
            r(
                "(c) / reference",
                "ratio_component_batched_over_py_ref",
                "×",
            ),
            r("(e) / reference", "ratio_e2e_sidecar_over_py_ref", "×"),
            r("(f) / reference", "ratio_e2e_inprocess_over_py_ref", "×"),
            r(
                "floor of (e) / reference",
                "ratio_e2e_bare_sidecar_over_py_ref",
                "×",
            ),
            r(
                "floor of (f) / reference",
                "ratio_e2e_bare_inprocess_over_py_ref",
                "×",
            ),
        ],
        vec![
            r(
                "instantiate, pooling, fresh slot",
                "instantiate_us_pooling",
                "µs",
            ),
            r(
                "instantiate, pooling, reused slot",
                "instantiate_us_pooling_reused",
                "µs",
            ),
            r("instantiate, on demand", "instantiate_us_ondemand", "µs"),
            r(
                "instantiate the empty component, pooling, fresh slot",
                "instantiate_us_empty_component",
                "µs",
            ),
            r("call: near-empty (dial-url)", "call_us_empty", "µs"),
            r(
                "call: codec.decode, 283-byte inbound",
                "call_us_decode_283b",
                "µs",
            ),
            r(
                "call: receive-text, 283-byte inbound",
                "call_us_receive_283b",
                "µs",
            ),
        ],
        vec![
            r(
                "RSS per instance alone (no task, no socket)",
                "rss_kib_per_instance_1k",
                "KiB",
            ),
            r(
                "RSS per idle tenant, 1,000 tenants",
                "rss_kib_per_tenant_1k",
                "KiB",
            ),
            r(
                "RSS per idle tenant, 10,000 tenants",
                "rss_kib_per_tenant_10k",
                "KiB",
            ),
            r(
                "RSS per idle bare WebSocket connection, 1,000",
                "rss_kib_bare_ws",
                "KiB",
            ),
        ],
    ];
    let mut fixed = Vec::new();
    for (rate, k) in [("1,000", "1k"), ("10,000", "10k")] {
        for p in ["p50", "p99", "p999"] {
            fixed.push(r(
                &format!("inbound latency {p}, {rate} frames/s, 100 tenants"),
                &format!("latency_us_{p}_{k}"),
                "µs",
            ));
        }
        for p in ["p50", "p99", "p999"] {
            fixed.push(r(
                &format!("outbound round trip {p}, {rate} frames/s"),
                &format!("outbound_rtt_us_{p}_{k}"),
                "µs",
            ));
        }
    }
    groups.push(fixed);
    let mut sat = vec![r(
        "saturation: inbound rate sustained, 100 tenants",
        "saturation_fps",
        fps,
    )];
    for (share, k) in [
        ("25", "quarter_sat"),
        ("50", "half_sat"),
        ("75", "three_quarter_sat"),
    ] {
        for p in ["p50", "p99", "p999"] {
            sat.push(r(
                &format!("inbound latency {p} at {share} % of saturation"),
                &format!("latency_us_{p}_{k}"),
                "µs",
            ));
        }
    }
    for p in ["p50", "p99", "p999"] {
        sat.push(r(
            &format!("bare WebSocket one way {p}, 50 % of saturation"),
            &format!("echo_us_{p}_half_sat"),
            "µs",
        ));
    }
    sat.push(r(
        "bare WebSocket echo round trip p99, 50 % of saturation",
        "echo_rtt_us_p99_half_sat",
        "µs",
    ));
    groups.push(sat);
    groups
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pairs: &[(&str, f64)]) -> serde_json::Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect()
    }

    fn verdict(targets: &Value, prefix: &str) -> (Option<f64>, Option<bool>) {
        let t = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no target {prefix}"));
        (t["value"].as_f64(), t["met"].as_bool())
    }

    #[test]
    fn targets_are_judged_in_the_right_direction() {
        let t = targets(&report(&[
            ("e2e_sidecar_fps", 600_000.0),
            ("e2e_inprocess_fps", 700_000.0),
            ("py_ref_fps", 50_000.0),
            ("native_fps", 300_000.0),
            ("serde_floor_fps", 400_000.0),
            ("ratio_batched_over_native", 1.25),
            ("instantiate_us_pooling", 30.0),
            ("instantiate_us_empty_component", 10.0),
            ("rss_kib_per_tenant_1k", 150.0),
            ("rss_kib_bare_ws", 100.0),
            ("latency_us_p99_half_sat", 300.0),
            ("echo_us_p99_half_sat", 100.0),
        ]));
        assert_eq!(verdict(&t, "(e)"), (Some(12.0), Some(true)));
        assert_eq!(verdict(&t, "(f)"), (Some(14.0), Some(false)));
        assert_eq!(verdict(&t, "(a)"), (Some(0.75), Some(false)));
        // At the bound is met, for both directions.
        assert_eq!(verdict(&t, "(c)"), (Some(1.25), Some(true)));
        assert_eq!(verdict(&t, "instantiate"), (Some(3.0), Some(false)));
        assert_eq!(verdict(&t, "RSS"), (Some(1.5), Some(true)));
        assert_eq!(verdict(&t, "inbound p99"), (Some(3.0), Some(true)));
    }

    #[test]
    fn a_missing_or_null_figure_leaves_its_target_unjudged() {
        let mut r = report(&[("e2e_sidecar_fps", 600_000.0)]);
        r.insert("py_ref_fps".into(), Value::Null);
        let t = targets(&r);
        assert_eq!(verdict(&t, "(e)"), (None, None));
        assert_eq!(verdict(&t, "inbound p99"), (None, None));
    }
}
