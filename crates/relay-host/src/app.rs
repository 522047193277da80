//! The application side: a Rust API for embedding the host in-process
//! ([`Host::start`] → [`HostHandle`] + an event receiver), and the stdio sidecar
//! of APP-PROTOCOL.md built on it ([`run_stdio`]).
//!
//! Commands are routed by `tenant`; everything a connection does with them is the
//! component's decision. The host answers only what no component can: `status`,
//! `shutdown`, `reload`, and commands it cannot route.
//!
//! The set of tenants can change while the host runs ([`HostHandle::reload`]):
//! new tenants start, removed ones stop gracefully, changed ones restart and the
//! others keep their connection untouched.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::event;
use crate::instance::{BuildError, Instance};
use crate::sandbox::{Allocation, Runtime, SandboxError};
use crate::spec::TenantSpec;
use crate::tenant::{
    self, RestartBudget, SharedStatus, TenantCommand, TenantContext, TenantStatus,
};

/// Above this many tenants the pooling allocator is used.
pub const POOLING_THRESHOLD: usize = 50;

/// Longest command line accepted on stdin; a longer one is answered `too_large`.
pub const MAX_COMMAND_BYTES: usize = 16 << 20;

/// Added to a tenant's seed once per reload that (re)starts it (an odd constant),
/// so a tenant started again never reuses the request ids of an earlier run in the
/// same process.
const RELOAD_SEED_STEP: u64 = 0xD6E8_FEB8_6659_FD93;

/// Host-wide settings.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `None`: pooling above [`POOLING_THRESHOLD`] tenants, on-demand otherwise.
    pub allocation: Option<Allocation>,
    /// How long shutdown waits for each tenant's `going_idle` to be acknowledged.
    pub shutdown_grace: Duration,
    /// How many guest failures each tenant survives before it is stopped.
    pub restart_budget: RestartBudget,
    /// Events buffered before tenants wait for the application to read. One
    /// tenant holds at most an eighth of them ([`tenant_share`]), so a chatty
    /// tenant waits on its own while the others' events still find room.
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

/// Why a reload changed nothing. Every tenant keeps running as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No [`ReloadSource`] was set: the host was not started from a
    /// configuration file (`relay-host run` with flags instead of `--config`).
    #[error("nothing to reload: the host was not started from a configuration file (--config)")]
    Unavailable,
    /// The new configuration could not be read or is not valid (the
    /// [`ReloadSource`]'s message: the file and the field, never a secret).
    #[error("{0}")]
    Config(String),
    /// The new configuration cannot run: a tenant to start cannot be built, a
    /// component file does not load, two tenants share an id, or no tenant is
    /// left on a host that needs one.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The host has shut down (or is shutting down): there is nothing to reload.
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl ReloadError {
    /// The `kind` of the `error` event that reports it.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::Unavailable => "reload_unavailable",
            _ => "reload_failed",
        }
    }
}

/// What a reload did: tenant ids, `stopped` in the order the tenants ran, the
/// others in the order of the new configuration. Reported as the `reloaded` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    /// New tenants, started.
    pub started: Vec<String>,
    /// Tenants no longer configured: stopped gracefully (reason `removed by reload`).
    pub stopped: Vec<String>,
    /// Tenants whose configuration changed (or that had stopped): stopped
    /// gracefully, then started with the new configuration.
    pub restarted: Vec<String>,
    /// Tenants configured exactly as before: left running, connection untouched.
    pub unchanged: Vec<String>,
}

/// Where a reload gets the new tenants: `relay-host run --config FILE` reads and
/// checks FILE again (and applies `--shard`). An `Err` is the reason to report,
/// naming the file and the field, never a secret.
pub type ReloadSource = Arc<dyn Fn() -> Result<Vec<TenantSpec>, String> + Send + Sync>;

/// APP-PROTOCOL events, each the finished line (a JSON object with `event`, and
/// `tenant` where it applies): the sidecar writes them as they are.
pub type Events = mpsc::Receiver<EventLine>;

