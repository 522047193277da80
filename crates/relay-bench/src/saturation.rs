//! Inbound latency as a fraction of the host's own capacity, and the same
//! arrival process through a bare WebSocket echo as the floor.
//!
//! Both rigs send the same probe lines the same way: a pacing thread stamps a
//! probe, then hands it to a [`Feeder`] connection's writer task (a channel send),
//! which writes it to the socket. What differs is the receiving end:
//!
//! - host rig: 100 tenants of the real host; the clock stops when the
//!   application's task has the `message` event and has parsed it (as
//!   `live::latency` does).
//! - echo rig: 100 bare tokio-tungstenite clients; the clock stops when a
//!   client's task has the message and has parsed it (the one-way figure,
//!   comparable with the host's), and it echoes the line back; the feeder's
//!   reader stops a second clock on the echo (the round trip).
//!
//! The four measured points (the host at 25, 50 and 75 % of saturation, the
//! echo at 50 %) run in turns of short segments, both rigs alive throughout, so
//! a burst of load from outside (a shared 2-core VM) falls on all of them
//! alike instead of spoiling one.
//!
//! Saturation is the host rig's completion rate in a closed loop (a fixed number
//! of probes in flight, a new one as each arrives): the highest inbound rate the
//! host, the feeder and the measuring tasks sustain together on this machine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use relay_host::app::{Host, HostHandle, HostOptions};

use crate::feeder::{socket_config, Feeder, FrameHook, Sender};
use crate::live::{await_ready, lock, pace_poisson, precise_sleeps, runtime_for};

/// Probes in flight during the saturation measurement: enough that no stage
/// waits for work (100 tenants, a few each), few enough that the host's queues
/// (1,024 commands, 512 events per tenant) never fill.
pub const WINDOW: usize = 256;

/// Stamps and arrivals of the probes of one rig.
#[derive(Default)]
struct Recorder {
    /// Send time of each timed probe still expected, by message id.
    sent: Mutex<HashMap<String, Instant>>,
    one_way_us: Mutex<Vec<f64>>,
    rtt_us: Mutex<Vec<f64>>,
    /// Probes that arrived (timed or not).
    arrived: AtomicU64,
    /// While saturating: the window's tokens, one given back per arrival.
    tokens: Mutex<Option<SyncSender<()>>>,
}

impl Recorder {
    /// A probe reached the receiving application. With `last`, its stamp is
    /// dropped (nothing else will time it).
    fn arrival(&self, key: &str, last: bool) {
        let t0 = if last {
            lock(&self.sent).remove(key)
        } else {
            lock(&self.sent).get(key).copied()
        };
        if let Some(t0) = t0 {
            lock(&self.one_way_us).push(t0.elapsed().as_secs_f64() * 1e6);
        }
        self.arrived.fetch_add(1, Ordering::Relaxed);
        if let Some(tokens) = &*lock(&self.tokens) {
            match tokens.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }

    /// An echoed probe came back to the sender.
    fn echo(&self, key: &str) {
        if let Some(t0) = lock(&self.sent).remove(key) {
            lock(&self.rtt_us).push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
}

/// The probe frame, numbered: a small inbound, as `live::latency` sends.
fn probe_line(seq: u64) -> Utf8Bytes {
    Utf8Bytes::from(format!(
        "{{\"type\":\"inbound\",\"event\":{{\"text\":\"latency probe\",\"message_id\":\"P{seq}\",\
         \"source\":{{\"platform\":\"discord\",\"chat_id\":\"c1\",\"user_id\":\"u1\"}}}}}}\n"
    ))
}

/// One rig: the feeder, what receives, and the recorder both share.
pub struct Rig {
    feeder: Feeder,
    rec: Arc<Recorder>,
    conns: usize,
    next_seq: u64,
    host: Option<HostHandle>,
    tasks: Vec<JoinHandle<()>>,
}

impl Rig {
    /// `tenants` tenants of the host (pooling, as a host of more than 50 has)
    /// connected to a feeder, and the application task that reads their events.
    pub async fn host(tenants: usize) -> anyhow::Result<Rig> {
        crate::live::raise_fd_limit();
        let rec = Arc::new(Recorder::default());
        let feeder = Feeder::start(None).await?;
        let specs = crate::e2e::corpus_specs(&feeder.url(), tenants)?;
        let (handle, mut events) =
            Host::start_with_runtime(runtime_for(tenants)?, specs, HostOptions::default())?;
        await_ready(&mut events, tenants, Duration::from_secs(60)).await?;
        let collector = {
            let rec = rec.clone();
            tokio::spawn(async move {
                while let Some(line) = events.recv().await {
                    // What an application does with the line: parse it.
                    let ev = line.value();
                    if ev["event"] == "message" {
                        if let Some(key) = ev["message"]["message_id"].as_str() {
                            rec.arrival(key, true);
                        }
                    }
                }
            })
        };
        anyhow::ensure!(
            feeder.sender().connections() == tenants,
            "{} connections for {tenants} tenants",
            feeder.sender().connections()
        );
        Ok(Rig {
            feeder,
            rec,
            conns: tenants,
            next_seq: 0,
            host: Some(handle),
            tasks: vec![collector],
        })
    }

    /// `conns` bare WebSocket clients of a feeder that echo every message back.
    pub async fn echo(conns: usize) -> anyhow::Result<Rig> {
        crate::live::raise_fd_limit();
        let rec = Arc::new(Recorder::default());
        let hook: FrameHook = {
            let rec = rec.clone();
            Arc::new(move |frame: &Value| {
                if let Some(key) = frame["event"]["message_id"].as_str() {
                    rec.echo(key);
                }
            })
        };
        let feeder = Feeder::start(Some(hook)).await?;
        let url = feeder.url();
        let mut tasks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let tcp = tokio::net::TcpStream::connect(url.trim_start_matches("ws://")).await?;
            tcp.set_nodelay(true)?;
            let (ws, _) = tokio_tungstenite::client_async_with_config(
                url.as_str(),
                tcp,
                Some(socket_config()),
            )
            .await?;
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                while let Some(Ok(Message::Text(text))) = stream.next().await {
                    // What the receiving end does with it: parse it (as the
                    // host rig's application does), then echo it.
                    if let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) {
                        if let Some(key) = frame["event"]["message_id"].as_str() {
                            rec.arrival(key, false);
                        }
                    }
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
            }));
            // Accept order is connection order: one at a time.
            let deadline = Instant::now() + Duration::from_secs(10);
            while feeder.sender().connections() < tasks.len() {
                anyhow::ensure!(Instant::now() < deadline, "the feeder did not accept");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(Rig {
            feeder,
            rec,
            conns,
            next_seq: 0,
            host: None,
            tasks,
        })
    }

    /// Probes per second arriving with [`WINDOW`] in flight for `duration` (the
    /// first quarter, the ramp, not counted).
    pub async fn saturate(&mut self, duration: Duration) -> anyhow::Result<f64> {
        let (tokens_tx, tokens_rx) = sync_channel(WINDOW);
        for _ in 0..WINDOW {
            let _ = tokens_tx.try_send(());
        }
        *lock(&self.rec.tokens) = Some(tokens_tx);
        let run = self.pace(Schedule::Closed(tokens_rx), duration).await;
        *lock(&self.rec.tokens) = None;
        let (from, to) = run?;
        self.settle().await;
        lock(&self.rec.one_way_us).clear();
        Ok(from.map_or(0.0, |(n0, t0)| {
            let (n1, t1) = to;
            (n1 - n0) as f64 / (t1 - t0).as_secs_f64().max(1e-9)
        }))
    }

    /// Poisson arrivals at `rate` per second for `duration`; probes in the first
    /// `warmup` are sent but not timed. The one-way times and (echo rig) the
    /// round trips, in µs.
    pub async fn probe(
        &mut self,
        rate: f64,
        duration: Duration,
        warmup: Duration,
    ) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let rate = rate.round().clamp(1.0, u32::MAX as f64) as u32;
        self.pace(Schedule::Poisson { rate, warmup }, duration)
            .await?;
        self.settle().await;
        let one_way = std::mem::take(&mut *lock(&self.rec.one_way_us));
        let rtt = std::mem::take(&mut *lock(&self.rec.rtt_us));
        Ok((one_way, rtt))
    }

