"""``python -m relay_wasm.sidecar --config FILE``: one link as a stdio sidecar.

The Python counterpart of ``relay-host run`` for one tenant, speaking the same
APP-PROTOCOL (``spec/SIDECAR.md``): commands as JSON lines on stdin, the
component's events as JSON lines on stdout (written verbatim, one per line,
flushed per line), logs on stderr.  The parity suite (``tests/parity/run``) runs
the same sessions through it, through the JavaScript sidecar and through
``relay-host run`` and compares the event streams.

``FILE`` is JSON::

    {"tenant": "default", "url": "http://127.0.0.1:PORT",
     "identities": [{"platform": "discord", "bot_id": "app1", "command_manifest": [...]}],
     "gateway_id": null, "secret_env": null, "seed": 7,
     "options": {"handshake_timeout_ms": 500, ...},
     "shutdown_grace_ms": 5000, "memory_mib": 16}

``options`` holds the WIT ``options`` fields in snake_case (left out: the
component's default); ``secret_env`` names the environment variable holding the
upgrade secret (with ``gateway_id``); ``memory_mib`` caps the guest's linear
memory (default 16, as ``relay-host``'s ``limits.memory_mib``).

What this module adds to the component is what ``relay-host`` adds
(``crates/relay-host/src/app.rs`` and ``event.rs``), with the same texts:

* the command layer: a line that is not UTF-8, not JSON or not an object, an
  ``op`` missing or not a string, a ``tenant`` that is not this one or not a
  string: an ``error`` event (``id`` echoed when the command had one);
  ``shutdown`` (or the end of stdin) ends the link; every other command goes to
  the component's command parser as it is (``Link.command``, through
  :meth:`relay_wasm.driver.Driver.command`), whose typed rejections become
  ``error`` events with ``tenant``;
* after the link has stopped, commands are still answered: ``outbound`` with
  ``relay transport closed``, ``going_idle`` with ``idle`` ``acked: false``,
  others with an ``error`` of kind ``stopped``.

``shutdown`` / end of stdin: the component's ``shutdown`` with
``shutdown_grace_ms``; the process exits 0 after ``state stopped``.  ``status``
and ``reload`` are ``relay-host`` commands this sidecar does not have (they reach
the component, which answers ``unknown_type``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from typing import Any, Optional

from .component import Relay
from .driver import Driver
from .errors import DecodeError

__all__ = ["main", "Sidecar", "MAX_COMMAND_BYTES"]

#: The longest command line read (``relay-host``'s ``MAX_COMMAND_BYTES``).
MAX_COMMAND_BYTES = 16 << 20
#: D9's result for a command to a link that has stopped (``relay-host``'s text).
TRANSPORT_CLOSED = "relay transport closed"

_log = logging.getLogger("relay_wasm.sidecar")

#: What Rust's ``str::trim`` (relay-host's) removes: Unicode White_Space, which is
#: not quite ``str.isspace`` (that also takes U+001C..U+001F).
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Line(dict):
    """A parsed event that keeps the component's line, so it is written verbatim."""

    __slots__ = ("text",)


def _loads(text: str) -> Any:
    value = json.loads(text)
    if isinstance(value, dict):
        line = _Line(value)
        line.text = text
        return line
    return value


def _error(kind: str, message: str) -> dict:
    return {"event": "error", "error": {"kind": kind, "message": message}}


def _for_tenant(tenant: str, event: dict) -> dict:
    """``event``, ``tenant``, then the other fields in relay-host's order
    (``event::for_tenant``: serde_json's order-preserving ``Map::remove`` of
    ``event`` is a swap-remove, so the last field takes its place)."""
    items = list(event.items())
    at = next(i for i, (k, _) in enumerate(items) if k == "event")
    name = items[at][1]
    last = items.pop()
    if at < len(items):
        items[at] = last
    out = {"event": name, "tenant": tenant}
    out.update(items)
    return out