use crate::event_line::TenantEvents;
pub use crate::event_line::{tenant_share, EventLine};

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
    /// metrics server's `/readyz` is ready) until it is shut down or a reload
    /// gives it tenants. For a shard of a configuration (`relay-host run --shard
    /// K/N`) that no tenant hashes to; a reload of such a host may also leave it
    /// with no tenant.
    pub fn start_shard(
        specs: Vec<TenantSpec>,
        options: HostOptions,
    ) -> Result<(HostHandle, Events), HostError> {
        Self::start_inner(None, specs, options, true)
    }

    /// Like [`Host::start`] with a runtime built by the caller (e.g. from other
    /// component bytes) for the tenants that name no `component` file (also
    /// those a reload starts).
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
        let cache = default
            .map(|runtime| CachedRuntime {
                key: None,
                runtime,
                allocation: None,
                memory_bytes: usize::MAX,
            })
            .into_iter()
            .collect();
        let plan = prepare(specs, &Table::default(), cache, &options, 0)?;
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let handle = HostHandle {
            inner: Arc::new(Inner {
                table: RwLock::new(Arc::new(Table::default())),
                board: Arc::new(RwLock::new(Vec::new())),
                events: Mutex::new(Some(events_tx.clone())),
                runtimes: Mutex::new(Vec::new()),
                source: Mutex::new(None),
                control: tokio::sync::Mutex::new(Control::default()),
                clock: Clock::new(),
                options,
                allow_empty,
            }),
        };
        let commit = handle.commit(plan);
        handle.spawn_tenants(commit.pending, &events_tx);
        Ok((handle, events_rx))
    }
}

/// The SHA-256 of a component file's contents.
type Digest = [u8; 32];

/// Which component a tenant runs: `None` for the embedded one (or the caller's,
/// [`Host::start_with_runtime`]), else the file's canonical path and contents.
type ComponentKey = Option<(PathBuf, Digest)>;

/// A compiled component, kept while a tenant runs it so a reload that starts
/// tenants on the same component does not compile it again.
#[derive(Clone)]
struct CachedRuntime {
    key: ComponentKey,
    runtime: Arc<Runtime>,
    /// `None`: the caller's runtime, used for every tenant without a `component`.
    allocation: Option<Allocation>,
    /// The largest memory cap it was set up for (binds pooling slots only).
    memory_bytes: usize,
}

impl CachedRuntime {
    /// Whether `users` tenants (each may hold two instances while one is
    /// rebuilt) with memory caps up to `memory_bytes` fit it.
    fn fits(&self, memory_bytes: usize, users: usize) -> bool {
        match self.allocation {
            None | Some(Allocation::OnDemand) => true,
            Some(Allocation::Pooling { max_instances }) => {
                memory_bytes <= self.memory_bytes
                    && users.saturating_mul(2) <= max_instances as usize
            }
        }
    }
}

/// One running tenant, as the host routes to it.
struct TenantEntry {
    id: String,
    tx: mpsc::Sender<TenantCommand>,
    status: SharedStatus,
    /// Its task; taken by whoever stops it and waits for it.
    task: Mutex<Option<JoinHandle<()>>>,
    /// The spec as configured: what a reload compares with.
    spec: TenantSpec,
    /// The contents of its `component` file, if it names one.
    component_digest: Option<Digest>,
    runtime: Arc<Runtime>,
}

/// The current tenants in configuration order, and where each id is. Replaced
/// whole by a reload, so a command is routed with one read lock and a lookup.
#[derive(Default)]
struct Table {
    tenants: Vec<Arc<TenantEntry>>,
    index: HashMap<String, usize>,
}

impl Table {
    fn get(&self, id: &str) -> Option<&Arc<TenantEntry>> {
        self.index.get(id).map(|&i| &self.tenants[i])
    }
}

/// What a reload (or the start) will do, everything built that can fail.
struct Plan {
    /// The new configuration's tenants, in its order.
    items: Vec<Item>,
    /// Running tenants the new configuration does not name.
    removed: Vec<Arc<TenantEntry>>,
    /// The runtime cache afterwards.
    runtimes: Vec<CachedRuntime>,
}

enum Item {
    /// Configured as before: keeps running.
    Keep(Arc<TenantEntry>),
    /// To start (new, or replacing a changed or stopped tenant).
    Start(Box<Start>),
}

