//! Pipeline throughput, measured side by side in one run: the guest logic compiled
//! natively, the component one frame per call, the component one WebSocket message
//! of many frames per call, and a bare `serde_json::Value` parse as the floor.

use std::time::{Duration, Instant};

use relay_logic::session::{
    Config as NativeConfig, Connection as NativeConnection, Identity as NativeIdentity,
};
use serde_json::Value;

use relay_host::sandbox::{
    block_on, document, Allocation, Effect, Identity, Limits, LinkConfig, LinkHandle, Options,
    Runtime, Sandbox,
};

/// A handshake line so the connection is past its handshake when frames arrive.
pub const DESCRIPTOR_LINE: &str = "{\"type\": \"descriptor\", \"descriptor\": {\"contract_version\": 1, \"platform\": \"discord\", \"label\": \"Discord\", \"max_message_length\": 2000, \"supports_draft_streaming\": false, \"supports_edit\": true, \"supports_threads\": true, \"markdown_dialect\": \"discord\", \"len_unit\": \"chars\"}}\n";

/// Frames per WebSocket message in the batched measurement.
pub const BATCH: usize = 64;

/// Seconds per frame of each pipeline (lower is better).
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    pub native_s: f64,
    pub component_single_s: f64,
    pub component_batched_s: f64,
    /// (c) with the pooling allocator a host uses above 50 tenants: each memory
    /// reserves only its cap, so the compiled code checks bounds explicitly.
    pub component_batched_pooling_s: f64,
    pub serde_floor_s: f64,
    pub frames: usize,
    pub bytes: usize,
}

impl Throughput {
    /// Frames per second of a per-frame time.
    pub fn fps(per_frame_s: f64) -> f64 {
        if per_frame_s > 0.0 {
            1.0 / per_frame_s
        } else {
            0.0
        }
    }
}

/// The native equivalent of [`component_config`].
pub fn native_config() -> NativeConfig {
    let mut c = NativeConfig::new(vec![NativeIdentity {
        platform: "discord".into(),
        bot_id: "app".into(),
        command_manifest: None,
    }]);
    c.seed = 7;
    c
}

/// The WIT config equivalent to [`native_config`] (every other setting the
/// component's default).
pub fn component_config() -> LinkConfig {
    LinkConfig {
        identities: vec![Identity {
            platform: "discord".into(),
            bot_id: "app".into(),
            command_manifest: None,
        }],
        url: String::new(),
        tenant: None,
        seed: 7,
        unix_offset_ms: 0,
        gateway_id: None,
        secret: None,
        options: Options::default(),
    }
}

/// A link in `sb` past its handshake (config of [`component_config`]).
pub fn ready_component(sb: &mut Sandbox) -> anyhow::Result<LinkHandle> {
    let link =
        block_on(sb.create_link(&component_config()))?.map_err(|e| anyhow::anyhow!(e.message))?;
    block_on(sb.open(link, 0))?;
    block_on(sb.receive_text(link, 0, DESCRIPTOR_LINE))?;
    Ok(link)
}

/// Default memory cap, but a CPU deadline a loaded machine cannot trip: the
/// epoch deadline counts wall time, and a descheduled thread would be stopped.
pub fn bench_limits() -> Limits {
    Limits {
        cpu_per_call: Duration::from_secs(10),
        ..Limits::default()
    }
}

/// Runs `f` over the corpus `rounds` times after one warm-up round; per-frame time.
fn per_frame(
    rounds: usize,
    frames: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..rounds {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / (rounds * frames) as f64)
}

/// The least a host does with a call's effects, counted in (b) and (c): check
/// that every emitted document is UTF-8, since the component is untrusted.
pub fn settle(effects: Vec<Effect>) -> anyhow::Result<()> {
    for e in &effects {
        if let Effect::Emit(event) = e {
            anyhow::ensure!(
                document(&event.line).is_some(),
                "the component emitted an event that is not UTF-8"
            );
        }
    }
    std::hint::black_box(effects);
    Ok(())
}

/// Per-frame time of a fresh instance from `runtime` fed `messages` (one
/// `receive-text` call each) `rounds` times.
fn component_s(
    runtime: &Runtime,
    messages: &[String],
    rounds: usize,
    frames: usize,
) -> anyhow::Result<f64> {
    let mut sb = runtime.instantiate(bench_limits())?;
    let conn = ready_component(&mut sb)?;
    let mut now = 1;
    per_frame(rounds, frames, || {
        for m in messages {
            settle(block_on(sb.receive_text(conn, now, m))?)?;
        }
        now += 1;
        Ok(())
    })
}

/// Chooses a round count so each measurement takes about `budget`.
fn rounds_for(budget: Duration, one_round: Duration) -> usize {
    ((budget.as_secs_f64() / one_round.as_secs_f64().max(1e-9)) as usize).clamp(1, 10_000)
}

