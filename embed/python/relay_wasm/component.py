"""Loading the relay component and calling it, through wasmtime-py's component API.

Why this shape:

* wasmtime-py 50 has no generated bindings (``python -m wasmtime.bindgen`` is gone);
  ``wasmtime.component`` looks exports up by name at run time and converts values
  dynamically.  This module is the one place that knows those names and the
  conversion rules, so the rest of the package speaks plain Python.
* Values come back as wasmtime-py builds them: records as ``Record`` objects whose
  attributes carry the WIT (kebab-case) names, variants as ``Variant(tag, payload)``
  only when two cases would map to the same Python type (``effect``,
  ``connector-frame``), otherwise *untagged*: ``result<T, E>`` is simply the ``T``
  or the ``E`` value, ``option<T>`` is ``None`` or the value.  Every ``err`` here is
  a ``decode-error`` record, so "is it a ``Record``" tells an error from a value.
* The component imports ``wasi:cli``/``wasi:io``/``wasi:clocks``/``wasi:random``
  only because Rust's std does.  ``Linker.add_wasip2()`` satisfies them and the
  store gets an empty ``WasiConfig``: no preopened directory, no environment, no
  arguments, stdin empty, stdout/stderr discarded, no sockets.  Nothing is granted.
* JSON documents cross the boundary as text (see ``wit/relay.wit``); emitted events
  as UTF-8 bytes, decoded strictly here before ``loads``.  Inputs may be
  given as text (passed verbatim, so number spellings survive) or as Python values
  (serialised with ``dumps``); outputs are parsed with ``loads``.  Both are
  attributes of :class:`Relay`, so a caller that needs exact numbers (the
  conformance runner) plugs in its own parser once.
* The session interface is contract 0.2's ``link`` resource (:class:`Link`): the
  component owns dialing, every link state, keepalive and the timers; its effects
  become :mod:`relay_wasm.effects` dataclasses, its records (``settings``,
  ``stats``, ``recovery``) the dataclasses below.
* The component file is found by :func:`default_wasm_path`: ``$RELAY_WASM``, the
  package data ``relay_wasm/relay.wasm``, or (in a repository checkout) the cargo
  build.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import json
import os
import secrets
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import wasmtime
from wasmtime import component as wc

from .effects import CloseLink, Dial, Effect, Emit, Log, LogLevel, Send, SendPing
from .errors import DecodeError
from .events import EventKind, LinkState

__all__ = ["Relay", "Link", "Connection", "Settings", "Stats", "Recovery", "OwedRequest",
           "DecodeError", "default_wasm_path", "monotonic_ms", "unix_offset_ms", "WASM_ENV",
           "CONTRACT", "OPTION_KEYS", "CAPS_KEYS"]

_REPO = Path(__file__).resolve().parents[3]
#: The WIT package version this module binds.
CONTRACT = "hermes:relay@0.2.0"
_CODEC = "hermes:relay/codec@0.2.0"
_SESSION = "hermes:relay/session@0.2.0"

#: Linear-memory cap per instance, the Rust host's default (``Limits::default``).
DEFAULT_MEMORY_BYTES = 16 << 20

#: The environment variable that overrides where the component is loaded from.
WASM_ENV = "RELAY_WASM"
#: The package data file (staged by ``embed/python/stage_wasm.py`` before building).
_PACKAGED = "relay.wasm"
#: The cargo build, used only when this module runs from a repository checkout.
_CARGO_BUILD = "target/component/relay.wasm"


def _packaged_wasm() -> Optional[Path]:
    """``relay_wasm/relay.wasm`` as a file path, through ``importlib.resources``."""
    try:
        res = importlib.resources.files(__package__ or "relay_wasm") / _PACKAGED
        if not res.is_file():
            return None
    except (ModuleNotFoundError, OSError):
        return None
    if isinstance(res, Path):
        return res
    # Imported from a zip: extract once, for the life of the process.
    import atexit
    import contextlib

    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    return stack.enter_context(importlib.resources.as_file(res))


def _checkout_wasm() -> Optional[Path]:
    """The cargo build, when this module is the one of a repository checkout
    (``embed/python/relay_wasm`` beside ``wit/relay.wit``), else ``None``."""
    here = Path(__file__).resolve().parent
    if (_REPO / "wit/relay.wit").is_file() and here == (_REPO / "embed/python/relay_wasm").resolve():
        return _REPO / _CARGO_BUILD
    return None


def _stale(packaged: Path, build: Path) -> bool:
    """In a checkout: the staged copy differs from a newer cargo build."""
    try:
        if build.stat().st_mtime <= packaged.stat().st_mtime:
            return False
        return build.read_bytes() != packaged.read_bytes()
    except OSError:
        return False


def default_wasm_path() -> Path:
    """Where ``Relay()`` loads the component from: ``$RELAY_WASM`` when set, else
    the package data ``relay_wasm/relay.wasm``, else — only when running from a
    repository checkout — the cargo build
    ``target/component/relay.wasm``.
    Raises ``FileNotFoundError`` (saying what to do) when none exists."""
    env = os.environ.get(WASM_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"${WASM_ENV} names {env!r}, which is not a file")
        return path
    packaged, build = _packaged_wasm(), _checkout_wasm()
    if packaged is not None:
        if build is not None and _stale(packaged, build):
            warnings.warn(f"{packaged} is older than the cargo build {build}: "
                          "run `python3 embed/python/stage_wasm.py` to refresh it", stacklevel=3)
        return packaged
    if build is not None and build.is_file():
        return build
    where = f", or build it ({build})" if build is not None else ""
    raise FileNotFoundError(
        f"relay_wasm: no component found: the package has no {_PACKAGED} (stage it with "
        f"`python3 embed/python/stage_wasm.py` before `pip install`){where}, "
        f"or set ${WASM_ENV} to the .wasm file")


def _record(**fields: Any) -> wc.Record:
    """A WIT record value: wasmtime-py reads fields by their kebab-case names."""
    rec = wc.Record()
    for name, value in fields.items():
        setattr(rec, name.replace("_", "-"), value)
    return rec


def _field(rec: Any, name: str) -> Any:
    return getattr(rec, name.replace("_", "-"))


def _opt_text(doc: Any, text: Callable[[Any], str]) -> Optional[str]:
    """An optional JSON input: ``None`` means absent; text is passed verbatim."""
    return None if doc is None else text(doc)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_error(value: Any) -> bool:
    # Untagged result: every `err` of this contract is a decode-error record, and
    # no `ok` payload is a bare record.
    return isinstance(value, wc.Record)


def _raise(err: Any) -> None:
    raise DecodeError(err.kind.replace("-", "_"), err.message)


_TYPE_PROPS = ("cases", "ok", "err", "element", "payload", "fields")
_FROZEN: dict = {}


def _freeze(ty: Any) -> Any:
    """Makes a wasmtime-py type object answer its introspection from memory.

    ``VariantType.cases``, ``RecordType.fields``, ``ResultType.ok`` ... are
    properties that query the C API and build new type objects on every access,
    and lifting one variant reads ``cases`` three times: ~90 µs of a ``decode``.
    The type tree of a function never changes, so each such property is read once
    and the object's class is swapped for a subclass that returns the stored value.
    The conversion code itself stays wasmtime-py's."""
    cls = type(ty)
    props = [n for n in _TYPE_PROPS if isinstance(getattr(cls, n, None), property)]
    if not props or cls in _FROZEN.values():
        return ty
    values = {}
    for name in props:
        v = getattr(ty, name)
        if name in ("cases", "fields"):
            v = [(label, None if t is None else _freeze(t)) for label, t in v]
        elif v is not None:
            v = _freeze(v)
        values[name] = v
    if cls not in _FROZEN:
        attrs: dict = {n: property(lambda self, n=n: self._frozen[n]) for n in props}
        if hasattr(cls, "_lift"):  # variant, option, result
            attrs["_lift"] = _lift_and_free
        if issubclass(cls, wc.ListType):
            attrs["convert_from_c"] = _lift_list
        _FROZEN[cls] = type("Frozen" + cls.__name__, (cls,), attrs)
    ty._frozen = values
    ty.__class__ = _FROZEN[cls]
    return ty