struct Start {
    /// As configured (compared by the next reload).
    spec: TenantSpec,
    /// As run (the seed moved on by the reload's number).
    run_spec: TenantSpec,
    digest: Option<Digest>,
    runtime: Arc<Runtime>,
    instance: Instance,
    /// The tenant of the same id that runs now, and what changed.
    replaces: Option<(Arc<TenantEntry>, Vec<&'static str>)>,
}

/// A tenant created, waiting for its task.
struct Pending {
    entry: Arc<TenantEntry>,
    rx: mpsc::Receiver<TenantCommand>,
    spec: TenantSpec,
    instance: Instance,
}

/// A plan in effect: the tenants to stop (with the reason they report) and
/// those to start once they have.
struct Commit {
    pending: Vec<Pending>,
    stop: Vec<(Arc<TenantEntry>, String)>,
    summary: ReloadSummary,
}

/// Reloads and shutdown, one at a time.
#[derive(Default)]
struct Control {
    shut_down: bool,
    /// Reloads begun so far.
    reloads: u64,
}

/// Compares `specs` with the tenants of `current`, compiles what the tenants to
/// start need (reusing `cache`) and builds their instances. Nothing runs yet and
/// nothing is changed, so an error leaves the host as it was. Blocking (reads
/// component files, may compile).
fn prepare(
    specs: Vec<TenantSpec>,
    current: &Table,
    mut cache: Vec<CachedRuntime>,
    options: &HostOptions,
    reload: u64,
) -> Result<Plan, HostError> {
    let mut ids = HashSet::with_capacity(specs.len());
    for spec in &specs {
        if !ids.insert(spec.id.as_str()) {
            return Err(HostError::DuplicateTenant(spec.id.clone()));
        }
    }
    // Each component file read once; a file is known by its canonical path.
    let mut files: HashMap<PathBuf, (Digest, Vec<u8>)> = HashMap::new();
    let mut keys: Vec<ComponentKey> = Vec::with_capacity(specs.len());
    for spec in &specs {
        let Some(path) = &spec.component else {
            keys.push(None);
            continue;
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let digest = match files.get(&canonical) {
            Some((digest, _)) => *digest,
            None => {
                let bytes = std::fs::read(&canonical).map_err(|e| HostError::Tenant {
                    tenant: spec.id.clone(),
                    message: format!("cannot read component {}: {e}", canonical.display()),
                })?;
                let digest: Digest = Sha256::digest(&bytes).into();
                files.insert(canonical.clone(), (digest, bytes));
                digest
            }
        };
        keys.push(Some((canonical, digest)));
    }

    let removed = current
        .tenants
        .iter()
        .filter(|t| !ids.contains(t.id.as_str()))
        .cloned()
        .collect();
    let total = specs.len();

    // One per tenant and reload, short-lived: boxing would only add noise.
    #[allow(clippy::large_enum_variant)]
    enum Slot {
        Keep(Arc<TenantEntry>),
        Start {
            spec: TenantSpec,
            key: ComponentKey,
            replaces: Option<(Arc<TenantEntry>, Vec<&'static str>)>,
            runtime: Option<Arc<Runtime>>,
        },
    }
    let mut slots = Vec::with_capacity(total);
    for (spec, key) in specs.into_iter().zip(keys) {
        let replaces = match current.get(&spec.id) {
            None => None,
            Some(old) => {
                let mut changed = old.spec.differences(&spec);
                if changed.is_empty() && old.component_digest != key.as_ref().map(|k| k.1) {
                    changed.push("component contents");
                }
                // A tenant that stopped for good (restart budget spent) starts again.
                if changed.is_empty() && !old.tx.is_closed() {
                    slots.push(Slot::Keep(old.clone()));
                    continue;
                }
                Some((old.clone(), changed))
            }
        };
        slots.push(Slot::Start {
            spec,
            key,
            replaces,
            runtime: None,
        });
    }

    // One runtime per component among the tenants to start: a cached one when it
    // fits, else compiled now.
    let mut groups: Vec<(ComponentKey, Vec<usize>)> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        if let Slot::Start { key, .. } = slot {
            match groups.iter_mut().find(|(k, _)| k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key.clone(), vec![i])),
            }
        }
    }
    for (key, members) in groups {
        let member_specs: Vec<&TenantSpec> = members
            .iter()
            .filter_map(|&i| match &slots[i] {
                Slot::Start { spec, .. } => Some(spec),
                Slot::Keep(_) => None,
            })
            .collect();
        let largest = member_specs
            .iter()
            .map(|s| s.limits)
            .max_by_key(|l| l.memory_bytes)
            .unwrap_or_default();
        let first = member_specs
            .first()
            .map(|s| s.id.clone())
            .unwrap_or_default();
        let users = |runtime: &Arc<Runtime>| {
            current
                .tenants
                .iter()
                .filter(|t| Arc::ptr_eq(&t.runtime, runtime))
                .count()
        };
        let cached = cache
            .iter()
            .find(|c| {
                c.key == key && c.fits(largest.memory_bytes, users(&c.runtime) + members.len())
            })
            .map(|c| c.runtime.clone());
        let runtime = match cached {
            Some(runtime) => runtime,
            None => {
                let allocation = options.allocation.unwrap_or(if total > POOLING_THRESHOLD {
                    // Two slots per tenant: a rebuilt instance exists before the old
                    // one is dropped.
                    Allocation::Pooling {
                        max_instances: (members.len() as u32).saturating_mul(2).saturating_add(8),
                    }
                } else {
                    Allocation::OnDemand
                });
                let runtime = match &key {
                    None => Arc::new(Runtime::new(allocation, largest)?),
                    Some((path, _)) => {
                        let bytes = files.get(path).map(|f| f.1.as_slice()).unwrap_or_default();
                        let runtime =
                            Runtime::from_bytes(bytes, allocation, largest).map_err(|e| {
                                HostError::Tenant {
                                    tenant: first.clone(),
                                    message: format!(
                                        "cannot load component {}: {e}",
                                        path.display()
                                    ),
                                }
                            })?;
                        Arc::new(runtime)
                    }
                };
                cache.push(CachedRuntime {
                    key: key.clone(),
                    runtime: runtime.clone(),
                    allocation: Some(allocation),
                    memory_bytes: largest.memory_bytes,
                });
                runtime
            }
        };
        for i in members {
            if let Slot::Start { runtime: slot, .. } = &mut slots[i] {
                *slot = Some(runtime.clone());
            }
        }
    }
    drop(files);

