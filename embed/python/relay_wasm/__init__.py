"""relay-wasm from Python: the relay component (``wit/relay.wit``) under wasmtime-py.

* :func:`connect` / :class:`Client` — an asyncio client for one link: typed events
  with ``async for``, ``await link.outbound(action)`` correlated for you, a bounded
  event queue with backpressure, a graceful end (:mod:`relay_wasm.client`).
* :class:`Relay` — one sandboxed instance: the stateless codec functions.
* :class:`Connection` — the sans-IO ``connection`` resource; methods return
  effects (:mod:`relay_wasm.effects`: ``Send``, ``Emit``, ``SetTimer`` ...).
* :mod:`relay_wasm.driver` — the asyncio host that performs those effects with the
  ``websockets`` package; the client is built on it.
* ``python -m relay_wasm.conform FILE...`` and ``python -m relay_wasm.bench``.

All protocol decisions stay inside the component; this package only moves values.
``websockets`` is imported only when the client or the driver is first used, so
the codec and :class:`Connection` need only ``wasmtime``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .component import Connection, Relay, WASM_ENV, default_wasm_path
from .effects import (CancelTimer, CloseLink, Effect, EffectKind, Emit, GiveUp, Log, LogLevel,
                      Reconnect, Redial, Send, SetTimer)
from .errors import ClientError, DecodeError, DecodeErrorKind, LinkStopped
from .events import (Ack, Command, DescriptorEvent, ErrorBody, ErrorEvent, Event, EventKind,
                     GoingIdle, HoldRedial, IdleEvent, Interrupt, InterruptEvent, LinkState,
                     MessageEvent, Nack, OtherEvent, Outbound, OutboundResult, PromptStaleEvent,
                     ReadyEvent, ReleaseRedial, StateEvent, parse_event)

if TYPE_CHECKING:
    from .client import DEFAULT_MAX_EVENTS, Client, connect
    from .driver import Driver

__version__ = "0.1.0"

_LAZY = {"Client": "client", "connect": "client", "DEFAULT_MAX_EVENTS": "client",
         "Driver": "driver"}


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
    "connect", "Client", "DEFAULT_MAX_EVENTS", "Driver",
    # the component
    "Relay", "Connection", "default_wasm_path", "WASM_ENV",
    # errors
    "DecodeError", "DecodeErrorKind", "ClientError", "LinkStopped",
    # events and commands
    "Event", "EventKind", "LinkState", "StateEvent", "ReadyEvent", "DescriptorEvent",
    "MessageEvent", "InterruptEvent", "OutboundResult", "PromptStaleEvent", "IdleEvent",
    "ErrorBody", "ErrorEvent", "OtherEvent", "parse_event",
    "Command", "Outbound", "Interrupt", "Ack", "Nack", "GoingIdle", "HoldRedial", "ReleaseRedial",
    # effects
    "Effect", "EffectKind", "LogLevel", "Send", "Emit", "SetTimer", "CancelTimer", "CloseLink",
    "Reconnect", "Redial", "GiveUp", "Log",
    "__version__",
]