def _lift_and_free(self: Any, tag: str, ptr: Any) -> Any:
    """wasmtime-py 50's ``VariantLikeType._lift`` with its leak fixed.

    A variant/option/result payload arrives in a heap box (``wasmtime_component_val_new``);
    wasmtime-py empties it and calls ``wasmtime_component_val_delete``, which drops
    the contents but not the box, so ~50 bytes leak per lifted payload (every
    ``decode``, every effect).  The C API says such boxes are freed with
    ``wasmtime_component_val_free``; this is the same code with that call."""
    from wasmtime import _ffi as ffi
    from wasmtime.component import Variant

    tagged = self._tagged()
    for name, ty in self._cases():
        if name != tag:
            continue
        if ty is None:
            return Variant(tag) if tagged else None
        payload = ty.convert_from_c(ptr.contents)
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_BOOL
        ptr.contents.of.boolean = False
        ffi.wasmtime_component_val_free(ptr)
        return Variant(tag, payload) if tagged else payload
    raise ValueError(f"tag {tag} not found in variant cases")


def _lift_list(self: Any, c: Any) -> Any:
    """wasmtime-py 50's ``ListType.convert_from_c`` with ``list<u8>`` read in one copy.

    The original builds one Python int per byte and then ``bytes`` of them: ~1 ms
    per kilobyte, and emitted events (``json-bytes``) are kilobytes.  Here the
    element array is copied out once and the byte of each element sliced from it;
    the list is freed exactly as the original frees it.  Other lists are unchanged."""
    from wasmtime import _ffi as ffi

    if not isinstance(self.element, wc.U8):
        return wc.ListType.convert_from_c(self, c)
    assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
    try:
        n = c.of.list.size
        if n == 0:
            return b""
        size = ctypes.sizeof(ffi.wasmtime_component_val_t)
        start = ctypes.cast(c.of.list.data, ctypes.c_void_p).value
        return ctypes.string_at(start, n * size)[ffi.wasmtime_component_val_t.of.offset::size]
    finally:
        ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))


