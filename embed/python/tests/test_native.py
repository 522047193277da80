"""The native module (``relay_wasm._native``) at its edges: typed errors for bad
arguments, traps, the memory cap, what it refuses to load, and the generic call
path agreeing with the effects fast path."""

from __future__ import annotations

import json
import unittest

from relay_wasm import DecodeError, Emit, Link, Relay
from relay_wasm.component import Trap, _native

from support import CONFIG, DESCRIPTOR, DESCRIPTOR_LINE, REPO

SESSION = "hermes:relay/session@0.2.0"
CODEC = "hermes:relay/codec@0.2.0"
#: Runs the component, but cannot take a message of HUGE bytes (test_driver.py).
SMALL_MEMORY = 3 << 20
HUGE = "x" * (5 << 19)


def inbound(text: str, message_id: str = "m1") -> str:
    return json.dumps({"type": "inbound", "event": {
        "text": text, "message_id": message_id,
        "source": {"platform": "slack", "chat_id": "C1", "user_id": "U1"}}}) + "\n"


def ready_link(relay: Relay) -> Link:
    link = Link(CONFIG, relay=relay)
    link.open(0)
    link.receive_text(1, DESCRIPTOR_LINE)
    return link


class Arguments(unittest.TestCase):
    def test_utf8_bytes_stand_for_a_string(self) -> None:
        text = inbound("héllo wörld — 你好 🎉")
        as_str = ready_link(Relay()).receive_text(2, text)
        as_bytes = ready_link(Relay()).receive_text(2, text.encode())
        self.assertEqual(as_str, as_bytes)
        self.assertEqual([e.event["event"] for e in as_str if isinstance(e, Emit)], ["message"])

    def test_bytes_that_are_not_utf8_are_a_typed_error(self) -> None:
        relay = Relay()
        link = ready_link(relay)
        bad = inbound("ok").encode()[:-3] + b"\xff\xfe\n"
        with self.assertRaises(UnicodeDecodeError) as caught:
            link.receive_text(2, bad)
        self.assertEqual(caught.exception.start, len(bad) - 3)
        # Refused before the guest ran: the link still works.
        self.assertIsNone(relay.dead)
        self.assertEqual(len(link.receive_text(3, inbound("fine"))), 1)
        with self.assertRaises(UnicodeDecodeError):
            relay.dial_url(b"https://\xc3(")

    def test_wrong_types_and_ranges_are_typed_errors(self) -> None:
        relay = Relay()
        link = ready_link(relay)
        with self.assertRaises(TypeError) as caught:
            link.receive_text(2, 42)
        self.assertIn("argument 3", str(caught.exception))
        with self.assertRaises(TypeError):
            link.receive_binary(2, "not bytes")
        with self.assertRaises(OverflowError):
            link.pong(-1)
        with self.assertRaises(OverflowError):
            link.closed(2, 70_000, "")  # option<u16>
        with self.assertRaises(TypeError):
            relay.decode(12)
        self.assertIsNone(relay.dead)

    def test_records_are_checked_by_their_wit_fields(self) -> None:
        relay = Relay()
        create = relay.instance.func(SESSION, "[static]link.create")
        with self.assertRaises(TypeError) as caught:
            create({"identities": [], "url": "", "seed": 1, "unix_offset_ms": 0,
                    "options": {}, "colour": "red"})
        self.assertIn("unknown field(s): colour", str(caught.exception))
        with self.assertRaises(TypeError) as caught:
            create({"identities": [], "url": "", "unix_offset_ms": 0, "options": {}})
        self.assertIn("missing field seed", str(caught.exception))
        with self.assertRaises(TypeError) as caught:
            create({"identities": [{"platform": "slack", "bot_id": 7}], "url": "", "seed": 1,
                    "unix_offset_ms": 0, "options": {}})
        self.assertIn("field identities: [0]: field bot_id", str(caught.exception))
        # A result's err is raised with its value; the package maps it to DecodeError.
        with self.assertRaises(_native.ResultError) as caught:
            create({"identities": [], "url": "", "seed": 1, "unix_offset_ms": 0, "options": {}})
        self.assertEqual(caught.exception.value["kind"], "invalid_field")
        with self.assertRaises(DecodeError):
            Link({"identities": []}, relay=relay)

    def test_resources_belong_to_their_instance_and_die_with_drop(self) -> None:
        a, b = Relay(), Relay()
        link_a = ready_link(a)
        stats = b.instance.func(SESSION, "[method]link.stats")
        with self.assertRaises(ValueError) as caught:
            stats(link_a._handle)
        self.assertIn("another instance", str(caught.exception))
        link_a.drop()
        with self.assertRaises(RuntimeError) as caught:
            link_a.stats()
        self.assertIn("dropped", str(caught.exception))
        link_a.drop()  # twice: a no-op