class Sidecar:
    """One link and the stdio protocol around it (module doc)."""

    def __init__(self, config: dict, out: Any = None):
        self.tenant: str = config.get("tenant") or "default"
        self.grace_ms = int(config.get("shutdown_grace_ms", 5000))
        self.out = out if out is not None else sys.stdout.buffer
        secret = None
        var = config.get("secret_env")
        if var:
            secret = os.environ.get(var, "").strip()
            if not secret:
                raise ValueError(f"secret_env: environment variable {var} is not set or empty")
        link_config: dict = {
            "identities": [
                {k: v for k, v in i.items() if k in ("platform", "bot_id", "command_manifest")}
                for i in config.get("identities") or []
            ],
            "tenant": self.tenant,
            "seed": config.get("seed"),
            "gateway_id": config.get("gateway_id"),
            "secret": secret,
        }
        for key, value in (config.get("options") or {}).items():
            link_config[key] = value
        memory_mib = config.get("memory_mib")
        relay = Relay(memory_bytes=int(memory_mib) << 20 if memory_mib else 16 << 20, loads=_loads)
        self.driver = Driver(config["url"], link_config, relay=relay, on_event=self._write,
                             logger=logging.getLogger("relay_wasm"))
        self.stopped = False
        self._run: Optional[asyncio.Task] = None

    # -- output -------------------------------------------------------------------

    def _write(self, event: Any) -> None:
        text = event.text if isinstance(event, _Line) else _dumps(event)
        if isinstance(event, dict) and event.get("event") == "state" and event.get("state") == "stopped":
            self.stopped = True
        self._emit_text(text)

    def _emit_text(self, text: str) -> None:
        try:
            self.out.write(text.encode("utf-8") + b"\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody reads any more; the link still ends cleanly

    def _emit(self, event: dict) -> None:
        self._emit_text(_dumps(event))

    def _reject(self, kind: str, message: str, command: Optional[dict] = None,
                tenant: bool = False) -> None:
        event = _error(kind, message)
        if command is not None and "id" in command:
            event["id"] = command["id"]
        self._emit(_for_tenant(self.tenant, event) if tenant else event)

    # -- input --------------------------------------------------------------------

    def line(self, raw: bytes) -> bool:
        """One command line (without its newline); False once the sidecar must end."""
        if len(raw) > MAX_COMMAND_BYTES:
            self._reject("too_large", f"command line longer than {MAX_COMMAND_BYTES} bytes skipped")
            return True
        try:
            text = raw.decode("utf-8").strip(_WHITE_SPACE)
        except UnicodeDecodeError as e:
            self._reject("malformed_json",
                         f"command line is not UTF-8 (invalid byte at offset {e.start}); skipped")
            return True
        if not text:
            return True
        try:
            command = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            self._not_json(text)
            return True
        if not isinstance(command, dict):
            self._reject("not_object", "command is not a JSON object")
            return True
        op = command.get("op")
        if op is None:
            self._reject("missing_field", "missing field `op`", command)
            return True
        if not isinstance(op, str):
            self._reject("invalid_field", "`op` is not a string", command)
            return True
        if op == "shutdown":
            return False
        tenant = command.get("tenant")
        if isinstance(tenant, str):
            if tenant != self.tenant:
                self._reject("unknown_tenant", f"unknown tenant `{tenant[:80]}`", command)
                return True
        elif tenant is not None:
            self._reject("invalid_field", "`tenant` is not a string", command)
            return True
        if self.stopped or self.driver.finished:
            self._answer_stopped(op, command)
            return True
        try:
            self.driver.command(text)
        except DecodeError as e:
            # JSON Python reads but the component's parser does not (a lone
            # surrogate escape, ...): relay-host refuses it before any tenant.
            not_json = e.kind == "malformed_json" and e.message.startswith("command is not JSON")
            self._reject(str(e.kind), e.message, None if not_json else command, tenant=not not_json)
        return True

    def _not_json(self, text: str) -> None:
        """The component's parser words it (the same JSON library as relay-host's)."""
        try:
            self.driver.command(text)
        except DecodeError as e:
            self._reject(str(e.kind), e.message)
            return
        except Exception as e:  # noqa: BLE001 - a stopped link: word it ourselves
            self._reject("malformed_json", f"command is not JSON ({e})")
            return
        _log.warning("a line Python's json refused was taken by the component: %.80r", text)

    def _answer_stopped(self, op: str, command: dict) -> None:
        """relay-host's ``answer_when_stopped``."""
        rid = command.get("id")
        if op == "outbound" and isinstance(rid, str):
            event = {"event": "outbound_result", "id": rid,
                     "result": {"success": False, "error": TRANSPORT_CLOSED}}
        elif op == "going_idle":
            event = {"event": "idle", "acked": False}
        else:
            event = _error("stopped", f"tenant `{self.tenant}` is stopped")
            if "id" in command:
                event["id"] = rid
        self._emit(_for_tenant(self.tenant, event))

    # -- the whole run --------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue = asyncio.Queue()

        def read() -> None:
            stdin = sys.stdin.buffer
            while True:
                raw = stdin.readline()
                if not raw:
                    loop.call_soon_threadsafe(lines.put_nowait, None)
                    return
                loop.call_soon_threadsafe(lines.put_nowait, raw[:-1] if raw.endswith(b"\n") else raw)

        threading.Thread(target=read, name="stdin", daemon=True).start()
        self._run = loop.create_task(self.driver.run())
        self._run.add_done_callback(self._ended)
        while True:
            raw = await lines.get()
            if raw is None or not self.line(raw):
                break
        if not self.driver.finished:
            self.driver.shutdown(self.grace_ms / 1000)
        await asyncio.wait([self._run])
        return 0

    def _ended(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None and not self.stopped:
            # No guest is left to say it (relay-host's `finish`).
            _log.error("the link failed: %s", err)
            self.stopped = True
            self._emit(_for_tenant(self.tenant, {"event": "state", "state": "stopped",
                                                 "reason": str(err)[:300]}))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m relay_wasm.sidecar", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the sidecar's JSON configuration file")
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("RELAY_LOG", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    try:
        sidecar = Sidecar(config)
    except DecodeError as e:
        print(f"error: {args.config}: the component rejected the configuration: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError) as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    return asyncio.run(sidecar.run())


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the stdin reader thread may sit in readline(), and an
    # interpreter shutdown racing it for stdin's lock can abort the process.
    os._exit(code)