class _FastFunc:
    """``Func.__call__`` without its per-call costs, for this package's calls.

    wasmtime-py 50 re-reads the function's type through the C API on every call
    (and its nested types on every access, see :func:`_freeze`), and lowers
    ``list<u8>`` one byte at a time (a ctypes object per byte: ~1 µs per
    byte, so ~300 µs for a 300-byte ``decode`` line).  This keeps the parameter
    types from the first call and writes a byte list as one prepared array of
    ``wasmtime_component_val_t`` (kind ``U8`` + value), copied in a single memmove.
    It relies on wasmtime-py internals (``_ffi``, ``Func._func``), which is why
    ``wasmtime`` is pinned; ``Relay(fast_calls=False)`` uses the public path only.
    """

    def __init__(self, func: wc.Func, store: wasmtime.Store):
        from wasmtime import _ffi as ffi  # private: see the docstring
        from wasmtime.component._enter import enter_wasm

        self._ffi, self._enter, self._func = ffi, enter_wasm, func
        fty = func.type(store)
        self._params = [_freeze(ty) for _, ty in fty.params]
        self._result = None if fty.result is None else _freeze(fty.result)
        self._bytes = [isinstance(ty, wc.ListType) and isinstance(ty.element, wc.U8)
                       for ty in self._params]
        self._val = ffi.wasmtime_component_val_t
        self._size = ctypes.sizeof(self._val)
        self._offset = self._val.of.offset

    def _lower_bytes(self, data: bytes, ptr: Any) -> None:
        ffi, n, size = self._ffi, len(data), self._size
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            buf = bytearray(n * size)
            buf[0::size] = bytes([ffi.WASMTIME_COMPONENT_U8.value]) * n
            buf[self._offset::size] = data
            ctypes.memmove(raw.data, bytes(buf), n * size)
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = raw

    def __call__(self, store: wasmtime.Store, *args: Any) -> Any:
        ffi, n = self._ffi, len(args)
        if n != len(self._params):
            raise TypeError(f"expected {len(self._params)} arguments, got {n}")
        params = (self._val * n)()
        done = 0
        try:
            for i, (ty, arg) in enumerate(zip(self._params, args)):
                if self._bytes[i]:
                    if not isinstance(arg, bytes):
                        raise TypeError("expected bytes value")
                    self._lower_bytes(arg, ctypes.pointer(params[i]))
                else:
                    ty.convert_to_c(store, arg, ctypes.pointer(params[i]))
                done += 1
            result = self._val()
            has = self._result is not None
            self._enter(lambda: ffi.wasmtime_component_func_call(
                ctypes.byref(self._func._func), store._context(), params, n,
                ctypes.byref(result) if has else None, 1 if has else 0))
            return self._result.convert_from_c(result) if has else None
        finally:
            for i in range(done):
                ffi.wasmtime_component_val_delete(ctypes.byref(params[i]))


_ENGINES: dict = {}


