//! The wasmtime side of a tenant: one engine and one pre-linked component shared
//! by all tenants, and one `Store` + instance per tenant with its own memory cap and
//! CPU deadline.
//!
//! The guest gets no filesystem, network, environment, stdio or clock: its WASI
//! context is empty, and Rust's std imports are satisfied only so it links. Time
//! and randomness are passed in through the WIT interface.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "relay",
    path: "../../wit",
});

pub use exports::hermes::relay::session::{
    Config as SessionConfig, Effect, Identity, LogLevel, LogRecord, Timer,
};
pub use exports::hermes::relay::types::{
    ConnectorFrame, DecodeError, ErrorKind, GatewayFrame, HelloFrame, InterruptFrame, OutboundFrame,
};

/// The text of a document the component handed out as bytes (`json-bytes`), or
/// `None` if it is not UTF-8. The guest is untrusted, so every such document is
/// checked once here, with SIMD (wasmtime's own check of a `string` result is
/// scalar and cost a third of a frame's time on non-ASCII text).
pub fn document(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// The component bytes built from crates/relay-component by `build.rs`.
pub const COMPONENT_WASM: &[u8] = include_bytes!(env!("RELAY_COMPONENT_WASM"));

/// How often the epoch ticker advances; CPU deadlines are whole ticks of this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-tenant resource limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap per tenant instance.
    pub memory_bytes: usize,
    /// CPU time one call into the guest may take before it is interrupted.
    pub cpu_per_call: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 16 << 20,
            cpu_per_call: Duration::from_millis(50),
        }
    }
}

/// How instances are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Memory is mapped per instance on demand (few tenants).
    OnDemand,
    /// Slots are reserved up front for this many instances (many tenants).
    Pooling { max_instances: u32 },
}

/// The guest's clocks: both stand still at zero. Time reaches the component only
/// as the `now-ms` the host passes, so no embedder's wall clock leaks into its
/// decisions (and every host feeds it the same way).
struct StoppedClock;

impl HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Most table elements one instance may have: the component's own tables need
/// about two thousand; a guest growing a table past this traps.
const MAX_TABLE_ELEMENTS: usize = 20_000;

