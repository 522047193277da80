"""relay_wasm.connect against the real connector emulator (target/release/relay-connector):
ready, an inbound message through ``async for``, concurrent and cancelled
``outbound`` calls, backpressure, rejected commands, a revoked link, the graceful
exit.  Every ``state`` event is the component's (contract 0.2)."""

from __future__ import annotations

import asyncio
import unittest

import relay_wasm
from relay_wasm import (DecodeError, DecodeErrorKind, IdleEvent, LinkState, LinkStopped,
                        MessageEvent, OutboundResult, ReadyEvent, StateEvent)
from relay_wasm.client import OUTBOUND_ID_PREFIX

from support import Emulator

SECRET = "client-test-secret"
PLATFORM, BOT = "telegram", "bot-1"
CONFIG = {"identities": [{"platform": PLATFORM, "bot_id": BOT}], "gateway_id": "gw-test",
          "secret": SECRET, "seed": 11}
TIMEOUT = 20.0


def inbound(i: int, text: str = "hello relay") -> dict:
    return {"text": text, "message_id": f"m{i}",
            "source": {"platform": PLATFORM, "chat_id": "chat-42", "chat_type": "dm",
                       "user_id": "u7", "user_name": "ada"}}


class ClientAgainstEmulator(unittest.IsolatedAsyncioTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        relay_wasm.Relay()  # compiles the component once, before any event loop runs

    async def asyncSetUp(self) -> None:
        self.emulator = Emulator(SECRET)
        self.url = await self.emulator.start()

    async def asyncTearDown(self) -> None:
        await self.emulator.stop()

    def connect(self, **kwargs) -> relay_wasm.Client:
        # proxy=None: never send loopback traffic to an $https_proxy of the machine.
        return relay_wasm.connect(self.url, CONFIG, proxy=None, **kwargs)

    async def until(self, link, kind, seen=None):
        """The next event of type ``kind`` (the ones before it go to ``seen``)."""
        async for event in link:
            if isinstance(event, kind):
                return event
            if seen is not None:
                seen.append(event)
        self.fail(f"the link ended before a {kind.__name__}")

    async def test_ready(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with self.connect() as link:
                first = [await link.next_event() for _ in range(4)]
                self.assertEqual(first[0], StateEvent(LinkState.CONNECTING))
                self.assertEqual(first[1], StateEvent(LinkState.HANDSHAKING))
                ready = first[2]
                self.assertIsInstance(ready, ReadyEvent)
                self.assertEqual(first[3], StateEvent(LinkState.READY))
                self.assertEqual(ready.descriptor["platform"], PLATFORM)
                self.assertEqual(ready.name, "ready")
                self.assertIs(link.state, LinkState.READY)
                self.assertEqual(await link.wait_ready(), ready)
                self.assertEqual(link.descriptor, ready.descriptor)
                self.assertTrue(link.running)
            conns = await self.emulator.wait_for(lambda r: "connected" in r)
            self.assertEqual(conns[0]["gateway_id"], "gw-test")  # the signed upgrade token

    async def test_inbound_message_arrives_via_async_for(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with self.connect() as link:
                await link.wait_ready()
                self.emulator.command({"cmd": "inbound", "event": inbound(1), "buffered": True})
                seen: list = []
                message = await self.until(link, MessageEvent, seen)
                self.assertEqual([e.name for e in seen], ["state", "state", "ready", "state"])
                self.assertEqual(message.text, "hello relay")
                self.assertEqual(message.source["chat_id"], "chat-42")
                self.assertEqual(message.buffer_id, "buf-1")
                link.ack(message)
                acks = await self.emulator.wait_for(lambda r: r.get("seen") == "inbound_ack")
                self.assertEqual((acks[0]["bufferId"], acks[0]["known"]), ("buf-1", True))

    async def test_two_concurrent_outbounds_each_get_their_own_result(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            # `send` is answered 300 ms late, `get_chat_info` at once: the answers
            # come in the other order than the requests.
            self.emulator.command({"cmd": "outbound_rule", "op": "send", "reply": "result",
                                   "result": {"success": True, "message_id": "slow-1"},
                                   "delay_ms": 300})
            await self.emulator.wait_for(lambda r: r.get("ok") == "outbound_rule")
            async with self.connect() as link:
                await link.wait_ready()
                sent, info = await asyncio.gather(
                    link.outbound({"op": "send", "chat_id": "chat-42", "text": "one"}),
                    link.outbound({"op": "get_chat_info", "chat_id": "chat-7"}))
                self.assertIsInstance(sent, OutboundResult)
                self.assertTrue(sent.success)
                self.assertEqual(sent.message_id, "slow-1")
                self.assertTrue(info.success)
                self.assertEqual(info.result["chat_info"]["name"], "chat chat-7")
                self.assertNotEqual(sent.id, info.id)
                self.assertTrue(sent.id.startswith(OUTBOUND_ID_PREFIX))
                self.assertEqual(link.waiting, 0)
                answered = [r["result"] for r in self.emulator.reports
                            if r.get("sent") == "outbound_result"]
                self.assertIn("chat_info", answered[0])  # really answered out of order
                # The answers went to their calls, not also to the stream.
                link.going_idle()
                seen: list = []
                await self.until(link, IdleEvent, seen)
                self.assertFalse([e for e in seen if isinstance(e, OutboundResult)], seen)

    async def test_cancelled_outbound_removes_its_waiter(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            self.emulator.command({"cmd": "outbound_rule", "op": "typing", "reply": "silent"})
            await self.emulator.wait_for(lambda r: r.get("ok") == "outbound_rule")
            async with self.connect() as link:
                await link.wait_ready()
                call = asyncio.create_task(link.outbound({"op": "typing", "chat_id": "chat-42"}))
                await self.emulator.wait_for(lambda r: r.get("seen") == "outbound")
                self.assertEqual(link.waiting, 1)
                call.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await call
                self.assertEqual(link.waiting, 0)
                # A caller's own deadline is a cancellation too.
                with self.assertRaises(TimeoutError):
                    await asyncio.wait_for(link.outbound({"op": "typing", "chat_id": "c2"}), 0.3)
                self.assertEqual(link.waiting, 0)
                # The link is unharmed: the next call gets its answer.
                ok = await link.outbound({"op": "send", "chat_id": "chat-42", "text": "still here"})
                self.assertTrue(ok.success, ok.result)
                self.assertEqual(link.stats()["pending_outbound"], 2)  # the connector's silence
            # Leaving answered the two given-up requests; no call waits for them, so
            # they are ordinary events, after the ones the application did not read.
            late = [e async for e in link if isinstance(e, OutboundResult)]
            self.assertEqual(len(late), 2, late)
            for result in late:
                self.assertTrue(result.id.startswith(OUTBOUND_ID_PREFIX))
                self.assertFalse(result.success)
                self.assertTrue(result.ambiguous)
                self.assertEqual(result.error, "relay send failed: relay transport closed")

    async def test_graceful_exit(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with self.connect() as link:
                await link.wait_ready()
            self.assertIs(link.state, LinkState.STOPPED)
            self.assertFalse(link.running)
            # going_idle was answered, then the gateway closed with 1000.
            await self.emulator.wait_for(lambda r: r.get("seen") == "going_idle")
            gone = await self.emulator.wait_for(lambda r: "disconnected" in r)
            self.assertEqual((gone[0]["code"], gone[0]["initiator"]), (1000, "gateway"))
            # The events nobody read are still there, and then the stream ends.
            rest = [e async for e in link]
            self.assertEqual(rest[-1], StateEvent(LinkState.STOPPED, reason="shutdown"))
            self.assertIn(IdleEvent(acked=True), rest)
            self.assertIsNone(await link.next_event())
            with self.assertRaises(LinkStopped):
                await link.outbound({"op": "send", "chat_id": "chat-42", "text": "late"})
            with self.assertRaises(LinkStopped):
                link.going_idle()
            await link.shutdown()  # idempotent
            await asyncio.sleep(0.3)
            self.assertEqual(self.emulator.count(lambda r: "connected" in r), 1)  # never re-dialled

    async def test_await_form(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            link = await self.connect()
            try:
                self.assertIsInstance(await link.wait_ready(), ReadyEvent)
                result = await link.outbound({"op": "send", "chat_id": "chat-42", "text": "hi"})
                self.assertTrue(result.success)
            finally:
                await link.shutdown()
            self.assertFalse(link.running)
            self.assertIs(link.state, LinkState.STOPPED)

    async def test_backpressure_reader_waits_and_nothing_is_dropped(self) -> None:
        total, bound = 30, 4
        async with asyncio.timeout(TIMEOUT):
            async with self.connect(max_events=bound) as link:
                await link.wait_ready()  # state connecting, handshaking, ready, state ready: 4 queued
                for i in range(total):
                    self.emulator.command({"cmd": "inbound", "event": inbound(i, f"n{i}")})
                await self.emulator.wait_for(lambda r: r.get("sent") == "inbound", n=total)
                await asyncio.sleep(0.3)
                self.assertLessEqual(link.queued, bound)
                self.assertLess(link.stats()["frames_in"], 1 + total)  # the reader waits
                got = [e async for e in self._take(link, MessageEvent, total)]
                self.assertEqual([e.text for e in got], [f"n{i}" for i in range(total)])

    async def test_exit_with_unread_events_is_prompt_and_keeps_them(self) -> None:
        total = 30
        async with asyncio.timeout(TIMEOUT):
            loop = asyncio.get_running_loop()
            async with self.connect(max_events=4) as link:
                await link.wait_ready()
                for i in range(total):
                    self.emulator.command({"cmd": "inbound", "event": inbound(i, f"n{i}")})
                await self.emulator.wait_for(lambda r: r.get("sent") == "inbound", n=total)
                t0 = loop.time()
            # The idle answer was read behind the unread messages, not waited out.
            self.assertLess(loop.time() - t0, 2.0)
            rest = [e async for e in link]
            self.assertEqual([e.text for e in rest if isinstance(e, MessageEvent)],
                             [f"n{i}" for i in range(total)])
            self.assertIn(IdleEvent(acked=True), rest)

    async def _take(self, link, kind, n):
        async for event in link:
            if isinstance(event, kind):
                yield event
                n -= 1
                if n == 0:
                    return

    async def test_rejected_commands_raise_decode_error(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with self.connect() as link:
                await link.wait_ready()
                with self.assertRaises(DecodeError) as caught:
                    link.send({"op": "no_such_op"})
                self.assertIs(caught.exception.kind, DecodeErrorKind.UNKNOWN_TYPE)
                self.assertEqual(caught.exception.kind, "unknown_type")  # StrEnum
                with self.assertRaises(DecodeError) as caught:
                    await link.outbound("[1, 2]")  # JSON text, but not an object
                self.assertIs(caught.exception.kind, DecodeErrorKind.INVALID_FIELD)
                self.assertEqual(link.waiting, 0)
                ok = await link.outbound('{"op": "send", "chat_id": "c", "text": "as text"}')
                self.assertTrue(ok.success)

    async def test_revoked_link_ends_the_stream(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with self.connect() as link:
                await link.wait_ready()
                # Credentials refused after the handshake, and again on the re-dial.
                self.emulator.command({"cmd": "reject_next", "count": 1})
                await self.emulator.wait_for(lambda r: r.get("ok") == "reject_next")
                self.emulator.command({"cmd": "close", "code": 4401, "reason": "unauthorized"})
                with self.assertLogs("relay_wasm", "WARNING") as logs:
                    states = [e.state async for e in link if isinstance(e, StateEvent)]
                self.assertIn("credentials revoked", "\n".join(logs.output))
                self.assertIn(LinkState.REDIAL, states)
                self.assertEqual(states[-2:], [LinkState.REVOKED, LinkState.STOPPED])
                self.assertNotIn(LinkState.BACKOFF, states)
                self.assertFalse(link.running)
                with self.assertRaises(LinkStopped):
                    await link.wait_ready()
                with self.assertRaises(LinkStopped):
                    await link.outbound({"op": "send", "chat_id": "c", "text": "x"})
            self.assertEqual(self.emulator.count(lambda r: "connected" in r), 1)


if __name__ == "__main__":
    unittest.main()
