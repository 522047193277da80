"""The APP-PROTOCOL in types: events (spec/SIDECAR.md §2) and commands (§3).

Python counterparts of ``relay_host::client::{Event, Command, LinkState,
OutboundResult}``.  :func:`parse_event` turns one event object (as the component
emits it, or as ``relay-host run`` writes it) into one of the event dataclasses;
it never fails: an event this version does not know, or one whose fields it
cannot read, becomes an :class:`OtherEvent` holding the object whole.  Every
event keeps the object it was read from as ``raw`` (new fields may appear;
names do not change).  Free-form payloads (descriptors, messages, results) stay
dicts.  Commands are dataclasses with :meth:`Command.to_dict`, which gives
exactly the object SIDECAR.md documents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Mapping, Optional, Union

from .errors import DecodeErrorKind

__all__ = [
    "EventKind", "LinkState", "Event", "StateEvent", "ReadyEvent", "DescriptorEvent",
    "MessageEvent", "InterruptEvent", "OutboundResult", "PromptStaleEvent", "IdleEvent",
    "ErrorBody", "ErrorEvent", "OtherEvent", "parse_event",
    "Command", "Outbound", "Interrupt", "Ack", "Nack", "GoingIdle", "HoldRedial",
    "ReleaseRedial",
]

_log = logging.getLogger("relay_wasm")


class EventKind(StrEnum):
    """The ``event`` names (SIDECAR.md §2); ``EventKind.READY == "ready"``."""

    STATE = "state"
    READY = "ready"
    DESCRIPTOR = "descriptor"
    MESSAGE = "message"
    INTERRUPT = "interrupt"
    OUTBOUND_RESULT = "outbound_result"
    PROMPT_STALE = "prompt_stale"
    IDLE = "idle"
    ERROR = "error"
    STATUS = "status"


class LinkState(StrEnum):
    """A link state (SIDECAR.md §2.1, WIT ``link-state``).  A ``StrEnum``:
    ``LinkState.READY == "ready"``.  Every one of them is announced by the component.
    A state this version does not know is kept as the plain string
    (:meth:`parse`), so a newer component's state still arrives."""

    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    READY = "ready"
    IDLE = "idle"
    HANDSHAKE_FAILED = "handshake_failed"
    BACKOFF = "backoff"
    REDIAL = "redial"
    REVOKED = "revoked"
    CLOSING = "closing"
    STOPPED = "stopped"

    @classmethod
    def parse(cls, name: str) -> Union["LinkState", str]:
        """The state ``name`` means; an unknown name is returned as the string."""
        try:
            return cls(name)
        except ValueError:
            return str(name)


