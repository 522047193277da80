"""``python -m relay_wasm.bench``: what the component costs from Python.

Two measurements, through ``Relay()`` (the native module, ``relay_wasm._native``):

* ``--corpus FILE``: **frames per second of the in-process pipeline** over an
  NDJSON corpus of connector→gateway lines (``relay-bench --dump-corpus FILE``
  writes the Rust benchmark's own): a handshaken ``Link`` (Discord, bot
  ``app``, as relay-bench's (b)) gets every line as one WebSocket message
  (``receive_text``, newline appended) and its effects are built, each emitted
  event parsed with ``json.loads``.  Rounds repeat until ``--seconds`` have
  passed (one warm-up round first).  ``--json OUT`` writes ``py_component_fps``
  with the corpus, the rounds and the versions.  ``--python-ref SCRIPT`` then
  runs the pure-Python reference (``../shared/bench/py_reference.py``) on the same
  corpus with this interpreter, in the same run, and adds ``py_ref_fps``,
  ``py_json_floor_fps`` and ``py_component_vs_ref`` (``null`` with a note when it
  cannot run).
* without ``--corpus``: **µs per call** of a near-empty call, ``codec.decode`` of
  one 283-byte inbound line and ``receive_text``/``receive_binary`` of one inbound
  frame (and ten per message); ``--json OUT`` writes them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from .component import Link, Relay
from .effects import Emit

DESCRIPTOR = {"contract_version": 1, "platform": "slack", "label": "Slack",
              "max_message_length": 40000, "supports_draft_streaming": False,
              "supports_edit": True, "supports_threads": True, "markdown_dialect": "mrkdwn",
              "len_unit": "chars"}
EVENT = {"text": "hello there, this is a typical short chat message", "message_id": "1700000000.000100",
         "source": {"platform": "slack", "chat_id": "C0123456", "chat_type": "channel",
                    "user_id": "U0ABCDEF", "user_name": "ada", "thread_id": "1700000000.000001"}}
LINE = json.dumps({"type": "inbound", "event": EVENT})

#: relay-bench's handshake line and config (crates/relay-bench/src/throughput.rs).
CORPUS_DESCRIPTOR_LINE = (
    '{"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "discord", '
    '"label": "Discord", "max_message_length": 2000, "supports_draft_streaming": false, '
    '"supports_edit": true, "supports_threads": true, "markdown_dialect": "discord", '
    '"len_unit": "chars"}}\n')
CORPUS_CONFIG = {"identities": [{"platform": "discord", "bot_id": "app"}], "seed": 7,
                 "reconnect_jitter_percent": 50}
#: Messages the component remembers for de-duplication (D16).
DEDUP_WINDOW = 4096


# -- µs per call ----------------------------------------------------------------------

def per_call(fn, n: int, repeat: int = 5) -> float:
    """Best of ``repeat`` batches of ``n`` calls, in µs per call (the machine is
    shared, so the minimum is the least noisy figure)."""
    for _ in range(min(n, 200)):  # warm up
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def measure(relay: Relay, n: int) -> dict:
    conn = Link({"identities": [{"platform": "slack", "bot_id": "B1"}], "seed": 1,
                 "reconnect_jitter_percent": 0}, relay=relay)
    conn.open(0)
    ready = conn.receive_text(1, json.dumps({"type": "descriptor", "descriptor": DESCRIPTOR}) + "\n")
    assert any(isinstance(e, Emit) and e.event["event"] == "ready" for e in ready), ready
    # A repeated message is not delivered again (D16): cycle through more distinct
    # ones (same length) than the component remembers, so every call delivers.
    pool = [LINE.replace("1700000000.000100", f"1700000000.{i:06d}") + "\n" for i in range(16_384)]
    texts = itertools.cycle(pool)
    blobs = itertools.cycle([t.encode() for t in pool])
    batches = itertools.cycle(["".join(pool[i:i + 10]) for i in range(0, len(pool), 10)])
    got = conn.receive_text(2, next(texts))
    assert [e.event["event"] for e in got if isinstance(e, Emit)] == ["message"], got
    line = LINE.encode()
    out = {
        "dial_url (near-empty call)": per_call(lambda: relay.dial_url("https://x.example"), n),
        "codec.decode (1 line)": per_call(lambda: relay.decode(line), n),
        "receive_text (1 inbound)": per_call(lambda: conn.receive_text(3, next(texts)), n),
        "receive_binary (1 inbound)": per_call(lambda: conn.receive_binary(3, next(blobs)), n),
        "receive_text (10 inbound, per call)": per_call(lambda: conn.receive_text(3, next(batches)), n // 10),
    }
    conn.drop()
    return out


def call_costs(n: int) -> dict:
    t0 = time.perf_counter()
    relay = Relay()
    print(f"load + compile + instantiate: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    t0 = time.perf_counter()
    relay.fresh()
    print(f"instantiate (compiled): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    print(f"inbound line: {len(LINE)} bytes; best of 5 batches of {n} calls")
    a = measure(relay, n)
    print(f"{'µs per call':38} {'Relay()':>9}")
    for k in a:
        print(f"{k:38} {a[k]:9.2f}")
    return {"py_call_us": a}


# -- frames per second over a corpus ----------------------------------------------------

def load_corpus(path: Path) -> list:
    """One connector→gateway line per line, blanks skipped (relay-bench's rule)."""
    return [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def throughput(lines: list, seconds: float) -> dict:
    """Frames per second of ``receive_text`` over ``lines``, one message per line."""
    messages = [l + "\n" for l in lines]
    relay = Relay()
    conn = Link(CORPUS_CONFIG, relay=relay)
    conn.open(0)
    ready = conn.receive_text(0, CORPUS_DESCRIPTOR_LINE)
    assert any(isinstance(e, Emit) and e.event.get("event") == "ready" for e in ready), ready
    now = 1

    def one_round() -> int:
        nonlocal now
        emitted = 0
        for m in messages:
            for e in conn.receive_text(now, m):
                emitted += isinstance(e, Emit)
        now += 1
        return emitted

    t0 = time.perf_counter()
    emitted_first = one_round()  # warm-up; also sizes the run
    warm_s = time.perf_counter() - t0
    rounds = max(1, min(10_000, round(seconds / max(warm_s, 1e-9))))
    t0 = time.perf_counter()
    for _ in range(rounds):
        one_round()
    elapsed = time.perf_counter() - t0
    conn.drop()
    frames = len(messages) * rounds
    return {"py_component_fps": frames / elapsed, "rounds": rounds, "seconds": elapsed,
            "frames_per_round": len(messages), "events_first_round": emitted_first}


def _versions() -> dict:
    from importlib import metadata

    from . import __version__
    from .component import _native

    try:
        installed = metadata.version("relay-wasm")
    except metadata.PackageNotFoundError:  # run from a checkout
        installed = None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "relay_wasm": __version__, "relay_wasm_installed": installed,
            "native": {"version": _native.__version__, "file": getattr(_native, "__file__", None),
                       "wasmtime_major": _native.WASMTIME_MAJOR},
            "machine": platform.machine()}


def python_reference(script: Path, corpus: Path, runs: int = 3) -> dict:
    """The reference's own figures on ``corpus`` (its last stdout line), or ``None``
    for each with a ``note`` saying why it could not run."""
    skipped = {"py_ref_fps": None, "py_json_floor_fps": None}
    if not script.is_file():
        return {**skipped, "note": f"{script} not found"}
    done = subprocess.run([sys.executable, str(script), str(corpus), "--runs", str(runs)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        return {**skipped, "note": f"the reference failed (exit {done.returncode}): {last}"}
    try:
        last = [l for l in done.stdout.splitlines() if l.strip()][-1]
        figures = json.loads(last)
        return {k: float(figures[k]) for k in skipped}
    except (IndexError, KeyError, TypeError, ValueError) as e:
        return {**skipped, "note": f"unreadable reference output ({e!r})"}


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m relay_wasm.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="NDJSON corpus: measure frames/s over it")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="with --corpus: time budget of the measured rounds (default 5)")
    ap.add_argument("-n", type=int, default=2000, help="without --corpus: calls per batch")
    ap.add_argument("--python-ref", type=Path, metavar="SCRIPT",
                    help="with --corpus: also run the pure-Python reference "
                         "(../shared/bench/py_reference.py) on the corpus, and the ratio")
    args = ap.parse_args(argv)
    if args.corpus is not None:
        try:
            lines = load_corpus(args.corpus)
        except OSError as e:
            print(f"error: {args.corpus}: {e}", file=sys.stderr)
            return 2
        if not lines:
            print(f"error: {args.corpus}: the corpus is empty", file=sys.stderr)
            return 2
        if len(lines) <= DEDUP_WINDOW:
            print(f"note: the corpus has {len(lines)} lines; every round after the first meets "
                  f"messages the component already delivered (D16 de-duplicates up to "
                  f"{DEDUP_WINDOW}), so it times the duplicate path", file=sys.stderr)
        size = sum(len(l.encode()) + 1 for l in lines)
        r = throughput(lines, args.seconds)
        print(f"corpus: {args.corpus} ({len(lines)} frames, {size} bytes)")
        print(f"in-process pipeline (Relay()), one frame "
              f"per message: {r['py_component_fps']:,.0f} frames/s "
              f"({r['rounds']} rounds in {r['seconds']:.1f} s)")
        report = {"py_component_fps": r["py_component_fps"],
                  "corpus": {"source": str(args.corpus), "frames": len(lines), "bytes": size},
                  "rounds": r["rounds"], "seconds": r["seconds"],
                  **_versions()}
        if args.python_ref is not None:
            ref = python_reference(args.python_ref, args.corpus)
            report.update(ref)
            if ref["py_ref_fps"]:
                report["py_component_vs_ref"] = r["py_component_fps"] / ref["py_ref_fps"]
                print(f"pure-Python reference, same corpus, this run: {ref['py_ref_fps']:,.0f} "
                      f"frames/s; the component pipeline is {report['py_component_vs_ref']:.2f}x it")
            else:
                report["py_component_vs_ref"] = None
                print(f"note: --python-ref skipped: {ref['note']}", file=sys.stderr)
    else:
        report = {**call_costs(args.n), **_versions()}
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
