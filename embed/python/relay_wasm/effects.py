"""What :class:`~relay_wasm.Connection` methods return: the effects (WIT ``effect``)
the host must perform, in order.

Each effect is a frozen dataclass with a ``kind`` (:class:`EffectKind`).  For the
code written against the tuples of earlier versions, an effect still indexes and
unpacks like its old tuple (``e[0] == "send"``, ``_, line, number = e``);
:meth:`Effect.as_tuple` gives that tuple (equality with a plain tuple does not hold).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, Iterator

__all__ = [
    "EffectKind", "LogLevel", "Effect", "Send", "Emit", "SetTimer", "CancelTimer",
    "CloseLink", "Reconnect", "Redial", "GiveUp", "Log",
]


class EffectKind(StrEnum):
    """The effect cases, under the names of the old tuples (``"set_timer"``, ...)."""

    SEND = "send"
    EMIT = "emit"
    SET_TIMER = "set_timer"
    CANCEL_TIMER = "cancel_timer"
    CLOSE_LINK = "close_link"
    RECONNECT = "reconnect"
    REDIAL = "redial"
    GIVE_UP = "give_up"
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
        """The tuple earlier versions returned, e.g. ``("send", line, number)``."""
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
    cannot be written, call ``Connection.write_failed(now_ms, number, reason)``."""

    kind: ClassVar[EffectKind] = EffectKind.SEND
    line: str
    number: int


@dataclass(frozen=True, slots=True)
class Emit(Effect):
    """Deliver ``event`` (an APP-PROTOCOL event, parsed with ``Relay.loads``, without
    ``tenant``) to the application."""

    kind: ClassVar[EffectKind] = EffectKind.EMIT
    event: Any

    def as_event(self):
        """The event typed (:func:`relay_wasm.events.parse_event`)."""
        from .events import parse_event

        return parse_event(self.event)


@dataclass(frozen=True, slots=True)
class SetTimer(Effect):
    """Arm timer ``id``: call ``Connection.timer_fired(now_ms, id)`` at monotonic
    ``at_ms`` (replaces a timer with the same id)."""

    kind: ClassVar[EffectKind] = EffectKind.SET_TIMER
    id: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer(Effect):
    """Disarm timer ``id``."""

    kind: ClassVar[EffectKind] = EffectKind.CANCEL_TIMER
    id: int


@dataclass(frozen=True, slots=True)
class CloseLink(Effect):
    """Close the socket (after the sends before it), then report ``closed``."""

    kind: ClassVar[EffectKind] = EffectKind.CLOSE_LINK
    reason: str


@dataclass(frozen=True, slots=True)
class Reconnect(Effect):
    """The link decision after ``closed``: dial again in ``delay_ms``.  A later
    ``Reconnect`` replaces one not acted on yet."""

    kind: ClassVar[EffectKind] = EffectKind.RECONNECT
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Redial(Effect):
    """The link decision after ``closed``: dial again at once, with a fresh token."""

    kind: ClassVar[EffectKind] = EffectKind.REDIAL


@dataclass(frozen=True, slots=True)
class GiveUp(Effect):
    """The link decision after ``closed``: never dial again (``reason`` says why)."""

    kind: ClassVar[EffectKind] = EffectKind.GIVE_UP
    reason: str


@dataclass(frozen=True, slots=True)
class Log(Effect):
    """A log record (never holds secrets or tokens)."""

    kind: ClassVar[EffectKind] = EffectKind.LOG
    level: LogLevel
    message: str
