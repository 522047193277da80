//! Measurements with real tenants on loopback: resident memory per idle tenant
//! (component instance + task + socket) and end-to-end latency percentiles.
//!
//! Density runs the connector emulator in a child process so the host process's
//! resident memory holds only the host side. Latency runs it in-process so one
//! monotonic clock times a frame from the moment the emulator is asked to send it
//! until the host hands the application its event, serialised as for stdout.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use relay_connector::{Command, Connector, ConnectorOptions};
use relay_host::app::{Host, HostHandle, HostOptions};
use relay_host::sandbox::{Allocation, Limits, Runtime};
use relay_host::spec::{IdentitySpec, TenantSpec};

/// Resident set size of this process in KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises the open-file limit to its hard maximum: every tenant holds a socket
/// (Unix; elsewhere the limit stays as it is and 0 is returned).
#[cfg(not(unix))]
pub fn raise_fd_limit() -> u64 {
    0
}

/// Raises the open-file limit to its hard maximum: every tenant holds a socket.
#[cfg(unix)]
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

fn specs(url: &str, n: usize) -> anyhow::Result<Vec<TenantSpec>> {
    specs_with_bots(url, n, |i| format!("b{i}"))
}

/// `n` tenants `t0`… dialling `url`, tenant `i` a discord bot `bot_id(i)` with seed `i + 1`.
pub(crate) fn specs_with_bots(
    url: &str,
    n: usize,
    bot_id: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<TenantSpec>> {
    (0..n)
        .map(|i| {
            let mut spec = TenantSpec::new(
                format!("t{i}"),
                url.to_string(),
                vec![IdentitySpec {
                    platform: "discord".into(),
                    bot_id: bot_id(i),
                    command_manifest: None,
                }],
            )?;
            spec.seed = i as u64 + 1;
            Ok(spec)
        })
        .collect()
}

pub fn runtime_for(n: usize) -> anyhow::Result<Arc<Runtime>> {
    let allocation = Allocation::Pooling {
        max_instances: (n as u32).saturating_mul(2).saturating_add(8),
    };
    Ok(Arc::new(Runtime::new(allocation, Limits::default())?))
}

/// Waits until `n` tenants reported `ready`; other events are dropped.
pub(crate) async fn await_ready(
    events: &mut relay_host::app::Events,
    n: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut ready = 0;
    while ready < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ev)) if ev.value()["event"] == "ready" => ready += 1,
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!("the host stopped after {ready} of {n} tenants were ready"),
            Err(_) => anyhow::bail!("only {ready} of {n} tenants were ready within {limit:?}"),
        }
    }
    Ok(())
}

/// The connector emulator in a child process (`relay-bench connector`), so this
/// process's resident memory holds only the side being measured. Killed on drop.
pub struct EmulatorChild {
    /// Where it listens (`host:port`).
    pub addr: String,
    _child: tokio::process::Child,
}

impl EmulatorChild {
    /// Starts it and waits for the address it reports.
    pub async fn start() -> anyhow::Result<EmulatorChild> {
        let exe = std::env::current_exe()?;
        let mut child = tokio::process::Command::new(exe)
            .args(["connector", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await??;
        let listening: Value = serde_json::from_str(&first.unwrap_or_default())?;
        let addr = listening["listening"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the emulator did not report its address"))?
            .to_string();
        // Its report stream must keep flowing or it would block on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(EmulatorChild {
            addr,
            _child: child,
        })
    }
}

/// Resident KiB per idle, connected tenant with `n` tenants, against an emulator
/// running in a child process (`relay-bench connector`).
pub async fn rss_per_tenant(n: usize) -> anyhow::Result<f64> {
    raise_fd_limit();
    let emulator = EmulatorChild::start().await?;
    let runtime = runtime_for(n)?;
    let specs = specs(&format!("ws://{}", emulator.addr), n)?;
    let before = rss_kib();
    let options = HostOptions {
        shutdown_grace: Duration::from_millis(200),
        ..HostOptions::default()
    };
    let (handle, mut events) = Host::start_with_runtime(runtime, specs, options)?;
    let drained = await_ready(&mut events, n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib();
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(20), handle.shutdown()).await;
    drop(emulator);
    drained?;
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub samples: usize,
}

pub(crate) fn percentiles(mut us: Vec<f64>) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        samples: us.len(),
    }
}