# -- events ---------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """Base class of the events.  ``kind`` is the :class:`EventKind` (``None`` for
    :class:`OtherEvent`); ``tenant`` is set only on events read from
    ``relay-host run`` (the in-process link has no tenants); ``raw`` is the object
    the event was read from."""

    kind: ClassVar[Optional[EventKind]] = None
    tenant: Optional[str] = field(default=None, kw_only=True)
    raw: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False, compare=False)

    @property
    def name(self) -> str:
        """The protocol name (``"outbound_result"``, ...)."""
        return self.kind.value if self.kind is not None else ""


@dataclass(frozen=True)
class StateEvent(Event):
    """``state``: the link changed.  ``state`` is a :class:`LinkState` (or the plain
    string of one this version does not know); ``retry_in_ms`` with ``backoff``."""

    kind: ClassVar[EventKind] = EventKind.STATE
    state: Union[LinkState, str]
    retry_in_ms: Optional[int] = None
    reason: Optional[str] = None


@dataclass(frozen=True)
class ReadyEvent(Event):
    """``ready``: the first valid descriptor of a connection — the link can relay."""

    kind: ClassVar[EventKind] = EventKind.READY
    descriptor: Mapping[str, Any]


@dataclass(frozen=True)
class DescriptorEvent(Event):
    """``descriptor``: a later descriptor on the same connection (D15)."""

    kind: ClassVar[EventKind] = EventKind.DESCRIPTOR
    platform: str
    descriptor: Mapping[str, Any]


@dataclass(frozen=True)
class MessageEvent(Event):
    """``message``: an inbound event (or a converted Discord interaction).  With a
    ``buffer_id``, answer with ``ack`` (after durable hand-off) or ``nack``."""

    kind: ClassVar[EventKind] = EventKind.MESSAGE
    message: Mapping[str, Any]
    buffer_id: Optional[str] = None

    @property
    def text(self) -> Optional[str]:
        """``message["text"]``."""
        return self.message.get("text")

    @property
    def source(self) -> Mapping[str, Any]:
        """``message["source"]`` (platform, chat_id, user_id, ...)."""
        return self.message.get("source") or {}


@dataclass(frozen=True)
class InterruptEvent(Event):
    """``interrupt``: the connector asks to stop a turn."""

    kind: ClassVar[EventKind] = EventKind.INTERRUPT
    session_key: str
    chat_id: str


@dataclass(frozen=True)
class OutboundResult(Event):
    """``outbound_result``: the one answer to an ``outbound`` command, and what
    :meth:`relay_wasm.Client.outbound` returns.  ``result`` is the connector's
    object, free-form."""

    kind: ClassVar[EventKind] = EventKind.OUTBOUND_RESULT
    id: str
    result: Mapping[str, Any]

    @property
    def success(self) -> bool:
        """Whether the action was carried out (``result.success is True``)."""
        return self.result.get("success") is True

    @property
    def error(self) -> Optional[str]:
        """The failure text, when the action failed."""
        e = self.result.get("error")
        return e if isinstance(e, str) else None

    @property
    def ambiguous(self) -> bool:
        """The action may or may not have happened (a lost connection, a timeout)."""
        return self.result.get("ambiguous") is True

    @property
    def message_id(self) -> Optional[str]:
        """The platform message id of a ``send``-like action, if any."""
        m = self.result.get("message_id")
        return m if isinstance(m, str) else None


@dataclass(frozen=True)
class PromptStaleEvent(Event):
    """``prompt_stale``: a press on an unknown or expired prompt of this gateway."""

    kind: ClassVar[EventKind] = EventKind.PROMPT_STALE
    chat_id: str
    thread_id: Optional[str]
    prompt_id: str


@dataclass(frozen=True)
class IdleEvent(Event):
    """``idle``: the answer to ``going_idle``; ``acked``: the connector acknowledged."""

    kind: ClassVar[EventKind] = EventKind.IDLE
    acked: bool


@dataclass(frozen=True)
class ErrorBody:
    """``error.kind`` (a :class:`~relay_wasm.DecodeErrorKind` when it is one, else
    the string: the host adds ``unknown_tenant``, ``stopped``, ``busy``, ...) and
    ``error.message``."""

    kind: Union[DecodeErrorKind, str]
    message: str


@dataclass(frozen=True)
class ErrorEvent(Event):
    """``error``: a command could not be taken (``id``: the command's, if any)."""

    kind: ClassVar[EventKind] = EventKind.ERROR
    error: ErrorBody
    id: Any = None


@dataclass(frozen=True)
class OtherEvent(Event):
    """An event this version does not know (or could not read, or ``status``),
    kept whole in ``raw``; ``event`` is its ``event`` name, if a string."""

    event: str = ""

    @property
    def name(self) -> str:
        return self.event


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> Optional[str]:
    return None if v is None else _str(v)


def _obj(v: Any) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise TypeError(f"expected an object, got {type(v).__name__}")
    return v


def _opt_int(v: Any) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, bool):
        raise TypeError("expected a number, got a bool")
    return v if isinstance(v, int) else int(str(v))  # str(): a number kept as text


def _buffer_id(v: Any) -> Optional[str]:
    # The component writes a string; a number is the wire's other spelling.
    return None if v is None else (v if isinstance(v, str) else str(v))


