//! The application side: a Rust API for embedding the host in-process
//! ([`Host::start`] → [`HostHandle`] + an event receiver), and the stdio sidecar
//! of APP-PROTOCOL.md built on it ([`run_stdio`]).
//!
//! Commands are routed by `tenant`; everything a connection does with them is the
//! component's decision. The host answers only what no component can: `status`,
//! `shutdown`, and commands it cannot route.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event;
use crate::instance::{BuildError, Instance};
use crate::sandbox::{Allocation, Runtime, SandboxError};
use crate::spec::TenantSpec;
use crate::tenant::{
    self, RestartBudget, SharedStatus, TenantCommand, TenantContext, TenantStatus,
};
use crate::timers::Clock;

/// Above this many tenants the pooling allocator is used.
pub const POOLING_THRESHOLD: usize = 50;

/// Longest command line accepted on stdin; a longer one is answered `too_large`.
pub const MAX_COMMAND_BYTES: usize = 16 << 20;

/// Host-wide settings.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `None`: pooling above [`POOLING_THRESHOLD`] tenants, on-demand otherwise.
    pub allocation: Option<Allocation>,
    /// How long shutdown waits for each tenant's `going_idle` to be acknowledged.
    pub shutdown_grace: Duration,
    /// How many guest failures each tenant survives before it is stopped.
    pub restart_budget: RestartBudget,
    /// Events buffered before tenants wait for the application to read.
    pub event_capacity: usize,
    /// Commands queued per tenant. A tenant whose queue is full (its connector
    /// stopped reading, say) answers at once instead of stalling the shared
    /// stdin reader and so every other tenant.
    pub command_queue: usize,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            allocation: None,
            shutdown_grace: Duration::from_secs(5),
            restart_budget: RestartBudget::default(),
            event_capacity: 4096,
            command_queue: 1024,
        }
    }
}

/// Errors starting the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The list of tenants was empty: a host with nothing to run is a mistake.
    #[error("no tenant configured")]
    NoTenants,
    /// Two tenants share this id, so commands could not be routed by `tenant`.
    #[error("tenant id `{0}` is used twice")]
    DuplicateTenant(String),
    /// One tenant cannot start: its component file cannot be read or loaded, or
    /// its instance cannot be built (the component rejects its configuration, its
    /// dial URL is unusable, its sandbox cannot start).
    #[error("tenant `{tenant}`: {message}")]
    Tenant {
        /// The id of the tenant that cannot start.
        tenant: String,
        /// Why, in words.
        message: String,
    },
    /// The embedded component could not be loaded (its engine set up, or the
    /// component compiled) for the tenants that name no `component` file.
    #[error("loading the component: {0}")]
    Runtime(SandboxError),
}

impl From<SandboxError> for HostError {
    fn from(e: SandboxError) -> Self {
        HostError::Runtime(e)
    }
}

/// APP-PROTOCOL events (JSON objects with `event`, and `tenant` where it applies).
pub type Events = mpsc::Receiver<Value>;

/// Whether the host still runs after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The host still runs and takes further commands.
    Continue,
    /// `shutdown` was handled: every tenant has stopped.
    Stopped,
}

/// The running host.
pub struct Host;

impl Host {
    /// Compiles the component (the embedded one, and each distinct `component`
    /// file the tenants name), builds every tenant's instance (a configuration the
    /// component rejects fails here) and starts one task per tenant. Must be called
    /// inside a tokio runtime.
    pub fn start(
        specs: Vec<TenantSpec>,
        options: HostOptions,
    ) -> Result<(HostHandle, Events), HostError> {
        Self::start_inner(None, specs, options, false)
    }

    /// Like [`Host::start`], but an empty `specs` is not an error: such a host
    /// serves nothing (compiles no component, `status` lists no tenant, the
    /// metrics server's `/readyz` is ready) until it is shut down. For a shard of
    /// a configuration (`relay-host run --shard K/N`) that no tenant hashes to.
    pub fn start_shard(
        specs: Vec<TenantSpec>,
        options: HostOptions,
    ) -> Result<(HostHandle, Events), HostError> {
        Self::start_inner(None, specs, options, true)
    }

    /// Like [`Host::start`] with a runtime built by the caller (e.g. from other
    /// component bytes) for the tenants that name no `component` file.
    pub fn start_with_runtime(
        runtime: Arc<Runtime>,
        specs: Vec<TenantSpec>,
        options: HostOptions,
    ) -> Result<(HostHandle, Events), HostError> {
        Self::start_inner(Some(runtime), specs, options, false)
    }