    // Keep what the new configuration runs (and the caller's runtime).
    let in_use = |runtime: &Arc<Runtime>| {
        slots.iter().any(|s| match s {
            Slot::Keep(entry) => Arc::ptr_eq(&entry.runtime, runtime),
            Slot::Start { runtime: r, .. } => r.as_ref().is_some_and(|r| Arc::ptr_eq(r, runtime)),
        })
    };
    cache.retain(|c| c.allocation.is_none() || in_use(&c.runtime));

    let mut items = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Keep(entry) => items.push(Item::Keep(entry)),
            Slot::Start {
                spec,
                key,
                replaces,
                runtime,
            } => {
                let Some(runtime) = runtime else {
                    unreachable!("every tenant to start was given a runtime")
                };
                let mut run_spec = spec.clone();
                run_spec.seed = spec
                    .seed
                    .wrapping_add(reload.wrapping_mul(RELOAD_SEED_STEP));
                let instance =
                    crate::sandbox::block_on(Instance::build(&runtime, &run_spec, 0, Clock::new()))
                        .map_err(|e| HostError::Tenant {
                            tenant: spec.id.clone(),
                            message: match e {
                                BuildError::Sandbox(e) => sandbox_cannot_start(&e),
                                other => other.to_string(),
                            },
                        })?;
                items.push(Item::Start(Box::new(Start {
                    spec,
                    run_spec,
                    digest: key.map(|k| k.1),
                    runtime,
                    instance,
                    replaces,
                })));
            }
        }
    }
    Ok(Plan {
        items,
        removed,
        runtimes: cache,
    })
}

struct Inner {
    /// The current tenants; replaced whole by a reload.
    table: RwLock<Arc<Table>>,
    /// Every current tenant's status, for [`StatusBoard`]s (no event sender, no
    /// command sender).
    board: Arc<RwLock<Vec<SharedStatus>>>,
    /// Taken on shutdown, so the event stream ends once the tenants are done.
    events: Mutex<Option<mpsc::Sender<EventLine>>>,
    runtimes: Mutex<Vec<CachedRuntime>>,
    source: Mutex<Option<ReloadSource>>,
    control: tokio::sync::Mutex<Control>,
    clock: Clock,
    options: HostOptions,
    allow_empty: bool,
}

/// Controls a running host; cheap to clone.
#[derive(Clone)]
pub struct HostHandle {
    inner: Arc<Inner>,
}

/// A read-only view of every tenant's counters (for metrics); holds no event
/// sender, so it does not keep the event stream open. It follows reloads: a
/// tenant a reload starts appears, one it stops disappears.
#[derive(Clone)]
pub struct StatusBoard(Arc<RwLock<Vec<SharedStatus>>>);

