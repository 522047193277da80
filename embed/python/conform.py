#!/usr/bin/env python3
"""``conform.py FILE...``: kept for old command lines; the runner is the package's
``python -m relay_wasm.conform FILE...`` (relay_wasm/conform.py).

Uses the installed ``relay_wasm`` when run with ``python -P`` (or when the package
is importable otherwise), else the copy beside this file."""

import sys
from pathlib import Path

try:
    from relay_wasm.conform import main
except ImportError:  # a checkout, nothing installed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from relay_wasm.conform import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