def _load(path: Path) -> tuple:
    """Compiles the component once per process and path (Cranelift takes ~0.3 s)."""
    key = str(path)
    if key not in _ENGINES:
        engine = wasmtime.Engine()
        component = wc.Component.from_file(engine, key)
        linker = wc.Linker(engine)
        linker.add_wasip2()
        _ENGINES[key] = (engine, component, linker)
    return _ENGINES[key]


class Relay:
    """One sandboxed instance of the component: the codec functions, and the
    factory of :class:`Link` objects that live in the same instance.

    An instance is single-threaded; create one per thread (or per tenant).  If the
    guest traps (a bug, or the memory cap), the instance is dead: every later call
    raises ``wasmtime.WasmtimeError``; make a new one (:meth:`fresh`).
    """

    def __init__(
        self,
        path: Optional[os.PathLike | str] = None,
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        fast_calls: bool = True,
        loads: Callable[[str], Any] = json.loads,
        dumps: Callable[[Any], str] = _compact,
    ):
        self.path = Path(path) if path is not None else default_wasm_path()
        self.memory_bytes = memory_bytes
        self.loads = loads
        self.dumps = dumps
        engine, component, linker = _load(self.path)
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())  # nothing granted
        self.store.set_limits(memory_size=memory_bytes)
        self._instance = linker.instantiate(self.store, component)
        self._funcs: dict = {}
        self._fast = fast_calls

    # -- plumbing ---------------------------------------------------------------

    def _func(self, iface: str, name: str) -> Callable[..., Any]:
        func = self._funcs.get((iface, name))
        if func is None:
            inst, store = self._instance, self.store
            idx = inst.get_export_index(store, name, inst.get_export_index(store, iface))
            func = inst.get_func(store, idx) if idx is not None else None
            if func is None:
                raise LookupError(f"component does not export {iface}#{name}")
            if self._fast:
                func = _FastFunc(func, self.store)
            self._funcs[(iface, name)] = func
        return func

    def _call(self, iface: str, name: str, *args: Any) -> Any:
        return self._func(iface, name)(self.store, *args)

    def _text(self, doc: Any) -> str:
        """A JSON input: text is passed verbatim, anything else is serialised."""
        return doc if isinstance(doc, str) else self.dumps(doc)

    def _doc_result(self, value: Any) -> Any:
        if _is_error(value):
            _raise(value)
        return self.loads(value)

    # -- codec ------------------------------------------------------------------

    def decode(self, line: bytes | str, max_line_bytes: int = 1 << 20) -> dict:
        """One connector line (without its newline) → the frame under its wire
        names, e.g. ``{"type": "inbound", "event": {...}, "bufferId": "7"}``.
        Raises :class:`DecodeError`."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        got = self._call(_CODEC, "decode", bytes(line), max_line_bytes)
        if _is_error(got):
            _raise(got)
        tag, p = got.tag, got.payload
        doc = self.loads
        if tag == "descriptor":
            return {"type": "descriptor", "descriptor": doc(p)}
        if tag == "inbound":
            return {"type": "inbound", "event": doc(p.event), "bufferId": _field(p, "buffer_id")}
        if tag == "outbound-result":
            return {"type": "outbound_result", "requestId": _field(p, "request_id"),
                    "result": doc(p.result)}
        if tag == "interrupt-inbound":
            return {"type": "interrupt_inbound", "session_key": _field(p, "session_key"),
                    "chat_id": _field(p, "chat_id")}
        if tag == "going-idle-ack":
            return {"type": "going_idle_ack"}
        if tag == "passthrough-forward":
            return {"type": "passthrough_forward", "forward": doc(p.forward),
                    "bufferId": _field(p, "buffer_id")}
        raise ValueError(f"unknown connector-frame case {tag!r}")

    def encode(self, frame: dict) -> str:
        """A gateway frame given under its wire names (``hello``, ``outbound``,
        ``interrupt``, ``going_idle``, ``inbound_ack``) → one JSON line, no newline.
        JSON-valued fields (``action``, ``command_manifest``) may be text or values."""
        kind = frame.get("type")
        if kind == "hello":
            value = wc.Variant("hello", _record(
                platform=frame["platform"], bot_id=frame["botId"],
                command_manifest=_opt_text(frame.get("command_manifest"), self._text)))
        elif kind == "outbound":
            value = wc.Variant("outbound", _record(
                request_id=frame["requestId"], action=self._text(frame["action"]),
                platform=frame.get("platform"), bot_id=frame.get("botId")))
        elif kind == "interrupt":
            value = wc.Variant("interrupt", _record(
                session_key=frame["session_key"], reason=frame.get("reason")))
        elif kind == "going_idle":
            value = wc.Variant("going-idle")
        elif kind == "inbound_ack":
            value = wc.Variant("inbound-ack", frame["bufferId"])
        else:
            raise ValueError(f"not a gateway frame type: {kind!r}")
        return self._call(_CODEC, "encode", value)

    def dial_url(self, base: str) -> str:
        """The WebSocket URL to dial for a configured connector base URL."""
        return self._call(_CODEC, "dial-url", base)

    def provision_url(self, base: str) -> str:
        """The self-provisioning endpoint for a configured base URL."""
        return self._call(_CODEC, "provision-url", base)

    def upgrade_token(self, gateway_id: str, secret: str, ttl_seconds: int, now_unix_s: int) -> str:
        """The upgrade bearer token (without ``Bearer``)."""
        return self._call(_CODEC, "upgrade-token", gateway_id, secret, ttl_seconds, now_unix_s)

    def sign(self, payload: str, secret: str) -> str:
        """Lower-case hex HMAC-SHA256 of ``payload``."""
        return self._call(_CODEC, "sign", payload, secret)

    def normalize_descriptor(self, descriptor: Any) -> Any:
        """The canonical 16-field descriptor (plus ``supports_op``)."""
        return self._doc_result(self._call(_CODEC, "normalize-descriptor", self._text(descriptor)))

    def inbound_event(self, event: Any) -> Any:
        """The canonical MessageEvent of an ``inbound`` frame's ``event``."""
        return self._doc_result(self._call(_CODEC, "inbound-event", self._text(event)))

    def passthrough_forward(self, forward: Any) -> Any:
        """The normalised ``passthrough_forward`` object."""
        return self._doc_result(self._call(_CODEC, "passthrough-forward", self._text(forward)))

    def discord_event(self, forward: Any) -> Any:
        """A normalised forward → MessageEvent, or ``None`` when it is dropped."""
        got = self._call(_CODEC, "discord-event", self._text(forward))
        if got is None:
            return None
        return self._doc_result(got)

    # -- session ----------------------------------------------------------------

    def link(self, config: dict) -> "Link":
        """Shorthand for ``Link(config, relay=self)``."""
        return Link(config, relay=self)

    #: The name of earlier versions (contract 0.1's ``connection`` resource).
    connection = link

    def fresh(self) -> "Relay":
        """A new instance (a new store) built like this one: same component file,
        memory cap, call path and JSON functions.  What a host makes after a trap."""
        return Relay(self.path, memory_bytes=self.memory_bytes, fast_calls=self._fast,
                     loads=self.loads, dumps=self.dumps)