/// Measures all four pipelines over `lines` (each without its newline).
pub fn measure(lines: &[String], budget: Duration) -> anyhow::Result<Throughput> {
    let n = lines.len();
    let with_nl: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    let batches: Vec<String> = with_nl.chunks(BATCH).map(|c| c.concat()).collect();
    let bytes = with_nl.iter().map(String::len).sum();

    // (a) native guest logic.
    let mut native =
        NativeConnection::new(native_config()).map_err(|e| anyhow::anyhow!(e.message))?;
    native.open(0);
    native.receive_text(0, DESCRIPTOR_LINE);
    let mut now = 1;
    // Like for like with the component: text in, and every emitted event written
    // out as the JSON text the component hands its host.
    let mut native_round = || -> anyhow::Result<()> {
        for l in &with_nl {
            for effect in native.receive_text(now, l) {
                if let relay_logic::session::Effect::Emit(ev) = effect {
                    std::hint::black_box(ev.to_json_string());
                }
            }
        }
        now += 1;
        Ok(())
    };
    let t0 = Instant::now();
    native_round()?;
    let rounds = rounds_for(budget, t0.elapsed());
    let native_s = per_frame(rounds, n, &mut native_round)?;

    // (b) and (c): the component in wasmtime.
    let runtime = Runtime::new(Allocation::OnDemand, bench_limits())?;
    let single_s = component_s(&runtime, &with_nl, rounds, n)?;
    let batched_s = component_s(&runtime, &batches, rounds, n)?;
    let pooling = Runtime::new(Allocation::Pooling { max_instances: 8 }, bench_limits())?;
    let batched_pooling_s = component_s(&pooling, &batches, rounds, n)?;

    // (d) the floor: a generic value tree of each line and nothing else.
    let floor_s = per_frame(rounds, n, || {
        for l in lines {
            std::hint::black_box(serde_json::from_str::<Value>(l)?);
        }
        Ok(())
    })?;

    Ok(Throughput {
        native_s,
        component_single_s: single_s,
        component_batched_s: batched_s,
        component_batched_pooling_s: batched_pooling_s,
        serde_floor_s: floor_s,
        frames: n,
        bytes,
    })
}

/// Mean time to instantiate one tenant (a new `Store` + instance from the shared
/// `InstancePre`), keeping `count` alive: pooling into slots never used before (a
/// host starting its tenants), pooling into slots freed by the previous `count`
/// (restarts), and on-demand allocation.
pub fn instantiate_us(count: usize) -> anyhow::Result<(f64, f64, f64)> {
    let limits = Limits::default();
    let batch = |runtime: &Runtime| -> anyhow::Result<f64> {
        let mut alive = Vec::with_capacity(count);
        let start = Instant::now();
        for _ in 0..count {
            alive.push(runtime.instantiate(limits)?);
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / count as f64;
        drop(alive);
        Ok(us)
    };
    let pooling = Runtime::new(
        Allocation::Pooling {
            max_instances: count as u32 + 8,
        },
        limits,
    )?;
    // Warm up the code and the allocator once; that slot is then warm too, which
    // is one of `count`.
    drop(pooling.instantiate(limits)?);
    let fresh = batch(&pooling)?;
    let reused = batch(&pooling)?;
    let on_demand = Runtime::new(Allocation::OnDemand, limits)?;
    drop(on_demand.instantiate(limits)?);
    let ondemand = batch(&on_demand)?;
    Ok((fresh, reused, ondemand))
}

/// The 283-byte inbound line `embed/python/bench.py` and `embed/js/bench.mjs` time,
/// so the per-call costs of the three embeddings compare.
pub const CALL_COST_LINE: &str = r#"{"type": "inbound", "event": {"text": "hello there, this is a typical short chat message", "message_id": "1700000000.000100", "source": {"platform": "slack", "chat_id": "C0123456", "chat_type": "channel", "user_id": "U0ABCDEF", "user_name": "ada", "thread_id": "1700000000.000001"}}}"#;

/// Distinct messages the call-cost loops cycle through. A repeated message is not
/// delivered again (D16), so timing one line over and over would time the
/// duplicate path; more than the component remembers (4096) keeps every call a
/// fresh delivery, evictions included.
pub const CALL_COST_POOL: usize = 16_384;

/// [`CALL_COST_LINE`] with its message id replaced by number `i` (same length).
pub fn call_cost_line(i: usize) -> String {
    CALL_COST_LINE.replace(
        "1700000000.000100",
        &format!("1700000000.{:06}", i % 1_000_000),
    )
}

/// Median µs per call into the component from this host: a near-empty call
/// (`dial-url`), `codec.decode` of [`CALL_COST_LINE`], and `receive-text` of it
/// (each call a different message, see [`CALL_COST_POOL`]).
pub fn call_costs() -> anyhow::Result<(f64, f64, f64)> {
    let runtime = Runtime::new(Allocation::OnDemand, Limits::default())?;
    let mut sb = runtime.instantiate(Limits::default())?;
    let conn = ready_component(&mut sb)?;
    let texts: Vec<String> = (0..CALL_COST_POOL)
        .map(|i| format!("{}\n", call_cost_line(i)))
        .collect();
    let mut next = 0usize;
    let mut median =
        |f: &mut dyn FnMut(&mut Sandbox) -> anyhow::Result<()>| -> anyhow::Result<f64> {
            let mut batches = Vec::new();
            for _ in 0..7 {
                let start = Instant::now();
                for _ in 0..2_000 {
                    f(&mut sb)?;
                }
                batches.push(start.elapsed().as_secs_f64() * 1e6 / 2_000.0);
            }
            batches.sort_by(f64::total_cmp);
            Ok(batches[batches.len() / 2])
        };
    let empty = median(&mut |sb| {
        block_on(sb.dial_url("https://x.example"))
            .map(drop)
            .map_err(Into::into)
    })?;
    let decode = median(&mut |sb| {
        block_on(sb.decode(CALL_COST_LINE.as_bytes(), 1 << 20))
            .map(drop)
            .map_err(Into::into)
    })?;
    let receive = median(&mut |sb| {
        next = (next + 1) % texts.len();
        block_on(sb.receive_text(conn, 3, &texts[next]))
            .map(drop)
            .map_err(Into::into)
    })?;
    Ok((empty, decode, receive))
}
