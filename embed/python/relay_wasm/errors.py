"""The exceptions of the package.

* :class:`DecodeError` — the component's typed rejection (WIT ``decode-error``): a
  line, a document, a configuration or a command it would not take.  ``kind`` is a
  :class:`DecodeErrorKind` for programs, ``message`` a sentence for people.
* :class:`LinkStopped` — a :class:`~relay_wasm.Client` call that can no longer be
  answered: the link ended (shutdown, revoked credentials, a failure) first.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Union

__all__ = ["DecodeErrorKind", "DecodeError", "ClientError", "LinkStopped"]


class DecodeErrorKind(StrEnum):
    """WIT ``error-kind`` under its APP-PROTOCOL spelling (SIDECAR.md §4).

    A ``StrEnum``: ``DecodeErrorKind.MALFORMED_JSON == "malformed_json"``."""

    MALFORMED_JSON = "malformed_json"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"

    @classmethod
    def parse(cls, name: str) -> Union["DecodeErrorKind", str]:
        """The kind a WIT (``malformed-json``) or protocol (``malformed_json``) name
        means; a name this version does not know is returned as the plain string."""
        name = str(name).replace("-", "_")
        try:
            return cls(name)
        except ValueError:
            return name


class DecodeError(Exception):
    """The component's typed rejection (``decode-error``): ``kind`` for programs
    (a :class:`DecodeErrorKind`, which compares equal to ``"malformed_json"``, ...),
    ``message`` for people.  ``str(e)`` is ``"<kind>: <message>"``."""

    def __init__(self, kind: Union[DecodeErrorKind, str], message: str):
        self.kind = DecodeErrorKind.parse(kind)
        self.message = message
        super().__init__(f"{self.kind}: {message}")

    def __reduce__(self):  # picklable despite the two-argument constructor
        return (type(self), (str(self.kind), self.message))


class ClientError(Exception):
    """Base class of the :class:`~relay_wasm.Client`'s own errors."""


class LinkStopped(ClientError):
    """The link has ended (after :meth:`~relay_wasm.Client.shutdown`, after the
    component gave up, or because the driver failed): no answer will come.  The
    failure, if any, is the ``__cause__``."""
