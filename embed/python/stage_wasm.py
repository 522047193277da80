#!/usr/bin/env python3
"""Copies the cargo-built component into the package, as ``relay_wasm/relay.wasm``.

    cargo build --release -p relay-host        # builds (and embeds) the component
    python3 embed/python/stage_wasm.py          # then: pip install embed/python

The copy is a build artifact (``embed/python/.gitignore``); the wheel ships it as
package data, which ``relay_wasm.default_wasm_path()`` finds through
``importlib.resources``.  ``--from PATH`` stages another build; ``--check`` only
reports whether the staged copy is missing or differs from the build (exit 1).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = REPO / "target/component/relay.wasm"
STAGED = HERE / "relay_wasm" / "relay.wasm"
MAGIC = b"\0asm"


def main(argv: list) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path, default=BUILD,
                    help=f"the component to stage (default: {BUILD.relative_to(REPO)})")
    ap.add_argument("--check", action="store_true", help="only check that the staged copy is current")
    args = ap.parse_args(argv)
    src: Path = args.source
    if not src.is_file():
        print(f"error: {src} does not exist; build it first: cargo build --release -p relay-host",
              file=sys.stderr)
        return 2
    data = src.read_bytes()
    if data[:4] != MAGIC:
        print(f"error: {src} is not a WebAssembly file", file=sys.stderr)
        return 2
    current = STAGED.is_file() and STAGED.read_bytes() == data
    if args.check:
        print(f"{STAGED}: {'current' if current else 'missing or stale'}")
        return 0 if current else 1
    if not current:
        shutil.copy2(src, STAGED)  # keeps the build's mtime
    print(f"staged {src} -> {STAGED} ({len(data):,} bytes{'' if not current else ', unchanged'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
