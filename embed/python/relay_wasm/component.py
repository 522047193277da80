"""Loading the relay component and calling it, through the package's own native
module (``relay_wasm._native``: the Rust ``wasmtime`` crate behind PyO3).

Why this shape:

* The native module is generic: it compiles a component, instantiates it in a
  store with a memory cap, and calls an export by interface and name, converting
  Python values by the function's WIT types (records are dicts with snake_case
  keys, variants ``(case, payload)`` tuples, enums ``str``, ``list<u8>`` ``bytes``,
  ``option`` ``None`` or the value, a ``result``'s ``err`` raised as
  ``_native.ResultError``).  This module is the one place that knows the relay
  contract's names (``[static]link.create``, ``[method]link.receive-text`` ... in
  ``hermes:relay/session@0.2.0``), so the rest of the package speaks plain Python.
* Every ``link`` method that returns ``list<effect>`` is looked up with the
  native ``Effects`` converter: the effects are lifted with typed bindings and
  built directly as :mod:`relay_wasm.effects` objects, each emitted event's line
  parsed with :attr:`Relay.loads` (strict UTF-8 first; with the default
  ``json.loads``, by the native module's reader into the same objects).  That is
  the per-frame hot path; nothing else is converted twice.
* The component imports only its error channel (``wasi:cli/stderr`` and the
  ``wasi:io`` types it is written through).  The native module serves exactly
  that, into a 1 KiB buffer it reports with a trap, and refuses to load a
  component that imports anything else: no files, clocks, randomness,
  environment or sockets exist to reach.
* JSON documents cross the boundary as text (see ``wit/relay.wit``); emitted events
  as UTF-8 bytes.  Inputs may be given as text (passed verbatim, so number
  spellings survive) or as Python values (serialised with ``dumps``); outputs are
  parsed with ``loads``.  Both are attributes of :class:`Relay`, so a caller that
  needs exact numbers (the conformance runner) plugs in its own parser once.
* The session interface is contract 0.2's ``link`` resource (:class:`Link`): the
  component owns dialing, every link state, keepalive and the timers; its records
  (``settings``, ``stats``, ``recovery``) are the dataclasses below.
* The component file is found by :func:`default_wasm_path`: ``$RELAY_WASM``, the
  package data ``relay_wasm/relay.wasm``, or (in a repository checkout) the cargo
  build.  The native module is the installed package's; in a checkout without
  one, the cargo build of ``embed/python/native`` (``_checkout_native``).
"""

from __future__ import annotations

import importlib.machinery
import importlib.resources
import importlib.util
import json
import os
import secrets
import sys
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .effects import CloseLink, Dial, Effect, Emit, Log, LogLevel, Send, SendPing
from .errors import DecodeError
from .events import EventKind, LinkState

__all__ = ["Relay", "Link", "Connection", "Settings", "Stats", "Recovery", "OwedRequest",
           "DecodeError", "Trap", "default_wasm_path", "monotonic_ms", "unix_offset_ms",
           "WASM_ENV", "CONTRACT", "OPTION_KEYS", "CAPS_KEYS"]


def _checkout_native() -> Any:
    """``relay_wasm._native`` from the cargo build, when this module runs from a
    repository checkout that has no built extension beside it (``cargo build
    --release -p relay-python`` writes ``target/release/lib_native.so``).  An
    installed package always has its own."""
    repo = Path(__file__).resolve().parents[3]
    here = Path(__file__).resolve().parent
    if not ((repo / "wit/relay.wit").is_file()
            and here == (repo / "embed/python/relay_wasm").resolve()):
        return None
    names = {"win32": "_native.dll", "darwin": "lib_native.dylib"}
    path = repo / "target" / "release" / names.get(sys.platform, "lib_native.so")
    if not path.is_file():
        return None
    name = f"{__package__ or 'relay_wasm'}._native"
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[name] = module
    return module


try:
    from . import _native
except ImportError as _missing:  # a checkout: the cargo build, if there is one
    _native = _checkout_native()
    if _native is None:
        raise ImportError(
            "relay_wasm._native (the package's compiled extension) is missing: install the "
            "package (`pip install embed/python`), or in a checkout build it with "
            "`cargo build --release -p relay-python`") from _missing

#: What a trapped guest call raises (also a failed instantiation, e.g. a memory cap
#: too small for the component): a ``RuntimeError`` with ``.message`` (why, in one
#: line: ``wasm trap: ...`` or the limit hit), ``.details`` (wasmtime's whole error,
#: with the guest's wasm backtrace) and ``.stderr`` (what the guest wrote to stderr,
#: at most 1 KiB, or ``None``).  The instance is dead afterwards: every later call
#: raises it again.
Trap = _native.Trap

