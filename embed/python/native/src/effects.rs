//! The relay contract's `list<effect>` (wit/relay.wit, `hermes:relay/session`)
//! lifted with typed bindings and built straight into the package's Python effect
//! objects: the hot path of every frame.
//!
//! The generic conversion (`convert.rs`) lifts a `list<u8>` one `Val` per byte and
//! then builds a dict per record; for an emitted event of a few kilobytes that is
//! most of a frame. Here the effect types are Rust types checked against the
//! function's WIT type when it is looked up (`Shape::of`), `line: list<u8>` is
//! one copy, and each effect object is built with its slots set directly.
//! Functions whose parameters are not one of the shapes below are called through
//! the generic path and their effects converted from those values
//! (`from_dynamic`), with the same result.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use wasmtime::component::{ComponentType, Func, Lift, ResourceAny, Type, TypedFunc, Val};

use crate::convert::{self, with_context};
use crate::{json, utf8_str, Instance, Resource, ResultError};

macro_rules! wit_enum {
    ($name:ident, $names:ident, [$($case:ident = $wit:literal / $py:literal),* $(,)?]) => {
        #[derive(ComponentType, Lift, Clone, Copy)]
        #[component(enum)]
        // Values are made by the lift (or by index), never by name.
        #[allow(dead_code)]
        #[repr(u8)]
        enum $name {
            $(#[component(name = $wit)] $case,)*
        }
        /// The Python spelling of each case, in WIT order.
        const $names: &[&str] = &[$($py),*];
        impl $name {
            const WIT: &[&str] = &[$($wit),*];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

wit_enum!(
    EventKind,
    EVENT_KINDS,
    [
        State = "state" / "state",
        Ready = "ready" / "ready",
        Descriptor = "descriptor" / "descriptor",
        Message = "message" / "message",
        Interrupt = "interrupt" / "interrupt",
        OutboundResult = "outbound-result" / "outbound_result",
        PromptStale = "prompt-stale" / "prompt_stale",
        Idle = "idle" / "idle",
    ]
);
wit_enum!(
    LinkState,
    LINK_STATES,
    [
        Connecting = "connecting" / "connecting",
        Handshaking = "handshaking" / "handshaking",
        Ready = "ready" / "ready",
        Idle = "idle" / "idle",
        HandshakeFailed = "handshake-failed" / "handshake_failed",
        Backoff = "backoff" / "backoff",
        Redial = "redial" / "redial",
        Revoked = "revoked" / "revoked",
        Closing = "closing" / "closing",
        Stopped = "stopped" / "stopped",
    ]
);
wit_enum!(
    LogLevel,
    LOG_LEVELS,
    [
        Trace = "trace" / "trace",
        Debug = "debug" / "debug",
        Info = "info" / "info",
        Warn = "warn" / "warn",
        Error = "error" / "error",
    ]
);
wit_enum!(
    ErrorKind,
    ERROR_KINDS,
    [
        MalformedJson = "malformed-json" / "malformed_json",
        NotObject = "not-object" / "not_object",
        MissingField = "missing-field" / "missing_field",
        InvalidField = "invalid-field" / "invalid_field",
        TooLarge = "too-large" / "too_large",
        UnknownType = "unknown-type" / "unknown_type",
    ]
);

#[derive(ComponentType, Lift)]
#[component(record)]
struct Outgoing {
    number: u64,
    line: String,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct Event {
    kind: EventKind,
    state: Option<LinkState>,
    id: Option<String>,
    #[component(name = "buffer-id")]
    buffer_id: Option<String>,
    acked: Option<bool>,
    line: Vec<u8>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct CloseRequest {
    code: u16,
    reason: String,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct DialRequest {
    url: String,
    authorization: Option<String>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct LogRecord {
    level: LogLevel,
    message: String,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
enum Effect {
    #[component(name = "send")]
    Send(Outgoing),
    #[component(name = "send-ping")]
    SendPing,
    #[component(name = "emit")]
    Emit(Event),
    #[component(name = "close-link")]
    CloseLink(CloseRequest),
    #[component(name = "dial")]
    Dial(DialRequest),
    #[component(name = "log")]
    Log(LogRecord),
}

/// The WIT names of the effect cases, in order.
const EFFECT_CASES: &[&str] = &["send", "send-ping", "emit", "close-link", "dial", "log"];
/// The Python keyword of each case's class and how many fields it takes.
const CLASS_FIELDS: [(&str, usize); 6] = [
    ("send", 2),
    ("send_ping", 0),
    ("emit", 7),
    ("close_link", 2),
    ("dial", 2),
    ("log", 2),
];

#[derive(ComponentType, Lift)]
#[component(record)]
struct DecodeError {
    kind: ErrorKind,
    message: String,
}

type Effects_ = (Vec<Effect>,);
type Fallible = (Result<Vec<Effect>, DecodeError>,);

/// How a function returning effects is called.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shape {
    /// Any parameters, the generic path; effects converted from `Val`s.
    Dynamic,
    /// `(self, now-ms: u64) -> list<effect>`.
    Now,
    /// `(self, now-ms: u64, text: string) -> list<effect>`.
    NowText,
    /// `(self, now-ms: u64, bytes: list<u8>) -> list<effect>`.
    NowBytes,
    /// `(self, now-ms: u64, text: string) -> result<list<effect>, decode-error>`.
    NowTextFallible,
}

impl Shape {
    /// The typed shape `func` has, `Dynamic` when its result is effects but its
    /// parameters are another shape, or why it does not return effects.
    pub(crate) fn of(
        func: &Func,
        store: &wasmtime::Store<crate::State>,
        results: &[Type],
    ) -> Result<Shape, String> {
        if func.typed::<(ResourceAny, u64), Effects_>(store).is_ok() {
            return Ok(Shape::Now);
        }
        if func
            .typed::<(ResourceAny, u64, &str), Effects_>(store)
            .is_ok()
        {
            return Ok(Shape::NowText);
        }
        if func
            .typed::<(ResourceAny, u64, &[u8]), Effects_>(store)
            .is_ok()
        {
            return Ok(Shape::NowBytes);
        }
        if func
            .typed::<(ResourceAny, u64, &str), Fallible>(store)
            .is_ok()
        {
            return Ok(Shape::NowTextFallible);
        }
        let effect_list = |t: &Type| match t {
            Type::List(l) => match l.ty() {
                Type::Variant(v) => v.cases().map(|c| c.name).eq(EFFECT_CASES.iter().copied()),
                _ => false,
            },
            _ => false,
        };
        match results {
            [t] if effect_list(t) => Ok(Shape::Dynamic),
            [Type::Result(r)] if r.ok().as_ref().is_some_and(effect_list) => Ok(Shape::Dynamic),
            _ => Err("it does not return list<effect> (or result<list<effect>, E>)".into()),
        }
    }
}

fn resource_arg(args: &Bound<'_, PyTuple>, owner_id: u64) -> PyResult<ResourceAny> {
    let arg = args.get_item(0)?;
    let res = arg
        .cast::<Resource>()
        .map_err(|_| PyTypeError::new_err("argument 1: expected a Resource (the link handle)"))?;
    res.get()
        .usable(owner_id)
        .map_err(|e| with_context(args.py(), e, "argument 1"))
}

fn arg_context<T>(py: Python<'_>, n: usize, r: PyResult<T>) -> PyResult<T> {
    r.map_err(|e| with_context(py, e, &format!("argument {n}")))
}

/// What a typed call lifted: the effects, or the `err` of `command`'s result.
pub(crate) struct Lifted(Result<Vec<Effect>, DecodeError>);

/// One call of a typed shape: arguments converted, the guest called, its result
/// lifted. The caller builds the Python objects (`Lifted::build`) after it let go
/// of the instance, so `loads` may call into the same instance.
pub(crate) fn call_typed(
    py: Python<'_>,
    inst: &mut Instance,
    func: Func,
    shape: Shape,
    args: &Bound<'_, PyTuple>,
    owner_id: u64,
) -> PyResult<Lifted> {
    let res = resource_arg(args, owner_id)?;
    let now: u64 = arg_context(py, 2, args.get_item(1)?.extract())?;
    // SAFETY (each `new_unchecked`): `Shape::of` type-checked this very function
    // with these parameter and result types when the `Func` was made; only the
    // lifetimes of the borrowed arguments differ, which typechecking ignores.
    let called = match shape {
        Shape::Now => unsafe { TypedFunc::<(ResourceAny, u64), Effects_>::new_unchecked(func) }
            .call(&mut inst.store, (res, now))
            .map(|(e,)| Ok(e)),
        Shape::NowText => {
            let arg = args.get_item(2)?;
            let text = arg_context(py, 3, convert::text(&arg))?;
            unsafe { TypedFunc::<(ResourceAny, u64, &str), Effects_>::new_unchecked(func) }
                .call(&mut inst.store, (res, now, &text))
                .map(|(e,)| Ok(e))
        }
        Shape::NowBytes => {
            let arg = args.get_item(2)?;
            let copied;
            let bytes: &[u8] = if let Ok(b) = arg.cast::<PyBytes>() {
                b.as_bytes()
            } else if let Ok(b) = arg.cast::<pyo3::types::PyByteArray>() {
                copied = b.to_vec();
                &copied
            } else {
                return Err(PyTypeError::new_err("argument 3: expected bytes"));
            };
            unsafe { TypedFunc::<(ResourceAny, u64, &[u8]), Effects_>::new_unchecked(func) }
                .call(&mut inst.store, (res, now, bytes))
                .map(|(e,)| Ok(e))
        }
        Shape::NowTextFallible => {
            let arg = args.get_item(2)?;
            let text = arg_context(py, 3, convert::text(&arg))?;
            unsafe { TypedFunc::<(ResourceAny, u64, &str), Fallible>::new_unchecked(func) }
                .call(&mut inst.store, (res, now, &text))
                .map(|(r,)| r)
        }
        Shape::Dynamic => {
            // `Func::__call__` sends `Dynamic` down the generic path.
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "internal error: a typed call for a dynamic shape",
            ));
        }
    };
    match called {
        Ok(lifted) => Ok(Lifted(lifted)),
        Err(e) => Err(inst.trapped(e)),
    }
}

impl Lifted {
    pub(crate) fn build(self, py: Python<'_>, effects: &Effects) -> PyResult<Py<PyAny>> {
        match self.0 {
            Ok(list) => effects.build(py, list),
            Err(e) => Err(decode_error(py, e.kind.index(), &e.message)),
        }
    }
}

/// `ResultError` with the value the generic path gives a `decode-error`:
/// `{"kind": "malformed_json", "message": ...}`.
fn decode_error(py: Python<'_>, kind: usize, message: &str) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let value = PyDict::new(py);
        value.set_item("kind", ERROR_KINDS[kind])?;
        value.set_item("message", message)?;
        let err = ResultError::new_err((value.clone().unbind(),));
        err.value(py).setattr("value", value)?;
        Ok(err)
    };
    build().unwrap_or_else(|e| e)
}

/// Effects of a call made through the generic path.
pub(crate) fn from_dynamic(py: Python<'_>, effects: &Effects, val: Val) -> PyResult<Py<PyAny>> {
    let bad = |why: String| PyTypeError::new_err(format!("unexpected effect value: {why}"));
    let items = match val {
        Val::List(items) => items,
        Val::Result(Ok(Some(list))) => match *list {
            Val::List(items) => items,
            other => return Err(bad(format!("{other:?}"))),
        },
        Val::Result(Err(Some(err))) => {
            let Val::Record(fields) = *err else {
                return Err(bad("an err that is not a record".into()));
            };
            let kind = field(&fields, "kind")
                .and_then(|k| enum_index(k, ErrorKind::WIT))
                .map_err(bad)?;
            let message = field(&fields, "message").and_then(string).map_err(bad)?;
            return Err(decode_error(py, kind, &message));
        }
        other => return Err(bad(format!("{other:?}"))),
    };
    let list = items
        .into_iter()
        .map(effect_from_val)
        .collect::<Result<Vec<_>, String>>()
        .map_err(bad)?;
    effects.build(py, list)
}

fn field<'v>(fields: &'v [(String, Val)], name: &str) -> Result<&'v Val, String> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("no field {name}"))
}

fn string(v: &Val) -> Result<String, String> {
    match v {
        Val::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

fn option<T>(v: &Val, inner: impl Fn(&Val) -> Result<T, String>) -> Result<Option<T>, String> {
    match v {
        Val::Option(None) => Ok(None),
        Val::Option(Some(v)) => inner(v).map(Some),
        other => Err(format!("expected an option, got {other:?}")),
    }
}

fn enum_index(v: &Val, names: &[&str]) -> Result<usize, String> {
    match v {
        Val::Enum(n) => names
            .iter()
            .position(|x| x == n)
            .ok_or_else(|| format!("unknown enum case {n}")),
        other => Err(format!("expected an enum, got {other:?}")),
    }
}

fn enum_of<T: Copy>(v: &Val, names: &[&str], cases: &[T]) -> Result<T, String> {
    enum_index(v, names).map(|i| cases[i])
}

fn effect_from_val(v: Val) -> Result<Effect, String> {
    let Val::Variant(case, payload) = v else {
        return Err(format!("expected a variant, got {v:?}"));
    };
    let fields = match payload.as_deref() {
        Some(Val::Record(fields)) => fields.as_slice(),
        None => &[],
        Some(other) => return Err(format!("expected a record, got {other:?}")),
    };
    use LinkState as S;
    let states = [
        S::Connecting,
        S::Handshaking,
        S::Ready,
        S::Idle,
        S::HandshakeFailed,
        S::Backoff,
        S::Redial,
        S::Revoked,
        S::Closing,
        S::Stopped,
    ];
    use EventKind as K;
    let kinds = [
        K::State,
        K::Ready,
        K::Descriptor,
        K::Message,
        K::Interrupt,
        K::OutboundResult,
        K::PromptStale,
        K::Idle,
    ];
    use LogLevel as L;
    let levels = [L::Trace, L::Debug, L::Info, L::Warn, L::Error];
    Ok(match case.as_str() {
        "send" => Effect::Send(Outgoing {
            number: match field(fields, "number")? {
                Val::U64(n) => *n,
                other => return Err(format!("number: {other:?}")),
            },
            line: string(field(fields, "line")?)?,
        }),
        "send-ping" => Effect::SendPing,
        "emit" => Effect::Emit(Event {
            kind: enum_of(field(fields, "kind")?, EventKind::WIT, &kinds)?,
            state: option(field(fields, "state")?, |v| {
                enum_of(v, LinkState::WIT, &states)
            })?,
            id: option(field(fields, "id")?, string)?,
            buffer_id: option(field(fields, "buffer-id")?, string)?,
            acked: option(field(fields, "acked")?, |v| match v {
                Val::Bool(b) => Ok(*b),
                other => Err(format!("acked: {other:?}")),
            })?,
            line: match field(fields, "line")? {
                Val::List(bytes) => bytes
                    .iter()
                    .map(|b| match b {
                        Val::U8(b) => Ok(*b),
                        other => Err(format!("line: {other:?}")),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(format!("line: {other:?}")),
            },
        }),
        "close-link" => Effect::CloseLink(CloseRequest {
            code: match field(fields, "code")? {
                Val::U16(c) => *c,
                other => return Err(format!("code: {other:?}")),
            },
            reason: string(field(fields, "reason")?)?,
        }),
        "dial" => Effect::Dial(DialRequest {
            url: string(field(fields, "url")?)?,
            authorization: option(field(fields, "authorization")?, string)?,
        }),
        "log" => Effect::Log(LogRecord {
            level: enum_of(field(fields, "level")?, LogLevel::WIT, &levels)?,
            message: string(field(fields, "message")?)?,
        }),
        other => return Err(format!("unknown effect {other}")),
    })
}

/// Builds the Python effect objects of the relay contract.
///
/// `Effects(*, send, send_ping, emit, close_link, dial, log, event_kinds,
/// link_states, log_levels, loads)`: each effect keyword is `(cls, field_names)`,
/// the class and the names of its fields in this order — `send`: line, number;
/// `send_ping`: none; `emit`: event, event_kind, state, id, buffer_id, acked,
/// line; `close_link`: code, reason; `dial`: url, authorization; `log`: level,
/// message. An object is made with `object.__new__(cls)` and its fields set as
/// `object.__setattr__` does (so frozen dataclasses work). `event_kinds`,
/// `link_states` and `log_levels` map snake_case WIT names to the objects to use
/// (a name missing is given as the plain `str`). `emit`'s `event` is
/// `loads(str)` of the line, decoded as strict UTF-8 (`UnicodeDecodeError`
/// otherwise); `line` is the bytes. With `native_json=True` (given when `loads`
/// is `json.loads`) the line is read by `json.rs` instead, into the same objects,
/// and only what that reader does not take goes to `loads`.
#[pyclass(module = "relay_wasm._native", frozen)]
pub(crate) struct Effects {
    object_new: Py<PyAny>,
    classes: Vec<Py<PyAny>>,
    fields: Vec<Vec<Py<PyString>>>,
    event_kinds: Vec<Py<PyAny>>,
    link_states: Vec<Py<PyAny>>,
    log_levels: Vec<Py<PyAny>>,
    loads: Py<PyAny>,
    native_json: bool,
    keys: json::KeyCache,
}

fn enum_objects(
    py: Python<'_>,
    given: &Bound<'_, PyDict>,
    names: &[&str],
) -> PyResult<Vec<Py<PyAny>>> {
    names
        .iter()
        .map(|n| {
            Ok(match given.get_item(n)? {
                Some(v) => v.unbind(),
                None => PyString::new(py, n).into_any().unbind(),
            })
        })
        .collect()
}

#[pymethods]
impl Effects {
    /// The objects it holds, for the cycle collector (`loads` may be a closure
    /// over the `Relay` that holds this converter).
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.object_new)?;
        for obj in self
            .classes
            .iter()
            .chain(&self.event_kinds)
            .chain(&self.link_states)
            .chain(&self.log_levels)
        {
            visit.call(obj)?;
        }
        for names in &self.fields {
            for name in names {
                visit.call(name)?;
            }
        }
        visit.call(&self.loads)
    }

    #[new]
    #[pyo3(signature = (*, send, send_ping, emit, close_link, dial, log, event_kinds, link_states, log_levels, loads, native_json=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        send: (Py<PyAny>, Vec<String>),
        send_ping: (Py<PyAny>, Vec<String>),
        emit: (Py<PyAny>, Vec<String>),
        close_link: (Py<PyAny>, Vec<String>),
        dial: (Py<PyAny>, Vec<String>),
        log: (Py<PyAny>, Vec<String>),
        event_kinds: &Bound<'_, PyDict>,
        link_states: &Bound<'_, PyDict>,
        log_levels: &Bound<'_, PyDict>,
        loads: Py<PyAny>,
        native_json: bool,
    ) -> PyResult<Self> {
        let mut classes = Vec::new();
        let mut fields = Vec::new();
        for ((cls, names), (keyword, n)) in [send, send_ping, emit, close_link, dial, log]
            .into_iter()
            .zip(CLASS_FIELDS)
        {
            if names.len() != n {
                return Err(PyValueError::new_err(format!(
                    "{keyword}: {n} field names expected, got {}",
                    names.len()
                )));
            }
            classes.push(cls);
            fields.push(
                names
                    .iter()
                    .map(|n| PyString::intern(py, n).unbind())
                    .collect(),
            );
        }
        let object_new = py
            .import("builtins")?
            .getattr("object")?
            .getattr("__new__")?
            .unbind();
        Ok(Effects {
            object_new,
            classes,
            fields,
            event_kinds: enum_objects(py, event_kinds, EVENT_KINDS)?,
            link_states: enum_objects(py, link_states, LINK_STATES)?,
            log_levels: enum_objects(py, log_levels, LOG_LEVELS)?,
            loads,
            native_json,
            keys: json::KeyCache::default(),
        })
    }
}

impl Effects {
    /// The `event` of an emit: its line as `loads` reads it (see the type's docs).
    fn event(&self, py: Python<'_>, line: &[u8]) -> PyResult<Py<PyAny>> {
        if self.native_json {
            // simdutf8: std's check goes a byte at a time through non-ASCII text.
            if let Ok(text) = simdutf8::basic::from_utf8(line) {
                if let Some(v) = json::loads(py, text, &self.keys)? {
                    return Ok(v);
                }
            }
        }
        let text = utf8_str(py, line)?;
        Ok(self.loads.bind(py).call1((text,))?.unbind())
    }

    fn make(&self, py: Python<'_>, case: usize, values: &[Py<PyAny>]) -> PyResult<Py<PyAny>> {
        let obj = self
            .object_new
            .bind(py)
            .call1((self.classes[case].bind(py),))?;
        for (name, value) in self.fields[case].iter().zip(values) {
            // SAFETY: three live objects; the generic setter honours slots and
            // descriptors, and skips a frozen dataclass's `__setattr__` on purpose
            // (as the dataclass's own `__init__` does with `object.__setattr__`).
            let rc = unsafe {
                pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr())
            };
            if rc < 0 {
                return Err(PyErr::fetch(py));
            }
        }
        Ok(obj.unbind())
    }

    fn build(&self, py: Python<'_>, list: Vec<Effect>) -> PyResult<Py<PyAny>> {
        let none = || py.None();
        let string = |s: String| PyString::new(py, &s).into_any().unbind();
        let opt_string = |s: Option<String>| s.map_or_else(none, string);
        let mut out = Vec::with_capacity(list.len());
        for effect in list {
            out.push(match effect {
                Effect::Send(o) => {
                    let number = o.number.into_pyobject(py)?.into_any().unbind();
                    self.make(py, 0, &[string(o.line), number])?
                }
                Effect::SendPing => self.make(py, 1, &[])?,
                Effect::Emit(e) => {
                    let event = self.event(py, &e.line)?;
                    let state = e
                        .state
                        .map_or_else(none, |s| self.link_states[s.index()].clone_ref(py));
                    let acked = e.acked.map_or_else(none, |b| {
                        pyo3::types::PyBool::new(py, b)
                            .to_owned()
                            .into_any()
                            .unbind()
                    });
                    let line = PyBytes::new(py, &e.line).into_any().unbind();
                    self.make(
                        py,
                        2,
                        &[
                            event,
                            self.event_kinds[e.kind.index()].clone_ref(py),
                            state,
                            opt_string(e.id),
                            opt_string(e.buffer_id),
                            acked,
                            line,
                        ],
                    )?
                }
                Effect::CloseLink(c) => {
                    let code = c.code.into_pyobject(py)?.into_any().unbind();
                    self.make(py, 3, &[code, string(c.reason)])?
                }
                Effect::Dial(d) => {
                    self.make(py, 4, &[string(d.url), opt_string(d.authorization)])?
                }
                Effect::Log(l) => self.make(
                    py,
                    5,
                    &[
                        self.log_levels[l.level.index()].clone_ref(py),
                        string(l.message),
                    ],
                )?,
            });
        }
        Ok(PyList::new(py, out)?.into_any().unbind())
    }
}