    fn start_inner(
        default: Option<Arc<Runtime>>,
        specs: Vec<TenantSpec>,
        options: HostOptions,
        allow_empty: bool,
    ) -> Result<(HostHandle, Events), HostError> {
        if specs.is_empty() && !allow_empty {
            return Err(HostError::NoTenants);
        }
        let runtimes = runtimes_for(&specs, &options, default)?;
        let mut instances = Vec::with_capacity(specs.len());
        let mut index = HashMap::new();
        for (i, spec) in specs.iter().enumerate() {
            if index.insert(spec.id.clone(), i).is_some() {
                return Err(HostError::DuplicateTenant(spec.id.clone()));
            }
            let instance =
                Instance::build(&runtimes[i], spec, 0).map_err(|e| HostError::Tenant {
                    tenant: spec.id.clone(),
                    message: match e {
                        BuildError::Sandbox(e) => {
                            format!(
                                "its sandbox cannot start (is limits.memory_mib too small?): {e}"
                            )
                        }
                        other => other.to_string(),
                    },
                })?;
            instances.push(instance);
        }
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let clock = Clock::new();
        let mut tenants = Vec::with_capacity(specs.len());
        let mut tasks = Vec::with_capacity(specs.len());
        for ((spec, instance), runtime) in specs.into_iter().zip(instances).zip(runtimes) {
            let ctx = TenantContext {
                runtime,
                clock,
                events: events_tx.clone(),
                budget: options.restart_budget,
                shutdown_grace: options.shutdown_grace,
            };
            let status: SharedStatus = Arc::new(Mutex::new(TenantStatus {
                tenant: spec.id.clone(),
                state: "connecting".into(),
                ..TenantStatus::default()
            }));
            let (tx, rx) = mpsc::channel(options.command_queue.max(1));
            let id = spec.id.clone();
            tasks.push(tenant::spawn(spec, instance, ctx, status.clone(), rx));
            tenants.push(TenantEntry { id, tx, status });
        }
        let handle = HostHandle {
            inner: Arc::new(Inner {
                tenants,
                index,
                events: Mutex::new(Some(events_tx)),
                tasks: tokio::sync::Mutex::new(tasks),
            }),
        };
        Ok((handle, events_rx))
    }
}

/// One runtime per distinct component: the embedded one (or `default`) for the
/// tenants that name no `component` file, and one per file otherwise, shared by
/// every tenant naming it. Returned in the order of `specs`.
fn runtimes_for(
    specs: &[TenantSpec],
    options: &HostOptions,
    default: Option<Arc<Runtime>>,
) -> Result<Vec<Arc<Runtime>>, HostError> {
    // Group by component; a file is known by its canonical path.
    let mut groups: Vec<(Option<PathBuf>, Vec<usize>)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let key = spec
            .component
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut runtimes: Vec<Option<Arc<Runtime>>> = vec![None; specs.len()];
    for (key, members) in groups {
        let largest = members
            .iter()
            .map(|&i| specs[i].limits)
            .max_by_key(|l| l.memory_bytes)
            .unwrap_or_default();
        let allocation = options
            .allocation
            .unwrap_or(if specs.len() > POOLING_THRESHOLD {
                // Two slots per tenant: a rebuilt instance exists before the old one
                // is dropped.
                Allocation::Pooling {
                    max_instances: (members.len() as u32).saturating_mul(2).saturating_add(8),
                }
            } else {
                Allocation::OnDemand
            });
        let runtime = match (&key, &default) {
            (None, Some(runtime)) => runtime.clone(),
            (None, None) => Arc::new(Runtime::new(allocation, largest)?),
            (Some(path), _) => {
                let tenant = specs[members[0]].id.clone();
                let bytes = std::fs::read(path).map_err(|e| HostError::Tenant {
                    tenant: tenant.clone(),
                    message: format!("cannot read component {}: {e}", path.display()),
                })?;
                let runtime = Runtime::from_bytes(&bytes, allocation, largest).map_err(|e| {
                    HostError::Tenant {
                        tenant,
                        message: format!("cannot load component {}: {e}", path.display()),
                    }
                })?;
                Arc::new(runtime)
            }
        };
        for i in members {
            runtimes[i] = Some(runtime.clone());
        }
    }
    Ok(runtimes.into_iter().flatten().collect())
}

struct TenantEntry {
    id: String,
    tx: mpsc::Sender<TenantCommand>,
    status: SharedStatus,
}