#: The WIT package version this module binds.
CONTRACT = "hermes:relay@0.2.0"
_REPO = Path(__file__).resolve().parents[3]
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


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _opt_text(doc: Any, text: Callable[[Any], str]) -> Optional[str]:
    """An optional JSON input: ``None`` means absent; text is passed verbatim."""
    return None if doc is None else text(doc)


def _decode_error(e: Any) -> DecodeError:
    """The ``decode-error`` value of a ``ResultError`` as this package's exception."""
    value = e.value
    return DecodeError(value["kind"], value["message"])


_COMPONENTS: dict = {}


def _load(path: Path) -> Any:
    """Compiles the component once per process and path (Cranelift takes ~0.5 s)."""
    key = str(path)
    if key not in _COMPONENTS:
        _COMPONENTS[key] = _native.Component(path.read_bytes())
    return _COMPONENTS[key]


def _effects(loads: Callable[[str], Any]) -> Any:
    """The native converter that builds :mod:`relay_wasm.effects` objects."""
    def cls(c: type) -> tuple:
        return (c, tuple(f.name for f in fields(c)))

    return _native.Effects(
        send=cls(Send), send_ping=cls(SendPing), emit=cls(Emit), close_link=cls(CloseLink),
        dial=cls(Dial), log=cls(Log),
        event_kinds={k.value: k for k in EventKind}, link_states={s.value: s for s in LinkState},
        log_levels={lv.value: lv for lv in LogLevel}, loads=loads,
        # The default loads: the native reader gives the same objects, faster.
        native_json=loads is json.loads)


#: The ``link`` methods that return ``list<effect>``: Python name -> WIT name.
_EFFECT_METHODS = {
    "start": "start", "open": "open", "receive_text": "receive-text",
    "receive_binary": "receive-binary", "pong": "pong", "handle_timeout": "handle-timeout",
    "outbound": "outbound", "interrupt": "interrupt", "ack": "ack", "nack": "nack",
    "going_idle": "going-idle", "hold_redial": "hold-redial", "release_redial": "release-redial",
    "command": "command", "write_failed": "write-failed", "shutdown": "shutdown",
    "closed": "closed", "recover": "recover",
}
#: The ``link`` methods that return plain values.
_PLAIN_METHODS = {"settings": "[method]link.settings", "stats": "[method]link.stats",
                  "descriptors": "[method]link.descriptors",
                  "poll_timeout": "[method]link.poll-timeout"}


class _LinkApi:
    """The ``link`` functions of one instance, looked up once (``Relay._link_api``)."""

    def __init__(self, relay: "Relay"):
        for py_name, wit in _EFFECT_METHODS.items():
            setattr(self, py_name, relay._func(_SESSION, f"[method]link.{wit}", effects=True))
        for py_name, wit in _PLAIN_METHODS.items():
            setattr(self, py_name, relay._func(_SESSION, wit))
        self.create = relay._func(_SESSION, "[static]link.create")


