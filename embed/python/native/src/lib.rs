//! `relay_wasm._native`: a WebAssembly component in wasmtime, callable from Python.
//!
//! Why this exists: wasmtime-py's public call path costs ~10 µs per call and
//! ~12 µs more per argument, several times a whole frame of the pure-Python relay.
//! This module runs the same component with the Rust `wasmtime` crate and converts
//! values between Python and the component model directly.
//!
//! The API is small and generic (the Python package builds on it,
//! `relay_wasm/component.py`):
//!
//! * [`Component`]: compiles a component from bytes. Its imports must be the error
//!   channel (`wasi:cli/stderr`, `wasi:io/error`, `wasi:io/streams`, WASI 0.2), served
//!   here into a bounded buffer; anything else is refused at load ([`LoadError`]).
//! * [`Instance`]: one store with its own memory cap; [`Instance::func`] looks an
//!   export up once and returns a [`Func`] that converts Python arguments by the
//!   function's WIT types (see `convert.rs` for the rules).
//! * [`effects::Effects`]: an optional converter for functions returning the relay
//!   contract's `list<effect>`; those calls lift the effects with typed bindings
//!   and build the Python effect objects here (the hot path of every frame).
//! * Exceptions: [`Trap`] (the guest trapped, or did not fit its limits; the
//!   instance is dead from then on), [`ResultError`] (a `result` came back `err`:
//!   `.value` is the converted error), [`LoadError`]. Bad arguments raise
//!   `TypeError`/`ValueError`/`OverflowError`/`UnicodeDecodeError`. Nothing panics
//!   across the FFI boundary: pyo3 turns a Rust panic into `PanicException`, and no
//!   code here is meant to panic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component as WasmComponent, ComponentType, Func as WasmFunc, Instance as WasmInstance,
    InstancePre, Linker, Lower, Resource as HostResource, ResourceAny, ResourceType, Type, Val,
};
use wasmtime::{Config, Engine, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder};

mod convert;
mod effects;
mod json;

pyo3::create_exception!(
    _native,
    Trap,
    PyRuntimeError,
    "The guest trapped (a bug, or a limit such as the memory cap) or could not be \
     instantiated within its limits. The instance is dead: every later call raises Trap. \
     `.message` says why in one line (`wasm trap: ...`, or the limit), `.details` is \
     wasmtime's whole error with the guest's wasm backtrace (None for a call refused \
     because the instance is dead), `.stderr` what the guest wrote to stderr (at most \
     1 KiB, lossily decoded) or None."
);
pyo3::create_exception!(
    _native,
    ResultError,
    PyException,
    "A function's `result` came back `err`; `.value` is the error value, converted \
     like any other value (a record is a dict with snake_case keys)."
);
pyo3::create_exception!(
    _native,
    LoadError,
    PyValueError,
    "The bytes are not a component this module can run: not WebAssembly, not a \
     component, or importing something other than the error channel."
);

/// Linear memory per instance unless the caller says otherwise: the Rust host's
/// default (`relay_host::sandbox::Limits`).
const DEFAULT_MEMORY_BYTES: usize = 16 << 20;
/// Table elements, instances, tables and memories per store: the Rust host's caps.
const MAX_TABLE_ELEMENTS: usize = 20_000;
const MAX_INSTANCES: usize = 4;
const MAX_TABLES: usize = 4;
const MAX_MEMORIES: usize = 2;
/// What is kept of the guest's stderr (a panicking guest writes its message there
/// before it traps); the rest is dropped.
const STDERR_BYTES: usize = 1 << 10;

/// The store data of one instance.
struct State {
    limits: StoreLimits,
    stderr: Vec<u8>,
}

impl State {
    fn capture(&mut self, bytes: &[u8]) {
        let room = STDERR_BYTES.saturating_sub(self.stderr.len());
        self.stderr
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// The host side of `wasi:io/streams.output-stream` (only stderr exists).
struct OutputStream;
/// The host side of `wasi:io/error.error` (never created: writes never fail).
struct IoError;

/// WIT `wasi:io/streams.stream-error`.
#[derive(ComponentType, Lower)]
#[component(variant)]
#[allow(dead_code)] // `Closed` is part of the type the guest expects, never returned
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(HostResource<IoError>),
    #[component(name = "closed")]
    Closed,
}

type WriteResult = (Result<(), StreamError>,);

/// What this module serves of each interface it accepts (WASI 0.2): the error
/// channel's functions and resources. An import of anything else is refused.
const SERVED: &[(&str, &[&str])] = &[
    ("wasi:cli/stderr", &["get-stderr", "output-stream"]),
    ("wasi:io/error", &["error", "[method]error.to-debug-string"]),
    (
        "wasi:io/streams",
        &[
            "output-stream",
            "error",
            "[method]output-stream.check-write",
            "[method]output-stream.write",
            "[method]output-stream.blocking-write-and-flush",
            "[method]output-stream.flush",
            "[method]output-stream.blocking-flush",
            "[method]output-stream.write-zeroes",
            "[method]output-stream.blocking-write-zeroes-and-flush",
        ],
    ),
];

fn served(interface: &str) -> Option<&'static [&'static str]> {
    let (base, version) = interface.split_once('@')?;
    if !version.starts_with("0.2.") {
        return None;
    }
    SERVED
        .iter()
        .find(|(name, _)| *name == base)
        .map(|(_, items)| *items)
}

