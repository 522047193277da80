"""The typed surface without a network: events, commands, effects, errors, the queue."""

from __future__ import annotations

import asyncio
import json
import unittest

import relay_wasm
from relay_wasm import (Ack, CancelTimer, Connection, DecodeError, DecodeErrorKind,
                        DescriptorEvent, EffectKind, Emit, ErrorEvent, EventKind, IdleEvent,
                        InterruptEvent, LinkState, Log, LogLevel, MessageEvent, OtherEvent,
                        Outbound, OutboundResult, PromptStaleEvent, ReadyEvent, Reconnect, Relay,
                        Send, SetTimer, StateEvent, parse_event)
from relay_wasm.driver import EventQueue, QueueClosed

CONFIG = {"identities": [{"platform": "slack", "bot_id": "B1"}], "seed": 1,
          "reconnect_jitter_percent": 0}
DESCRIPTOR = {"contract_version": 1, "platform": "slack", "label": "Slack",
              "max_message_length": 40000, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "mrkdwn",
              "len_unit": "chars"}


class Events(unittest.TestCase):
    def test_every_kind(self) -> None:
        lines = {
            StateEvent: '{"event":"state","tenant":"t1","state":"backoff","retry_in_ms":2000}',
            ReadyEvent: '{"event":"ready","tenant":"default","descriptor":{"platform":"discord"}}',
            DescriptorEvent: '{"event":"descriptor","platform":"telegram","descriptor":{}}',
            MessageEvent: '{"event":"message","message":{"text":"hi","source":{"chat_id":"c"}},"buffer_id":"b7"}',
            InterruptEvent: '{"event":"interrupt","session_key":"s","chat_id":"c"}',
            OutboundResult: '{"event":"outbound_result","id":"a1","result":{"success":true,"message_id":"m1"}}',
            PromptStaleEvent: '{"event":"prompt_stale","chat_id":"c","thread_id":null,"prompt_id":"p"}',
            IdleEvent: '{"event":"idle","acked":false}',
            ErrorEvent: '{"event":"error","error":{"kind":"missing_field","message":"no op"},"id":"x"}',
        }
        for cls, line in lines.items():
            event = parse_event(json.loads(line))
            self.assertIsInstance(event, cls, line)
            self.assertEqual(event.raw, json.loads(line))
            self.assertEqual(event.kind, json.loads(line)["event"])
            self.assertIsInstance(event.kind, EventKind)
        state = parse_event(json.loads(lines[StateEvent]))
        self.assertEqual((state.state, state.retry_in_ms, state.tenant), (LinkState.BACKOFF, 2000, "t1"))
        message = parse_event(json.loads(lines[MessageEvent]))
        self.assertEqual((message.text, message.source["chat_id"], message.buffer_id), ("hi", "c", "b7"))
        result = parse_event(json.loads(lines[OutboundResult]))
        self.assertEqual((result.success, result.message_id, result.ambiguous, result.error),
                         (True, "m1", False, None))
        error = parse_event(json.loads(lines[ErrorEvent]))
        self.assertIs(error.error.kind, DecodeErrorKind.MISSING_FIELD)
        self.assertEqual(error.id, "x")

    def test_unknown_and_unreadable_events_are_kept_whole(self) -> None:
        unknown = parse_event({"event": "hibernating", "x": 1})
        self.assertIsInstance(unknown, OtherEvent)
        self.assertEqual((unknown.name, unknown.raw["x"]), ("hibernating", 1))
        with self.assertLogs("relay_wasm", "WARNING"):
            bad = parse_event({"event": "ready"})  # no descriptor
        self.assertIsInstance(bad, OtherEvent)
        self.assertIsInstance(parse_event({"event": "status", "tenants": []}), OtherEvent)
        state = parse_event({"event": "state", "state": "hibernating"})
        self.assertIsInstance(state, StateEvent)
        self.assertEqual(state.state, "hibernating")
        self.assertEqual(LinkState.READY, "ready")  # a StrEnum

    def test_commands(self) -> None:
        self.assertEqual(Ack("b7").to_dict(), {"op": "ack", "buffer_id": "b7"})
        self.assertEqual(Outbound("a1", {"op": "send"}, platform="slack").to_dict(),
                         {"op": "outbound", "id": "a1", "action": {"op": "send"}, "platform": "slack"})
        self.assertEqual(relay_wasm.GoingIdle().to_dict(), {"op": "going_idle"})


class Effects(unittest.TestCase):
    def test_effects_are_typed_and_index_like_the_old_tuples(self) -> None:
        with Connection(CONFIG) as conn:
            hello, timer = conn.open(0)
            self.assertIsInstance(hello, Send)
            self.assertIs(hello.kind, EffectKind.SEND)
            self.assertEqual(json.loads(hello.line)["type"], "hello")
            self.assertEqual((hello[0], hello[1], hello[2]), ("send", hello.line, hello.number))
            kind, line, number = hello
            self.assertEqual(hello.as_tuple(), (kind, line, number))
            self.assertEqual(timer, SetTimer(timer.id, 30_000))
            effects = conn.receive_text(1, json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")
            emits = [e for e in effects if isinstance(e, Emit)]
            self.assertEqual([e.event["event"] for e in emits], ["ready"])
            self.assertIsInstance(emits[0].as_event(), ReadyEvent)
            self.assertIn(CancelTimer(timer.id), effects)
            effects = conn.closed(5, 1011, "boom")
            self.assertIn(Reconnect(1000), effects)
            logs = [e for e in effects if isinstance(e, Log)]
            self.assertTrue(logs and all(isinstance(e.level, LogLevel) for e in logs))


class Errors(unittest.TestCase):
    def test_decode_error_kind_is_an_enum(self) -> None:
        relay = Relay()
        with self.assertRaises(DecodeError) as caught:
            relay.decode(b"not json")
        e = caught.exception
        self.assertIs(e.kind, DecodeErrorKind.MALFORMED_JSON)
        self.assertEqual(e.kind, "malformed_json")
        self.assertTrue(e.message)
        self.assertEqual(str(e), f"malformed_json: {e.message}")
        with self.assertRaises(DecodeError) as caught:
            Connection({"identities": []}, relay=relay)
        self.assertIsInstance(caught.exception.kind, DecodeErrorKind)
        self.assertEqual(DecodeErrorKind.parse("not-object"), DecodeErrorKind.NOT_OBJECT)
        self.assertEqual(DecodeErrorKind.parse("brand_new"), "brand_new")


class Queue(unittest.IsolatedAsyncioTestCase):
    async def test_bounded_queue_never_drops_and_signals_room(self) -> None:
        q = EventQueue(2)
        for i in range(5):
            q.put_nowait(i)  # over the mark: kept, never refused
        self.assertTrue(q.full())
        room = asyncio.create_task(q.wait_for_room())
        await asyncio.sleep(0)
        self.assertFalse(room.done())
        self.assertEqual([await q.get() for _ in range(4)], [0, 1, 2, 3])
        await asyncio.wait_for(room, 1)
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        self.assertEqual(await getter, 4)
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        waiting.cancel()  # cancel-safe: takes nothing
        with self.assertRaises(asyncio.CancelledError):
            await waiting
        q.put_nowait("last")
        q.close()
        self.assertEqual(await q.get(), "last")
        with self.assertRaises(QueueClosed):
            await q.get()


if __name__ == "__main__":
    unittest.main()