struct Inner {
    tenants: Vec<TenantEntry>,
    index: HashMap<String, usize>,
    /// Taken on shutdown, so the event stream ends once the tenants are done.
    events: Mutex<Option<mpsc::Sender<Value>>>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Controls a running host; cheap to clone.
#[derive(Clone)]
pub struct HostHandle {
    inner: Arc<Inner>,
}

/// A read-only view of every tenant's counters (for metrics); holds no event
/// sender, so it does not keep the event stream open.
#[derive(Clone)]
pub struct StatusBoard(Vec<SharedStatus>);

impl StatusBoard {
    /// A snapshot of every tenant, in configuration order.
    pub fn snapshot(&self) -> Vec<TenantStatus> {
        self.0
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

impl HostHandle {
    /// The tenant ids, in configuration order.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.inner.tenants.iter().map(|t| t.id.clone()).collect()
    }

    /// Every tenant's counters.
    pub fn status(&self) -> Vec<TenantStatus> {
        self.status_board().snapshot()
    }

    /// A view of the counters that outlives nothing else.
    pub fn status_board(&self) -> StatusBoard {
        StatusBoard(
            self.inner
                .tenants
                .iter()
                .map(|t| t.status.clone())
                .collect(),
        )
    }

    /// One command line of the sidecar protocol. A line that is not JSON is
    /// answered with an `error` event.
    pub async fn send_line(&self, line: &str) -> Flow {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => self.send_command(v).await,
            Err(e) => {
                self.emit(event::error(
                    "malformed_json",
                    &format!("command is not JSON ({e})"),
                ))
                .await;
                Flow::Continue
            }
        }
    }

    /// One APP-PROTOCOL command. Answers arrive as events; nothing is returned
    /// but whether the host still runs.
    pub async fn send_command(&self, command: Value) -> Flow {
        let Value::Object(command) = command else {
            self.emit(event::error("not_object", "command is not a JSON object"))
                .await;
            return Flow::Continue;
        };
        let id = command.get("id").cloned();
        let reject = |kind: &str, message: String| {
            let mut e = event::error(kind, &message);
            if let Some(id) = &id {
                e.insert("id".into(), id.clone());
            }
            e
        };
        let op = match command.get("op") {
            Some(Value::String(op)) => op.clone(),
            None | Some(Value::Null) => {
                self.emit(reject("missing_field", "missing field `op`".into()))
                    .await;
                return Flow::Continue;
            }
            Some(_) => {
                self.emit(reject("invalid_field", "`op` is not a string".into()))
                    .await;
                return Flow::Continue;
            }
        };
        match op.as_str() {
            "status" => {
                let tenants = serde_json::to_value(self.status()).unwrap_or(json!([]));
                let mut m = Map::new();
                m.insert("event".into(), "status".into());
                m.insert("tenants".into(), tenants);
                self.emit(m).await;
                return Flow::Continue;
            }
            "shutdown" => {
                self.shutdown().await;
                return Flow::Stopped;
            }
            _ => {}
        }
        let entry = match command.get("tenant") {
            Some(Value::String(t)) => match self.inner.index.get(t) {
                Some(&i) => &self.inner.tenants[i],
                None => {
                    let t: String = t.chars().take(80).collect();
                    self.emit(reject("unknown_tenant", format!("unknown tenant `{t}`")))
                        .await;
                    return Flow::Continue;
                }
            },
            // One tenant: `tenant` may be left out.
            None | Some(Value::Null) if self.inner.tenants.len() == 1 => &self.inner.tenants[0],
            None | Some(Value::Null) => {
                self.emit(reject("missing_field", "missing field `tenant`".into()))
                    .await;
                return Flow::Continue;
            }
            Some(_) => {
                self.emit(reject("invalid_field", "`tenant` is not a string".into()))
                    .await;
                return Flow::Continue;
            }
        };
        // Never wait on one tenant: the reader serves every tenant's commands.
        match entry.tx.try_send(TenantCommand::App(command)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(TenantCommand::App(command))) => {
                self.answer_stopped(&entry.id, command).await;
            }
            Err(mpsc::error::TrySendError::Full(TenantCommand::App(command))) => {
                tracing::warn!(tenant = %entry.id, "command queue full: answered at once");
                let answer = event::answer_when_busy(&entry.id, &command);
                if let Some(tx) = self.events_sender() {
                    let _ = tx.send(event::for_tenant(&entry.id, answer)).await;
                }
            }
            Err(_) => {}
        }
        Flow::Continue
    }

    /// A command for a tenant whose task has ended (shut down, or out of restart
    /// budget): still answered, as APP-PROTOCOL promises.
    async fn answer_stopped(&self, tenant: &str, command: Map<String, Value>) {
        let answer = event::answer_when_stopped(tenant, &command);
        if let Some(tx) = self.events_sender() {
            let _ = tx.send(event::for_tenant(tenant, answer)).await;
        }
    }

    /// Every tenant goes idle (bounded), closes and reports `stopped`; returns when
    /// all have. Afterwards the event stream ends. Safe to call twice.
    pub async fn shutdown(&self) {
        for t in &self.inner.tenants {
            let _ = t.tx.send(TenantCommand::Shutdown).await;
        }
        let mut tasks = self.inner.tasks.lock().await;
        for task in tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::error!("tenant task ended abnormally: {e}");
            }
        }
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn events_sender(&self) -> Option<mpsc::Sender<Value>> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn emit(&self, event: Map<String, Value>) {
        if let Some(tx) = self.events_sender() {
            let _ = tx.send(Value::Object(event)).await;
        }
    }
}