# -- the link's values ---------------------------------------------------------------

#: The optional settings of WIT ``options`` (each ``None`` → the component's default).
OPTION_KEYS = (
    "handshake_timeout_ms", "outbound_timeout_ms", "going_idle_timeout_ms", "max_line_bytes",
    "prompt_nonce", "reconnect_jitter_percent", "backoff_base_ms", "backoff_max_ms",
    "stable_connection_ms", "token_ttl_seconds", "ping_interval_ms", "pong_timeout_ms",
    "dead_link_close_code", "max_message_bytes", "close_wait_ms",
)
#: The fields of WIT ``caps`` (each ``None`` → the component's default).
CAPS_KEYS = ("pending_requests", "buffer_ids", "prompts", "answered_prompts", "egress_chats",
             "message_ids")
#: Every key a config dict may have.
CONFIG_KEYS = frozenset({"identities", "url", "tenant", "seed", "unix_offset_ms", "gateway_id",
                         "secret", "caps", *OPTION_KEYS})

_EVENT_KINDS = {k.value.replace("_", "-"): k for k in EventKind}
_LINK_STATES = {s.value.replace("_", "-"): s for s in LinkState}
_LOG_LEVELS = {lv.value: lv for lv in LogLevel}


def monotonic_ms() -> int:
    """The monotonic clock :class:`Link` expects by default (``time.monotonic``, the
    clock of asyncio's event loop), in whole milliseconds."""
    return time.monotonic_ns() // 1_000_000


def unix_offset_ms() -> int:
    """Unix time in ms minus :func:`monotonic_ms`: the config's ``unix_offset_ms``
    for a host whose ``now_ms`` is :func:`monotonic_ms`."""
    return time.time_ns() // 1_000_000 - monotonic_ms()