class Traps(unittest.TestCase):
    def test_a_trap_raises_trap_and_the_instance_stays_dead(self) -> None:
        relay = Relay(memory_bytes=SMALL_MEMORY)
        link = ready_link(relay)
        with self.assertRaises(Trap) as caught:
            link.receive_text(2, HUGE)
        trap = caught.exception
        self.assertIsInstance(trap, RuntimeError)
        self.assertIn("growing memory", trap.message)  # the cap, in one line
        self.assertNotIn("\n", trap.message)
        self.assertIn("wasm backtrace", trap.details)  # where the guest was
        self.assertIsNone(trap.stderr)  # the cap stops it before the guest writes
        self.assertEqual(relay.dead, trap.message)
        with self.assertRaises(Trap) as again:
            link.stats()
        self.assertIn("the instance is dead", str(again.exception))
        with self.assertRaises(Trap):
            relay.dial_url("https://c.example")
        link.drop()  # a dead instance's handle: nothing to release, no error
        # A fresh instance works.
        self.assertEqual(relay.fresh().dial_url("https://c.example"), "wss://c.example/relay")

    def test_a_memory_cap_too_small_to_instantiate_is_a_trap(self) -> None:
        with self.assertRaises(Trap) as caught:
            Relay(memory_bytes=64 << 10)
        self.assertIn("instantiation failed", caught.exception.message)


class Loading(unittest.TestCase):
    def test_not_a_component(self) -> None:
        with self.assertRaises(_native.LoadError):
            _native.Component(b"\0asm\x01\0\0\0")  # a core module header, no component
        with self.assertRaises(_native.LoadError):
            _native.Component(b"not wasm at all")

    def test_imports_beyond_the_error_channel_are_refused(self) -> None:
        relay = Relay()
        self.assertTrue(all(name.startswith(("wasi:cli/stderr@0.2.", "wasi:io/"))
                            for name in _native.Component(relay.path.read_bytes()).imports))
        # The hostile test guest is a std wasm32-wasip2 component (clocks, random,
        # filesystem, ...); tests/sandbox.rs builds it during `cargo test`.
        hostile = REPO / "target/fixtures/wasm32-wasip2/release/hostile_guest.wasm"
        if not hostile.is_file():
            self.skipTest(f"{hostile} is not built (cargo test --release --test sandbox)")
        with self.assertRaises(_native.LoadError) as caught:
            _native.Component(hostile.read_bytes())
        message = str(caught.exception)
        self.assertIn("does not provide", message)
        self.assertIn("wasi:clocks/", message)


class Paths(unittest.TestCase):
    def test_generic_call_gives_what_the_effects_path_gives(self) -> None:
        # Emitted events cross as list<u8>: the typed lift of the fast path and the
        # generic value-by-value lift must give the same bytes, non-ASCII included.
        text = "héllo wörld — 你好 🎉 " * 40
        fast_relay, slow_relay = Relay(), Relay()
        fast, slow = ready_link(fast_relay), ready_link(slow_relay)
        generic = slow_relay.instance.func(SESSION, "[method]link.receive-text")
        got_fast = fast.receive_text(2, inbound(text))
        got_slow = generic(slow._handle, 2, inbound(text))
        self.assertEqual(len(got_fast), len(got_slow))
        for effect, (tag, payload) in zip(got_fast, got_slow):
            self.assertEqual(effect.kind, tag)
            self.assertEqual(effect.line, payload["line"])
            self.assertEqual(effect.event_kind, payload["kind"])
        self.assertEqual(got_fast[0].event["message"]["text"], text)

    def test_functions_without_effects_are_refused_as_effect_functions(self) -> None:
        relay = Relay()
        with self.assertRaises(TypeError):
            relay.instance.func(CODEC, "dial-url", relay._effect_builder)
        with self.assertRaises(LookupError):
            relay.instance.func(CODEC, "no-such-function")


if __name__ == "__main__":
    unittest.main()