/// The WASI context of a tenant: nothing to reach. No stdin, environment,
/// arguments, files or sockets (WasiCtxBuilder's defaults, sockets and name
/// lookup denied explicitly), stopped clocks, and stdout/stderr discarded. The
/// one value it gets is the `insecure-seed` Rust's `HashMap` asks for at start-up,
/// fresh per instance so its hash tables (the session's LRU memories and
/// serde_json's maps) keep their collision resistance; nothing the component
/// emits depends on it.
fn closed_wasi() -> WasiCtx {
    use std::hash::{BuildHasher as _, Hasher as _};
    let half = || {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let seed = u128::from(half()) << 64 | u128::from(half());
    WasiCtx::builder()
        .wall_clock(StoppedClock)
        .monotonic_clock(StoppedClock)
        .insecure_random_seed(seed)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// The store data of one tenant: a closed WASI context and the limiter.
pub struct TenantState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for TenantState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Errors of the sandbox layer.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine or component could not be set up.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    /// The guest trapped, ran out of memory, or exceeded its CPU deadline; the
    /// instance is dead and must be rebuilt.
    #[error("guest trapped: {0}")]
    Trap(String),
}

impl SandboxError {
    fn trap(e: wasmtime::Error) -> Self {
        SandboxError::Trap(format!("{e:#}"))
    }

    /// A host function panicked while the guest called it (the instance is as
    /// dead as after a trap).
    fn host_panic(panic: Box<dyn std::any::Any + Send>) -> Self {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        // tokio's message is a paragraph: its first sentence says enough.
        let first = message.split(". ").next().unwrap_or_default();
        SandboxError::Trap(format!(
            "the guest made a blocking WASI call, which the sandbox does not serve (host panic: {first})"
        ))
    }
}

/// One compiled, pre-linked component shared by every tenant.
pub struct Runtime {
    engine: Engine,
    pre: RelayPre<TenantState>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Compiles the embedded component.
    pub fn new(allocation: Allocation, limits: Limits) -> Result<Self, SandboxError> {
        Self::from_bytes(COMPONENT_WASM, allocation, limits)
    }

    /// Compiles a component from bytes (hostile fixtures in tests use this).
    pub fn from_bytes(
        wasm: &[u8],
        allocation: Allocation,
        limits: Limits,
    ) -> Result<Self, SandboxError> {
        let setup = |e: wasmtime::Error| SandboxError::Setup(format!("{e:#}"));
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Lets `perf` name guest functions (it writes /tmp/perf-PID.map); how the
        // guest's share of a profile was measured (docs/PERFORMANCE.md).
        if std::env::var_os("RELAY_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Allocation::Pooling { max_instances } = allocation {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(max_instances);
            pool.total_core_instances(max_instances.saturating_mul(4));
            pool.total_memories(max_instances.saturating_mul(2));
            pool.total_tables(max_instances.saturating_mul(4));
            pool.table_elements(MAX_TABLE_ELEMENTS);
            pool.max_memory_size(limits.memory_bytes);
            // Reserve only the cap per memory (not the 4 GiB default): 10,000
            // tenants must fit the address space. Bounds checks become explicit.
            config.memory_reservation(limits.memory_bytes as u64);
            config.memory_guard_size(64 << 10);
            config.memory_reservation_for_growth(0);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(setup)?;
        let component = Component::new(&engine, wasm).map_err(setup)?;
        let mut linker: Linker<TenantState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        let pre =
            RelayPre::new(linker.instantiate_pre(&component).map_err(setup)?).map_err(setup)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak_engine, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| SandboxError::Setup(e.to_string()))?;
        Ok(Runtime {
            engine,
            pre,
            ticker_stop,
        })
    }

    /// A fresh, isolated instance with its own store and limits.
    pub fn instantiate(&self, limits: Limits) -> Result<Sandbox, SandboxError> {
        let state = TenantState {
            wasi: closed_wasi(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(4)
                .tables(4)
                .memories(2)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (limits.cpu_per_call.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(SandboxError::trap)?;
        Ok(Sandbox {
            store,
            bindings,
            ticks,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// One tenant's instance. Every call re-arms the CPU deadline; an `Err` means the
/// instance is dead (trap, memory cap, deadline) and must be replaced.
pub struct Sandbox {
    store: Store<TenantState>,
    bindings: Relay,
    ticks: u64,
}

/// A handle to a `connection` resource inside a [`Sandbox`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionHandle(ResourceAny);

/// Every call re-arms the deadline, and a panic in a host function the guest
/// called is caught and reported like a trap: wasmtime-wasi's synchronous I/O
/// (stdio streams, `poll`, sockets) blocks on tokio and panics inside the tenant's
/// tokio task, so a guest writing a panic message to stderr would otherwise end the
/// tenant task without a word.
macro_rules! guest_call {
    ($self:ident, |$store:ident, $b:ident| $body:expr) => {{
        $self.store.set_epoch_deadline($self.ticks);
        let $store = &mut $self.store;
        let $b = &$self.bindings;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(result) => result.map_err(SandboxError::trap),
            Err(panic) => Err(SandboxError::host_panic(panic)),
        }
    }};
}

impl Sandbox {
    /// Decodes one line.
    pub fn decode(
        &mut self,
        line: &[u8],
        max: u32,
    ) -> Result<Result<ConnectorFrame, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_decode(s, line, max))
    }

    /// Encodes one gateway frame.
    pub fn encode(&mut self, frame: &GatewayFrame) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b.hermes_relay_codec().call_encode(s, frame))
    }

    /// The URL to dial.
    pub fn dial_url(&mut self, base: &str) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b.hermes_relay_codec().call_dial_url(s, base))
    }

    /// The provisioning URL.
    pub fn provision_url(&mut self, base: &str) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_provision_url(s, base))
    }

    /// An upgrade token.
    pub fn upgrade_token(
        &mut self,
        id: &str,
        secret: &str,
        ttl: i64,
        now: i64,
    ) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_upgrade_token(s, id, secret, ttl, now))
    }

    /// The bare HMAC signature.
    pub fn sign(&mut self, payload: &str, secret: &str) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_sign(s, payload, secret))
    }

    /// Descriptor normalisation (JSON in, JSON out).
    pub fn normalize_descriptor(
        &mut self,
        json: &str,
    ) -> Result<Result<String, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_normalize_descriptor(s, &json.to_string()))
    }

    /// Inbound event normalisation.
    pub fn inbound_event(
        &mut self,
        json: &str,
    ) -> Result<Result<String, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_inbound_event(s, &json.to_string()))
    }

    /// Passthrough forward normalisation.
    pub fn passthrough_forward(
        &mut self,
        json: &str,
    ) -> Result<Result<String, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_passthrough_forward(s, &json.to_string()))
    }

    /// Discord conversion of a normalised forward.
    pub fn discord_event(
        &mut self,
        json: &str,
    ) -> Result<Result<Option<String>, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_codec()
            .call_discord_event(s, &json.to_string()))
    }

    /// Creates a connection resource.
    pub fn create_connection(
        &mut self,
        config: &SessionConfig,
    ) -> Result<Result<ConnectionHandle, DecodeError>, SandboxError> {
        let r = guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_create(s, config))?;
        Ok(r.map(ConnectionHandle))
    }

    /// The `Authorization` header for the next dial.
    pub fn authorization(
        &mut self,
        c: ConnectionHandle,
        now_unix_s: i64,
    ) -> Result<Option<String>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_authorization(s, c.0, now_unix_s))
    }

    /// The socket is up.
    pub fn open(&mut self, c: ConnectionHandle, now_ms: u64) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_open(s, c.0, now_ms))
    }

    /// A text message arrived.
    pub fn receive_text(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        text: &str,
    ) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_receive_text(s, c.0, now_ms, text))
    }

    /// A binary message arrived.
    pub fn receive_binary(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        bytes: &[u8],
    ) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_receive_binary(s, c.0, now_ms, bytes))
    }

    /// A timer is due.
    pub fn timer_fired(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        id: u64,
    ) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_timer_fired(s, c.0, now_ms, id))
    }

    /// An APP-PROTOCOL command (JSON without `tenant`).
    pub fn command(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        command: &str,
    ) -> Result<Result<Vec<Effect>, DecodeError>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_command(s, c.0, now_ms, &command.to_string()))
    }

    /// The socket closed (or a dial failed).
    pub fn closed(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        code: Option<u16>,
        reason: &str,
    ) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_closed(s, c.0, now_ms, code, reason))
    }

    /// Frame `number` and the frames after it could not be written.
    pub fn write_failed(
        &mut self,
        c: ConnectionHandle,
        now_ms: u64,
        number: u64,
        reason: &str,
    ) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_write_failed(s, c.0, now_ms, number, reason))
    }

    /// The link is ended on purpose (shutdown): never dialled again.
    pub fn stop(&mut self, c: ConnectionHandle, now_ms: u64) -> Result<Vec<Effect>, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_stop(s, c.0, now_ms))
    }

    /// Counters (JSON).
    pub fn stats(&mut self, c: ConnectionHandle) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_stats(s, c.0))
    }

    /// Each fronted platform's descriptor on the current connection (JSON object).
    pub fn descriptors(&mut self, c: ConnectionHandle) -> Result<String, SandboxError> {
        guest_call!(self, |s, b| b
            .hermes_relay_session()
            .connection()
            .call_descriptors(s, c.0))
    }
}