    /// Lets the last probes arrive, then forgets the stamps of any that did not.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        lock(&self.rec.sent).clear();
    }

    /// Runs the pacing thread; returns the arrival count at the end of the
    /// ramp (closed loop only) and at the end, with their times.
    async fn pace(
        &mut self,
        schedule: Schedule,
        duration: Duration,
    ) -> anyhow::Result<(Option<(u64, Instant)>, (u64, Instant))> {
        let (to, rec, conns, first) = (
            self.feeder.sender().clone(),
            self.rec.clone(),
            self.conns,
            self.next_seq,
        );
        let pacer = std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pacer(to, rec, conns, first, schedule, duration))?;
        let (next, ramp, end) = tokio::task::spawn_blocking(move || pacer.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))??;
        self.next_seq = next;
        Ok((ramp, end))
    }

    /// Stops the host (if any) and every task.
    pub async fn shutdown(self) {
        if let Some(host) = &self.host {
            let _ = tokio::time::timeout(Duration::from_secs(20), host.shutdown()).await;
        }
        for t in &self.tasks {
            t.abort();
        }
        drop(self.feeder);
    }
}

enum Schedule {
    /// A new probe whenever a token is free (one per arrival).
    Closed(Receiver<()>),
    /// Exponential gaps at `rate`; untimed for the first `warmup`.
    Poisson { rate: u32, warmup: Duration },
}

type Paced = (u64, Option<(u64, Instant)>, (u64, Instant));

/// Sends probes round robin over `conns` connections from sequence number
/// `seq`; returns the next free one, and the arrival counts of [`Rig::pace`].
fn pacer(
    to: Sender,
    rec: Arc<Recorder>,
    conns: usize,
    mut seq: u64,
    schedule: Schedule,
    duration: Duration,
) -> anyhow::Result<Paced> {
    precise_sleeps();
    let start = Instant::now();
    let mut send = |timed: bool| -> anyhow::Result<()> {
        seq += 1;
        let line = probe_line(seq);
        if timed {
            lock(&rec.sent).insert(format!("P{seq}"), Instant::now());
        }
        to.send(seq as usize % conns, line)
    };
    match schedule {
        Schedule::Closed(tokens) => {
            let ramp_end = start + duration / 4;
            let mut ramp = None;
            while start.elapsed() < duration {
                if ramp.is_none() && Instant::now() >= ramp_end {
                    ramp = Some((rec.arrived.load(Ordering::Relaxed), Instant::now()));
                }
                // A probe that never arrives would keep its token: the timeout
                // lets the loop go on with one fewer in flight.
                if tokens.recv_timeout(Duration::from_millis(50)).is_ok() {
                    send(true)?;
                }
            }
            let end = (rec.arrived.load(Ordering::Relaxed), Instant::now());
            Ok((seq, ramp, end))
        }
        Schedule::Poisson { rate, warmup } => {
            pace_poisson(rate, duration, |at| send(at >= warmup))?;
            let end = (rec.arrived.load(Ordering::Relaxed), Instant::now());
            Ok((seq, None, end))
        }
    }
}