class Relay:
    """One sandboxed instance of the component: the codec functions, and the
    factory of :class:`Link` objects that live in the same instance.

    An instance is single-threaded; create one per thread (or per tenant).  If the
    guest traps (a bug, or the memory cap: ``memory_bytes``, default 16 MiB as in
    the Rust host), the instance is dead: that call and every later one raise
    :data:`Trap`; make a new one (:meth:`fresh`).  ``instance`` is the native
    instance, for calling any export generically (``relay.instance.func(iface,
    name)(*args)``).
    """

    def __init__(
        self,
        path: Optional[os.PathLike | str] = None,
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        loads: Callable[[str], Any] = json.loads,
        dumps: Callable[[Any], str] = _compact,
    ):
        self.path = Path(path) if path is not None else default_wasm_path()
        self.memory_bytes = memory_bytes
        self.loads = loads
        self.dumps = dumps
        self.instance = _load(self.path).instantiate(memory_bytes)
        self._effect_builder = _effects(loads)
        self._funcs: dict = {}
        self._api: Optional[_LinkApi] = None

    # -- plumbing ---------------------------------------------------------------

    def _func(self, iface: str, name: str, effects: bool = False) -> Any:
        func = self._funcs.get((iface, name, effects))
        if func is None:
            func = self.instance.func(iface, name, self._effect_builder if effects else None)
            self._funcs[(iface, name, effects)] = func
        return func

    def _call(self, iface: str, name: str, *args: Any) -> Any:
        return self._func(iface, name)(*args)

    def _link_api(self) -> _LinkApi:
        if self._api is None:
            self._api = _LinkApi(self)
        return self._api

    def _text(self, doc: Any) -> str:
        """A JSON input: text is passed verbatim, anything else is serialised."""
        return doc if isinstance(doc, str) else self.dumps(doc)

    def _doc(self, iface: str, name: str, *args: Any) -> Any:
        """A call returning ``result<json, decode-error>``, parsed."""
        try:
            got = self._call(iface, name, *args)
        except _native.ResultError as e:
            raise _decode_error(e) from None
        return None if got is None else self.loads(got)

    @property
    def dead(self) -> Optional[str]:
        """``None`` while the instance works; after a trap, the trap's message."""
        return self.instance.dead

    # -- codec ------------------------------------------------------------------

    def decode(self, line: bytes | str, max_line_bytes: int = 1 << 20) -> dict:
        """One connector line (without its newline) → the frame under its wire
        names, e.g. ``{"type": "inbound", "event": {...}, "bufferId": "7"}``.
        Raises :class:`DecodeError`."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        try:
            tag, p = self._call(_CODEC, "decode", line, max_line_bytes)
        except _native.ResultError as e:
            raise _decode_error(e) from None
        doc = self.loads
        if tag == "descriptor":
            return {"type": "descriptor", "descriptor": doc(p)}
        if tag == "inbound":
            return {"type": "inbound", "event": doc(p["event"]), "bufferId": p["buffer_id"]}
        if tag == "outbound_result":
            return {"type": "outbound_result", "requestId": p["request_id"],
                    "result": doc(p["result"])}
        if tag == "interrupt_inbound":
            return {"type": "interrupt_inbound", "session_key": p["session_key"],
                    "chat_id": p["chat_id"]}
        if tag == "going_idle_ack":
            return {"type": "going_idle_ack"}
        if tag == "passthrough_forward":
            return {"type": "passthrough_forward", "forward": doc(p["forward"]),
                    "bufferId": p["buffer_id"]}
        raise ValueError(f"unknown connector-frame case {tag!r}")

    def encode(self, frame: dict) -> str:
        """A gateway frame given under its wire names (``hello``, ``outbound``,
        ``interrupt``, ``going_idle``, ``inbound_ack``) → one JSON line, no newline.
        JSON-valued fields (``action``, ``command_manifest``) may be text or values."""
        kind = frame.get("type")
        if kind == "hello":
            value: Any = ("hello", {
                "platform": frame["platform"], "bot_id": frame["botId"],
                "command_manifest": _opt_text(frame.get("command_manifest"), self._text)})
        elif kind == "outbound":
            value = ("outbound", {
                "request_id": frame["requestId"], "action": self._text(frame["action"]),
                "platform": frame.get("platform"), "bot_id": frame.get("botId")})
        elif kind == "interrupt":
            value = ("interrupt", {"session_key": frame["session_key"],
                                   "reason": frame.get("reason")})
        elif kind == "going_idle":
            value = "going_idle"
        elif kind == "inbound_ack":
            value = ("inbound_ack", frame["bufferId"])
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
        return self._doc(_CODEC, "normalize-descriptor", self._text(descriptor))

    def inbound_event(self, event: Any) -> Any:
        """The canonical MessageEvent of an ``inbound`` frame's ``event``."""
        return self._doc(_CODEC, "inbound-event", self._text(event))

    def passthrough_forward(self, forward: Any) -> Any:
        """The normalised ``passthrough_forward`` object."""
        return self._doc(_CODEC, "passthrough-forward", self._text(forward))

    def discord_event(self, forward: Any) -> Any:
        """A normalised forward → MessageEvent, or ``None`` when it is dropped."""
        return self._doc(_CODEC, "discord-event", self._text(forward))

    # -- session ----------------------------------------------------------------

    def link(self, config: dict) -> "Link":
        """Shorthand for ``Link(config, relay=self)``."""
        return Link(config, relay=self)

    #: The name of earlier versions (contract 0.1's ``connection`` resource).
    connection = link

    def fresh(self) -> "Relay":
        """A new instance (a new store) built like this one: same component file,
        memory cap and JSON functions.  What a host makes after a trap."""
        return Relay(self.path, memory_bytes=self.memory_bytes, loads=self.loads,
                     dumps=self.dumps)


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

_LINK_STATES = {s.value: s for s in LinkState}


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