def _read(d: Mapping[str, Any], name: str, meta: dict) -> Optional[Event]:
    if name == "state":
        return StateEvent(LinkState.parse(_str(d["state"])), _opt_int(d.get("retry_in_ms")),
                          _opt_str(d.get("reason")), **meta)
    if name == "ready":
        return ReadyEvent(_obj(d["descriptor"]), **meta)
    if name == "descriptor":
        return DescriptorEvent(_str(d["platform"]), _obj(d["descriptor"]), **meta)
    if name == "message":
        return MessageEvent(_obj(d["message"]), _buffer_id(d.get("buffer_id")), **meta)
    if name == "interrupt":
        return InterruptEvent(_str(d["session_key"]), _str(d["chat_id"]), **meta)
    if name == "outbound_result":
        return OutboundResult(_str(d["id"]), _obj(d["result"]), **meta)
    if name == "prompt_stale":
        return PromptStaleEvent(_str(d["chat_id"]), _opt_str(d.get("thread_id")),
                                _str(d["prompt_id"]), **meta)
    if name == "idle":
        if not isinstance(d["acked"], bool):
            raise TypeError("acked is not a bool")
        return IdleEvent(d["acked"], **meta)
    if name == "error":
        body = _obj(d["error"])
        return ErrorEvent(ErrorBody(DecodeErrorKind.parse(str(body.get("kind", ""))),
                                    str(body.get("message", ""))), d.get("id"), **meta)
    return None  # `status` (host-only) and names this version does not know


def parse_event(obj: Mapping[str, Any]) -> Event:
    """The typed form of one event object; never fails (see the module's doc)."""
    if not isinstance(obj, Mapping):
        return OtherEvent(raw={"value": obj})
    name = obj.get("event")
    tenant = obj.get("tenant")
    meta = {"tenant": tenant if isinstance(tenant, str) else None, "raw": obj}
    if isinstance(name, str):
        try:
            event = _read(obj, name, meta)
            if event is not None:
                return event
        except KeyError as e:
            _log.warning("event %r lacks the field %s; kept as OtherEvent", name, e)
        except (TypeError, ValueError) as e:
            _log.warning("event %r not readable as its kind (%s); kept as OtherEvent", name, e)
    return OtherEvent(event=name if isinstance(name, str) else "", **meta)


# -- commands -------------------------------------------------------------------

class Command:
    """Base class of the commands (SIDECAR.md §3); ``tenant`` is for
    ``relay-host run`` only (the in-process link has none)."""

    op: ClassVar[str]

    def to_dict(self) -> dict:
        """The command object: ``op`` first, absent (``None``) fields left out."""
        out: dict = {"op": self.op}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class Outbound(Command):
    """An ``outbound`` frame; answered by exactly one ``outbound_result`` with
    ``id``.  :meth:`relay_wasm.Client.outbound` builds it and waits for the answer."""

    op: ClassVar[str] = "outbound"
    id: str
    action: Mapping[str, Any]
    platform: Optional[str] = None
    tenant: Optional[str] = None


@dataclass(frozen=True)
class Interrupt(Command):
    """An ``interrupt`` frame (stop a turn); no answer."""

    op: ClassVar[str] = "interrupt"
    session_key: str
    reason: Optional[str] = None
    tenant: Optional[str] = None


@dataclass(frozen=True)
class Ack(Command):
    """A buffered message was handed off durably; no answer."""

    op: ClassVar[str] = "ack"
    buffer_id: str
    tenant: Optional[str] = None


@dataclass(frozen=True)
class Nack(Command):
    """A buffered message could not be taken: its next arrival is delivered again."""

    op: ClassVar[str] = "nack"
    buffer_id: str
    tenant: Optional[str] = None


@dataclass(frozen=True)
class GoingIdle(Command):
    """A ``going_idle`` frame; answered by one ``idle``."""

    op: ClassVar[str] = "going_idle"
    tenant: Optional[str] = None


@dataclass(frozen=True)
class HoldRedial(Command):
    """Park re-dialling for at most 60 s; no answer."""

    op: ClassVar[str] = "hold_redial"
    tenant: Optional[str] = None


@dataclass(frozen=True)
class ReleaseRedial(Command):
    """End a :class:`HoldRedial`; no answer."""

    op: ClassVar[str] = "release_redial"
    tenant: Optional[str] = None