/// Links the error channel for exactly what `component` imports, or says which
/// imports cannot be served.
fn link_error_channel(
    engine: &Engine,
    component: &WasmComponent,
    linker: &mut Linker<State>,
) -> Result<(), String> {
    let ty = component.component_type();
    let mut refused = Vec::new();
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for (name, item) in ty.imports(engine) {
        let (ComponentItem::ComponentInstance(instance), Some(items)) = (&item.ty, served(name))
        else {
            refused.push(name.to_string());
            continue;
        };
        let mut names = Vec::new();
        for (export, what) in instance.exports(engine) {
            match what.ty {
                ComponentItem::Type(_) => {}
                _ if items.contains(&export) => names.push(export.to_string()),
                _ => refused.push(format!("{name}#{export}")),
            }
        }
        wanted.push((name.to_string(), names));
    }
    if !refused.is_empty() {
        return Err(format!(
            "the component imports what this host does not provide (only the error \
             channel wasi:cli/stderr + wasi:io/error + wasi:io/streams, WASI 0.2): {}",
            refused.join(", ")
        ));
    }
    let setup = |e: wasmtime::Error| format!("linking the error channel: {e:#}");
    for (name, items) in wanted {
        let mut inst = linker.instance(&name).map_err(setup)?;
        let base = name.split_once('@').map_or(name.as_str(), |(b, _)| b);
        for item in &items {
            let item = item.as_str();
            match (base, item) {
                // `wasi:cli/stderr` and `wasi:io/streams` re-export `error` and
                // `output-stream` from the interfaces that define them.
                ("wasi:cli/stderr", "output-stream") | ("wasi:io/streams", "error") => {}
                ("wasi:io/streams", "output-stream") => inst
                    .resource(item, ResourceType::host::<OutputStream>(), |_, _| Ok(()))
                    .map_err(setup)?,
                ("wasi:io/error", "error") => inst
                    .resource(item, ResourceType::host::<IoError>(), |_, _| Ok(()))
                    .map_err(setup)?,
                (_, "get-stderr") => inst
                    .func_wrap(item, |_: StoreContextMut<'_, State>, (): ()| {
                        Ok((HostResource::<OutputStream>::new_own(0),))
                    })
                    .map_err(setup)?,
                (_, "[method]error.to-debug-string") => inst
                    .func_wrap(
                        item,
                        |_: StoreContextMut<'_, State>, (_,): (HostResource<IoError>,)| {
                            Ok((String::from("error"),))
                        },
                    )
                    .map_err(setup)?,
                (_, "[method]output-stream.check-write") => inst
                    .func_wrap(
                        item,
                        |_: StoreContextMut<'_, State>, (_,): (HostResource<OutputStream>,)| {
                            Ok((Ok::<u64, StreamError>(4096),))
                        },
                    )
                    .map_err(setup)?,
                (_, "[method]output-stream.write")
                | (_, "[method]output-stream.blocking-write-and-flush") => inst
                    .func_wrap(
                        item,
                        |mut store: StoreContextMut<'_, State>,
                         (_, bytes): (HostResource<OutputStream>, Vec<u8>)|
                         -> wasmtime::Result<WriteResult> {
                            store.data_mut().capture(&bytes);
                            Ok((Ok(()),))
                        },
                    )
                    .map_err(setup)?,
                (_, "[method]output-stream.flush")
                | (_, "[method]output-stream.blocking-flush") => inst
                    .func_wrap(
                        item,
                        |_: StoreContextMut<'_, State>,
                         (_,): (HostResource<OutputStream>,)|
                         -> wasmtime::Result<WriteResult> { Ok((Ok(()),)) },
                    )
                    .map_err(setup)?,
                (_, "[method]output-stream.write-zeroes")
                | (_, "[method]output-stream.blocking-write-zeroes-and-flush") => inst
                    .func_wrap(
                        item,
                        |mut store: StoreContextMut<'_, State>,
                         (_, n): (HostResource<OutputStream>, u64)|
                         -> wasmtime::Result<WriteResult> {
                            let n = usize::try_from(n).unwrap_or(usize::MAX).min(STDERR_BYTES);
                            store.data_mut().capture(&vec![0; n]);
                            Ok((Ok(()),))
                        },
                    )
                    .map_err(setup)?,
                _ => return Err(format!("{name}#{item} is listed as served but not linked")),
            }
        }
    }
    Ok(())
}

