"""The native JSON reader an emit's event goes through (``_native.loads``,
``native/src/json.rs``) against ``json.loads``: the same objects — the same
types (``True`` is not ``1``, ``1.0`` is not ``1``), keys in the same order —
or the same error, for every text."""

from __future__ import annotations

import json
import random
import unittest

from relay_wasm import Emit, Link, Relay
from relay_wasm.component import _native

from support import CONFIG, DESCRIPTOR_LINE
from test_native import inbound


def shape(v):
    """A value with its types spelled out, so equal shapes mean identical results."""
    if isinstance(v, dict):
        return ("dict", [(shape(k), shape(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("list", [shape(x) for x in v])
    if isinstance(v, float):
        return ("float", v.hex())
    return (type(v).__name__, v)


TEXTS = [
    '{}', '[]', '""', '0', '-0', '-0.0', '1.5', '1e3', '1E-3', '2.5e+10', '1e400', '-1e400',
    '123456789012345678901234567890', '-9223372036854775809', '9223372036854775807',
    'true', 'false', 'null', ' \t\n\r{"a" : [1 , 2] } \n',
    '{"a":1,"a":2,"b":3}',                                  # a repeated key: first place, last value
    '{"k":"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f"}',   # escapes, a surrogate pair
    '"héllo ✓ 😀"', '"a\\u0000b"', '"\\u001f"',
    '{"nested":{"deep":[[[[{"x":null}]]]]}}',
    '[1,2.0,"3",true,false,null,{},[]]',
]
# What the reader leaves to json.loads (which accepts some and refuses others).
FALLBACK = [
    'NaN', '-Infinity', '[Infinity]', '"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"',
    '{"a":1,}', '[1,]', '01', '1.', '.5', '-', '"\x01"', '{"a" 1}', '[1 2]', '', ' ',
    '{"a":1} x', 'tru', 'nul', '"abc', '"\\x"', '"\\u12"', '[' * 300 + ']' * 300,
]


def outcome(f, text):
    try:
        return ("ok", shape(f(text)))
    except Exception as e:  # noqa: BLE001 - the error is what is compared
        return ("error", type(e).__name__, str(e))


class NativeJsonReads(unittest.TestCase):
    def test_same_objects_or_same_error_as_json_loads(self):
        for text in TEXTS + FALLBACK:
            with self.subTest(text=text[:40]):
                self.assertEqual(outcome(_native.loads, text), outcome(json.loads, text))

    def test_random_documents(self):
        rng = random.Random(7)
        words = ["", "a", "é", "😀", "\n", '"', "\\", "\x00", "\u2028", "key"]

        def gen(depth=0):
            r = rng.random()
            if depth > 4 or r < 0.3:
                return rng.choice([None, True, False, rng.randint(-2**70, 2**70),
                                   rng.uniform(-1e6, 1e6), rng.randint(-10, 10),
                                   "".join(rng.choice(words) for _ in range(rng.randint(0, 6)))])
            if r < 0.65:
                return {"".join(rng.choice(words) for _ in range(3)): gen(depth + 1)
                        for _ in range(rng.randint(0, 5))}
            return [gen(depth + 1) for _ in range(rng.randint(0, 5))]

        for i in range(500):
            doc = gen()
            for text in (json.dumps(doc), json.dumps(doc, ensure_ascii=False),
                         json.dumps(doc, indent=1)):
                with self.subTest(i=i):
                    self.assertEqual(outcome(_native.loads, text), outcome(json.loads, text))

    def test_an_emitted_event_is_what_json_loads_makes_of_its_line(self):
        # Through a real frame: the native reader (default loads) and json.loads of
        # the emitted line agree, keys in order.
        relay = Relay()
        link = Link(CONFIG, relay=relay)
        link.open(0)
        link.receive_text(1, DESCRIPTOR_LINE)
        effects = link.receive_text(2, inbound("héllo ✓ \\ \"quoted\" 😀"))
        emits = [e for e in effects if isinstance(e, Emit)]
        self.assertEqual([e.event["event"] for e in emits], ["message"])
        for e in emits:
            self.assertEqual(shape(e.event), shape(json.loads(e.line)))

    def test_a_custom_loads_is_still_called(self):
        seen = []

        def loads(text):
            seen.append(text)
            return json.loads(text)

        relay = Relay(loads=loads)
        link = Link(CONFIG, relay=relay)
        link.open(0)
        link.receive_text(1, DESCRIPTOR_LINE)
        self.assertTrue(seen, "a loads given to Relay() reads the events")


if __name__ == "__main__":
    unittest.main()