/// Inbound latency (emulator → host → serialised `message` event) and outbound
/// round trip (`outbound` command → frame → result → `outbound_result` event), at
/// `rate` frames per second aggregate over `tenants` tenants for `duration`.
pub async fn latency(
    rate: u32,
    tenants: usize,
    duration: Duration,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    raise_fd_limit();
    let connector = Connector::start(ConnectorOptions::default()).await?;
    let runtime = runtime_for(tenants)?;
    let (handle, mut events) = Host::start_with_runtime(
        runtime,
        specs(&connector.url(), tenants)?,
        HostOptions::default(),
    )?;
    await_ready(&mut events, tenants, Duration::from_secs(60)).await?;
    // Which emulator connection belongs to which tenant (by its bot id).
    let mut conn_of = vec![0u64; tenants];
    for c in connector.connections() {
        if let Some((_, bot)) = c.hellos.first() {
            if let Some(i) = bot.strip_prefix('b').and_then(|i| i.parse::<usize>().ok()) {
                if i < tenants {
                    conn_of[i] = c.conn;
                }
            }
        }
    }

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let inbound_us = Arc::new(Mutex::new(Vec::new()));
    let outbound_us = Arc::new(Mutex::new(Vec::new()));
    let collector = {
        let (sent, inbound_us, outbound_us) =
            (sent.clone(), inbound_us.clone(), outbound_us.clone());
        tokio::spawn(async move {
            while let Some(line) = events.recv().await {
                // What an application does with the line: parse it.
                let ev = line.value();
                let key = match ev["event"].as_str() {
                    Some("message") => ev["message"]["message_id"]
                        .as_str()
                        .map(|k| (k.to_string(), &inbound_us)),
                    Some("outbound_result") => {
                        ev["id"].as_str().map(|k| (k.to_string(), &outbound_us))
                    }
                    _ => None,
                };
                std::hint::black_box(line);
                if let Some((k, into)) = key {
                    if let Some(t0) = lock(&sent).remove(&k) {
                        lock(into).push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                }
            }
        })
    };

    // Arrivals form a Poisson process at `rate` (exponential gaps from a fixed
    // seed), as from 100 independent tenants, alternating inbound and outbound. A
    // thread of its own paces them: tokio's timers tick in whole milliseconds and
    // would send them in bursts of rate/1000 (measured as queueing, not latency).
    // The clock starts right before a frame is handed to the emulator or the host.
    let connector = Arc::new(connector);
    let pacer = {
        let (connector, handle, sent) = (connector.clone(), handle.clone(), sent.clone());
        let rt = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || {
                let mut seq = 0u64;
                pace_poisson(rate, duration, |_| {
                    seq += 1;
                    let t = (seq as usize) % tenants;
                    if seq.is_multiple_of(2) {
                        let key = format!("L{seq}");
                        let event = json!({"text": "latency probe", "message_id": key,
                                           "source": {"platform": "discord", "chat_id": "c1", "user_id": "u1"}});
                        let mut cmd = Command::inbound(event, false);
                        if let Command::Inbound(i) = &mut cmd {
                            i.conn = Some(conn_of[t]);
                        }
                        lock(&sent).insert(key, Instant::now());
                        let _ = connector.inject(cmd);
                    } else {
                        let key = format!("O{seq}");
                        lock(&sent).insert(key.clone(), Instant::now());
                        rt.block_on(send_outbound(&handle, t, &key));
                    }
                    Ok(())
                })
            })?
    };
    tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))??;
    // Let the last answers arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), handle.shutdown()).await;
    collector.abort();
    if let Ok(connector) = Arc::try_unwrap(connector) {
        connector.shutdown().await;
    }
    let inbound = std::mem::take(&mut *inbound_us.lock().expect("not poisoned"));
    let outbound = std::mem::take(&mut *outbound_us.lock().expect("not poisoned"));
    Ok((percentiles(inbound), percentiles(outbound)))
}

/// Exponentially distributed gaps between arrivals at `rate` per second, from a
/// seeded xorshift generator so every run sends the same schedule.
/// Calls `arrive(at)` at each arrival of a Poisson process at `rate` per second
/// (exponential gaps from a fixed seed), `at` counted from this call, until
/// `duration`; sleeps on this thread between arrivals (with fine timer slack:
/// tokio's millisecond timers would send them in bursts). Stops at an error.
pub(crate) fn pace_poisson(
    rate: u32,
    duration: Duration,
    mut arrive: impl FnMut(Duration) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    precise_sleeps();
    let mut gaps = PoissonGaps::new(rate, 0x5eed);
    let start = Instant::now();
    let mut at = Duration::ZERO;
    loop {
        at += gaps.next_gap();
        if at >= duration {
            return Ok(());
        }
        if let Some(wait) = (start + at).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        arrive(at)?;
    }
}

pub(crate) struct PoissonGaps {
    state: u64,
    mean_s: f64,
}

impl PoissonGaps {
    pub(crate) fn new(rate: u32, seed: u64) -> Self {
        PoissonGaps {
            state: seed.max(1),
            mean_s: 1.0 / f64::from(rate.max(1)),
        }
    }

    pub(crate) fn next_gap(&mut self) -> Duration {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        // Uniform in (0, 1]: never ln(0).
        let u = ((self.state >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        Duration::from_secs_f64(-u.ln() * self.mean_s)
    }
}

/// Asks the kernel for 1 µs timer slack on this thread (default 50 µs), so the
/// pacer's sleeps end close to when a frame is due (Linux; a no-op elsewhere).
pub(crate) fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}

async fn send_outbound(handle: &HostHandle, tenant: usize, id: &str) {
    let cmd = json!({"op": "outbound", "tenant": format!("t{tenant}"), "id": id,
                     "action": {"op": "send", "chat_id": "c1", "content": "probe"}});
    let _ = handle.send_command(cmd).await;
}

/// Resident KiB per component instance alone (store + instance + a connection
/// past its handshake), without task or socket: the sandbox's share of a tenant.
pub fn rss_per_instance(n: usize) -> anyhow::Result<f64> {
    let runtime = runtime_for(n)?;
    let before = rss_kib();
    let mut alive = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sb = runtime.instantiate(Limits::default())?;
        crate::throughput::ready_component(&mut sb)?;
        alive.push(sb);
    }
    let after = rss_kib();
    drop(alive);
    Ok(after.saturating_sub(before) as f64 / n as f64)
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (each
/// critical section here is one map or vector operation).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