/// A compiled component and its linker, shared by every [`Instance`] made from it.
///
/// `Component(wasm: bytes)` compiles (Cranelift, ~0.3-1 s, without holding the
/// GIL); raises `LoadError`.
#[pyclass(module = "relay_wasm._native", frozen)]
struct Component {
    engine: Engine,
    pre: InstancePre<State>,
    imports: Vec<String>,
}

#[pymethods]
impl Component {
    #[new]
    fn new(py: Python<'_>, wasm: Vec<u8>) -> PyResult<Self> {
        let built = py.detach(move || -> Result<_, String> {
            let mut config = Config::new();
            config.wasm_component_model(true);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            let component = WasmComponent::new(&engine, &wasm).map_err(|e| format!("{e:#}"))?;
            let mut linker = Linker::new(&engine);
            link_error_channel(&engine, &component, &mut linker)?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(|e| format!("{e:#}"))?;
            let mut imports: Vec<String> = component
                .component_type()
                .imports(&engine)
                .map(|(name, _)| name.to_string())
                .collect();
            imports.sort();
            Ok((engine, pre, imports))
        });
        let (engine, pre, imports) = built.map_err(LoadError::new_err)?;
        Ok(Component {
            engine,
            pre,
            imports,
        })
    }

    /// The names the component imports (sorted), e.g. `wasi:cli/stderr@0.2.12`.
    #[getter]
    fn imports(&self) -> Vec<String> {
        self.imports.clone()
    }

    /// A new instance in its own store. `memory_bytes` caps its linear memory
    /// (default 16 MiB, as the Rust host); tables, instances and memories are
    /// capped as in the Rust host too. Raises `Trap` when the component does not
    /// instantiate within those limits.
    #[pyo3(signature = (memory_bytes = DEFAULT_MEMORY_BYTES))]
    fn instantiate(&self, memory_bytes: usize) -> PyResult<Instance> {
        let state = State {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                // A failed memory.grow traps instead of returning -1 to the guest:
                // the Rust host's rule, so both report the memory cap the same way.
                .trap_on_grow_failure(true)
                .build(),
            stderr: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        match self.pre.instantiate(&mut store) {
            Ok(instance) => Ok(Instance {
                store,
                instance,
                dead: None,
                id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            }),
            Err(e) => {
                let (message, details) = trap_parts(&e);
                let stderr = stderr_text(&store.data().stderr);
                Err(trap_error(
                    format!("instantiation failed: {message}"),
                    Some(details),
                    stderr,
                ))
            }
        }
    }
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

fn stderr_text(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).trim_end().to_string())
}

/// What a wasmtime error says in one line: the trap (`wasm trap: <code>`), or the
/// root cause (e.g. the limiter's `forcing trap when growing memory to N bytes`).
/// The chain with the guest's wasm backtrace is kept as `Trap.details`.
fn trap_parts(e: &wasmtime::Error) -> (String, String) {
    let message = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => e.root_cause().to_string(),
    };
    (message, format!("{e:#}"))
}

fn trap_error(message: String, details: Option<String>, stderr: Option<String>) -> PyErr {
    let text = match &stderr {
        Some(s) => format!("{message}\nguest stderr: {s}"),
        None => message.clone(),
    };
    Python::attach(|py| {
        let err = Trap::new_err(text);
        let value = err.value(py);
        // Setting attributes on a fresh exception object cannot fail in practice;
        // if it did, the message is still in `args`.
        let _ = value.setattr("message", message);
        let _ = value.setattr("details", details);
        let _ = value.setattr("stderr", stderr);
        err
    })
}

/// One instance of a component, in its own store: single-threaded (a second
/// thread using it at the same time gets `RuntimeError`, never a data race).
#[pyclass(module = "relay_wasm._native")]
struct Instance {
    store: Store<State>,
    instance: WasmInstance,
    /// Set by the first trap: the instance must not be entered again.
    dead: Option<String>,
    id: u64,
}

