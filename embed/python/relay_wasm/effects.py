"""What :class:`~relay_wasm.Link` methods return: the effects (WIT ``effect``) the
host must perform, in order.

Each effect is a frozen dataclass with a ``kind`` (:class:`EffectKind`).  An effect
also indexes and unpacks like a tuple of its kind and fields (``e[0] == "send"``,
``_, line, number = e``); :meth:`Effect.as_tuple` gives that tuple (equality with a
plain tuple does not hold).

Contract 0.2 (``hermes:relay@0.2.0``): the component decides dialing, keepalive and
every timer, so there are no timer or reconnect effects any more; a host asks
:meth:`~relay_wasm.Link.poll_timeout` after every call instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Iterator, Optional, Union

from .events import EventKind, LinkState

__all__ = [
    "EffectKind", "LogLevel", "Effect", "Send", "SendPing", "Emit", "CloseLink", "Dial", "Log",
]


class EffectKind(StrEnum):
    """The effect cases (WIT names in snake_case: ``"send_ping"``, ``"close_link"``)."""

    SEND = "send"
    SEND_PING = "send_ping"
    EMIT = "emit"
    CLOSE_LINK = "close_link"
    DIAL = "dial"
    LOG = "log"


class LogLevel(StrEnum):
    """WIT ``log-level``."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class Effect:
    """Base class of the effects."""

    __slots__ = ()
    kind: ClassVar[EffectKind]

    def as_tuple(self) -> tuple:
        """The effect as a tuple: its kind, then its fields, e.g. ``("send", line, number)``."""
        return (self.kind.value, *(getattr(self, f.name) for f in fields(self)))  # type: ignore[arg-type]

    def __getitem__(self, index: Any) -> Any:
        return self.as_tuple()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.as_tuple())

    def __len__(self) -> int:
        return len(self.as_tuple())


@dataclass(frozen=True, slots=True)
class Send(Effect):
    """Write ``line`` (one frame, newline included) as one text message.  If it
    cannot be written, call ``Link.write_failed(now_ms, number, reason)``."""

    kind: ClassVar[EffectKind] = EffectKind.SEND
    line: str
    number: int


@dataclass(frozen=True, slots=True)
class SendPing(Effect):
    """Send a WebSocket ping; when its pong arrives, call ``Link.pong(now_ms)``."""

    kind: ClassVar[EffectKind] = EffectKind.SEND_PING


@dataclass(frozen=True, slots=True)
class Emit(Effect):
    """Deliver an APP-PROTOCOL event to the application.

    ``event`` is the event object (``line`` parsed with ``Relay.loads``; it carries
    ``"tenant"`` only when the config set one).  The typed fields say what happened
    without reading it: ``event_kind`` (:class:`~relay_wasm.EventKind`), ``state``
    (a :class:`~relay_wasm.LinkState`, for ``state`` events), ``id`` (the
    application's id, for ``outbound_result``), ``buffer_id`` (for ``message``),
    ``acked`` (for ``idle``).  ``line`` is the event's compact JSON as UTF-8 bytes,
    without a newline (what a sidecar writes)."""

    kind: ClassVar[EffectKind] = EffectKind.EMIT
    event: Any
    event_kind: Union[EventKind, str] = field(default="")
    state: Optional[Union[LinkState, str]] = None
    id: Optional[str] = None
    buffer_id: Optional[str] = None
    acked: Optional[bool] = None
    line: bytes = field(default=b"", repr=False)

    def as_event(self):
        """The event typed (:func:`relay_wasm.events.parse_event`)."""
        from .events import parse_event

        return parse_event(self.event)


@dataclass(frozen=True, slots=True)
class CloseLink(Effect):
    """Close the socket with ``code`` (after the sends before it), waiting at most
    ``Settings.close_wait_ms`` for the peer; then call ``Link.closed`` with the
    peer's close code if one came, else ``code``."""

    kind: ClassVar[EffectKind] = EffectKind.CLOSE_LINK
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Dial(Effect):
    """Open a WebSocket to ``url`` with this ``Authorization`` header value (when
    not ``None``); then call ``Link.open``, or ``Link.closed(now_ms, None, why)`` if
    the dial failed.  ``authorization`` is a credential: it is left out of ``repr``."""

    kind: ClassVar[EffectKind] = EffectKind.DIAL
    url: str
    authorization: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Log(Effect):
    """A log record (never holds secrets or tokens)."""

    kind: ClassVar[EffectKind] = EffectKind.LOG
    level: LogLevel
    message: str
