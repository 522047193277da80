#!/usr/bin/env python3
"""The asyncio driver against scripted loopback connectors: backoff after a dropped
link, handshake deadline, the one immediate re-dial on 4401 and the give-up after
it, a failed dial.  Runs with pytest or as a plain script (``N passed, M failed``);
``python3 -P test_driver.py`` tests the installed ``relay_wasm`` package (``-P``
keeps the source copy beside this file off ``sys.path``), and without one installed
that copy is used."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

try:
    import relay_wasm  # noqa: F401
except ImportError:  # a checkout, nothing installed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from relay_wasm.component import Connection, Relay  # noqa: E402
from relay_wasm.driver import Driver  # noqa: E402
from relay_wasm.effects import Emit  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402

DESCRIPTOR = {"contract_version": 1, "platform": "slack", "label": "Slack",
              "max_message_length": 40000, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "mrkdwn",
              "len_unit": "chars"}
CONFIG = {"identities": [{"platform": "slack", "bot_id": "B1"}], "gateway_id": "gw",
          "secret": "s", "seed": 7, "reconnect_jitter_percent": 0, "handshake_timeout_ms": 300}


async def scripted(script):
    """A connector whose n-th connection runs ``script(n, ws)``; records headers."""
    seen = {"n": 0, "auth": []}

    async def handler(ws):
        seen["n"] += 1
        seen["auth"].append(ws.request.headers.get("Authorization"))
        await script(seen["n"], ws)

    server = await serve(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def handshake(ws):
    await ws.recv()  # hello
    await ws.send(json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")


async def run_until(driver, predicate, timeout=8.0):
    """Runs the driver, collecting events (less the host's ``connecting`` and
    ``handshaking``) until ``predicate(events)`` or the driver stops."""
    task, events = asyncio.create_task(driver.run()), []
    try:
        async with asyncio.timeout(timeout):
            while not predicate(events):
                ev = await driver.events.get()
                if ev.get("state") not in ("connecting", "handshaking"):
                    events.append(ev)
                if ev == {"event": "state", "state": "stopped"}:
                    break
    finally:
        driver.stop()
        await task
    return events


def states(events):
    return [e.get("state", e["event"]) for e in events]


async def _revoked_after_redial():
    async def script(n, ws):
        await handshake(ws) if n == 1 else await ws.recv()
        await ws.close(4401, "unauthorized")

    server, url, seen = await scripted(script)
    async with server:
        events = await run_until(Driver(url, CONFIG, proxy=None), lambda ev: False)
    assert states(events) == ["ready", "redial", "revoked", "stopped"], states(events)
    assert seen["n"] == 2 and all(a and a.startswith("Bearer ") for a in seen["auth"])


async def _backoff_then_ready():
    async def script(n, ws):
        if n == 1:
            await ws.close(1011, "boom")
        else:
            await handshake(ws)
            await ws.wait_closed()

    server, url, seen = await scripted(script)
    async with server:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        events = await run_until(Driver(url, CONFIG, proxy=None), lambda ev: ev and ev[-1]["event"] == "ready")
        waited = loop.time() - t0
    assert states(events) == ["backoff", "ready"], states(events)
    assert events[0]["retry_in_ms"] == 1000 and 0.9 < waited < 3, (events, waited)


async def _handshake_deadline():
    async def script(n, ws):
        await ws.wait_closed()  # never answers hello

    server, url, seen = await scripted(script)
    async with server:
        events = await run_until(Driver(url, CONFIG, proxy=None), lambda ev: len(ev) >= 2)
    assert states(events)[:2] == ["handshake_failed", "backoff"], states(events)


async def _failed_dial_backs_off():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events = await run_until(Driver(f"ws://127.0.0.1:{port}", CONFIG, proxy=None), lambda ev: len(ev) >= 2)
    assert states(events)[:2] == ["backoff", "backoff"], states(events)
    assert [e["retry_in_ms"] for e in events[:2]] == [1000, 2000], events


def test_revoked_after_redial():
    asyncio.run(_revoked_after_redial())


def test_backoff_then_ready():
    asyncio.run(_backoff_then_ready())


def test_handshake_deadline():
    asyncio.run(_handshake_deadline())


def test_failed_dial_backs_off():
    asyncio.run(_failed_dial_backs_off())


def test_emitted_bytes_lift_alike_on_both_paths():
    # Emitted events cross as list<u8>: the one-copy lift of the fast path must
    # give what wasmtime-py's own byte-per-element lift gives, non-ASCII included.
    text = "héllo wörld — 你好 🎉 " * 40
    line = json.dumps({"type": "inbound", "event": {
        "text": text, "message_id": "m1",
        "source": {"platform": "slack", "chat_id": "C1", "user_id": "U1"}}}) + "\n"
    got = []
    for fast in (True, False):
        conn = Connection({**CONFIG, "secret": None}, Relay(fast_calls=fast))
        conn.open(0)
        conn.receive_text(1, json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")
        effects = conn.receive_text(2, line)
        messages = [e.event for e in effects if isinstance(e, Emit) and e.event["event"] == "message"]
        assert len(messages) == 1, effects
        assert messages[0]["message"]["text"] == text, messages[0]
        got.append(effects)
    assert got[0] == got[1], got


if __name__ == "__main__":
    passed = failed = 0
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            try:
                fn()
                passed += 1
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