impl Instance {
    /// Marks the instance dead and builds the `Trap` for `e`.
    fn trapped(&mut self, e: wasmtime::Error) -> PyErr {
        let (message, details) = trap_parts(&e);
        self.dead = Some(message.clone());
        trap_error(
            message,
            Some(details),
            stderr_text(&self.store.data().stderr),
        )
    }

    fn check_alive(&self) -> PyResult<()> {
        match &self.dead {
            Some(why) => Err(trap_error(
                format!("the instance is dead: an earlier call trapped ({why})"),
                None,
                stderr_text(&self.store.data().stderr),
            )),
            None => Ok(()),
        }
    }
}

#[pymethods]
impl Instance {
    /// The exported function `name` of the exported interface `interface`
    /// (e.g. `"hermes:relay/session@0.2.0"`, `"[method]link.receive-text"`).
    /// Raises `LookupError` when there is none. With `effects` (an `Effects`),
    /// the function must return `list<effect>` or `result<list<effect>, E>` of the
    /// relay contract, and its effects come back as the Python objects `effects`
    /// builds.
    #[pyo3(signature = (interface, name, effects = None))]
    fn func(
        slf: &Bound<'_, Self>,
        interface: &str,
        name: &str,
        effects: Option<Py<effects::Effects>>,
    ) -> PyResult<Func> {
        let mut this = slf.try_borrow_mut()?;
        let Instance {
            store, instance, ..
        } = &mut *this;
        let iface = instance
            .get_export_index(&mut *store, None, interface)
            .ok_or_else(|| {
                pyo3::exceptions::PyLookupError::new_err(format!(
                    "the component exports no {interface}"
                ))
            })?;
        let func = instance
            .get_export_index(&mut *store, Some(&iface), name)
            .and_then(|idx| instance.get_func(&mut *store, idx))
            .ok_or_else(|| {
                pyo3::exceptions::PyLookupError::new_err(format!(
                    "{interface} exports no function {name}"
                ))
            })?;
        let ty = func.ty(&*store);
        let params: Vec<Type> = ty.params().map(|(_, t)| t).collect();
        let results: Vec<Type> = ty.results().collect();
        let shape = match &effects {
            Some(_) => Some(
                effects::Shape::of(&func, &*store, &results)
                    .map_err(|why| PyTypeError::new_err(format!("{interface}#{name}: {why}")))?,
            ),
            None => None,
        };
        Ok(Func {
            owner: slf.clone().unbind(),
            func,
            params,
            results,
            effects: effects.map(|e| (e, shape.unwrap_or(effects::Shape::Dynamic))),
            name: format!("{interface}#{name}"),
            owner_id: this.id,
        })
    }

    /// What the guest wrote to stderr so far (at most 1 KiB).
    #[getter]
    fn stderr<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.store.data().stderr)
    }

    /// `None` while the instance works; after a trap, the trap's message.
    #[getter]
    fn dead(&self) -> Option<String> {
        self.dead.clone()
    }
}

/// An exported function of one [`Instance`]; call it with Python arguments.
#[pyclass(module = "relay_wasm._native", frozen)]
struct Func {
    owner: Py<Instance>,
    func: WasmFunc,
    params: Vec<Type>,
    results: Vec<Type>,
    effects: Option<(Py<effects::Effects>, effects::Shape)>,
    name: String,
    owner_id: u64,
}

#[pymethods]
impl Func {
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.owner)?;
        if let Some((effects, _)) = &self.effects {
            visit.call(effects)?;
        }
        Ok(())
    }

    #[pyo3(signature = (*args))]
    fn __call__(&self, py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if args.len() != self.params.len() {
            return Err(PyTypeError::new_err(format!(
                "{} takes {} argument(s), got {}",
                self.name,
                self.params.len(),
                args.len()
            )));
        }
        let owner = self.owner.bind(py);
        let mut inst = owner.try_borrow_mut().map_err(|_| {
            PyRuntimeError::new_err(
                "the instance is already in use (by another thread, or by a call in progress)",
            )
        })?;
        inst.check_alive()?;
        if let Some((effects, shape)) = &self.effects {
            if *shape != effects::Shape::Dynamic {
                let lifted =
                    effects::call_typed(py, &mut inst, self.func, *shape, args, self.owner_id)?;
                drop(inst);
                return lifted.build(py, effects.get());
            }
        }
        let mut params = Vec::with_capacity(args.len());
        let mut consumed = Vec::new();
        for (i, (arg, ty)) in args.iter().zip(&self.params).enumerate() {
            let val = convert::to_val(&arg, ty, self.owner_id, &mut consumed)
                .map_err(|e| convert::with_context(py, e, &format!("argument {}", i + 1)))?;
            params.push(val);
        }
        let mut results = vec![Val::Bool(false); self.results.len()];
        let Instance { store, .. } = &mut *inst;
        if let Err(e) = self.func.call(&mut *store, &params, &mut results) {
            return Err(inst.trapped(e));
        }
        for r in consumed {
            r.get().consumed.store(true, Ordering::Relaxed);
        }
        drop(inst);
        let Some((val, ty)) = results.into_iter().zip(&self.results).next() else {
            return Ok(py.None());
        };
        match &self.effects {
            Some((effects, _)) => effects::from_dynamic(py, effects.get(), val),
            None => convert::result_to_py(py, val, ty, &self.owner, self.owner_id),
        }
    }

    fn __repr__(&self) -> String {
        format!("<relay_wasm._native.Func {}>", self.name)
    }
}