def _state(name: Optional[str]) -> Optional[Union[LinkState, str]]:
    if name is None:
        return None
    return _LINK_STATES.get(name, name)


def _config(cfg: Mapping[str, Any], text: Callable[[Any], str]) -> wc.Record:
    """The WIT ``config`` record from a dict with snake_case keys (module doc of
    :class:`Link`).  Only what a host must supply is filled here: the seed (random
    bits) and the clock offset; every option left out is ``None``, the component's
    default."""
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise DecodeError("invalid_field", f"unknown config key(s): {', '.join(unknown)}")
    ids = [
        _record(platform=i["platform"], bot_id=i["bot_id"],
                command_manifest=_opt_text(i.get("command_manifest"), text))
        for i in cfg.get("identities") or []
    ]
    caps = cfg.get("caps")
    if caps is not None:
        unknown_caps = sorted(set(caps) - set(CAPS_KEYS))
        if unknown_caps:
            raise DecodeError("invalid_field", f"caps.{unknown_caps[0]}: no such cap")
        caps = _record(**{k: caps.get(k) for k in CAPS_KEYS})
    options = _record(caps=caps, **{k: cfg.get(k) for k in OPTION_KEYS})
    seed = cfg.get("seed")
    offset = cfg.get("unix_offset_ms")
    return _record(
        identities=ids,
        url=cfg.get("url") or "",
        tenant=cfg.get("tenant"),
        seed=secrets.randbits(64) if seed is None else seed,
        unix_offset_ms=unix_offset_ms() if offset is None else offset,
        gateway_id=cfg.get("gateway_id"),
        secret=cfg.get("secret"),
        options=options,
    )


@dataclass(frozen=True)
class Settings:
    """WIT ``settings``: what the link runs with, every default applied — what a
    host configures its WebSocket from.  ``summary`` is the whole configuration as
    a parsed JSON object, without secrets (for logs)."""

    dial_url: str
    max_message_bytes: int
    close_wait_ms: int
    ping_interval_ms: int
    pong_timeout_ms: int
    summary: Any = field(repr=False)


@dataclass(frozen=True)
class Stats:
    """WIT ``stats``.  Also readable as a mapping (``stats["frames_in"]``), as the
    dict of earlier versions."""

    state: Union[LinkState, str]
    connected: bool
    frames_in: int
    frames_out: int
    pending_outbound: int
    consecutive_failures: int

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class OwedRequest:
    """One application ``outbound`` a failed instance had not answered: its ``id``
    and, when the host kept it, its ``action`` (a dict or JSON text; it shapes
    ``get_chat_info`` answers)."""

    id: str
    action: Any = None


@dataclass(frozen=True)
class Recovery:
    """WIT ``recovery``: what the host of a failed (trapped) instance knows, handed
    to the instance that replaces it with :meth:`Link.recover`.

    ``owed``: :class:`OwedRequest` values (or ``(id, action)`` pairs), in the order
    they were given; ``in_flight``: buffer ids delivered to the application and
    neither acked nor nacked (not delivered again); ``idle_owed``: a ``going_idle``
    waited for its ``idle``; ``dial_after_ms``: the host's restart delay;
    ``revoked``: the failed instance had been told never to dial again;
    ``reason``: the ``reason`` of the ``state`` event that follows."""

    owed: Sequence[Any] = ()
    in_flight: Sequence[str] = ()
    idle_owed: bool = False
    dial_after_ms: int = 0
    revoked: bool = False
    reason: str = ""