impl StatusBoard {
    /// A snapshot of every current tenant, in configuration order.
    pub fn snapshot(&self) -> Vec<TenantStatus> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

/// Where a command goes.
enum Route {
    Tenant(Arc<TenantEntry>),
    Reject(&'static str, String),
}

impl HostHandle {
    /// The current tenant ids, in configuration order.
    pub fn tenant_ids(&self) -> Vec<String> {
        self.table().tenants.iter().map(|t| t.id.clone()).collect()
    }

    /// Every current tenant's counters, in configuration order.
    pub fn status(&self) -> Vec<TenantStatus> {
        self.status_board().snapshot()
    }

    /// A view of the counters that outlives nothing else.
    pub fn status_board(&self) -> StatusBoard {
        StatusBoard(self.inner.board.clone())
    }

    /// Sets where [`HostHandle::reload`] and the `reload` command get the new
    /// tenants (`relay-host run --config FILE` sets it to re-read FILE). Without
    /// one, a reload is answered with an `error` of kind `reload_unavailable`.
    pub fn set_reload_source(&self, source: ReloadSource) {
        *self.inner.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// Re-reads the [`ReloadSource`] and applies it ([`HostHandle::reload_specs`]).
    /// The outcome is also reported as an event: `reloaded`, or an `error` of
    /// kind `reload_unavailable` (no source) or `reload_failed` (nothing changed).
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.reload_from_source(None).await
    }

    /// Makes `specs` the host's tenants: tenants not running yet start, running
    /// ones `specs` does not name stop gracefully (as on shutdown: `going_idle`,
    /// a bounded wait, close 1000, `state stopped` with reason `removed by
    /// reload`), ones whose spec changed ([`TenantSpec::differences`], or their
    /// component file's contents) stop the same way and start again with the new
    /// spec, and the rest keep running untouched. A tenant that had stopped for
    /// good (restart budget spent) is started again. Everything that can fail
    /// (compiling a component, building an instance) is done before anything
    /// stops, so an error changes nothing. Returns once the stopped tenants have
    /// stopped and the new ones are started (not yet connected); reloads and
    /// shutdown run one at a time. Reported as an event like
    /// [`HostHandle::reload`]. The host-wide [`HostOptions`] stay those of the
    /// start.
    pub async fn reload_specs(&self, specs: Vec<TenantSpec>) -> Result<ReloadSummary, ReloadError> {
        self.reload_with(Box::new(move || Ok(specs)), None).await
    }

    async fn reload_from_source(&self, id: Option<Value>) -> Result<ReloadSummary, ReloadError> {
        let source = self
            .inner
            .source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(source) = source else {
            let e = ReloadError::Unavailable;
            tracing::warn!("reload asked for: {e}");
            self.emit(reload_error(&e, id.as_ref())).await;
            return Err(e);
        };
        self.reload_with(Box::new(move || source().map_err(ReloadError::Config)), id)
            .await
    }

    async fn reload_with(
        &self,
        load: Box<dyn FnOnce() -> Result<Vec<TenantSpec>, ReloadError> + Send>,
        id: Option<Value>,
    ) -> Result<ReloadSummary, ReloadError> {
        let mut control = self.inner.control.lock().await;
        let events = match self.events_sender() {
            Some(events) if !control.shut_down => events,
            _ => return Err(ReloadError::ShuttingDown),
        };
        control.reloads += 1;
        let reload = control.reloads;
        let current = self.table();
        let cache = self
            .inner
            .runtimes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let options = self.inner.options.clone();
        let allow_empty = self.inner.allow_empty;
        // Reading files and compiling block: off the tenants' worker threads.
        let planned = tokio::task::spawn_blocking(move || {
            let specs = load()?;
            if specs.is_empty() && !allow_empty {
                return Err(ReloadError::Host(HostError::NoTenants));
            }
            Ok(prepare(specs, &current, cache, &options, reload)?)
        })
        .await
        .unwrap_or_else(|e| {
            Err(ReloadError::Config(format!(
                "the reload failed unexpectedly: {e}"
            )))
        });
        let plan = match planned {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!("reload failed, nothing changed: {e}");
                let _ = events
                    .send(EventLine::from_map(reload_error(&e, id.as_ref())))
                    .await;
                return Err(e);
            }
        };
        let commit = self.commit(plan);
        // Every tenant to stop at once, then wait for all of them.
        for (entry, reason) in &commit.stop {
            let _ = entry.tx.send(TenantCommand::Stop(reason.clone())).await;
        }
        for (entry, _) in &commit.stop {
            let task = entry.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                if let Err(e) = task.await {
                    tracing::error!(tenant = %entry.id, "tenant task ended abnormally: {e}");
                }
            }
        }
        self.spawn_tenants(commit.pending, &events);
        let summary = commit.summary;
        tracing::info!(
            started = ?summary.started,
            stopped = ?summary.stopped,
            restarted = ?summary.restarted,
            unchanged = summary.unchanged.len(),
            "configuration reloaded: {} started, {} stopped, {} restarted, {} unchanged",
            summary.started.len(),
            summary.stopped.len(),
            summary.restarted.len(),
            summary.unchanged.len(),
        );
        let mut m = Map::new();
        m.insert("event".into(), "reloaded".into());
        if let Some(id) = id {
            m.insert("id".into(), id);
        }
        if let Ok(Value::Object(lists)) = serde_json::to_value(&summary) {
            m.extend(lists);
        }
        let _ = events.send(EventLine::from_map(m)).await;
        Ok(summary)
    }

