#!/usr/bin/env python3
"""``bench.py [ARGS]``: kept for old command lines; the benchmark is the package's
``python -m relay_wasm.bench [--corpus FILE] [--json OUT]`` (relay_wasm/bench.py).

Uses the installed ``relay_wasm`` when run with ``python -P`` (or when the package
is importable otherwise), else the copy beside this file."""

import sys
from pathlib import Path

try:
    from relay_wasm.bench import main
except ImportError:  # a checkout, nothing installed
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from relay_wasm.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