/// The sidecar: commands from `input` (one JSON per line), events to `output`
/// (one JSON per line, flushed as they come). End of input, or `stop` resolving
/// (the binary passes SIGTERM/SIGINT), means `shutdown`. Returns once every
/// tenant has stopped and every event is written.
pub async fn run_stdio<R, W>(
    handle: HostHandle,
    mut events: Events,
    input: R,
    output: W,
    stop: impl std::future::Future<Output = ()>,
) where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(async move {
        let mut output = tokio::io::BufWriter::new(output);
        let mut broken = false;
        while let Some(event) = events.recv().await {
            if broken {
                continue; // keep draining so tenants never block on a dead pipe
            }
            let mut line = event.to_string();
            line.push('\n');
            let mut result = output.write_all(line.as_bytes()).await;
            if result.is_ok() && events.is_empty() {
                result = output.flush().await;
            }
            if let Err(e) = result {
                tracing::error!("cannot write events: {e}");
                broken = true;
            }
        }
        let _ = output.flush().await;
    });

    let mut input = input;
    let mut line = Vec::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let read = tokio::select! {
            read = read_line_capped(&mut input, &mut line, MAX_COMMAND_BYTES) => read,
            () = &mut stop => {
                tracing::info!("stop signal: shutting down");
                handle.shutdown().await;
                break;
            }
        };
        match read {
            Ok(LineRead::Eof) => {
                handle.shutdown().await;
                break;
            }
            Ok(LineRead::TooLong) => {
                handle
                    .emit(event::error(
                        "too_large",
                        &format!("command line longer than {MAX_COMMAND_BYTES} bytes skipped"),
                    ))
                    .await;
            }
            Ok(LineRead::Line) => {
                // A command is never guessed at: bytes that are not UTF-8 are
                // answered, not mangled into U+FFFD and acted on.
                let text = match std::str::from_utf8(&line) {
                    Ok(text) => text.trim(),
                    Err(e) => {
                        handle
                            .emit(event::error(
                                "malformed_json",
                                &format!(
                                    "command line is not UTF-8 (invalid byte at offset {}); skipped",
                                    e.valid_up_to()
                                ),
                            ))
                            .await;
                        continue;
                    }
                };
                if text.is_empty() {
                    continue;
                }
                if handle.send_line(text).await == Flow::Stopped {
                    break;
                }
            }
            Err(e) => {
                tracing::error!("cannot read commands: {e}; shutting down");
                handle.shutdown().await;
                break;
            }
        }
    }
    drop(handle);
    let _ = writer.await;
}

enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line into `buf` without ever holding more than `cap`
/// bytes; a longer line is consumed up to its newline and reported.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(if too_long {
                LineRead::TooLong
            } else if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            let data = &available[..if done { take - 1 } else { take }];
            if buf.len() + data.len() > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(data);
            }
        }
        input.consume(take);
        if done {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IdentitySpec;

    #[test]
    fn one_runtime_per_distinct_component() {
        let dir = std::env::temp_dir().join(format!("relay-app-runtimes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), crate::sandbox::COMPONENT_WASM).unwrap();
        let spec = |id: &str, component: Option<PathBuf>| {
            let identity = IdentitySpec {
                platform: "discord".into(),
                bot_id: "b".into(),
                command_manifest: None,
            };
            let mut spec = TenantSpec::new(id, "ws://127.0.0.1:1", vec![identity]).unwrap();
            spec.component = component;
            spec
        };
        let specs = vec![
            spec("embedded-1", None),
            spec("file-1", Some(dir.join("a.wasm"))),
            // The same file by another spelling.
            spec("file-2", Some(dir.join(".").join("a.wasm"))),
            spec("embedded-2", None),
        ];
        let runtimes = runtimes_for(&specs, &HostOptions::default(), None).unwrap();
        assert_eq!(runtimes.len(), 4);
        assert!(Arc::ptr_eq(&runtimes[0], &runtimes[3]));
        assert!(Arc::ptr_eq(&runtimes[1], &runtimes[2]));
        assert!(!Arc::ptr_eq(&runtimes[0], &runtimes[1]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn capped_lines() {
        let data: &[u8] = b"short\nthis one is far too long\nok\nlast";
        let mut r = tokio::io::BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line_capped(&mut r, &mut buf, 10).await.unwrap() {
                LineRead::Eof => break,
                LineRead::TooLong => seen.push("<too long>".to_string()),
                LineRead::Line => seen.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(seen, ["short", "<too long>", "ok", "last"]);
    }
}