def _config(cfg: Mapping[str, Any], text: Callable[[Any], str]) -> dict:
    """The WIT ``config`` record (a dict with snake_case keys, as the native module
    takes records) from a config dict (module doc of :class:`Link`).  Only what a
    host must supply is filled here: the seed (random bits) and the clock offset;
    every option left out is ``None``, the component's default."""
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise DecodeError("invalid_field", f"unknown config key(s): {', '.join(unknown)}")
    ids = [
        {"platform": i["platform"], "bot_id": i["bot_id"],
         "command_manifest": _opt_text(i.get("command_manifest"), text)}
        for i in cfg.get("identities") or []
    ]
    caps = cfg.get("caps")
    if caps is not None:
        unknown_caps = sorted(set(caps) - set(CAPS_KEYS))
        if unknown_caps:
            raise DecodeError("invalid_field", f"caps.{unknown_caps[0]}: no such cap")
        caps = {k: caps.get(k) for k in CAPS_KEYS}
    options = {"caps": caps, **{k: cfg.get(k) for k in OPTION_KEYS}}
    seed = cfg.get("seed")
    offset = cfg.get("unix_offset_ms")
    return {
        "identities": ids,
        "url": cfg.get("url") or "",
        "tenant": cfg.get("tenant"),
        "seed": secrets.randbits(64) if seed is None else seed,
        "unix_offset_ms": unix_offset_ms() if offset is None else offset,
        "gateway_id": cfg.get("gateway_id"),
        "secret": cfg.get("secret"),
        "options": options,
    }


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

    The handle is dropped with :meth:`drop` (or ``with``); a dropped link raises
    ``RuntimeError``.  A ``Link`` lives in the :class:`Relay` (store) it was
    created in.  A trapped instance raises :data:`Trap` from that call and every
    later one: build a new :class:`Relay` and hand the new link a
    :class:`Recovery`.
    """

    def __init__(self, config: Mapping[str, Any], relay: Optional[Relay] = None):
        self.relay = relay if relay is not None else Relay()
        api = self.relay._link_api()
        try:
            self._handle = api.create(_config(config, self.relay._text))
        except _native.ResultError as e:
            raise _decode_error(e) from None
        self._api = api
        # The hot path binds the native functions once: one Python call per method.
        self._receive_text = api.receive_text
        self._receive_binary = api.receive_binary

    # -- what the link runs with --------------------------------------------------

    def settings(self) -> Settings:
        """The settings in force (every default applied)."""
        s = self._api.settings(self._handle)
        return Settings(s["dial_url"], s["max_message_bytes"], s["close_wait_ms"],
                        s["ping_interval_ms"], s["pong_timeout_ms"], self.relay.loads(s["summary"]))

    def stats(self) -> Stats:
        """Counters for ``status``."""
        s = self._api.stats(self._handle)
        return Stats(_state(s["state"]) or LinkState.CONNECTING, s["connected"], s["frames_in"],
                     s["frames_out"], s["pending_outbound"], s["consecutive_failures"])

    def descriptors(self) -> Any:
        """Each fronted platform's descriptor on this connection (D15), as
        ``{platform: descriptor}``; empty before the handshake."""
        return self.relay.loads(self._api.descriptors(self._handle))

    # -- the socket ---------------------------------------------------------------

    def start(self, now_ms: int) -> list[Effect]:
        """Begin: ``state connecting`` and the first ``Dial``."""
        return self._api.start(self._handle, now_ms)

    def open(self, now_ms: int) -> list[Effect]:
        """The socket is up: the hellos and the handshake deadline."""
        return self._api.open(self._handle, now_ms)

    def receive_text(self, now_ms: int, text: Union[str, bytes]) -> list[Effect]:
        """One WebSocket text message (any number of lines or parts of lines): a
        ``str``, or its UTF-8 ``bytes`` as received (validated:
        ``UnicodeDecodeError`` when they are not UTF-8)."""
        return self._receive_text(self._handle, now_ms, text)

    def receive_binary(self, now_ms: int, data: bytes) -> list[Effect]:
        """One WebSocket binary message."""
        return self._receive_binary(self._handle, now_ms, data)

    def pong(self, now_ms: int) -> list[Effect]:
        """The pong of a ``SendPing`` arrived."""
        return self._api.pong(self._handle, now_ms)

    def closed(self, now_ms: int, code: Optional[int], reason: str = "") -> list[Effect]:
        """The socket ended (``code``: the peer's close code, else the one sent,
        ``None`` when it dropped without one), or a dial failed (``None`` and why)."""
        return self._api.closed(self._handle, now_ms, code, reason)

    def write_failed(self, now_ms: int, number: int, reason: str) -> list[Effect]:
        """Frame ``number`` (of a ``Send``) and those after it were not written:
        their requests get ``relay send failed: <reason>`` and the socket is closed."""
        return self._api.write_failed(self._handle, now_ms, number, reason)

    # -- time -----------------------------------------------------------------------

    def poll_timeout(self) -> Optional[int]:
        """When to call :meth:`handle_timeout` next (monotonic ms); ``None``: never.
        Ask again after every call."""
        return self._api.poll_timeout(self._handle)

    def handle_timeout(self, now_ms: int) -> list[Effect]:
        """Time passed: everything due by ``now_ms`` happens, in due order."""
        return self._api.handle_timeout(self._handle, now_ms)

    # -- the application's commands ------------------------------------------------

    def outbound(self, now_ms: int, id: str, action: Any, platform: Optional[str] = None) -> list[Effect]:
        """The application's ``outbound``; ``id`` is its own correlation id.  An
        ``action`` that is not a JSON object is answered with a failed result."""
        return self._api.outbound(self._handle, now_ms, id, self.relay._text(action), platform)

    def interrupt(self, now_ms: int, session_key: str, reason: Optional[str] = None) -> list[Effect]:
        """The application's ``interrupt``."""
        return self._api.interrupt(self._handle, now_ms, session_key, reason)

    def ack(self, now_ms: int, buffer_id: str) -> list[Effect]:
        """The application durably took a buffered delivery."""
        return self._api.ack(self._handle, now_ms, buffer_id)

    def nack(self, now_ms: int, buffer_id: str) -> list[Effect]:
        """The application could not take a delivery: its next arrival is
        delivered again (D10).  Nothing is written."""
        return self._api.nack(self._handle, now_ms, buffer_id)

    def going_idle(self, now_ms: int) -> list[Effect]:
        """The application's ``going_idle``; answered by one ``idle`` event."""
        return self._api.going_idle(self._handle, now_ms)

    def hold_redial(self, now_ms: int) -> list[Effect]:
        """Park re-dialling for at most 60 s (a brokered suspend is in flight)."""
        return self._api.hold_redial(self._handle, now_ms)

    def release_redial(self, now_ms: int) -> list[Effect]:
        """End a redial hold."""
        return self._api.release_redial(self._handle, now_ms)

    def command(self, now_ms: int, command: Any) -> list[Effect]:
        """An APP-PROTOCOL command (dict or JSON text, without ``tenant``), for hosts
        that pass lines through; typed callers use the methods above.  Raises
        :class:`DecodeError`; the link is unchanged then."""
        try:
            return self._api.command(self._handle, now_ms, self.relay._text(command))
        except _native.ResultError as e:
            raise _decode_error(e) from None

    # -- the end, and after a failure -------------------------------------------------

    def shutdown(self, now_ms: int, grace_ms: int = 0, reason: Optional[str] = None) -> list[Effect]:
        """End the link: a ready link sends ``going_idle`` and waits at most
        ``grace_ms`` for its ack; then what waits is answered (``relay send failed:
        relay transport closed``), the socket is closed with 1000, and ``state
        stopped`` (``reason``, default "shutdown") is the last event.  Grace 0 is an
        immediate stop."""
        return self._api.shutdown(self._handle, now_ms, grace_ms, reason)

    def recover(self, now_ms: int, recovery: Recovery) -> list[Effect]:
        """Take over from a failed instance (once, instead of :meth:`start`): the
        owed ``outbound_result`` events (``relay transport connection lost``,
        ambiguous), ``idle`` ``{acked: false}`` when owed, then ``state backoff``
        (or ``revoked``); the ``Dial`` comes from :meth:`handle_timeout`."""
        text = self.relay._text
        owed = []
        for o in recovery.owed:
            rid, action = (o.id, o.action) if isinstance(o, OwedRequest) else o
            owed.append({"id": rid, "action": None if action is None else text(action)})
        rec = {"owed": owed, "in_flight": list(recovery.in_flight),
               "idle_owed": bool(recovery.idle_owed), "dial_after_ms": int(recovery.dial_after_ms),
               "revoked": bool(recovery.revoked), "reason": recovery.reason}
        return self._api.recover(self._handle, now_ms, rec)

    def drop(self) -> None:
        """Releases the resource inside the component (a no-op after a trap, or
        when already dropped)."""
        self._handle.drop()

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.drop()


#: The name of earlier versions (contract 0.1's ``connection`` resource); the
#: methods are those of contract 0.2.
Connection = Link