/// A handle to a resource inside an instance (e.g. the relay's `link`): returned
/// for `own<T>`, passed for `own<T>`/`borrow<T>`. `drop()` releases it inside the
/// guest; passing it as an `own` argument gives it to the guest. A handle the
/// program forgets is released with its instance.
#[pyclass(module = "relay_wasm._native", frozen)]
struct Resource {
    owner: Py<Instance>,
    owner_id: u64,
    any: ResourceAny,
    /// Dropped, or given to the guest as an `own` argument.
    consumed: AtomicBool,
}

#[pymethods]
impl Resource {
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.owner)
    }

    /// Releases the resource inside the guest (its destructor runs). A no-op when
    /// it was already dropped or its instance is dead.
    fn drop(&self, py: Python<'_>) -> PyResult<()> {
        if self.consumed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let mut inst = self
            .owner
            .bind(py)
            .try_borrow_mut()
            .map_err(|_| PyRuntimeError::new_err("the instance is already in use"))?;
        if inst.dead.is_some() {
            return Ok(());
        }
        let Instance { store, .. } = &mut *inst;
        if let Err(e) = self.any.resource_drop(&mut *store) {
            return Err(inst.trapped(e));
        }
        Ok(())
    }

    /// Whether the handle was dropped (or given to the guest).
    #[getter]
    fn dropped(&self) -> bool {
        self.consumed.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        format!(
            "<relay_wasm._native.Resource{}>",
            if self.dropped() { " (dropped)" } else { "" }
        )
    }
}

impl Resource {
    /// The handle for a call into instance `owner_id`, or a typed error.
    fn usable(&self, owner_id: u64) -> PyResult<ResourceAny> {
        if self.owner_id != owner_id {
            return Err(PyValueError::new_err(
                "this resource belongs to another instance",
            ));
        }
        if self.consumed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("this resource was dropped"));
        }
        Ok(self.any)
    }
}

fn new_resource(
    py: Python<'_>,
    owner: &Py<Instance>,
    owner_id: u64,
    any: ResourceAny,
) -> PyResult<Py<PyAny>> {
    Ok(Py::new(
        py,
        Resource {
            owner: owner.clone_ref(py),
            owner_id,
            any,
            consumed: AtomicBool::new(false),
        },
    )?
    .into_any())
}

/// A `str` from guest bytes, or `UnicodeDecodeError` (CPython's strict decoder).
fn utf8_str<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: the pointer and length describe `bytes`, alive for the call; the
    // result is a new reference (or NULL with the exception set).
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeUTF8(
            bytes.as_ptr().cast(),
            bytes.len() as pyo3::ffi::Py_ssize_t,
            c"strict".as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, ptr).map(|b| b.cast_into_unchecked())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Component>()?;
    m.add_class::<Instance>()?;
    m.add_class::<Func>()?;
    m.add_class::<Resource>()?;
    m.add_class::<effects::Effects>()?;
    m.add_function(wrap_pyfunction!(json::loads_py, m)?)?;
    for (name, ty) in [
        ("Trap", py.get_type::<Trap>()),
        ("ResultError", py.get_type::<ResultError>()),
        ("LoadError", py.get_type::<LoadError>()),
    ] {
        ty.setattr("__module__", "relay_wasm._native")?;
        m.add(name, ty)?;
    }
    m.add("DEFAULT_MEMORY_BYTES", DEFAULT_MEMORY_BYTES)?;
    m.add("STDERR_BYTES", STDERR_BYTES)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The wasmtime major version Cargo.toml requires (the exact one is in Cargo.lock).
    m.add("WASMTIME_MAJOR", 50)?;
    Ok(())
}
