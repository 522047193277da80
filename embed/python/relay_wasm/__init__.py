"""relay-wasm from Python: the relay component (``wit/relay.wit``, contract
``hermes:relay@0.2.0``) run by wasmtime, through the package's native extension
(``relay_wasm._native``, Rust + PyO3).

* :func:`connect` / :class:`Client` — an asyncio client for one link: typed events
  with ``async for``, ``await link.outbound(action)`` correlated for you, a bounded
  event queue with backpressure, a graceful end (:mod:`relay_wasm.client`).
* :class:`Relay` — one sandboxed instance: the stateless codec functions.
* :class:`Link` — the sans-IO ``link`` resource (``Connection`` is its old name);
  methods return effects (:mod:`relay_wasm.effects`: ``Send``, ``Emit``, ``Dial``
  ...), and :meth:`Link.poll_timeout` says when to call ``handle_timeout``.
* :mod:`relay_wasm.driver` — the asyncio host that performs those effects with the
  ``websockets`` package; the client is built on it.
* ``python -m relay_wasm.conform FILE...`` and ``python -m relay_wasm.bench``.

All protocol decisions stay inside the component; this package only moves values.
``websockets`` is imported only when the client or the driver is first used, so
the codec and :class:`Link` need nothing beyond the package itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .component import (CONTRACT, Connection, Link, OwedRequest, Recovery, Relay, Settings, Stats,
                        Trap, WASM_ENV, default_wasm_path, monotonic_ms, unix_offset_ms)
from .effects import CloseLink, Dial, Effect, EffectKind, Emit, Log, LogLevel, Send, SendPing
from .errors import ClientError, DecodeError, DecodeErrorKind, LinkStopped
from .events import (Ack, Command, DescriptorEvent, ErrorBody, ErrorEvent, Event, EventKind,
                     GoingIdle, HoldRedial, IdleEvent, Interrupt, InterruptEvent, LinkState,
                     MessageEvent, Nack, OtherEvent, Outbound, OutboundResult, PromptStaleEvent,
                     ReadyEvent, ReleaseRedial, StateEvent, parse_event)

if TYPE_CHECKING:
    from .client import DEFAULT_MAX_EVENTS, Client, connect
    from .driver import Driver, RestartBudget

__version__ = "0.2.0"

_LAZY = {"Client": "client", "connect": "client", "DEFAULT_MAX_EVENTS": "client",
         "Driver": "driver", "RestartBudget": "driver"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'relay_wasm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    # the client
    "connect", "Client", "DEFAULT_MAX_EVENTS", "Driver", "RestartBudget",
    # the component
    "Relay", "Link", "Connection", "Settings", "Stats", "Recovery", "OwedRequest",
    "default_wasm_path", "monotonic_ms", "unix_offset_ms", "WASM_ENV", "CONTRACT",
    # errors
    "DecodeError", "DecodeErrorKind", "ClientError", "LinkStopped", "Trap",
    # events and commands
    "Event", "EventKind", "LinkState", "StateEvent", "ReadyEvent", "DescriptorEvent",
    "MessageEvent", "InterruptEvent", "OutboundResult", "PromptStaleEvent", "IdleEvent",
    "ErrorBody", "ErrorEvent", "OtherEvent", "parse_event",
    "Command", "Outbound", "Interrupt", "Ack", "Nack", "GoingIdle", "HoldRedial", "ReleaseRedial",
    # effects
    "Effect", "EffectKind", "LogLevel", "Send", "SendPing", "Emit", "CloseLink", "Dial", "Log",
    "__version__",
]
