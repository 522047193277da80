"""The typed surface without a network: events, commands, effects, errors, the queue."""

from __future__ import annotations

import asyncio
import json
import unittest

import relay_wasm
from relay_wasm import (Ack, CloseLink, Connection, DecodeError, DecodeErrorKind, Dial,
                        DescriptorEvent, EffectKind, Emit, ErrorEvent, EventKind, IdleEvent,
                        InterruptEvent, Link, LinkState, Log, LogLevel, MessageEvent, OtherEvent,
                        Outbound, OutboundResult, OwedRequest, PromptStaleEvent, ReadyEvent,
                        Recovery, Relay, Send, SendPing, Settings, StateEvent, Stats, parse_event)
from relay_wasm.driver import EventQueue, QueueClosed

from support import CONFIG, DESCRIPTOR_LINE


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


def emitted(effects) -> list:
    return [e for e in effects if isinstance(e, Emit)]


class Effects(unittest.TestCase):
    def test_effects_are_typed_and_index_like_tuples(self) -> None:
        with Link({**CONFIG, "url": "https://c.example", "gateway_id": "gw", "secret": "s"}) as link:
            state, dial = link.start(0)
            self.assertIsInstance(state, Emit)
            self.assertEqual((state.event_kind, state.state), (EventKind.STATE, LinkState.CONNECTING))
            self.assertEqual(json.loads(state.line), state.event)
            self.assertIsInstance(dial, Dial)
            self.assertIs(dial.kind, EffectKind.DIAL)
            self.assertEqual(dial.url, "wss://c.example/relay")
            self.assertTrue(dial.authorization.startswith("Bearer "))
            self.assertNotIn(dial.authorization, repr(dial))  # a credential
            hello, handshaking = link.open(10)
            self.assertIsInstance(hello, Send)
            self.assertIs(hello.kind, EffectKind.SEND)
            self.assertEqual(json.loads(hello.line)["type"], "hello")
            self.assertEqual((hello[0], hello[1], hello[2]), ("send", hello.line, hello.number))
            kind, line, number = hello
            self.assertEqual(hello.as_tuple(), (kind, line, number))
            self.assertEqual(handshaking.state, LinkState.HANDSHAKING)
            self.assertEqual(link.poll_timeout(), 10 + 30_000)  # the handshake deadline
            effects = link.receive_text(20, DESCRIPTOR_LINE)
            emits = emitted(effects)
            self.assertEqual([(e.event_kind, e.state) for e in emits],
                             [(EventKind.READY, None), (EventKind.STATE, LinkState.READY)])
            self.assertIsInstance(emits[0].as_event(), ReadyEvent)
            self.assertEqual(link.poll_timeout(), 10 + 30_000)  # now the first ping
            self.assertEqual(link.handle_timeout(30_010), [SendPing()])
            self.assertEqual(link.pong(30_020), [])
            effects = link.closed(30_030, 1011, "boom")
            states = [e.event for e in emitted(effects)]
            self.assertEqual(states, [{"event": "state", "state": "backoff", "retry_in_ms": 1000}])
            logs = [e for e in effects if isinstance(e, Log)]
            self.assertTrue(logs and all(isinstance(e.level, LogLevel) for e in logs))
            self.assertEqual(link.poll_timeout(), 31_030)
            self.assertEqual(link.handle_timeout(31_029), [])  # not yet due
            again = link.handle_timeout(31_030)
            self.assertEqual([type(e) for e in again], [Emit, Dial])

    def test_config_options_default_in_the_component(self) -> None:
        with Link(CONFIG) as link:
            s = link.settings()
            self.assertIsInstance(s, Settings)
            self.assertEqual((s.dial_url, s.max_message_bytes, s.close_wait_ms, s.ping_interval_ms,
                              s.pong_timeout_ms), ("", 4 << 20, 2000, 30_000, 60_000))
            self.assertEqual(s.summary["handshake_timeout_ms"], 30_000)
            self.assertEqual(s.summary["reconnect_jitter_percent"], 0)  # CONFIG sets it
        options = {"ping_interval_ms": 0, "max_message_bytes": 1234, "close_wait_ms": 50,
                   "handshake_timeout_ms": 700, "tenant": "t9",
                   "caps": {"pending_requests": 1, "buffer_ids": 2, "prompts": 3,
                            "answered_prompts": 4, "egress_chats": 5, "message_ids": 6}}
        with Link({**CONFIG, **options}) as link:
            s = link.settings()
            self.assertEqual((s.ping_interval_ms, s.max_message_bytes, s.close_wait_ms),
                             (0, 1234, 50))
            self.assertEqual(s.summary["tenant"], "t9")
            link.open(0)
            self.assertEqual(link.poll_timeout(), 700)
            (state,) = emitted(link.handle_timeout(700))
            self.assertEqual(state.event, {"tenant": "t9", "event": "state", "state": "handshake_failed"})
            self.assertIn(b'"tenant":"t9"', state.line)
            self.assertEqual(state.state, LinkState.HANDSHAKE_FAILED)
        with self.assertRaises(DecodeError) as caught:
            Link({**CONFIG, "ping_interval": 0})  # a typo is not ignored
        self.assertIs(caught.exception.kind, DecodeErrorKind.INVALID_FIELD)
        with self.assertRaises(DecodeError):
            Link({**CONFIG, "max_message_bytes": 0})  # the component's rule

    def test_stats_are_typed_and_readable_as_a_mapping(self) -> None:
        with Link(CONFIG) as link:
            link.open(0)
            link.receive_text(1, DESCRIPTOR_LINE)
            stats = link.stats()
            self.assertIsInstance(stats, Stats)
            self.assertEqual((stats.state, stats.connected, stats.frames_in, stats.frames_out),
                             (LinkState.READY, True, 1, 1))
            self.assertEqual(stats["pending_outbound"], 0)
            self.assertEqual(stats.as_dict()["consecutive_failures"], 0)
            with self.assertRaises(KeyError):
                stats["platforms"]

    def test_shutdown_and_typed_commands(self) -> None:
        with Link(CONFIG) as link:
            link.open(0)
            link.receive_text(1, DESCRIPTOR_LINE)
            (out,) = link.outbound(2, "a1", {"op": "send", "chat_id": "C", "text": "x"})
            self.assertEqual(json.loads(out.line)["action"]["op"], "send")
            effects = link.shutdown(3, 0, "bye")
            results = [e for e in emitted(effects) if e.event_kind == EventKind.OUTBOUND_RESULT]
            self.assertEqual([r.id for r in results], ["a1"])
            self.assertIn(CloseLink(1000, "gateway shutting down"), effects)
            (stopped,) = emitted(link.closed(4, 1000, ""))
            self.assertEqual((stopped.state, stopped.event["reason"]), (LinkState.STOPPED, "bye"))
            self.assertIsNone(link.poll_timeout())

    def test_recover_answers_what_was_owed(self) -> None:
        with Link(CONFIG) as link:
            effects = link.recover(0, Recovery(
                owed=[OwedRequest("a1", {"op": "get_chat_info", "chat_id": "C9"}), ("a2", None)],
                in_flight=["b7"], idle_owed=True, dial_after_ms=500, reason="guest failed"))
            events = [e.event for e in emitted(effects)]
            self.assertEqual([e.get("id") for e in events[:2]], ["a1", "a2"])
            self.assertEqual(events[0]["result"]["error"], "relay transport connection lost")
            self.assertEqual(events[0]["result"]["name"], "C9")
            self.assertEqual(events[2], {"event": "idle", "acked": False})
            self.assertEqual(events[3], {"event": "state", "state": "backoff", "retry_in_ms": 500,
                                         "reason": "guest failed"})
            self.assertEqual(link.poll_timeout(), 500)

    def test_connection_is_the_old_name(self) -> None:
        self.assertIs(Connection, Link)


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
            Link({"identities": []}, relay=relay)
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