    /// Puts a plan in effect: the new table (so commands go to the new tenants and
    /// a removed tenant is unknown from now on), the status board and the runtime
    /// cache. Returns what is left to do: stop the old tenants, start the new.
    fn commit(&self, plan: Plan) -> Commit {
        let mut tenants = Vec::with_capacity(plan.items.len());
        let mut pending = Vec::new();
        let mut stop = Vec::new();
        let mut summary = ReloadSummary::default();
        for item in plan.items {
            match item {
                Item::Keep(entry) => {
                    summary.unchanged.push(entry.id.clone());
                    tenants.push(entry);
                }
                Item::Start(start) => {
                    let Start {
                        spec,
                        run_spec,
                        digest,
                        runtime,
                        instance,
                        replaces,
                    } = *start;
                    let id = spec.id.clone();
                    match replaces {
                        Some((old, changed)) => {
                            let reason = if changed.is_empty() {
                                "restarted by reload (it had stopped)".to_string()
                            } else {
                                format!("restarted by reload: {} changed", changed.join(", "))
                            };
                            tracing::info!(tenant = %id, "{reason}");
                            summary.restarted.push(id.clone());
                            stop.push((old, reason));
                        }
                        None => summary.started.push(id.clone()),
                    }
                    let status: SharedStatus = Arc::new(Mutex::new(TenantStatus {
                        tenant: id.clone(),
                        state: "connecting".into(),
                        ..TenantStatus::default()
                    }));
                    let (tx, rx) = mpsc::channel(self.inner.options.command_queue.max(1));
                    let entry = Arc::new(TenantEntry {
                        id,
                        tx,
                        status,
                        task: Mutex::new(None),
                        spec,
                        component_digest: digest,
                        runtime,
                    });
                    pending.push(Pending {
                        entry: entry.clone(),
                        rx,
                        spec: run_spec,
                        instance,
                    });
                    tenants.push(entry);
                }
            }
        }
        for old in plan.removed {
            summary.stopped.push(old.id.clone());
            stop.push((old, "removed by reload".to_string()));
        }
        let index = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let statuses = tenants.iter().map(|t| t.status.clone()).collect();
        *self.inner.table.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Table { tenants, index });
        *self.inner.board.write().unwrap_or_else(|p| p.into_inner()) = statuses;
        *self
            .inner
            .runtimes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = plan.runtimes;
        Commit {
            pending,
            stop,
            summary,
        }
    }

    fn spawn_tenants(&self, pending: Vec<Pending>, events: &mpsc::Sender<EventLine>) {
        let options = &self.inner.options;
        for p in pending {
            let ctx = TenantContext {
                runtime: p.entry.runtime.clone(),
                clock: self.inner.clock,
                events: TenantEvents::new(events.clone(), tenant_share(options.event_capacity)),
                budget: options.restart_budget,
                shutdown_grace: options.shutdown_grace,
            };
            let task = tenant::spawn(p.spec, p.instance, ctx, p.entry.status.clone(), p.rx);
            *p.entry.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
    }

    fn table(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    /// but whether the host still runs. `reload` runs in the background (commands
    /// keep being served meanwhile); its answer is the `reloaded` event.
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
            "reload" => {
                let handle = self.clone();
                tokio::spawn(async move {
                    let _ = handle.reload_from_source(id).await;
                });
                return Flow::Continue;
            }
            _ => {}
        }
        // One read lock and a lookup; the lock is gone before anything waits.
        let route = {
            let table = self.inner.table.read().unwrap_or_else(|p| p.into_inner());
            match command.get("tenant") {
                Some(Value::String(t)) => match table.get(t) {
                    Some(entry) => Route::Tenant(entry.clone()),
                    None => {
                        let t: String = t.chars().take(80).collect();
                        Route::Reject("unknown_tenant", format!("unknown tenant `{t}`"))
                    }
                },
                // One tenant: `tenant` may be left out.
                None | Some(Value::Null) if table.tenants.len() == 1 => {
                    Route::Tenant(table.tenants[0].clone())
                }
                None | Some(Value::Null) => {
                    Route::Reject("missing_field", "missing field `tenant`".into())
                }
                Some(_) => Route::Reject("invalid_field", "`tenant` is not a string".into()),
            }
        };
        let entry = match route {
            Route::Tenant(entry) => entry,
            Route::Reject(kind, message) => {
                self.emit(reject(kind, message)).await;
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
                    let _ = tx
                        .send(EventLine::from_value(event::for_tenant(&entry.id, answer)))
                        .await;
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
            let _ = tx
                .send(EventLine::from_value(event::for_tenant(tenant, answer)))
                .await;
        }
    }

    /// Every tenant goes idle (bounded), closes and reports `stopped`; returns when
    /// all have. Afterwards the event stream ends. Waits for a reload in progress
    /// to finish first; later reloads do nothing. Safe to call twice.
    pub async fn shutdown(&self) {
        let mut control = self.inner.control.lock().await;
        control.shut_down = true;
        let table = self.table();
        for t in &table.tenants {
            let _ = t.tx.send(TenantCommand::Shutdown).await;
        }
        for t in &table.tenants {
            let task = t.task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                if let Err(e) = task.await {
                    tracing::error!(tenant = %t.id, "tenant task ended abnormally: {e}");
                }
            }
        }
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    fn events_sender(&self) -> Option<mpsc::Sender<EventLine>> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn emit(&self, event: Map<String, Value>) {
        if let Some(tx) = self.events_sender() {
            let _ = tx.send(EventLine::from_map(event)).await;
        }
    }
}