class Link:
    """The component's ``link`` resource: the whole sans-IO link to the connector
    (contract 0.2, ``hermes:relay/session@0.2.0``).

    The component decides everything — when to dial and with which
    ``Authorization``, every link state, keepalive, the timers, shutdown — and the
    host does I/O.  Every method takes the current monotonic time in milliseconds
    and returns the effects to perform, in order (:mod:`relay_wasm.effects`):
    ``Send(line, number)`` · ``SendPing()`` · ``Emit(event, ...)`` ·
    ``CloseLink(code, reason)`` · ``Dial(url, authorization)`` · ``Log(level,
    message)``.  After every call ask :meth:`poll_timeout` and call
    :meth:`handle_timeout` when it is due.

    ``config`` is a dict with the WIT field names in snake_case: ``identities``
    (``[{"platform", "bot_id", "command_manifest"?}]``), ``url`` (the connector's
    base URL; empty when the host dials nothing), ``tenant`` (written into every
    event line), ``seed`` (default: random bits), ``unix_offset_ms`` (default: for
    ``now_ms`` on :func:`monotonic_ms`, the clock of asyncio), ``gateway_id``,
    ``secret``, and the options of :data:`OPTION_KEYS` plus ``caps``: each one left
    out (or ``None``) takes the component's default.  An unknown key, or a config the
    component refuses, raises :class:`DecodeError`.

    The handle is dropped with :meth:`drop` (or ``with``); a ``Link`` must only be
    used with the :class:`Relay` (store) it was created in.  A trapped instance
    raises ``wasmtime.WasmtimeError`` from every later call: build a new
    :class:`Relay` and hand the new link a :class:`Recovery`.
    """

    def __init__(self, config: Mapping[str, Any], relay: Optional[Relay] = None):
        self.relay = relay if relay is not None else Relay()
        got = self.relay._call(_SESSION, "[static]link.create", _config(config, self.relay._text))
        if _is_error(got):
            _raise(got)
        self._handle = got

    def _m(self, name: str, *args: Any) -> Any:
        if self._handle is None:
            raise RuntimeError("the link was dropped")
        return self.relay._call(_SESSION, f"[method]link.{name}", self._handle, *args)

    def _effects(self, raw: list) -> list[Effect]:
        loads = self.relay.loads
        out: list[Effect] = []
        for v in raw:
            tag, p = v.tag, v.payload
            if tag == "send":
                out.append(Send(p.line, p.number))
            elif tag == "emit":
                line = p.line
                # json-bytes: strict UTF-8 here is the check untrusted output gets.
                kind = p.kind
                out.append(Emit(loads(line.decode("utf-8")), _EVENT_KINDS.get(kind, kind),
                                _state(p.state), p.id, getattr(p, "buffer-id"), p.acked, line))
            elif tag == "send-ping":
                out.append(SendPing())
            elif tag == "close-link":
                out.append(CloseLink(p.code, p.reason))
            elif tag == "dial":
                out.append(Dial(p.url, p.authorization))
            elif tag == "log":
                out.append(Log(_LOG_LEVELS.get(p.level, p.level), p.message))
            else:
                raise ValueError(f"unknown effect {tag!r}")
        return out

    # -- what the link runs with --------------------------------------------------

    def settings(self) -> Settings:
        """The settings in force (every default applied)."""
        s = self._m("settings")
        return Settings(getattr(s, "dial-url"), getattr(s, "max-message-bytes"),
                        getattr(s, "close-wait-ms"), getattr(s, "ping-interval-ms"),
                        getattr(s, "pong-timeout-ms"), self.relay.loads(s.summary))

    def stats(self) -> Stats:
        """Counters for ``status``."""
        s = self._m("stats")
        return Stats(_state(s.state) or LinkState.CONNECTING, s.connected, getattr(s, "frames-in"),
                     getattr(s, "frames-out"), getattr(s, "pending-outbound"),
                     getattr(s, "consecutive-failures"))

    def descriptors(self) -> Any:
        """Each fronted platform's descriptor on this connection (D15), as
        ``{platform: descriptor}``; empty before the handshake."""
        return self.relay.loads(self._m("descriptors"))

    # -- the socket ---------------------------------------------------------------

    def start(self, now_ms: int) -> list:
        """Begin: ``state connecting`` and the first ``Dial``."""
        return self._effects(self._m("start", now_ms))

    def open(self, now_ms: int) -> list:
        """The socket is up: the hellos and the handshake deadline."""
        return self._effects(self._m("open", now_ms))

    def receive_text(self, now_ms: int, text: str) -> list:
        """One WebSocket text message (any number of lines or parts of lines)."""
        return self._effects(self._m("receive-text", now_ms, text))

    def receive_binary(self, now_ms: int, data: bytes) -> list:
        """One WebSocket binary message."""
        return self._effects(self._m("receive-binary", now_ms, bytes(data)))

    def pong(self, now_ms: int) -> list:
        """The pong of a ``SendPing`` arrived."""
        return self._effects(self._m("pong", now_ms))

    def closed(self, now_ms: int, code: Optional[int], reason: str = "") -> list:
        """The socket ended (``code``: the peer's close code, else the one sent,
        ``None`` when it dropped without one), or a dial failed (``None`` and why)."""
        return self._effects(self._m("closed", now_ms, code, reason))

    def write_failed(self, now_ms: int, number: int, reason: str) -> list:
        """Frame ``number`` (of a ``Send``) and those after it were not written:
        their requests get ``relay send failed: <reason>`` and the socket is closed."""
        return self._effects(self._m("write-failed", now_ms, number, reason))

    # -- time -----------------------------------------------------------------------

    def poll_timeout(self) -> Optional[int]:
        """When to call :meth:`handle_timeout` next (monotonic ms); ``None``: never.
        Ask again after every call."""
        return self._m("poll-timeout")

    def handle_timeout(self, now_ms: int) -> list:
        """Time passed: everything due by ``now_ms`` happens, in due order."""
        return self._effects(self._m("handle-timeout", now_ms))

    # -- the application's commands ------------------------------------------------

    def outbound(self, now_ms: int, id: str, action: Any, platform: Optional[str] = None) -> list:
        """The application's ``outbound``; ``id`` is its own correlation id.  An
        ``action`` that is not a JSON object is answered with a failed result."""
        return self._effects(self._m("outbound", now_ms, id, self.relay._text(action), platform))

    def interrupt(self, now_ms: int, session_key: str, reason: Optional[str] = None) -> list:
        """The application's ``interrupt``."""
        return self._effects(self._m("interrupt", now_ms, session_key, reason))

    def ack(self, now_ms: int, buffer_id: str) -> list:
        """The application durably took a buffered delivery."""
        return self._effects(self._m("ack", now_ms, buffer_id))

    def nack(self, now_ms: int, buffer_id: str) -> list:
        """The application could not take a delivery: its next arrival is
        delivered again (D10).  Nothing is written."""
        return self._effects(self._m("nack", now_ms, buffer_id))

    def going_idle(self, now_ms: int) -> list:
        """The application's ``going_idle``; answered by one ``idle`` event."""
        return self._effects(self._m("going-idle", now_ms))

    def hold_redial(self, now_ms: int) -> list:
        """Park re-dialling for at most 60 s (a brokered suspend is in flight)."""
        return self._effects(self._m("hold-redial", now_ms))

    def release_redial(self, now_ms: int) -> list:
        """End a redial hold."""
        return self._effects(self._m("release-redial", now_ms))

    def command(self, now_ms: int, command: Any) -> list:
        """An APP-PROTOCOL command (dict or JSON text, without ``tenant``), for hosts
        that pass lines through; typed callers use the methods above.  Raises
        :class:`DecodeError`; the link is unchanged then."""
        got = self._m("command", now_ms, self.relay._text(command))
        if _is_error(got):
            _raise(got)
        return self._effects(got)

    # -- the end, and after a failure -------------------------------------------------

    def shutdown(self, now_ms: int, grace_ms: int = 0, reason: Optional[str] = None) -> list:
        """End the link: a ready link sends ``going_idle`` and waits at most
        ``grace_ms`` for its ack; then what waits is answered (``relay send failed:
        relay transport closed``), the socket is closed with 1000, and ``state
        stopped`` (``reason``, default "shutdown") is the last event.  Grace 0 is an
        immediate stop."""
        return self._effects(self._m("shutdown", now_ms, grace_ms, reason))

    def recover(self, now_ms: int, recovery: Recovery) -> list:
        """Take over from a failed instance (once, instead of :meth:`start`): the
        owed ``outbound_result`` events (``relay transport connection lost``,
        ambiguous), ``idle`` ``{acked: false}`` when owed, then ``state backoff``
        (or ``revoked``); the ``Dial`` comes from :meth:`handle_timeout`."""
        text = self.relay._text
        owed = []
        for o in recovery.owed:
            rid, action = (o.id, o.action) if isinstance(o, OwedRequest) else o
            owed.append(_record(id=rid, action=None if action is None else text(action)))
        rec = _record(owed=owed, in_flight=list(recovery.in_flight),
                      idle_owed=bool(recovery.idle_owed), dial_after_ms=int(recovery.dial_after_ms),
                      revoked=bool(recovery.revoked), reason=recovery.reason)
        return self._effects(self._m("recover", now_ms, rec))

    def drop(self) -> None:
        """Releases the resource inside the component."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.drop(self.relay.store)

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.drop()


#: The name of earlier versions (contract 0.1's ``connection`` resource); the
#: methods are those of contract 0.2.
Connection = Link
