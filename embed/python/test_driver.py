#!/usr/bin/env python3
"""The asyncio driver against scripted loopback connectors: backoff after a dropped
link, handshake deadline, the one immediate re-dial on 4401 and the give-up after
it, a failed dial, keepalive pings, a dead link, recovery after a guest trap.  Runs with pytest or as a plain script (``N passed, M failed``);
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
from relay_wasm.component import Relay  # noqa: E402
from relay_wasm.driver import Driver  # noqa: E402
from relay_wasm.client import connect  # noqa: E402

from websockets.asyncio.server import serve  # noqa: E402

DESCRIPTOR = {"contract_version": 1, "platform": "slack", "label": "Slack",
              "max_message_length": 40000, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "mrkdwn",
              "len_unit": "chars"}
CONFIG = {"identities": [{"platform": "slack", "bot_id": "B1"}], "gateway_id": "gw",
          "secret": "s", "seed": 7, "reconnect_jitter_percent": 0, "handshake_timeout_ms": 300}


#: The states the link announces that these tests do not look at (the vectors'
#: "bookkeeping" states; ``stopped`` is kept: it ends every run).
BOOKKEEPING = ("connecting", "handshaking", "ready", "idle")


async def scripted(script, **serve_kwargs):
    """A connector whose n-th connection runs ``script(n, ws)``; records headers
    and the connections (``seen["ws"]``)."""
    seen = {"n": 0, "auth": [], "ws": []}

    async def handler(ws):
        seen["n"] += 1
        seen["auth"].append(ws.request.headers.get("Authorization"))
        seen["ws"].append(ws)
        await script(seen["n"], ws)

    server = await serve(handler, "127.0.0.1", 0, **serve_kwargs)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


async def handshake(ws):
    await ws.recv()  # hello
    await ws.send(json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")


async def run_until(driver, predicate, timeout=8.0):
    """Runs the driver, collecting events (less the bookkeeping ``state`` events)
    until ``predicate(events)`` or the driver stops."""
    task, events = asyncio.create_task(driver.run()), []
    try:
        async with asyncio.timeout(timeout):
            while not predicate(events):
                ev = await driver.events.get()
                if not (ev["event"] == "state" and ev["state"] in BOOKKEEPING):
                    events.append(ev)
                if ev["event"] == "state" and ev["state"] == "stopped":
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
        driver = Driver(url, CONFIG, proxy=None)
        driver.stop_when_revoked = True
        events = await run_until(driver, lambda ev: False)
    assert states(events) == ["ready", "redial", "revoked", "stopped"], states(events)
    assert events[-1]["reason"] == "credentials revoked", events[-1]
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


def close_code_from_gateway(ws):
    """The close code the gateway sent on this (server-side) connection."""
    rcvd = ws.protocol.close_rcvd
    return None if rcvd is None else rcvd.code


def without_pongs(ws, pings):
    """Makes a server connection count the pings it gets (``pings["n"]``) and,
    with ``pings["answer"]`` false, never answer them (websockets answers by itself)."""
    from websockets.frames import Opcode

    protocol = ws.protocol
    recv_frame, send_frame = protocol.recv_frame, protocol.send_frame

    def counting(frame):
        if frame.opcode is Opcode.PING:
            pings["n"] += 1
        recv_frame(frame)

    def dropping(frame):
        if frame.opcode is Opcode.PONG and not pings["answer"]:
            return
        send_frame(frame)

    protocol.recv_frame, protocol.send_frame = counting, dropping


async def lines(ws):
    """The frames a connection receives, one parsed line at a time, until it closes."""
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in ws:
            for line in message.splitlines():
                yield json.loads(line)
    except ConnectionClosed:
        return


async def _keepalive_pings_are_the_components():
    pings = {"n": 0, "answer": True}

    async def script(n, ws):
        without_pongs(ws, pings)
        await handshake(ws)
        await ws.wait_closed()

    config = {**CONFIG, "ping_interval_ms": 100, "pong_timeout_ms": 250}
    server, url, seen = await scripted(script)
    async with server:
        driver = Driver(url, config, proxy=None)
        assert driver.settings.ping_interval_ms == 100
        task = asyncio.create_task(driver.run())
        async with asyncio.timeout(8):
            while pings["n"] < 5:  # answered: the link lives on
                await asyncio.sleep(0.05)
        assert seen["n"] == 1
        assert driver.stats().connected, driver.stats()
        pings["answer"] = False  # now silent: the component declares it dead
        events = []
        async with asyncio.timeout(8):
            while not any(e.get("state") == "backoff" for e in events):
                events.append(await driver.events.get())
        driver.stop()
        await task
    assert close_code_from_gateway(seen["ws"][0]) == 1011, seen["ws"][0].protocol.close_rcvd
    assert [e["state"] for e in events if e["event"] == "state"][-1] == "backoff", events


async def _max_size_comes_from_the_settings():
    async def script(n, ws):
        await handshake(ws)
        if n == 1:
            await ws.send(json.dumps({"type": "going_idle_ack", "pad": "x" * 3000}) + "\n")
        await ws.wait_closed()

    server, url, seen = await scripted(script)
    async with server:
        driver = Driver(url, {**CONFIG, "max_message_bytes": 2048}, proxy=None)
        assert driver.settings.max_message_bytes == 2048
        events = await run_until(driver, lambda ev: "backoff" in states(ev))
    assert states(events)[:2] == ["ready", "backoff"], states(events)
    assert close_code_from_gateway(seen["ws"][0]) == 1009  # websockets: message too big


async def _graceful_shutdown_is_sequenced_by_the_component():
    async def script(n, ws):
        await handshake(ws)
        async for frame in lines(ws):
            if frame["type"] == "going_idle":
                await ws.send('{"type": "going_idle_ack"}\n')

    server, url, seen = await scripted(script)
    async with server:
        driver = Driver(url, CONFIG, proxy=None)
        task, events = asyncio.create_task(driver.run()), []
        async with asyncio.timeout(8):
            while not events or events[-1]["event"] != "ready":
                events.append(await driver.events.get())
            driver.shutdown(grace=5)
            await task
        while not driver.events.empty():
            events.append(driver.events.get_nowait())
    tail = [e for e in events if e["event"] != "state" or e["state"] not in BOOKKEEPING]
    assert [e["event"] for e in tail] == ["ready", "idle", "state"], tail
    assert tail[1]["acked"] is True and tail[2] == {"event": "state", "state": "stopped",
                                                    "reason": "shutdown"}, tail
    assert close_code_from_gateway(seen["ws"][0]) == 1000


async def _shutdown_before_run_dials_nothing():
    driver = Driver("http://127.0.0.1:9", CONFIG, proxy=None)
    driver.shutdown()
    await asyncio.wait_for(driver.run(), 2)
    events = [driver.events.get_nowait() for _ in range(driver.events.qsize())]
    assert events == [{"event": "state", "state": "stopped", "reason": "shutdown"}], events


BUFFERED = {"text": "hi", "message_id": "m-{}",
            "source": {"platform": "slack", "chat_id": "C1", "user_id": "U1"}}


def inbound(buffer_id):
    event = {**BUFFERED, "message_id": BUFFERED["message_id"].format(buffer_id)}
    return json.dumps({"type": "inbound", "event": event, "bufferId": buffer_id}) + "\n"


#: A memory cap the component runs in but cannot take a 2.5 MB message with.
SMALL_MEMORY = 3 << 20
HUGE = "x" * (5 << 19)


async def _trap_is_recovered_from():
    async def script(n, ws):
        await handshake(ws)
        if n == 1:
            await ws.send(inbound("b1"))
            async for frame in lines(ws):
                if frame["type"] == "outbound":  # unanswered: owed after the trap
                    await ws.send(HUGE)  # the guest runs out of memory: a trap
        else:
            await ws.send(inbound("b1") + inbound("b2"))  # b1 replayed: not again
            await ws.wait_closed()

    server, url, seen = await scripted(script)
    async with server:
        driver = Driver(url, CONFIG, relay=Relay(memory_bytes=SMALL_MEMORY), proxy=None)
        first = driver.relay
        task, events = asyncio.create_task(driver.run()), []
        async with asyncio.timeout(10):
            while True:
                ev = await driver.events.get()
                events.append(ev)
                if ev["event"] == "message" and ev["buffer_id"] == "b1":
                    driver.going_idle()  # never answered: owed
                    driver.outbound("a1", {"op": "get_chat_info", "chat_id": "C9"})
                if ev["event"] == "message" and ev["buffer_id"] == "b2":
                    break
        driver.stop()
        await task
    assert driver.restarts == 1 and driver.relay is not first
    got = [e for e in events if not (e["event"] == "state" and e["state"] in BOOKKEEPING)]
    names = [e["event"] if e["event"] != "state" else e["state"] for e in got]
    assert names == ["ready", "message", "outbound_result", "idle", "backoff", "ready",
                     "message"], names
    result = got[2]
    assert result["id"] == "a1" and result["result"]["ambiguous"] is True, result
    assert result["result"]["error"] == "relay transport connection lost", result
    assert result["result"]["name"] == "C9", result  # the kept action shapes it
    assert got[3]["acked"] is False
    assert got[4]["retry_in_ms"] == 500 and "guest instance failed" in got[4]["reason"], got[4]
    assert got[6]["buffer_id"] == "b2"
    assert seen["n"] == 2 and close_code_from_gateway(seen["ws"][0]) == 1011


async def _trap_beyond_the_budget_raises():
    from relay_wasm.driver import RestartBudget

    async def script(n, ws):
        await handshake(ws)
        await ws.send(HUGE)
        await ws.wait_closed()

    server, url, seen = await scripted(script)
    async with server:
        driver = Driver(url, CONFIG, relay=Relay(memory_bytes=SMALL_MEMORY),
                        restart_budget=RestartBudget(max_restarts=1), proxy=None)
        try:
            await asyncio.wait_for(driver.run(), 10)
        except RuntimeError as e:
            assert "restart budget exhausted" in str(e), e
        else:
            raise AssertionError("run() returned")
    assert driver.restarts == 1 and seen["n"] == 2


async def _trap_without_a_rebuild_raises():
    async def script(n, ws):
        await handshake(ws)
        await ws.send(HUGE)
        await ws.wait_closed()

    def no_rebuild():
        raise OSError("the component file is gone")

    server, url, seen = await scripted(script)
    async with server:
        relay = Relay(memory_bytes=SMALL_MEMORY)
        relay.fresh = no_rebuild
        driver = Driver(url, CONFIG, relay=relay, proxy=None)
        try:
            await asyncio.wait_for(driver.run(), 10)
        except RuntimeError as e:
            assert "cannot rebuild" in str(e) and isinstance(e.__cause__, OSError), e
        else:
            raise AssertionError("run() returned")


async def _client_call_answered_across_a_trap():
    async def script(n, ws):
        await handshake(ws)
        async for frame in lines(ws):
            if frame["type"] == "outbound" and n == 1:
                await ws.send(HUGE)  # the guest traps with this request unanswered
            elif frame["type"] == "outbound":
                await ws.send(json.dumps({"type": "outbound_result", "requestId": frame["requestId"],
                                          "result": {"success": True, "message_id": "m2"}}) + "\n")
            elif frame["type"] == "going_idle":
                await ws.send('{"type": "going_idle_ack"}\n')

    server, url, seen = await scripted(script)
    async with server:
        async with asyncio.timeout(10):
            async with connect(url, CONFIG, relay=Relay(memory_bytes=SMALL_MEMORY),
                               proxy=None) as link:
                await link.wait_ready()
                lost = await link.outbound({"op": "send", "chat_id": "C1", "text": "one"})
                assert (lost.success, lost.ambiguous) == (False, True), lost
                assert lost.error == "relay transport connection lost", lost
                assert link.restarts == 1
                await link.wait_ready()  # re-dialled by the new instance
                ok = await link.outbound({"op": "send", "chat_id": "C1", "text": "two"})
                assert ok.success and ok.message_id == "m2", ok
            assert link.state == "stopped"
    assert seen["n"] == 2


def test_revoked_after_redial():
    asyncio.run(_revoked_after_redial())


def test_backoff_then_ready():
    asyncio.run(_backoff_then_ready())


def test_handshake_deadline():
    asyncio.run(_handshake_deadline())


def test_failed_dial_backs_off():
    asyncio.run(_failed_dial_backs_off())


def test_keepalive_pings_are_the_components():
    asyncio.run(_keepalive_pings_are_the_components())


def test_max_size_comes_from_the_settings():
    asyncio.run(_max_size_comes_from_the_settings())


def test_graceful_shutdown_is_sequenced_by_the_component():
    asyncio.run(_graceful_shutdown_is_sequenced_by_the_component())


def test_shutdown_before_run_dials_nothing():
    asyncio.run(_shutdown_before_run_dials_nothing())


def test_trap_is_recovered_from():
    asyncio.run(_trap_is_recovered_from())


def test_trap_beyond_the_budget_raises():
    asyncio.run(_trap_beyond_the_budget_raises())


def test_trap_without_a_rebuild_raises():
    asyncio.run(_trap_without_a_rebuild_raises())


def test_client_call_answered_across_a_trap():
    asyncio.run(_client_call_answered_across_a_trap())


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