/// The `error` event reporting a reload that changed nothing.
fn reload_error(e: &ReloadError, id: Option<&Value>) -> Map<String, Value> {
    let message = match e {
        ReloadError::Unavailable => e.to_string(),
        _ => format!("{e}; nothing changed"),
    };
    let mut m = event::error(e.kind(), &message);
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    m
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
            let mut result = output.write_all(event.as_str().as_bytes()).await;
            if result.is_ok() {
                result = output.write_all(b"\n").await;
            }
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

/// Why a tenant's first instance failed, with the likely cause: its memory cap,
/// or (an allocation refused by the OS) the process's mapping or memory limits.
fn sandbox_cannot_start(e: &crate::sandbox::SandboxError) -> String {
    let text = e.to_string();
    if text.contains("Cannot allocate memory") || text.contains("os error 12") {
        format!(
            "its sandbox cannot start: the OS refused memory for it (out of memory, or of \
             memory mappings: vm.max_map_count, docs/DEPLOY.md): {text}"
        )
    } else {
        format!("its sandbox cannot start (is limits.memory_mib too small?): {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IdentitySpec;

    fn spec(id: &str, bot: &str, component: Option<PathBuf>) -> TenantSpec {
        let identity = IdentitySpec {
            platform: "discord".into(),
            bot_id: bot.into(),
            command_manifest: None,
        };
        // Nothing listens on port 1: the tenants back off and never connect.
        let mut spec = TenantSpec::new(id, "ws://127.0.0.1:1", vec![identity]).unwrap();
        spec.component = component;
        spec.seed = 7;
        spec
    }

    fn started_runtimes(plan: &Plan) -> Vec<Arc<Runtime>> {
        plan.items
            .iter()
            .filter_map(|i| match i {
                Item::Start(s) => Some(s.runtime.clone()),
                Item::Keep(_) => None,
            })
            .collect()
    }

    #[test]
    fn one_runtime_per_distinct_component() {
        let dir = std::env::temp_dir().join(format!("relay-app-runtimes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), crate::sandbox::COMPONENT_WASM).unwrap();
        let specs = vec![
            spec("embedded-1", "b", None),
            spec("file-1", "b", Some(dir.join("a.wasm"))),
            // The same file by another spelling.
            spec("file-2", "b", Some(dir.join(".").join("a.wasm"))),
            spec("embedded-2", "b", None),
        ];
        let plan = prepare(
            specs,
            &Table::default(),
            Vec::new(),
            &HostOptions::default(),
            0,
        )
        .unwrap();
        let runtimes = started_runtimes(&plan);
        assert_eq!(runtimes.len(), 4);
        assert!(Arc::ptr_eq(&runtimes[0], &runtimes[3]));
        assert!(Arc::ptr_eq(&runtimes[1], &runtimes[2]));
        assert!(!Arc::ptr_eq(&runtimes[0], &runtimes[1]));
        assert_eq!(plan.runtimes.len(), 2, "both kept in the cache");
        let _ = std::fs::remove_dir_all(&dir);
    }

    async fn next_matching(events: &mut Events, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let e = tokio::time::timeout_at(deadline, events.recv())
                .await
                .expect("the event in time")
                .expect("the stream is open")
                .value();
            if want(&e) {
                return e;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_starts_stops_restarts_and_keeps() {
        let (host, mut events) = Host::start(
            vec![
                spec("a", "bot-a", None),
                spec("b", "bot-b", None),
                spec("c", "bot-c", None),
            ],
            HostOptions::default(),
        )
        .unwrap();
        let board = host.status_board();
        let cached = host.inner.runtimes.lock().unwrap()[0].runtime.clone();
        let a_status = host.table().get("a").unwrap().status.clone();

        // Without a source: an error, nothing changes.
        assert!(matches!(host.reload().await, Err(ReloadError::Unavailable)));
        let e = next_matching(&mut events, |e| e["event"] == "error").await;
        assert_eq!(e["error"]["kind"], "reload_unavailable", "{e}");

        // A spec a component rejects: an error, nothing changes.
        let mut bad = spec("d", "bot-d", None);
        bad.url = "not a url".into();
        let before = host.tenant_ids();
        let e = host
            .reload_specs(vec![spec("a", "bot-a", None), bad])
            .await
            .unwrap_err();
        assert!(
            matches!(e, ReloadError::Host(HostError::Tenant { .. })),
            "{e}"
        );
        let e = next_matching(&mut events, |e| e["event"] == "error").await;
        assert_eq!(e["error"]["kind"], "reload_failed", "{e}");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed"));
        assert_eq!(host.tenant_ids(), before);

        // a unchanged, b removed, c changed, d added.
        let summary = host
            .reload_specs(vec![
                spec("d", "bot-d", None),
                spec("a", "bot-a", None),
                spec("c", "bot-c2", None),
            ])
            .await
            .unwrap();
        assert_eq!(
            summary,
            ReloadSummary {
                started: vec!["d".into()],
                stopped: vec!["b".into()],
                restarted: vec!["c".into()],
                unchanged: vec!["a".into()],
            }
        );
        let e = next_matching(&mut events, |e| e["event"] == "reloaded").await;
        assert_eq!(
            e,
            json!({"event": "reloaded", "started": ["d"], "stopped": ["b"],
                   "restarted": ["c"], "unchanged": ["a"]})
        );
        assert_eq!(host.tenant_ids(), ["d", "a", "c"]);
        let on_board: Vec<String> = board.snapshot().into_iter().map(|s| s.tenant).collect();
        assert_eq!(on_board, ["d", "a", "c"], "the board follows the reload");
        assert!(Arc::ptr_eq(
            &host.table().get("a").unwrap().status,
            &a_status
        ));
        assert!(
            Arc::ptr_eq(&host.inner.runtimes.lock().unwrap()[0].runtime, &cached),
            "the embedded component is not compiled again"
        );

        // A removed tenant is unknown.
        host.send_command(json!({"op": "ack", "tenant": "b", "id": "k", "buffer_id": "x"}))
            .await;
        let e = next_matching(&mut events, |e| e["event"] == "error").await;
        assert_eq!(e["error"]["kind"], "unknown_tenant", "{e}");

        // The same specs again: nothing to do.
        let summary = host
            .reload_specs(vec![
                spec("d", "bot-d", None),
                spec("a", "bot-a", None),
                spec("c", "bot-c2", None),
            ])
            .await
            .unwrap();
        assert_eq!(summary.unchanged, ["d", "a", "c"]);
        assert!(summary.started.is_empty() && summary.restarted.is_empty());

        host.shutdown().await;
        assert!(matches!(
            host.reload_specs(vec![spec("a", "bot-a", None)]).await,
            Err(ReloadError::ShuttingDown)
        ));
        // The stream ends after the last tenant's `stopped`.
        while events.recv().await.is_some() {}
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
